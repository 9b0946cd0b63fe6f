//! The scored-window archive on disk: replay's single file, the daemon's partitioned and rolled
//! files, durability (final names only when complete), crash leftovers and the schema golden file.

use std::fs;
use std::path::{Path, PathBuf};

use vaewatch::archive::{
    ArchiveConfig, ArchiveError, ArchiveWriter, archive_schema, describe_schema, read_archive_dir,
    read_scored_windows, write_windows_file,
};
use vaewatch::score::ScoredWindow;
use vaewatch::telemetry::EquipmentId;
use vaewatch::window::SourceRange;

/// 2026-11-26T06:44:24Z.
const DAY1_MS: i64 = 1_795_675_464_000;
const DAY_MS: i64 = 86_400_000;

fn window(i: i64, end_ms: i64, model_id: &str, latent_dim: usize) -> ScoredWindow {
    ScoredWindow {
        equipment_id: EquipmentId::try_from(format!("pump-{}", i % 5)).unwrap(),
        window_start_ms: end_ms - 127_000,
        window_end_ms: end_ms,
        score: 0.1 * i as f32,
        threshold: 2.0,
        is_anomaly: 0.1 * i as f32 > 2.0,
        channel_errors: vec![0.05 * i as f32, 0.05 * i as f32],
        latent_mu: (0..latent_dim).map(|d| d as f32 + i as f32).collect(),
        latent_logvar: (0..latent_dim).map(|d| -(d as f32)).collect(),
        model_id: model_id.to_owned(),
        sources: vec![SourceRange {
            partition: (i % 3) as i32,
            first_offset: i * 10,
            last_offset: i * 10 + 127,
        }],
        sick_channels: vec![],
        sick_masked: false,
        operation: vaewatch::engine::Operation::Running,
    }
}

fn config(dir: &Path) -> ArchiveConfig {
    ArchiveConfig {
        dir: dir.to_owned(),
        ..ArchiveConfig::default()
    }
}

/// All files under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn sorted(mut windows: Vec<ScoredWindow>) -> Vec<ScoredWindow> {
    windows.sort_by(|a, b| {
        (a.window_end_ms, a.score.to_bits()).cmp(&(b.window_end_ms, b.score.to_bits()))
    });
    windows
}

#[test]
fn windows_file_round_trips_and_leaves_no_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("windows.parquet");
    let mut windows: Vec<_> = (0..50)
        .map(|i| window(i, DAY1_MS + i * 1_000, "m1", 16))
        .collect();
    windows[3].sources.clear();
    write_windows_file(&path, &windows, 16).unwrap();
    assert_eq!(read_scored_windows(&path).unwrap(), windows);
    assert_eq!(files_under(dir.path()), vec!["windows.parquet"]);
}

/// Scores, errors and latent coordinates are written plain (their values rarely repeat, so a
/// dictionary only costs time); the machine and model names keep their dictionaries.
#[test]
fn float_columns_are_written_without_dictionary() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("windows.parquet");
    let windows: Vec<_> = (0..200)
        .map(|i| window(i, DAY1_MS + i * 1_000, "m1", 8))
        .collect();
    write_windows_file(&path, &windows, 8).unwrap();
    let reader = SerializedFileReader::new(fs::File::open(&path).unwrap()).unwrap();
    let row_group = reader.metadata().row_group(0);
    let dictionary = |name: &str| {
        let column = row_group
            .columns()
            .iter()
            .find(|c| c.column_path().string() == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        column.dictionary_page_offset().is_some()
    };
    for plain in [
        "score",
        "channel_errors.list.item",
        "latent_mu.list.item",
        "latent_logvar.list.item",
    ] {
        assert!(!dictionary(plain), "{plain} has a dictionary");
    }
    for named in ["equipment_id", "model_id"] {
        assert!(dictionary(named), "{named} has no dictionary");
    }
    assert_eq!(read_scored_windows(&path).unwrap(), windows);
}

#[test]
fn empty_windows_file_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("windows.parquet");
    write_windows_file(&path, &[], 8).unwrap();
    assert!(read_scored_windows(&path).unwrap().is_empty());
}

#[test]
fn windows_file_with_wrong_latent_dim_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("windows.parquet");
    let err = write_windows_file(&path, &[window(0, DAY1_MS, "m1", 4)], 8).unwrap_err();
    assert!(matches!(err, ArchiveError::LatentDim { .. }), "{err}");
    assert!(files_under(dir.path()).is_empty());
}

