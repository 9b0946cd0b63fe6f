//! model: filled in by its owner.
