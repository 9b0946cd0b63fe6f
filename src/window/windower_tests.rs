//! Tests of the windower: table-driven cases and properties over random streams.

use proptest::prelude::*;

use super::*;

const PERIOD: i64 = 1000;

fn cfg(window: usize, stride: usize, lateness_slots: i64, max_gap: usize) -> WindowConfig {
    WindowConfig {
        sample_period_ms: PERIOD,
        window,
        stride,
        allowed_lateness_ms: lateness_slots * PERIOD,
        max_gap_samples: max_gap,
        min_present_fraction: 0.5,
    }
}

fn sample(slot: i64, value: f32) -> Sample {
    Sample {
        ts_ms: slot * PERIOD,
        values: vec![Some(value), Some(-value)],
        source: Some(SourcePosition {
            partition: 0,
            offset: slot,
        }),
    }
}

fn windower(cfg: WindowConfig) -> Windower {
    Windower::new(EquipmentId::try_from("pump-1").unwrap(), 2, cfg)
}

/// Pushes all samples, then finishes; returns every window in order.
fn run(w: &mut Windower, samples: &[Sample]) -> Vec<Window> {
    let mut windows = Vec::new();
    for s in samples {
        windows.extend(w.push(s).windows);
    }
    windows.extend(w.finish());
    windows
}

fn ends(windows: &[Window]) -> Vec<i64> {
    windows.iter().map(|w| w.end_ms / PERIOD).collect()
}

#[test]
fn a_fleet_s_windows_end_spread_over_the_stride_each_machine_at_a_fixed_phase() {
    let stride = 8;
    let samples: Vec<_> = (0..40).map(|i| sample(i, i as f32)).collect();
    let mut phases = std::collections::BTreeSet::new();
    for m in 0..64 {
        let id = EquipmentId::try_from(format!("m{m}")).unwrap();
        let mut w = Windower::new(id.clone(), 2, cfg(16, stride, 0, 2));
        let phase = w.stride_phase();
        assert!((0..stride as i64).contains(&phase));
        // The same id always gets the same phase (a restart continues on the same slots).
        assert_eq!(
            Windower::new(id, 2, cfg(16, stride, 0, 2)).stride_phase(),
            phase
        );
        let windows = run(&mut w, &samples);
        assert!(!windows.is_empty());
        for end in ends(&windows) {
            assert_eq!(
                (end - phase).rem_euclid(stride as i64),
                0,
                "m{m} ends at {end}"
            );
        }
        phases.insert(phase);
    }
    assert_eq!(phases.len(), stride, "every phase is used: {phases:?}");
    // The hash is fixed across versions: a machine's windows keep ending on the same slots.
    let id = EquipmentId::try_from("pump-03").unwrap();
    assert_eq!(
        Windower::new(id, 2, cfg(16, stride, 0, 2)).stride_phase(),
        7
    );
}

#[test]
fn in_order_stream_gives_windows_on_the_stride() {
    let mut w = windower(cfg(4, 2, 0, 2));
    // "pump-1" ends its windows on odd slots.
    assert_eq!(w.stride_phase(), 1);
    let samples: Vec<_> = (1..=10).map(|i| sample(i, i as f32)).collect();
    let windows = run(&mut w, &samples);
    assert_eq!(ends(&windows), vec![5, 7, 9]);
    let first = &windows[0];
    assert_eq!(first.start_ms, 2000);
    assert_eq!(
        first.values,
        vec![2.0, 3.0, 4.0, 5.0, -2.0, -3.0, -4.0, -5.0]
    );
    assert!(first.mask.iter().all(|m| *m));
    assert_eq!(
        first.sources,
        vec![SourceRange {
            partition: 0,
            first_offset: 2,
            last_offset: 5
        }]
    );
}

#[test]
fn windows_are_emitted_as_soon_as_their_end_is_final() {
    let mut w = windower(cfg(2, 1, 0, 2));
    assert!(w.push(&sample(1, 1.0)).windows.is_empty());
    let out = w.push(&sample(2, 2.0));
    assert_eq!(ends(&out.windows), vec![2]);
}

