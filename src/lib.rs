//! aos-backup: back up and restore PostgreSQL databases safely by driving pg_dump and pg_restore.
//!
//! The binary is a thin wrapper around [`run`]: parse the command line, resolve the settings,
//! run the subcommand while watching for signals, and map the outcome to an exit code.
//! `docs/ARCHITECTURE.md` describes the layers below.

pub mod archive;
pub mod catalog;
pub mod cli;
pub mod config;
mod engine;
pub mod error;
pub mod exit;
pub mod ops;
pub mod pg;
pub mod runtime;
pub mod storage;

pub use cli::run;
pub use engine::{Engine, Result};
pub use error::{Error, Kind};
