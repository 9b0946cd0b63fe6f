//! Integration tests: one binary, one module per area, shared helpers in `util`.

mod archive;
mod daemon;
mod demo;
mod deploy;
mod kafka;
mod metrics;
mod replay;
mod simulate;
mod util;
