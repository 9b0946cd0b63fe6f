//! The windower.
