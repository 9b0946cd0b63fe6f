//! The engine without a broker: a simulated plant's telemetry messages driven through an
//! [`Engine`] the way the daemon drives it (messages one by one, bad ones among them, batches
//! taken when full, no end of stream) give the same scored windows, alert events and alert state
//! as `replay` over the same history.

use std::collections::BTreeMap;

use vaewatch::alert::{AlertEvent, AlertState};
use vaewatch::config::Config;
use vaewatch::engine::{Engine, ModelSet, Outcome};
use vaewatch::replay::replay_history;
use vaewatch::telemetry::history::History;
use vaewatch::telemetry::{RejectReason, SourcePosition};

use crate::util::{
    assert_same_window, bundled_model_dir, bundled_replay_engine, hostile, small_plant,
    telemetry_messages,
};

/// Where a message is sent again (after the corpus's first entries are in).
const FIRST_RESENT: usize = 2_000;

/// The daemon's default batch size.
const LIVE_BATCH: usize = 256;

/// The daemon's engine: the models of a config.
fn live_engine() -> Engine {
    let mut config = Config::default();
    config.models.default = Some(bundled_model_dir());
    Engine::new(ModelSet::load(&config, false).unwrap())
}

fn replay_engine() -> Engine {
    bundled_replay_engine().0
}

/// The clock of the live run: the history's last timestamp.
fn live_now_ms(history: &History) -> i64 {
    history
        .machines
        .iter()
        .filter_map(|m| m.rows.last())
        .map(|r| r.ts_ms)
        .max()
        .unwrap()
}

/// Live: per machine, its outcomes in order.
fn run_live(history: &History) -> BTreeMap<String, Vec<Outcome>> {
    let mut messages = telemetry_messages(history);
    let corpus = hostile::corpus();
    let bad_at: Vec<usize> = (0..corpus.len())
        .map(|i| hostile::FIRST_AT + i * hostile::EVERY)
        .collect();
    assert!(bad_at.last() < Some(&messages.len()));
    for (at, bad) in bad_at.iter().zip(&corpus) {
        messages.insert(*at, (bad.key.clone(), bad.payload.clone()));
    }
    // Accepted as documented, changing no window: a message sent again (a duplicate sample), and
    // again with a channel no model knows (a duplicate too, its unknown channel counted).
    let resent = messages[FIRST_RESENT].clone();
    messages.insert(FIRST_RESENT + 3, resent.clone());
    let with_unknown = String::from_utf8(resent.1.clone()).unwrap().replacen(
        "\"values\":{",
        "\"values\":{\"lube_oil_ppm\":3.5,",
        1,
    );
    assert_ne!(with_unknown.as_bytes(), resent.1.as_slice());
    messages.insert(
        FIRST_RESENT + 5,
        (resent.0.clone(), with_unknown.into_bytes()),
    );
    let (mut duplicates, mut unknown) = (0, 0);
    let now_ms = live_now_ms(history);
    let mut engine = live_engine();
    let mut outcomes: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    let mut keep = |list: Vec<Outcome>| {
        for outcome in list {
            let machine = outcome.window.equipment_id.to_string();
            outcomes.entry(machine).or_default().push(outcome);
        }
    };
    let mut refused = Vec::new();
    for (offset, (key, payload)) in messages.iter().enumerate() {
        let source = SourcePosition {
            partition: 0,
            offset: offset as i64,
        };
        let ingested = engine.ingest_message(Some(key.as_bytes()), payload, Some(source), now_ms);
        duplicates += ingested.duplicates;
        unknown += ingested.unknown_channels;
        if let Some(refusal) = ingested.refusal {
            refused.push((offset, refusal.reason));
        }
        if engine.pending_windows() >= LIVE_BATCH {
            let scored = engine.take_batch(LIVE_BATCH).score().unwrap();
            keep(engine.complete(scored));
        }
    }
    // The batch deadline passes: what waits is scored; the stream does not end.
    keep(engine.score_all(LIVE_BATCH).unwrap());
    // The two accepted messages went in before the corpus's later entries: shift those.
    let expected: Vec<(usize, RejectReason, &str)> = bad_at
        .iter()
        .zip(&corpus)
        .map(|(at, bad)| {
            let at = if *at > FIRST_RESENT { at + 2 } else { *at };
            (at, bad.reason, bad.class)
        })
        .collect();
    let classes: std::collections::HashMap<usize, &str> = expected
        .iter()
        .map(|(at, _, class)| (*at, *class))
        .collect();
    let refused: Vec<(usize, RejectReason, &str)> = refused
        .into_iter()
        .map(|(at, reason)| {
            (
                at,
                reason,
                classes.get(&at).copied().unwrap_or("not hostile"),
            )
        })
        .collect();
    assert_eq!(
        refused, expected,
        "refused messages, their reasons and classes"
    );
    assert_eq!(
        (duplicates, unknown),
        (2, 1),
        "duplicates and unknown channels"
    );
    outcomes
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-5 * (1.0 + a.abs().max(b.abs()))
}

