//! simulate: filled in by its owner.
