//! aos-backup: back up and restore PostgreSQL databases safely by driving pg_dump and pg_restore.
//!
//! As a library, start from [`Engine`]: it is built from a connection and a backup folder and
//! runs the operations of [`ops`] (backup, list, verify, restore, prune), each returning a typed
//! report, or an [`Error`] with its [`Kind`] (which decides the exit code), a hint and its cause.
//! The binary is a thin wrapper around [`run`]. `docs/ARCHITECTURE.md` describes the layers.
#![warn(missing_docs)]

pub(crate) mod archive;
pub(crate) mod catalog;
pub(crate) mod cli;
pub(crate) mod config;
mod engine;
pub(crate) mod error;
pub(crate) mod exit;
pub mod ops;
pub(crate) mod pg;
pub(crate) mod runtime;
pub(crate) mod storage;

pub use cli::run;
pub use engine::{Engine, Result};
pub use error::{Error, Kind};
pub use exit::ExitCode;

/// The types that the operations' options and reports are made of.
pub mod types {
    pub use crate::archive::crypto::{KeySource, Recipients};
    pub use crate::archive::format::{Algorithm, Compression, DumpFormat, EncryptionKind};
    pub use crate::archive::layers::Layer;
    pub use crate::archive::meta::{
        CheckCount, FileEntry, Meta, Recorded, Suspect, TableRows, ValidationSummary,
    };
    pub use crate::catalog::retention::Policy;
    pub use crate::catalog::{Entry, Status};
    pub use crate::pg::conninfo::ConnInfo;
    pub use crate::pg::sessions::Session;
    pub use crate::pg::tools::Tool;
    pub use crate::runtime::context::OpContext;
    pub use crate::runtime::progress::{Progress, Silent, Task, Terminal};
    pub use crate::storage::{LocalFolder, Storage};
}

/// Reading and checking backup files without running an operation: the integrity rules that
/// backup, verify and restore share.
pub mod check {
    pub use crate::archive::dumpcheck::{ArchiveParser, Verdict};
    pub use crate::archive::integrity::manifest_sha256;
    pub use crate::archive::naming;
    pub use crate::archive::sink::hash_file;
    pub use crate::storage::lock::LOCK_FILE;
}