#[test]
fn writer_partitions_by_date_and_model_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = ArchiveWriter::open(config(dir.path())).unwrap();
    // Two dates for model "m1" (latent 4), one date for model "m2" (latent 8).
    let mut windows: Vec<ScoredWindow> = (0..30)
        .map(|i| window(i, DAY1_MS + i * 60_000, "m1", 4))
        .collect();
    windows.extend((30..40).map(|i| window(i, DAY1_MS + DAY_MS + i, "m1", 4)));
    windows.extend((40..45).map(|i| window(i, DAY1_MS + i, "m2", 8)));
    writer.append(&windows[..20], 0).unwrap();
    writer.append(&windows[20..], 1_000).unwrap();
    assert_eq!(writer.pending_rows(), 45);
    let report = writer.flush_durable().unwrap();
    assert_eq!(report.rows, 45);
    assert_eq!(report.files.len(), 3);
    assert_eq!(writer.pending_rows(), 0);

    let files = files_under(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    let dirs: Vec<&str> = files
        .iter()
        .map(|f| f.rsplit_once('/').unwrap().0)
        .collect();
    assert_eq!(
        dirs,
        vec![
            "date=2026-11-26/model=m1",
            "date=2026-11-26/model=m2",
            "date=2026-11-27/model=m1"
        ]
    );
    for f in &files {
        let name = f.rsplit('/').next().unwrap();
        assert!(
            name.starts_with("part-19700101T00000") && name.ends_with(".parquet"),
            "{name}"
        );
    }
    assert_eq!(
        sorted(read_archive_dir(dir.path()).unwrap()),
        sorted(windows)
    );
}

#[test]
fn files_appear_only_under_final_names_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = ArchiveWriter::open(config(dir.path())).unwrap();
    let windows: Vec<_> = (0..10).map(|i| window(i, DAY1_MS + i, "m1", 4)).collect();
    writer.append(&windows, DAY1_MS).unwrap();

    let before = files_under(dir.path());
    assert_eq!(before.len(), 1);
    let tmp_name = before[0].rsplit('/').next().unwrap();
    assert!(
        tmp_name.starts_with('.') && tmp_name.ends_with(".parquet.tmp"),
        "{tmp_name}"
    );
    assert!(
        read_archive_dir(dir.path()).unwrap().is_empty(),
        "an open file is not read as final"
    );
    assert!(
        read_scored_windows(&dir.path().join(&before[0])).is_err(),
        "an open file has no footer"
    );

    let report = writer.flush_durable().unwrap();
    let after = files_under(dir.path());
    assert_eq!(after.len(), 1);
    assert!(!after[0].contains(".tmp"));
    assert_eq!(report.files, vec![dir.path().join(&after[0])]);
    assert_eq!(read_archive_dir(dir.path()).unwrap(), windows);
    assert_eq!(
        writer.flush_durable().unwrap().rows,
        0,
        "nothing left to flush"
    );
}

#[test]
fn rolls_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = ArchiveWriter::open(ArchiveConfig {
        roll_size_bytes: 20_000,
        ..config(dir.path())
    })
    .unwrap();
    let mut all = Vec::new();
    let mut completed = 0;
    for batch in 0..40 {
        let windows: Vec<_> = (0..100)
            .map(|i| window(batch * 100 + i, DAY1_MS + batch * 100 + i, "m1", 16))
            .collect();
        completed += writer.append(&windows, DAY1_MS).unwrap().files.len();
        all.extend(windows);
    }
    completed += writer.close().unwrap().files.len();
    let files = files_under(dir.path());
    assert!(files.len() >= 3, "expected several files, got {files:?}");
    assert_eq!(files.len(), completed);
    assert_eq!(sorted(read_archive_dir(dir.path()).unwrap()), sorted(all));
}

#[test]
fn rolls_by_age_with_explicit_times() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = ArchiveWriter::open(ArchiveConfig {
        roll_age: std::time::Duration::from_secs(60),
        ..config(dir.path())
    })
    .unwrap();
    let t0 = DAY1_MS;
    writer.append(&[window(1, DAY1_MS, "m1", 4)], t0).unwrap();
    assert!(writer.maybe_roll(t0 + 59_999).unwrap().files.is_empty());
    assert_eq!(writer.open_files(), 1);
    let report = writer.maybe_roll(t0 + 60_000).unwrap();
    assert_eq!((report.files.len(), report.rows), (1, 1));
    assert_eq!(writer.open_files(), 0);

    // An append past the age of the file it goes into completes that file at once.
    writer
        .append(&[window(2, DAY1_MS + 1, "m1", 4)], t0 + 100_000)
        .unwrap();
    let report = writer
        .append(&[window(3, DAY1_MS + 2, "m1", 4)], t0 + 170_000)
        .unwrap();
    assert_eq!((report.files.len(), report.rows), (1, 2));
    assert_eq!(read_archive_dir(dir.path()).unwrap().len(), 3);
}

