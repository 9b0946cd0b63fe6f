//! Integration tests: one binary, one module per area, shared helpers in `util`.

// A test that cannot get what it needs fails where it stands: unwrap is how tests say so.
#![allow(clippy::unwrap_used)]

mod archive;
mod daemon;
mod demo;
mod deploy;
mod engine;
mod health;
mod kafka;
mod layers;
mod metrics;
mod replay;
mod simulate;
mod subscribers;
mod util;
