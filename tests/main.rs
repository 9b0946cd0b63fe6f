//! Integration tests: one binary, one module per area, shared helpers in `util`.

mod archive;
mod simulate;
mod util;
