//! Tests of data-quality episodes: one episode per sick stretch, resolved after m healthy windows,
//! surviving a restart.

use super::*;
use crate::telemetry::EquipmentId;
use crate::window::health::SickChannel;

fn window(i: i64, sick: &[(usize, Condition)]) -> ScoredWindow {
    ScoredWindow {
        equipment_id: EquipmentId::try_from("pump-1").unwrap(),
        window_start_ms: i * 1000 - 9000,
        window_end_ms: i * 1000,
        score: 0.5,
        threshold: 1.0,
        is_anomaly: false,
        channel_errors: vec![0.1, 0.2, 0.2],
        latent_mu: vec![],
        latent_logvar: vec![],
        model_id: "m1".into(),
        sources: vec![],
        sick_channels: sick
            .iter()
            .map(|(channel, condition)| SickChannel {
                channel: *channel,
                condition: *condition,
                detail: format!("seen at {i}"),
            })
            .collect(),
        sick_masked: !sick.is_empty(),
        operation: crate::window::Operation::Running,
    }
}

fn names() -> Vec<String> {
    vec!["current".into(), "vibration".into(), "temp".into()]
}

/// (window index, channel, state) of every event over `windows`.
fn events(
    tracker: &mut QualityTracker,
    windows: &[&[(usize, Condition)]],
) -> Vec<(usize, String, QualityState)> {
    windows
        .iter()
        .enumerate()
        .flat_map(|(i, sick)| {
            tracker
                .observe(&window(i as i64, sick))
                .into_iter()
                .map(move |e| (i, e.channel, e.state))
        })
        .collect()
}

#[test]
fn a_sick_stretch_is_one_episode_resolved_after_m_healthy_windows() {
    use Condition::*;
    use QualityState::*;
    let mut tracker = QualityTracker::new(2, names());
    let stuck: &[(usize, Condition)] = &[(1, Stuck)];
    let healthy: &[(usize, Condition)] = &[];
    let got = events(
        &mut tracker,
        &[
            healthy, stuck, stuck, healthy, stuck, healthy, healthy, healthy,
        ],
    );
    assert_eq!(
        got,
        vec![
            (1, "vibration".to_owned(), Opened),
            (6, "vibration".to_owned(), Resolved),
        ],
        "one healthy window between sick ones does not resolve"
    );
}

#[test]
fn channels_have_episodes_of_their_own() {
    use Condition::*;
    use QualityState::*;
    let mut tracker = QualityTracker::new(1, names());
    let got = events(
        &mut tracker,
        &[
            &[(0, Dropout)],
            &[(0, Dropout), (2, OutOfRange)],
            &[(2, OutOfRange)],
            &[],
        ],
    );
    assert_eq!(
        got,
        vec![
            (0, "current".to_owned(), Opened),
            (1, "temp".to_owned(), Opened),
            (2, "current".to_owned(), Resolved),
            (3, "temp".to_owned(), Resolved),
        ]
    );
}

#[test]
fn events_carry_the_episode_and_what_opened_it() {
    let mut tracker = QualityTracker::new(1, names());
    let opened = tracker.observe(&window(3, &[(2, Condition::OutOfRange)]));
    tracker.observe(&window(4, &[(2, Condition::Stuck)]));
    let resolved = tracker.observe(&window(5, &[]));
    let (opened, resolved) = (&opened[0], &resolved[0]);
    assert_eq!(opened.event, DATA_QUALITY_EVENT);
    assert_eq!(opened.quality_id, "pump-1/temp@1970-01-01T00:00:03.000Z");
    assert_eq!(resolved.quality_id, opened.quality_id);
    assert_eq!(
        resolved.condition,
        Condition::OutOfRange,
        "the opening condition"
    );
    assert_eq!(resolved.detail, "seen at 3");
    assert_eq!((opened.sick_windows, resolved.sick_windows), (1, 2));
    assert_eq!(opened.resolved_at, None);
    assert_eq!(
        resolved.resolved_at.as_deref(),
        Some("1970-01-01T00:00:05.000Z")
    );
    assert!(opened.masked && resolved.masked);
    let json = serde_json::to_value(opened).unwrap();
    assert_eq!(json["state"], "opened");
    assert_eq!(json["condition"], "out_of_range");
}

#[test]
fn an_open_episode_survives_a_restart() {
    let mut tracker = QualityTracker::new(2, names());
    tracker.observe(&window(0, &[(0, Condition::Dropout)]));
    let mut restarted = QualityTracker::new(2, names());
    restarted.restore(tracker.state());
    assert_eq!(restarted.open_channels(), 1);
    assert!(restarted.observe(&window(1, &[])).is_empty());
    let resolved = restarted.observe(&window(2, &[]));
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        resolved[0].quality_id,
        "pump-1/current@1970-01-01T00:00:00.000Z"
    );
}