#[test]
fn jittered_timestamps_snap_to_the_nearest_slot() {
    let mut w = windower(cfg(3, 1, 0, 2));
    let mut s = Vec::new();
    for (slot, jitter) in [(1, -300), (2, 200), (3, 499), (4, -499)] {
        let mut x = sample(slot, slot as f32);
        x.ts_ms += jitter;
        s.push(x);
    }
    let windows = run(&mut w, &s);
    assert_eq!(ends(&windows), vec![3, 4]);
    assert_eq!(&windows[1].values[..3], &[2.0, 3.0, 4.0]);
}

#[test]
fn rejections_are_reported_with_a_reason() {
    struct Case {
        name: &'static str,
        lateness: i64,
        slots: &'static [i64],
        expect_rejected: &'static [(usize, &'static str)],
    }
    let cases = [
        Case {
            name: "duplicate in order",
            lateness: 0,
            slots: &[1, 2, 2, 3],
            expect_rejected: &[(2, "duplicate")],
        },
        Case {
            name: "duplicate pending",
            lateness: 3,
            slots: &[1, 2, 2, 3],
            expect_rejected: &[(2, "duplicate")],
        },
        Case {
            name: "late beyond lateness",
            lateness: 1,
            slots: &[1, 2, 5, 3],
            expect_rejected: &[(3, "late")],
        },
        Case {
            name: "late within lateness",
            lateness: 3,
            slots: &[1, 2, 5, 3],
            expect_rejected: &[],
        },
        Case {
            name: "older than first sample within lateness",
            lateness: 3,
            slots: &[5, 3, 6],
            expect_rejected: &[],
        },
    ];
    for case in cases {
        let mut w = windower(cfg(2, 1, case.lateness, 5));
        let mut rejected = Vec::new();
        for (i, slot) in case.slots.iter().enumerate() {
            if let Some(r) = w.push(&sample(*slot, 1.0)).rejected {
                rejected.push((i, r.reason()));
            }
        }
        assert_eq!(rejected, case.expect_rejected, "{}", case.name);
    }
    let mut w = windower(cfg(2, 1, 0, 5));
    let bad = Sample {
        ts_ms: 0,
        values: vec![Some(1.0)],
        source: None,
    };
    assert_eq!(
        w.push(&bad).rejected,
        Some(RejectedSample::ChannelCount {
            got: 1,
            expected: 2
        })
    );
}

#[test]
fn short_gaps_are_masked_and_long_gaps_restart() {
    // Slots 1-4, then a 2-slot gap (masked, max_gap 2), then 7-8.
    let mut w = windower(cfg(4, 1, 0, 2));
    let slots = [1, 2, 3, 4, 7, 8];
    let samples: Vec<_> = slots.iter().map(|s| sample(*s, *s as f32)).collect();
    let windows = run(&mut w, &samples);
    assert_eq!(ends(&windows), vec![4, 5, 6, 7, 8]);
    let last = windows.last().unwrap();
    assert_eq!(&last.mask[..4], &[false, false, true, true]);
    assert_eq!(&last.values[..4], &[0.0, 0.0, 7.0, 8.0]);
    assert_eq!(w.stats().restarts, 0);

    // A 3-slot gap with max_gap 2 restarts: the next window needs 4 new slots.
    let mut w = windower(cfg(4, 1, 0, 2));
    let slots = [1, 2, 3, 4, 8, 9, 10, 11];
    let samples: Vec<_> = slots.iter().map(|s| sample(*s, *s as f32)).collect();
    let windows = run(&mut w, &samples);
    assert_eq!(ends(&windows), vec![4, 5, 6, 11]);
    assert_eq!(w.stats().restarts, 1);
}

