//! CSV history files: a header row, then one row per sample. Every cell arrives as text and is
//! interpreted by the rules of `cells`.

use std::path::Path;

use super::cells::{Cell, FileRows, FileTable};
use super::{HistoryError, HistoryOptions};

/// Reads one CSV file. Fields are trimmed; rows may not have more or fewer fields than the header.
pub(super) fn read(path: &Path, opts: &HistoryOptions) -> Result<FileRows, HistoryError> {
    let csv_error = |source| HistoryError::Csv {
        file: path.to_path_buf(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(csv_error)?;
    let header: Vec<String> = reader
        .headers()
        .map_err(csv_error)?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_owned())
        .collect();
    if header.iter().all(String::is_empty) {
        return Err(HistoryError::EmptyFile {
            file: path.to_path_buf(),
        });
    }
    let mut table = FileTable::new(path, header, opts)?;
    let mut record = csv::StringRecord::new();
    let mut row = 0;
    while reader.read_record(&mut record).map_err(csv_error)? {
        table.push_row(row, |i| Cell::Text(record.get(i).unwrap_or("")))?;
        row += 1;
    }
    table.finish()
}
