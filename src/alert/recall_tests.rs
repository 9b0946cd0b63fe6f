use super::*;
use crate::telemetry::EquipmentId;
use crate::window::Operation;

fn names() -> Vec<String> {
    ["current", "flow", "vibration"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn window(machine: &str, model: &str, end_ms: i64, errors: [f32; 3]) -> ScoredWindow {
    ScoredWindow {
        equipment_id: EquipmentId::try_from(machine).unwrap(),
        window_start_ms: end_ms - 1_000,
        window_end_ms: end_ms,
        score: errors.iter().sum(),
        threshold: 1.0,
        is_anomaly: true,
        channel_errors: errors.to_vec(),
        latent_mu: vec![0.0; 2],
        latent_logvar: vec![0.0; 2],
        model_id: model.to_string(),
        sources: vec![],
        sick_channels: vec![],
        sick_masked: false,
        operation: Operation::Running,
    }
}

fn event(
    window: &ScoredWindow,
    state: AlertState,
    opened_ms: i64,
    severity: Severity,
) -> AlertEvent {
    let at = format_rfc3339_ms(window.window_end_ms);
    AlertEvent {
        schema_version: 1,
        alert_id: format!("{}@{}", window.equipment_id, format_rfc3339_ms(opened_ms)),
        equipment_id: window.equipment_id.to_string(),
        state,
        opened_at: format_rfc3339_ms(opened_ms),
        event_time: at.clone(),
        resolved_at: (state == AlertState::Resolved).then_some(at.clone()),
        score: window.score,
        threshold: window.threshold,
        score_ratio: window.score,
        anomaly_score: 60.0,
        peak_score: window.score,
        severity,
        top_channels: Vec::new(),
        model_id: window.model_id.clone(),
        window_start: at.clone(),
        window_end: at,
        windows_in_episode: 1,
        windows_above_threshold: 1,
        similar_episodes: None,
    }
}

/// Opens an episode on `machine` at `at` with these channel errors and returns its event.
fn open(
    memory: &mut EpisodeMemory,
    machine: &str,
    at: i64,
    errors: [f32; 3],
    similar: usize,
) -> AlertEvent {
    let w = window(machine, "m1", at, errors);
    let mut e = event(&w, AlertState::Opened, at, Severity::Warning);
    memory.observe(&mut e, &w, &names(), similar);
    e
}

fn resolve(memory: &mut EpisodeMemory, machine: &str, opened: i64, at: i64, peak: Severity) {
    let w = window(machine, "m1", at, [0.1, 0.1, 0.1]);
    let mut e = event(&w, AlertState::Resolved, opened, peak);
    memory.observe(&mut e, &w, &names(), 3);
    assert!(e.similar_episodes.is_none(), "only opened events list");
}

fn ids(event: &AlertEvent) -> Vec<String> {
    event
        .similar_episodes
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| s.alert_id.clone())
        .collect()
}

#[test]
fn an_opened_event_lists_the_nearest_earlier_episodes_of_its_model_nearest_first() {
    let mut memory = EpisodeMemory::default();
    // Nothing before: an empty list, not an absent one.
    let first = open(&mut memory, "p1", 1_000, [8.0, 1.0, 1.0], 2);
    assert_eq!(first.similar_episodes, Some(Vec::new()));
    open(&mut memory, "p2", 2_000, [1.0, 8.0, 1.0], 2);
    open(&mut memory, "p3", 3_000, [1.0, 1.0, 8.0], 2);
    // Another model's episode, however near, is not listed.
    let other = window("p4", "m2", 3_500, [9.0, 1.0, 1.0]);
    let mut e = event(&other, AlertState::Opened, 3_500, Severity::Warning);
    memory.observe(&mut e, &other, &names(), 2);
    assert_eq!(ids(&e), Vec::<String>::new());

    let near_first = open(&mut memory, "p2", 4_000, [7.0, 2.0, 1.0], 2);
    assert_eq!(
        ids(&near_first),
        vec![
            format!("p1@{}", format_rfc3339_ms(1_000)),
            format!("p2@{}", format_rfc3339_ms(2_000)),
        ]
    );
    let listed = near_first.similar_episodes.unwrap();
    let expected = profile_distance(&error_profile(&[8.0, 1.0, 1.0]), &[0.7, 0.2, 0.1]);
    assert!((listed[0].distance - expected).abs() < 1e-6);
    assert!(listed[0].distance < listed[1].distance);
    assert_eq!(listed[0].top_channel.as_deref(), Some("current"));
    assert_eq!(listed[0].equipment_id, "p1");
    // Asked for none: the field is left out.
    let quiet = open(&mut memory, "p3", 5_000, [1.0, 1.0, 1.0], 0);
    assert_eq!(quiet.similar_episodes, None);
}

#[test]
fn a_listed_episode_is_shown_as_it_stood_when_the_new_one_opened() {
    let mut memory = EpisodeMemory::default();
    open(&mut memory, "p1", 1_000, [8.0, 1.0, 1.0], 3);
    resolve(&mut memory, "p1", 1_000, 9_000, Severity::Critical);
    // Opened before the resolution: still open then, with the severity it opened with.
    let before = memory.similar("m1", "x", &[0.8, 0.1, 0.1], 5_000, 3);
    assert_eq!(before[0].resolved_at, None);
    assert_eq!(before[0].severity, Severity::Warning);
    let after = memory.similar("m1", "x", &[0.8, 0.1, 0.1], 9_000, 3);
    assert_eq!(after[0].resolved_at, Some(format_rfc3339_ms(9_000)));
    assert_eq!(after[0].severity, Severity::Critical);
    // An episode never lists itself, nor one that opened at or after it.
    assert!(
        memory
            .similar("m1", "x", &[0.8, 0.1, 0.1], 1_000, 3)
            .is_empty()
    );
    let own_id = format!("p1@{}", format_rfc3339_ms(1_000));
    assert!(
        memory
            .similar("m1", &own_id, &[0.8, 0.1, 0.1], 2_000, 3)
            .is_empty()
    );
}

#[test]
fn records_read_back_rebuild_the_same_memory_and_repeats_count_once() {
    let mut memory = EpisodeMemory::default();
    open(&mut memory, "p1", 1_000, [8.0, 1.0, 1.0], 3);
    open(&mut memory, "p2", 2_000, [1.0, 8.0, 1.0], 3);
    resolve(&mut memory, "p1", 1_000, 3_000, Severity::Major);
    let records = memory.take_unsaved();
    assert_eq!(records.len(), 3);
    assert!(memory.take_unsaved().is_empty());

    let mut again = EpisodeMemory::default();
    for record in records.iter().chain(&records) {
        let line = serde_json::to_string(record).unwrap();
        again.apply(serde_json::from_str(&line).unwrap());
    }
    assert_eq!(again.len(), 2);
    assert!(
        again.take_unsaved().is_empty(),
        "read back, nothing to save"
    );
    let profile = [0.5, 0.3, 0.2];
    assert_eq!(
        again.similar("m1", "x", &profile, 10_000, 5),
        memory.similar("m1", "x", &profile, 10_000, 5)
    );
}

#[test]
fn the_memory_keeps_the_most_recent_episodes_up_to_its_capacity() {
    let mut memory = EpisodeMemory::new(3);
    for i in 0..5 {
        open(
            &mut memory,
            "p1",
            1_000 * (i + 1),
            [1.0 + i as f32, 1.0, 1.0],
            3,
        );
    }
    assert_eq!(memory.len(), 3);
    let kept: Vec<String> = memory
        .similar("m1", "x", &[0.3, 0.3, 0.3], 100_000, 10)
        .into_iter()
        .map(|s| s.opened_at)
        .collect();
    let mut expected: Vec<String> = (3..=5).map(|i| format_rfc3339_ms(1_000 * i)).collect();
    let mut got = kept.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert!(!memory.remembers("m1", &format!("p1@{}", format_rfc3339_ms(1_000))));
    // An older episode read back late does not push out a newer one.
    memory.apply(EpisodeRecord::Opened {
        alert_id: "old".into(),
        model_id: "m1".into(),
        equipment_id: "p9".into(),
        opened_ms: 10,
        severity: Severity::Warning,
        top_channel: None,
        profile: vec![1.0, 0.0, 0.0],
    });
    assert!(!memory.remembers("m1", "old"));
    assert_eq!(memory.len(), 3);
}

#[test]
fn error_profiles_are_shares_and_distances_stay_within_root_two() {
    assert_eq!(error_profile(&[1.0, 3.0]), vec![0.25, 0.75]);
    assert_eq!(error_profile(&[0.0, 0.0]), vec![0.0, 0.0]);
    let d = profile_distance(&error_profile(&[1.0, 0.0]), &error_profile(&[0.0, 5.0]));
    assert!((d - 2f32.sqrt()).abs() < 1e-6);
}
