//! History files (CSV, Parquet) read into per-machine rows for `train` and `replay`.
