//! archive: filled in by its owner.