fn assert_same_event(live: &AlertEvent, replayed: &AlertEvent) {
    assert_eq!(
        (
            &live.alert_id,
            live.state,
            &live.opened_at,
            &live.event_time,
            live.severity,
            &live.window_end
        ),
        (
            &replayed.alert_id,
            replayed.state,
            &replayed.opened_at,
            &replayed.event_time,
            replayed.severity,
            &replayed.window_end
        )
    );
    assert!(close(live.score, replayed.score));
}

#[test]
fn live_engine_equals_replay_without_a_broker() {
    let history = small_plant();
    let replayed = replay_history(&history, &mut replay_engine(), &[]).unwrap();
    let live = run_live(&history);
    assert_eq!(live.len(), history.machines.len());
    let mut alerts = 0;
    for machine in &replayed.machines {
        let id = machine.equipment_id.to_string();
        let mine = &live[&id];
        // Live, a machine's last samples wait for later ones (the allowed lateness): its last
        // windows are not emitted yet. Everything emitted equals replay, in the same order.
        assert!(
            mine.len() + 2 >= machine.windows.len() && mine.len() <= machine.windows.len(),
            "{id}: {} live windows, {} replayed",
            mine.len(),
            machine.windows.len()
        );
        let replayed_events: Vec<&AlertEvent> = machine.alerts.iter().collect();
        let mut live_events = Vec::new();
        // Replay's alert state after each window, from its events.
        let mut open = false;
        for (outcome, replayed_window) in mine.iter().zip(&machine.windows) {
            assert_same_window(&outcome.window, replayed_window);
            assert!(
                !outcome.window.sources.is_empty(),
                "a live window knows its offsets"
            );
            assert_eq!(
                outcome.ready_ms,
                Some(live_now_ms(&history)),
                "a live window knows when it was complete"
            );
            assert!(replayed_window.sources.is_empty());
            live_events.extend(outcome.event.iter());
            let end = replayed_window.window_end_ms;
            for event in replayed_events.iter().filter(|e| {
                vaewatch::telemetry::timestamp::parse_rfc3339_ms(&e.window_end) == Some(end)
            }) {
                open = event.state != AlertState::Resolved;
            }
            assert_eq!(outcome.alert_open, open, "{id} alert state after {end}");
        }
        let cutoff = mine.last().unwrap().window.window_end_ms;
        let replayed_events: Vec<&AlertEvent> = replayed_events
            .into_iter()
            .filter(|e| {
                vaewatch::telemetry::timestamp::parse_rfc3339_ms(&e.window_end).unwrap() <= cutoff
            })
            .collect();
        assert_eq!(
            live_events.len(),
            replayed_events.len(),
            "{id} alert events"
        );
        for (a, b) in live_events.iter().zip(&replayed_events) {
            assert_same_event(a, b);
        }
        alerts += live_events.len();
    }
    assert!(alerts > 0, "the plant's faults raise alerts");
}

#[test]
fn replay_refuses_late_rows_and_counts_duplicates_as_live_does() {
    // Rows out of order within the allowed lateness are put in order; a row later than that is
    // refused as late; a repeated timestamp is a duplicate.
    let mut engine = replay_engine();
    let id = vaewatch::telemetry::EquipmentId::try_from("pump-01").unwrap();
    let row = |ts_ms: i64| vaewatch::telemetry::Sample {
        ts_ms,
        values: vec![Some(1.0); 8],
        source: None,
    };
    let start = 1_767_571_200_000;
    let in_order = engine.ingest(&id, &[row(start), row(start + 2_000), row(start + 1_000)]);
    assert_eq!(in_order.refusal, None);
    let duplicate = engine.ingest(&id, &[row(start + 2_000)]);
    assert_eq!(duplicate.duplicates, 1);
    let moved_on = engine.ingest(&id, &[row(start + 10_000)]);
    assert_eq!(moved_on.refusal, None);
    let late = engine.ingest(&id, &[row(start + 3_000)]);
    assert_eq!(
        late.refusal.map(|r| r.reason),
        Some(RejectReason::LateSample)
    );
    let stats = engine.windower_stats();
    assert_eq!((stats.late, stats.duplicates), (1, 1));
}

