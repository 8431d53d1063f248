//! What a backup is made of: the pg_dump format, the compression and the encryption around it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// pg_dump's output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    /// pg_dump's custom archive (`-Fc`): selective and parallel restore with pg_restore.
    Custom,
    /// Plain SQL (`-Fp`), restored with psql.
    Plain,
    /// A directory archive (`-Fd`), the only format pg_dump can write in parallel (`--jobs`).
    Directory,
    /// A tar archive (`-Ft`); only read, never written by aos-backup.
    #[value(skip)]
    Tar,
}

impl DumpFormat {
    /// The name used in settings, metadata and messages (`custom`, `plain`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DumpFormat::Custom => "custom",
            DumpFormat::Plain => "plain",
            DumpFormat::Directory => "directory",
            DumpFormat::Tar => "tar",
        }
    }
}

impl fmt::Display for DumpFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who compresses the dump, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// zstd on all cores, applied by aos-backup (pg_dump runs with -Z0). The default.
    Zstd,
    /// gzip, applied by aos-backup (pg_dump runs with -Z0).
    Gzip,
    /// pg_dump's own compression (gzip inside the archive, one core): what bare `pg_dump -Fc` does.
    #[value(name = "pg_dump", alias = "pg-dump")]
    #[serde(rename = "pg_dump", alias = "pg-dump")]
    PgDump,
    /// No compression at all.
    None,
}

impl Algorithm {
    /// The name used in settings, metadata and messages (`zstd`, `pg_dump`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Zstd => "zstd",
            Algorithm::Gzip => "gzip",
            Algorithm::PgDump => "pg_dump",
            Algorithm::None => "none",
        }
    }

    /// The level used when none is given.
    #[must_use]
    pub fn default_level(self) -> i32 {
        match self {
            Algorithm::Zstd => 1,
            Algorithm::Gzip => 6,
            Algorithm::PgDump => -1,
            Algorithm::None => 0,
        }
    }

    /// Valid levels, for validation messages.
    #[must_use]
    pub fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Algorithm::Zstd => 1..=19,
            Algorithm::Gzip | Algorithm::PgDump => 0..=9,
            Algorithm::None => 0..=0,
        }
    }

    /// Parses the values users write in `BACKUP_COMPRESSION` (seed 001 wrote `true`/`false`).
    #[must_use]
    pub fn parse_loose(s: &str) -> Option<Algorithm> {
        match s.trim().to_ascii_lowercase().as_str() {
            "zstd" | "zst" | "true" | "yes" | "on" | "1" => Some(Algorithm::Zstd),
            "gzip" | "gz" => Some(Algorithm::Gzip),
            "pg_dump" | "pg-dump" | "pgdump" | "internal" => Some(Algorithm::PgDump),
            "none" | "false" | "no" | "off" | "0" => Some(Algorithm::None),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compression algorithm with its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    /// Who compresses, and with what.
    pub algorithm: Algorithm,
    /// The algorithm's level (see [`Algorithm::levels`]); -1 with [`Algorithm::PgDump`] leaves
    /// the level to pg_dump.
    pub level: i32,
}

/// How the stored bytes are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncryptionKind {
    /// Not encrypted: the stored bytes are the (compressed) dump.
    None,
    /// age, to one or more public-key recipients.
    AgeRecipients,
    /// age, with a scrypt passphrase.
    AgePassphrase,
}

impl EncryptionKind {
    /// Whether the stored bytes are an age file (a key is needed to read them).
    #[must_use]
    pub fn is_encrypted(self) -> bool {
        self != EncryptionKind::None
    }

    /// The name written in the metadata (`none`, `age-recipients`, `age-passphrase`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionKind::None => "none",
            EncryptionKind::AgeRecipients => "age-recipients",
            EncryptionKind::AgePassphrase => "age-passphrase",
        }
    }
}
