use super::*;
use crate::alert::Severity;
use crate::engine::{FleetState, MachineState};

fn opened(machine: &str, at: i64) -> EpisodeRecord {
    EpisodeRecord::Opened {
        alert_id: format!("{machine}@{at}"),
        model_id: "m1".into(),
        equipment_id: machine.into(),
        opened_ms: at,
        severity: Severity::Warning,
        top_channel: Some("flow".into()),
        profile: vec![0.5, 0.5],
    }
}

fn resolved(machine: &str, opened_at: i64, at: i64) -> EpisodeRecord {
    EpisodeRecord::Resolved {
        alert_id: format!("{machine}@{opened_at}"),
        model_id: "m1".into(),
        equipment_id: machine.into(),
        resolved_ms: at,
        peak_severity: Severity::Major,
    }
}

/// A state in which `machine`'s last handled window of model m1 ends at `last_end_ms`.
fn state_with(machine: &str, last_end_ms: i64) -> DaemonState {
    let mut fleet = FleetState::default();
    let policy = crate::alert::AlertPolicy::new(Default::default(), vec!["a".into()]);
    fleet.machines.insert(
        machine.into(),
        MachineState {
            last_window_end_ms: Some(last_end_ms),
            alerts: policy.state(),
            quality: Default::default(),
            baseline: Default::default(),
            maintenance: Default::default(),
        },
    );
    DaemonState::from([("m1".to_owned(), fleet)])
}

fn lines(path: &Path) -> Vec<EpisodeRecord> {
    let (records, unreadable) = parse_lines(&fs::read(path).unwrap());
    assert_eq!(unreadable, 0);
    records
}

#[test]
fn a_restart_reads_back_what_was_handled_and_drops_lines_of_windows_scored_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, memory) = EpisodeIndex::open(dir.path(), "a", &DaemonState::new(), 10).unwrap();
    assert!(memory.is_empty());
    index.add(vec![opened("p1", 3_000), resolved("p1", 3_000, 4_000)]);
    index.append().unwrap();
    index.add(vec![opened("p1", 7_000), opened("p2", 9_000)]);
    index.append().unwrap();
    // A crash tore the last line being written.
    let own = dir.path().join(index_file_name("a"));
    let mut file = OpenOptions::new().append(true).open(&own).unwrap();
    file.write_all(br#"{"record":"opened","alert_id":"p1@8"#)
        .unwrap();
    drop(file);

    // The state file was last saved after p1's window ending at 5 000: the episode opened at
    // 7 000 will be opened again from Kafka, so its line goes. p2 is not this daemon's now.
    let (index, memory) =
        EpisodeIndex::open(dir.path(), "a", &state_with("p1", 5_000), 10).unwrap();
    assert_eq!(index.unreadable_lines, 1);
    assert!(memory.remembers("m1", "p1@3000"));
    assert!(!memory.remembers("m1", "p1@7000"));
    assert!(memory.remembers("m1", "p2@9000"));
    let listed = memory.similar("m1", "x", &[0.5, 0.5], 5_000, 5);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].severity,
        Severity::Major,
        "resolved with its peak"
    );
    // The file holds exactly what was kept, torn line gone.
    assert_eq!(
        lines(&own),
        vec![
            opened("p1", 3_000),
            resolved("p1", 3_000, 4_000),
            opened("p2", 9_000)
        ]
    );
}

#[test]
fn the_file_is_rewritten_within_the_memory_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let (mut index, _) = EpisodeIndex::open(dir.path(), "a", &DaemonState::new(), 2).unwrap();
    for i in 1..=5 {
        index.add(vec![
            opened("p1", i * 1_000),
            resolved("p1", i * 1_000, i * 1_000 + 500),
        ]);
    }
    index.append().unwrap();
    let (_, memory) = EpisodeIndex::open(dir.path(), "a", &DaemonState::new(), 2).unwrap();
    assert_eq!(memory.len(), 2);
    let own = dir.path().join(index_file_name("a"));
    let kept: Vec<String> = lines(&own)
        .iter()
        .map(|r| r.alert_id().to_owned())
        .collect();
    assert_eq!(kept, vec!["p1@4000", "p1@4000", "p1@5000", "p1@5000"]);
}

#[test]
fn another_daemons_index_is_read_a_complete_line_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join(index_file_name("b"));
    let line = |r: &EpisodeRecord| format!("{}\n", serde_json::to_string(r).unwrap());
    let second = line(&opened("q2", 2_000));
    let (head, tail) = second.split_at(20);
    fs::write(&theirs, format!("{}{head}", line(&opened("q1", 1_000)))).unwrap();

    let (mut index, memory) = EpisodeIndex::open(dir.path(), "a", &DaemonState::new(), 10).unwrap();
    assert!(memory.remembers("m1", "q1@1000"));
    assert!(!memory.remembers("m1", "q2@2000"));
    assert_eq!(
        index.unreadable_lines, 0,
        "a line being written is not unreadable"
    );
    // Not yet time to look again.
    let mut file = OpenOptions::new().append(true).open(&theirs).unwrap();
    file.write_all(tail.as_bytes()).unwrap();
    drop(file);
    assert!(index.refresh().is_empty());
    assert_eq!(index.refresh_now(), vec![opened("q2", 2_000)]);
    assert!(index.refresh_now().is_empty());
    // Its daemon restarted and rewrote it shorter: read from the start again.
    fs::write(&theirs, line(&opened("q3", 3_000))).unwrap();
    assert_eq!(index.refresh_now(), vec![opened("q3", 3_000)]);
    // Our own file is never read as another's.
    index.add(vec![opened("p1", 4_000)]);
    index.append().unwrap();
    assert!(index.refresh_now().is_empty());
}