/// The daemon's engine over the models of a config whose default model is `dir`.
fn live_engine_for(dir: &std::path::Path) -> ModelSet {
    let mut config = Config::default();
    config.models.default = Some(dir.to_path_buf());
    ModelSet::load(&config, false).unwrap()
}

#[test]
fn models_swapped_twice_mid_stream_score_every_window_once_with_the_model_in_force() {
    let history = small_plant();
    let bundled = bundled_model_dir();
    let candidate = crate::util::candidate_model();
    let replay_by = |dir: &std::path::Path| {
        let (mut engine, _) = crate::util::replay_engine_for(dir, Default::default());
        let result = replay_history(&history, &mut engine, &[]).unwrap();
        let windows: BTreeMap<String, Vec<vaewatch::score::ScoredWindow>> = result
            .machines
            .into_iter()
            .map(|m| (m.equipment_id.to_string(), m.windows))
            .collect();
        windows
    };
    let (by_bundled, by_candidate) = (replay_by(&bundled), replay_by(candidate));

    // Live: the bundled model (window 128, stride 8), then the candidate (32, stride 4), then
    // back to the bundled one (a roll back to a longer window), each for a third of the stream.
    let messages = telemetry_messages(&history);
    let now_ms = live_now_ms(&history);
    let mut engine = Engine::new(live_engine_for(&bundled));
    let mut live: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    let mut keep = |list: Vec<Outcome>| {
        for outcome in list {
            let machine = outcome.window.equipment_id.to_string();
            live.entry(machine).or_default().push(outcome);
        }
    };
    let thirds = [messages.len() / 3, messages.len() * 2 / 3, messages.len()];
    let mut swaps = Vec::new();
    let mut from = 0;
    for (part, &to) in thirds.iter().enumerate() {
        for (offset, (key, payload)) in messages.iter().enumerate().take(to).skip(from) {
            let source = SourcePosition {
                partition: 0,
                offset: offset as i64,
            };
            engine.ingest_message(Some(key.as_bytes()), payload, Some(source), now_ms);
            if engine.pending_windows() >= LIVE_BATCH {
                let scored = engine.take_batch(LIVE_BATCH).score().unwrap();
                keep(engine.complete(scored));
            }
        }
        keep(engine.score_all(LIVE_BATCH).unwrap());
        from = to;
        let next = match part {
            0 => candidate,
            1 => bundled.as_path(),
            _ => break,
        };
        swaps.push(engine.swap(live_engine_for(next), now_ms));
    }
    for machine in &history.machines {
        engine.finish(&machine.equipment_id);
    }
    keep(engine.score_all(LIVE_BATCH).unwrap());

    let machines = history.machines.len();
    for swap in &swaps {
        assert_eq!(
            (swap.kept, swap.moved, swap.rewindowed),
            (0, machines, machines)
        );
        assert!(swap.uncovered.is_empty());
    }
    let bundled_id = by_bundled.values().next().unwrap()[0].model_id.clone();
    let candidate_id = by_candidate.values().next().unwrap()[0].model_id.clone();
    for (id, outcomes) in &live {
        let windows: Vec<_> = outcomes.iter().map(|o| o.window.clone()).collect();
        // Once each, in time order, by the bundled model, the candidate, the bundled again.
        assert!(
            windows
                .windows(2)
                .all(|p| p[0].window_end_ms < p[1].window_end_ms),
            "{id}: a window repeated or out of order"
        );
        let runs: Vec<&str> = windows
            .chunk_by(|a, b| a.model_id == b.model_id)
            .map(|run| run[0].model_id.as_str())
            .collect();
        assert_eq!(runs, [&bundled_id, &candidate_id, &bundled_id], "{id}");
        // Each run is exactly its model's replay over that stretch: no window missing.
        let last_of_first = windows
            .iter()
            .position(|w| w.model_id == candidate_id)
            .unwrap()
            - 1;
        let first_of_last = windows
            .iter()
            .rposition(|w| w.model_id == candidate_id)
            .unwrap()
            + 1;
        let (l1, l2) = (
            windows[last_of_first].window_end_ms,
            windows[first_of_last - 1].window_end_ms,
        );
        let expected: Vec<_> = by_bundled[id]
            .iter()
            .filter(|w| w.window_end_ms <= l1)
            .chain(
                by_candidate[id]
                    .iter()
                    .filter(|w| w.window_end_ms > l1 && w.window_end_ms <= l2),
            )
            .chain(by_bundled[id].iter().filter(|w| w.window_end_ms > l2))
            .cloned()
            .collect();
        assert_eq!(windows.len(), expected.len(), "{id}: windows");
        for (got, want) in windows.iter().zip(&expected) {
            assert_same_window(got, want);
        }
    }
}
