//! The operations: each one is planned, then executed, and returns a typed report; none prints.

pub mod prune;
