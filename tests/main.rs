//! Integration tests: one binary, one module per area, shared helpers in `util`.

mod kafka;
mod metrics;
mod util;
