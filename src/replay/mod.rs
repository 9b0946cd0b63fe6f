//! replay: filled in by its owner.