#[test]
fn a_huge_gap_costs_no_time() {
    let mut w = windower(cfg(2, 1, 0, 3));
    let far = i64::MAX / PERIOD / 4;
    let samples = [
        sample(1, 1.0),
        sample(2, 2.0),
        sample(far, 3.0),
        sample(far + 1, 4.0),
    ];
    // Slot 3 is masked (half of the window present); later slots restart the window.
    assert_eq!(ends(&run(&mut w, &samples)), vec![2, 3, far + 1]);
}

#[test]
fn mostly_missing_windows_are_not_scored() {
    let mut w = windower(cfg(4, 1, 0, 10));
    let mut samples: Vec<_> = (1..=4).map(|s| sample(s, 1.0)).collect();
    // Then only every third slot: windows ending at 7.. are 1/4 or 2/4 present.
    samples.extend([7, 10, 13].iter().map(|s| sample(*s, 1.0)));
    let windows = run(&mut w, &samples);
    assert!(windows.iter().all(|w| w.present_fraction() >= 0.5));
    assert!(w.stats().sparse_windows > 0);
}

#[test]
fn missing_channels_are_masked_not_zero() {
    let mut w = windower(cfg(2, 1, 0, 2));
    let mut a = sample(1, 5.0);
    a.values[1] = None;
    let windows = run(&mut w, &[a, sample(2, 6.0)]);
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0].value(1, 0), None);
    assert_eq!(windows[0].value(0, 0), Some(5.0));
}

#[test]
fn restart_from_retained_sources_rebuilds_the_same_windows() {
    let c = cfg(8, 2, 2, 3);
    let samples: Vec<_> = (0..60)
        .filter(|i| i % 7 != 3)
        .map(|i| sample(i, (i as f32).sin()))
        .collect();
    let mut full = windower(c.clone());
    let all = run(&mut full, &samples);

    // Crash after 30 samples; resume from the oldest retained offset.
    let mut first = windower(c.clone());
    let mut before = Vec::new();
    for s in &samples[..30] {
        before.extend(first.push(s).windows);
    }
    let resume_from = first.retained_sources()[0].offset;
    let mut second = windower(c);
    let replayed: Vec<_> = samples
        .iter()
        .filter(|s| s.ts_ms / PERIOD >= resume_from)
        .cloned()
        .collect();
    let after = run(&mut second, &replayed);
    let last_before = before.last().map_or(i64::MIN, |w| w.end_ms);
    let mut combined = before;
    combined.extend(after.into_iter().filter(|w| w.end_ms > last_before));
    assert_eq!(combined, all);
}

