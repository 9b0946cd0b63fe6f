//! Tests of the alert policy: hysteresis, episodes, severity, top channels.

use super::*;
use crate::telemetry::EquipmentId;

fn window(i: i64, score: f32) -> ScoredWindow {
    ScoredWindow {
        equipment_id: EquipmentId::try_from("pump-1").unwrap(),
        window_start_ms: i * 1000 - 9000,
        window_end_ms: i * 1000,
        score,
        threshold: 1.0,
        is_anomaly: score > 1.0,
        channel_errors: vec![score * 0.2, score * 0.7, score * 0.1],
        latent_mu: vec![],
        latent_logvar: vec![],
        model_id: "m1".into(),
        sources: vec![],
        sick_channels: vec![],
        sick_masked: false,
        operation: crate::window::Operation::Running,
    }
}

fn names() -> Vec<String> {
    vec!["current".into(), "vibration".into(), "temp".into()]
}

/// Runs scores through a policy; returns (window index, state) of every event.
fn events(cfg: AlertPolicyConfig, scores: &[f32]) -> Vec<(usize, AlertState)> {
    let mut policy = AlertPolicy::new(cfg, names());
    scores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| policy.observe(&window(i as i64, *s)).map(|e| (i, e.state)))
        .collect()
}

#[test]
fn hysteresis_table() {
    use AlertState::*;
    let cfg = AlertPolicyConfig {
        k: 2,
        n: 3,
        m: 2,
        ..AlertPolicyConfig::default()
    };
    type Case<'a> = (&'a str, &'a [f32], &'a [(usize, AlertState)]);
    let cases: &[Case] = &[
        ("all calm", &[0.1, 0.2, 0.3, 0.1], &[]),
        (
            "one spike does not open",
            &[0.1, 1.5, 0.1, 0.1, 1.5, 0.1],
            &[],
        ),
        ("k of n opens", &[0.1, 1.5, 0.1, 1.5, 0.2], &[(3, Opened)]),
        (
            "m below resolves",
            &[1.5, 1.5, 0.1, 0.1, 0.1],
            &[(1, Opened), (3, Resolved)],
        ),
        (
            "flapping keeps one episode",
            &[1.5, 1.5, 0.1, 1.5, 0.1, 1.5, 0.1, 1.5, 0.1, 0.1],
            &[(1, Opened), (9, Resolved)],
        ),
        (
            "escalation updates once",
            &[1.5, 1.5, 3.0, 3.0, 6.0, 3.0],
            &[(1, Opened), (2, Updated), (4, Updated)],
        ),
        (
            "reopen needs k fresh windows",
            &[1.5, 1.5, 0.1, 0.1, 1.5, 0.1, 1.5],
            &[(1, Opened), (3, Resolved), (6, Opened)],
        ),
    ];
    for (name, scores, expected) in cases {
        assert_eq!(&events(cfg, scores), expected, "{name}");
    }
}

#[test]
fn one_alert_id_per_episode() {
    let mut policy = AlertPolicy::new(
        AlertPolicyConfig {
            k: 1,
            n: 1,
            m: 1,
            ..AlertPolicyConfig::default()
        },
        names(),
    );
    let scores = [2.5, 6.0, 0.1, 1.5, 0.1];
    let got: Vec<AlertEvent> = scores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| policy.observe(&window(i as i64, *s)))
        .collect();
    let ids: Vec<&str> = got.iter().map(|e| e.alert_id.as_str()).collect();
    assert_eq!(ids.len(), 5);
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2]);
    assert_ne!(ids[2], ids[3]);
    assert_eq!(got[0].state, AlertState::Opened);
    assert_eq!(got[0].severity, Severity::Major);
    assert_eq!(got[1].severity, Severity::Critical);
    assert_eq!(got[2].state, AlertState::Resolved);
    assert_eq!(
        got[2].resolved_at.as_deref(),
        Some("1970-01-01T00:00:02.000Z")
    );
    assert_eq!(got[2].peak_score, 6.0);
    assert_eq!(got[2].opened_at, "1970-01-01T00:00:00.000Z");
    assert_eq!(got[2].windows_in_episode, 3);
    assert_eq!(got[2].windows_above_threshold, 2);
}

#[test]
fn top_channels_are_sorted_shares() {
    let top = top_channels(
        &[1.0, 3.0, 0.0, 6.0],
        &["a".into(), "b".into(), "c".into(), "d".into()],
    );
    let got: Vec<(&str, f32)> = top.iter().map(|s| (s.channel.as_str(), s.share)).collect();
    assert_eq!(got, vec![("d", 0.6), ("b", 0.3), ("a", 0.1)]);
    assert!(
        top_channels(&[0.0, 0.0], &["a".into(), "b".into()])
            .iter()
            .all(|s| s.share == 0.0)
    );
}

#[test]
fn severity_bands() {
    let cases = [
        (0.5, Severity::Warning),
        (1.99, Severity::Warning),
        (2.0, Severity::Major),
        (4.9, Severity::Major),
        (5.0, Severity::Critical),
    ];
    for (score, expected) in cases {
        assert_eq!(severity_of(score, 1.0), expected, "score {score}");
    }
}

#[test]
fn invalid_configs_are_refused() {
    for (k, n, m) in [(0, 3, 1), (4, 3, 1), (1, 3, 0)] {
        assert!(
            AlertPolicyConfig {
                k,
                n,
                m,
                ..AlertPolicyConfig::default()
            }
            .validate()
            .is_err(),
            "k={k} n={n} m={m}"
        );
    }
    assert!(AlertPolicyConfig::default().validate().is_ok());
}