#[test]
fn open_deletes_only_its_own_leftover_tmp_files() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("date=2026-11-26/model=m1");
    fs::create_dir_all(&part).unwrap();
    fs::write(
        part.join(".part-20261126T064424000Z-000003.parquet.tmp"),
        b"PAR1 no footer",
    )
    .unwrap();
    fs::write(
        part.join(".other-20261126T064424000Z-000000.parquet.tmp"),
        b"PAR1",
    )
    .unwrap();
    write_windows_file(
        &part.join("part-20261126T060000000Z-000000.parquet"),
        &[window(1, DAY1_MS, "m1", 4)],
        4,
    )
    .unwrap();

    let writer = ArchiveWriter::open(config(dir.path())).unwrap();
    assert_eq!(
        writer.leftovers_removed(),
        &[part.join(".part-20261126T064424000Z-000003.parquet.tmp")][..]
    );
    assert_eq!(
        files_under(dir.path()),
        vec![
            "date=2026-11-26/model=m1/.other-20261126T064424000Z-000000.parquet.tmp",
            "date=2026-11-26/model=m1/part-20261126T060000000Z-000000.parquet",
        ]
    );
    assert_eq!(read_archive_dir(dir.path()).unwrap().len(), 1);
}

#[test]
fn invalid_window_writes_nothing_and_keeps_the_writer_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = ArchiveWriter::open(config(dir.path())).unwrap();
    writer.append(&[window(1, DAY1_MS, "m1", 4)], 0).unwrap();
    let err = writer
        .append(
            &[window(2, DAY1_MS, "m2", 4), window(3, DAY1_MS, "m1", 8)],
            0,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::LatentDim {
                expected: 4,
                got: 8,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(writer.pending_rows(), 1);
    assert_eq!(writer.flush_durable().unwrap().rows, 1);
}

/// A directory that refuses a new file (a regular file stands where the day's directory goes):
/// the writer keeps every row, refuses further work until a retry succeeds, and the retry after
/// the fault clears writes each row once, leaving no `.tmp` file.
#[test]
fn a_refused_write_keeps_the_rows_and_a_retry_writes_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = ArchiveWriter::open(config(dir.path())).unwrap();
    let w1 = window(1, DAY1_MS, "m1", 4);
    writer.append(std::slice::from_ref(&w1), 0).unwrap();
    assert_eq!(writer.flush_durable().unwrap().rows, 1);

    let blocker = dir.path().join("date=2026-11-27");
    fs::write(&blocker, b"not a directory").unwrap();
    let (w2, w3, w4) = (
        window(2, DAY1_MS + 1_000, "m1", 4),
        window(3, DAY1_MS + DAY_MS, "m1", 4),
        window(4, DAY1_MS + 2_000, "m1", 4),
    );
    assert!(matches!(
        writer.append(&[w2.clone(), w3.clone()], 0),
        Err(ArchiveError::Io { .. })
    ));
    assert!(writer.is_stalled());
    assert_eq!(writer.pending_rows(), 2);
    assert!(matches!(
        writer.append(std::slice::from_ref(&w4), 0),
        Err(ArchiveError::Stalled)
    ));
    assert!(matches!(writer.flush_durable(), Err(ArchiveError::Stalled)));
    assert!(matches!(writer.retry(0), Err(ArchiveError::Io { .. })));
    assert_eq!(writer.pending_rows(), 3);
    assert!(
        files_under(dir.path()).iter().all(|f| !f.ends_with(".tmp")),
        "{:?}",
        files_under(dir.path())
    );

    fs::remove_file(&blocker).unwrap();
    assert_eq!(writer.retry(0).unwrap().rows, 3);
    assert!(!writer.is_stalled());
    assert_eq!(writer.pending_rows(), 0);
    writer
        .append(&[window(5, DAY1_MS + 3_000, "m1", 4)], 0)
        .unwrap();
    writer.close().unwrap();
    assert!(files_under(dir.path()).iter().all(|f| !f.ends_with(".tmp")));
    let got = sorted(read_archive_dir(dir.path()).unwrap());
    let expected = sorted(vec![w1, w2, w3, w4, window(5, DAY1_MS + 3_000, "m1", 4)]);
    assert_eq!(got, expected);
}

/// A file that cannot be completed (its directory vanished before the rename): its rows are
/// kept and written again into a new file; files completed earlier are not written twice.
#[test]
fn a_file_that_cannot_be_completed_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = ArchiveWriter::open(config(dir.path())).unwrap();
    let w0 = window(0, DAY1_MS + DAY_MS, "m1", 4);
    writer.append(std::slice::from_ref(&w0), 0).unwrap();
    writer.flush_durable().unwrap();
    let w1 = window(1, DAY1_MS, "m1", 4);
    writer.append(std::slice::from_ref(&w1), 0).unwrap();
    fs::remove_dir_all(dir.path().join("date=2026-11-26")).unwrap();
    assert!(matches!(
        writer.flush_durable(),
        Err(ArchiveError::Io { .. })
    ));
    assert!(writer.is_stalled());
    assert_eq!(writer.retry(0).unwrap().rows, 1);
    let got = sorted(read_archive_dir(dir.path()).unwrap());
    assert_eq!(got, sorted(vec![w0, w1]));
}

#[test]
fn schema_matches_golden_file() {
    let golden_path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "schemas", "archive_schema.txt"]
        .iter()
        .collect();
    let golden = fs::read_to_string(&golden_path).unwrap();
    let expected: String = golden
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        describe_schema(&archive_schema(16)),
        expected,
        "update {} if the change is intended",
        golden_path.display()
    );
}
