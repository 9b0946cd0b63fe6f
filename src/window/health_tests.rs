use super::*;
use crate::telemetry::EquipmentId;

/// A window of `rows` (one per channel); `None` is a missing value.
fn window(rows: &[Vec<Option<f32>>]) -> Window {
    let len = rows[0].len();
    let mut values = Vec::new();
    let mut mask = Vec::new();
    for row in rows {
        assert_eq!(row.len(), len);
        for v in row {
            values.push(v.unwrap_or(0.0));
            mask.push(v.is_some());
        }
    }
    Window {
        equipment_id: EquipmentId::try_from("pump-1".to_owned()).unwrap(),
        start_ms: 0,
        end_ms: (len as i64 - 1) * 1000,
        channels: rows.len(),
        len,
        values,
        mask,
        sources: Vec::new(),
    }
}

/// A channel that moves: a ramp with a little wobble, never the same value twice in a row.
fn moving(len: usize, base: f32) -> Vec<Option<f32>> {
    (0..len)
        .map(|t| Some(base + t as f32 * 0.1 + if t % 2 == 0 { 0.05 } else { 0.0 }))
        .collect()
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|c| format!("ch{c}")).collect()
}

fn trained_limits() -> SensorLimits {
    let training = window(&[moving(32, 10.0), moving(32, 50.0)]);
    SensorLimits::fit(&[&training], &names(2))
}

fn conditions(window: &Window, limits: Option<&SensorLimits>) -> Vec<(usize, Condition)> {
    check(window, limits)
        .into_iter()
        .map(|s| (s.channel, s.condition))
        .collect()
}

#[test]
fn fitting_records_the_training_range_and_the_longest_still_stretch() {
    let mut flat_then_moving = moving(32, 0.0);
    for v in flat_then_moving.iter_mut().take(5) {
        *v = Some(7.0);
    }
    flat_then_moving[2] = None;
    let training = window(&[flat_then_moving, vec![None; 32]]);
    let limits = SensorLimits::fit(&[&training], &names(2));
    let ch0 = &limits.channels[0];
    assert_eq!(
        ch0.longest_still_run, 4,
        "masked slots are skipped, not a break"
    );
    assert_eq!(ch0.min, 0.5);
    assert_eq!(ch0.max, 7.0);
    assert!(!ch0.quantized);
    assert_eq!(ch0.stuck_after(32), MIN_STUCK_SAMPLES);
    let ch1 = &limits.channels[1];
    assert_eq!((ch1.values, ch1.min, ch1.max), (0, 0.0, 0.0));
    assert_eq!(limits.validate(2), Ok(()));
    assert!(limits.validate(3).is_err());
}

#[test]
fn a_healthy_window_has_no_sick_channel() {
    let limits = trained_limits();
    let w = window(&[moving(32, 11.0), moving(32, 49.0)]);
    assert_eq!(conditions(&w, Some(&limits)), vec![]);
}

#[test]
fn a_channel_without_values_is_a_dropout_unless_every_channel_is_empty() {
    let w = window(&[vec![None; 16], moving(16, 1.0)]);
    assert_eq!(conditions(&w, None), vec![(0, Condition::Dropout)]);
    let empty = window(&[vec![None; 16], vec![None; 16]]);
    assert_eq!(conditions(&empty, None), vec![]);
}

#[test]
fn a_channel_holding_one_value_while_another_moves_is_stuck() {
    let limits = trained_limits();
    let mut stuck = moving(32, 10.0);
    for v in stuck.iter_mut().skip(20) {
        *v = Some(12.0);
    }
    let w = window(&[stuck.clone(), moving(32, 50.0)]);
    assert_eq!(conditions(&w, Some(&limits)), vec![(0, Condition::Stuck)]);
    let detail = &check(&w, Some(&limits))[0].detail;
    assert!(
        detail.contains("held 12 for 12 samples in a row"),
        "{detail}"
    );

    // Shorter than MIN_STUCK_SAMPLES: not yet.
    let mut brief = moving(32, 10.0);
    for v in brief.iter_mut().skip(26) {
        *v = Some(12.0);
    }
    let w = window(&[brief, moving(32, 50.0)]);
    assert_eq!(conditions(&w, Some(&limits)), vec![]);
}

#[test]
fn every_channel_holding_still_is_an_idle_machine_not_stuck_sensors() {
    let limits = trained_limits();
    let w = window(&[vec![Some(0.0); 32], vec![Some(20.0); 32]]);
    assert_eq!(conditions(&w, Some(&limits)), vec![]);
}

#[test]
fn a_channel_that_held_still_in_training_needs_twice_as_long_to_be_stuck() {
    let mut held = moving(64, 0.0);
    for v in held.iter_mut().skip(20).take(10) {
        *v = Some(2.0); // ten in a row
    }
    let training = window(&[held, moving(64, 50.0)]);
    let limits = SensorLimits::fit(&[&training], &names(2));
    assert!(!limits.channels[0].quantized);
    assert_eq!(limits.channels[0].stuck_after(64), 20);
    let mut live = moving(64, 0.0);
    for v in live.iter_mut().skip(45) {
        *v = Some(3.0); // 19 in a row
    }
    let w = window(&[live.clone(), moving(64, 50.0)]);
    assert_eq!(conditions(&w, Some(&limits)), vec![]);
    live[44] = Some(3.0); // 20 in a row
    let w = window(&[live, moving(64, 50.0)]);
    assert_eq!(conditions(&w, Some(&limits)), vec![(0, Condition::Stuck)]);
}