/// Shuffles a sorted stream so that every sample is less than `lateness` slots behind the newest
/// sample before it.
fn bounded_shuffle(slots: &[i64], lateness: i64, swaps: &[usize]) -> Vec<i64> {
    let mut out = slots.to_vec();
    for &i in swaps {
        if i + 1 < out.len() {
            out.swap(i, i + 1);
            let mut newest = i64::MIN;
            let ok = out.iter().all(|s| {
                newest = newest.max(*s);
                newest - s < lateness
            });
            if !ok {
                out.swap(i, i + 1);
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn reordering_within_lateness_changes_nothing(
        gaps in proptest::collection::vec(1i64..4, 5..80),
        swaps in proptest::collection::vec(0usize..80, 0..40),
        lateness in 0i64..4,
    ) {
        let mut slot = 0;
        let slots: Vec<i64> = gaps.iter().map(|g| { slot += g; slot }).collect();
        let shuffled = bounded_shuffle(&slots, lateness, &swaps);
        let c = cfg(6, 2, lateness, 2);
        let sorted = run(&mut windower(c.clone()), &slots.iter().map(|s| sample(*s, *s as f32)).collect::<Vec<_>>());
        let mut w = windower(c);
        let got = run(&mut w, &shuffled.iter().map(|s| sample(*s, *s as f32)).collect::<Vec<_>>());
        prop_assert_eq!(w.stats().late, 0);
        prop_assert_eq!(got, sorted);
    }

    #[test]
    fn a_window_depends_only_on_samples_up_to_its_end(
        gaps in proptest::collection::vec(1i64..3, 10..60),
        cut in 0usize..60,
    ) {
        let mut slot = 0;
        let samples: Vec<Sample> = gaps.iter().map(|g| { slot += g; sample(slot, slot as f32) }).collect();
        let c = cfg(5, 1, 0, 1);
        let all = run(&mut windower(c.clone()), &samples);
        let cut = cut.min(samples.len());
        let prefix = run(&mut windower(c), &samples[..cut]);
        let horizon = samples[..cut].last().map_or(i64::MIN, |s| s.ts_ms);
        let expected: Vec<_> = all.into_iter().filter(|w| w.end_ms <= horizon).collect();
        prop_assert_eq!(prefix, expected);
    }

    #[test]
    fn history_kept_beyond_the_window_changes_no_window_and_no_rejection(
        gaps in proptest::collection::vec(1i64..4, 5..80),
        swaps in proptest::collection::vec(0usize..80, 0..40),
        extra in 0usize..12,
    ) {
        let mut slot = 0;
        let slots: Vec<i64> = gaps.iter().map(|g| { slot += g; slot }).collect();
        let mut shuffled = bounded_shuffle(&slots, 3, &swaps);
        // Repeats and late samples too: each must be rejected for the same reason.
        shuffled.extend(slots.iter().step_by(7));
        let samples: Vec<Sample> = shuffled.iter().map(|s| sample(*s, *s as f32)).collect();
        let c = cfg(6, 2, 2, 2);
        let (mut plain, mut long) = (windower(c.clone()), windower(c).with_history(6 + extra));
        for s in &samples {
            let (a, b) = (plain.push(s), long.push(s));
            prop_assert_eq!(a.windows, b.windows);
            prop_assert_eq!(a.rejected, b.rejected);
        }
        prop_assert_eq!(plain.finish(), long.finish());
    }

    /// A machine handed from one windowing to another at any point: the new windower, fed the
    /// held samples and then the rest of the stream, gives every window of the new windowing
    /// that ends after the last one the old gave, as if it had had the stream from the start,
    /// provided the old kept a new window plus an old stride of history (and emitted every window
    /// on its stride: none too sparse).
    #[test]
    fn a_windower_taking_over_from_held_samples_misses_and_repeats_no_window(
        gaps in proptest::collection::vec(1i64..3, 20..120),
        cut in 0usize..120,
        old_shape in (2usize..12, 1usize..5),
        new_shape in (2usize..12, 1usize..5),
        lateness in 0i64..3,
    ) {
        let mut slot = 0;
        let samples: Vec<Sample> = gaps.iter().map(|g| { slot += g; sample(slot, slot as f32) }).collect();
        let cut = cut.min(samples.len());
        let dense = |window, stride| WindowConfig {
            min_present_fraction: 0.0,
            ..cfg(window, stride, lateness, 2)
        };
        let (old_cfg, new_cfg) = (dense(old_shape.0, old_shape.1), dense(new_shape.0, new_shape.1));
        let history = new_shape.0 + old_shape.1;
        let mut old = windower(old_cfg).with_history(history);
        let mut last_end = i64::MIN;
        for s in &samples[..cut] {
            if let Some(w) = old.push(s).windows.last() {
                last_end = w.end_ms;
            }
        }
        let held = old.held_samples();
        let first_held = held.first().or(samples.get(cut)).map_or(i64::MAX, |s| s.ts_ms);
        let mut new = windower(new_cfg.clone());
        let mut got = Vec::new();
        for s in &held {
            got.extend(new.push(s).windows);
        }
        got.extend(run(&mut new, &samples[cut..]));
        got.retain(|w| w.end_ms > last_end);
        let mut expected = run(&mut windower(new_cfg), &samples);
        expected.retain(|w| w.end_ms > last_end);
        // Before its first window the old one may have let go of samples no window of its own
        // needed; once it has given a window, every later window of the new one is there.
        if last_end == i64::MIN {
            expected.retain(|w| w.start_ms >= first_held);
        }
        prop_assert_eq!(got, expected);
    }
}
