//! aos-backup: back up and restore PostgreSQL databases safely by driving pg_dump and pg_restore.
//!
//! The binary is a thin wrapper around [`run`]; every concern lives in its own module.

pub mod conninfo;
pub mod error;
pub mod exit;
pub mod retention;

/// Runs the command line and returns the process exit status.
#[must_use]
pub fn run() -> i32 {
    0
}