#[test]
fn a_sensor_on_a_coarse_grid_is_stuck_only_after_a_whole_still_window() {
    // Whole units, jumping between a few levels: most readings repeat one seen before.
    let levels = |len: usize| -> Vec<Option<f32>> {
        (0..len)
            .map(|t| Some(((t * 7 / 3) % 5) as f32 + 30.0))
            .collect()
    };
    let training = window(&[levels(32), moving(32, 50.0)]);
    let limits = SensorLimits::fit(&[&training], &names(2));
    let flow = &limits.channels[0];
    assert!(flow.quantized, "{flow:?}");
    assert_eq!(flow.stuck_after(32), 32);
    // Steady for 20 readings (a valve closed, the flow settled): not stuck.
    let mut steady = levels(32);
    for v in steady.iter_mut().skip(12) {
        *v = Some(29.0);
    }
    let w = window(&[steady, moving(32, 50.0)]);
    assert_eq!(conditions(&w, Some(&limits)), vec![]);
    // The whole window on one reading while the other channel moves: stuck.
    let w = window(&[vec![Some(29.0); 32], moving(32, 50.0)]);
    assert_eq!(conditions(&w, Some(&limits)), vec![(0, Condition::Stuck)]);
}

#[test]
fn a_value_hundreds_of_ranges_away_is_out_of_range_and_a_real_excursion_is_not() {
    let limits = trained_limits();
    // Training: ch0 from 10.05 to 13.1 (a range of about 3).
    let mut excursion = moving(32, 10.0);
    excursion[31] = Some(40.0); // ten ranges up: a fault, for the model to judge
    let w = window(&[excursion, moving(32, 50.0)]);
    assert_eq!(conditions(&w, Some(&limits)), vec![]);

    let mut sentinel = moving(32, 10.0);
    sentinel[10] = Some(-9999.0);
    let w = window(&[sentinel, moving(32, 50.0)]);
    assert_eq!(
        conditions(&w, Some(&limits)),
        vec![(0, Condition::OutOfRange)]
    );
    let detail = &check(&w, Some(&limits))[0].detail;
    assert!(
        detail.starts_with("value -9999 outside the plausible range"),
        "{detail}"
    );
}

#[test]
fn without_limits_only_dropouts_are_checked() {
    let mut sentinel = moving(32, 10.0);
    sentinel[10] = Some(-9999.0);
    let w = window(&[sentinel, vec![None; 32]]);
    assert_eq!(conditions(&w, None), vec![(1, Condition::Dropout)]);
}

#[test]
fn masking_hides_sick_channels_but_never_the_whole_window() {
    let limits = trained_limits();
    let mut stuck = moving(32, 10.0);
    for v in stuck.iter_mut().skip(10) {
        *v = Some(12.0);
    }
    let mut w = window(&[stuck, moving(32, 50.0)]);
    let sick = check(&w, Some(&limits));
    assert!(mask(&mut w, &sick));
    assert!(w.mask[..32].iter().all(|m| !m));
    assert!(w.values[..32].iter().all(|v| *v == 0.0));
    assert!(w.mask[32..].iter().all(|m| *m), "the healthy channel stays");

    let mut lone = window(&[moving(8, 1.0)]);
    lone.values[3] = 1e9;
    let limits = SensorLimits::fit(&[&window(&[moving(8, 1.0)])], &names(1));
    let sick = check(&lone, Some(&limits));
    assert_eq!(sick.len(), 1);
    assert!(!mask(&mut lone, &sick), "the only channel is kept");
    assert!(lone.mask.iter().all(|m| *m));
}

#[test]
fn channels_going_still_together_are_an_idle_machine() {
    let limits = trained_limits();
    // The machine stops: one channel a sample before the other, both then hold still.
    let mut a = moving(32, 10.0);
    let mut b = moving(32, 50.0);
    for v in a.iter_mut().skip(19) {
        *v = Some(0.0);
    }
    for v in b.iter_mut().skip(20) {
        *v = Some(0.0);
    }
    let w = window(&[a, b]);
    assert_eq!(conditions(&w, Some(&limits)), vec![]);
}

#[test]
fn the_windows_after_a_stuck_sensor_recovers_still_count_it_stuck() {
    let limits = trained_limits();
    // Stuck from slot 4 to 19, moving again after: the stretch is still in the window.
    let mut recovered = moving(32, 10.0);
    for v in recovered.iter_mut().skip(4).take(16) {
        *v = Some(12.0);
    }
    let w = window(&[recovered, moving(32, 50.0)]);
    assert_eq!(conditions(&w, Some(&limits)), vec![(0, Condition::Stuck)]);
}
