//! What the sidecar `.meta.json` next to a backup says: its fields, and reading and writing it.

use crate::archive::format::{Algorithm, DumpFormat, EncryptionKind};
use crate::archive::naming::META_SUFFIX;
use crate::error::Error;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};

/// The version of the metadata format.
pub const META_FORMAT_VERSION: u32 = 1;

/// One file of a directory archive, for verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The file's name inside the archive's folder.
    pub path: String,
    /// Its length in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of its content.
    pub sha256: String,
}

/// The sidecar `<backup>.meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The metadata format this sidecar was written in (`META_FORMAT_VERSION`, now 1).
    pub format_version: u32,
    /// The backup id, `YYYYMMDD-HHMMSS[-LABEL]` in UTC, with `-2`, `-3`... after a name clash.
    pub id: String,
    /// The `--name` label given to the backup, if any (also part of the id).
    pub label: Option<String>,
    /// The backup's file (or folder) name.
    pub file: String,
    /// When the backup run started (UTC).
    pub started_at: DateTime<Utc>,
    /// When the backup was complete: `started_at` plus the time it took.
    pub finished_at: DateTime<Utc>,
    /// How long the backup took, in milliseconds.
    pub duration_ms: u64,
    /// The database that was dumped.
    pub database: String,
    /// The host the connection named, or `default socket` when it named none.
    pub host: String,
    /// The port the connection URL gave; `None`: it gave none (`PGPORT`, else 5432).
    pub port: Option<u16>,
    /// The server's version, e.g. `15.18`.
    pub server_version: String,
    /// The version of the pg_dump that wrote the dump, e.g. `15.18`.
    pub pg_dump_version: String,
    /// The version of aos-backup that made the backup.
    pub tool_version: String,
    /// custom, plain or directory.
    pub format: Recorded<DumpFormat>,
    /// zstd, gzip, pg_dump or none.
    pub compression: Recorded<Algorithm>,
    /// The compression level used; -1 when pg_dump chose its own.
    pub compression_level: i32,
    /// none, age-recipients or age-passphrase.
    pub encryption: Recorded<EncryptionKind>,
    /// Bytes stored on disk (for a directory: the sum of its files).
    pub size_bytes: u64,
    /// Bytes pg_dump produced before compression and encryption (0 for a directory).
    pub dump_bytes: u64,
    /// SHA-256 of the stored bytes (for a directory: of its manifest lines).
    pub sha256: String,
    /// User tables the server held when the backup started (not counting extensions' tables).
    pub tables: u64,
    /// The files of a directory archive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
    /// `TABLE` entries in the archive's table of contents, as the completeness check counted
    /// them while the backup streamed (absent for plain SQL and older sidecars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_tables: Option<u64>,
    /// Set when the backup shrank sharply against the previous one of the same database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect: Option<Suspect>,
    /// For `age-recipients`: the recipients' short fingerprints (`crypto::fingerprint`), so a
    /// key error can say which identity the backup needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// The server's roles and tablespaces stored next to the backup (`backup --globals`);
    /// absent without it, and in older sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<GlobalsFile>,
    /// The exact row count of every user table, counted on the dump's own snapshot; absent in
    /// older sidecars and where counting was not possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_counts: Option<Vec<TableRows>>,
    /// What `validate` found in the database just before the backup (`BACKUP_VALIDATE=true`);
    /// absent when it did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationSummary>,
}

/// The consistency checks run before a backup, in short: how many rows or objects failed each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationSummary {
    /// When the checks ran.
    pub checked_at: DateTime<Utc>,
    /// Rows and objects failing any check (0: clean).
    pub findings: u64,
    /// Each check that ran.
    pub checks: Vec<CheckCount>,
}

/// One check's count in a [`ValidationSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckCount {
    /// The check's name (`orphans`, `sequences_behind`...).
    pub check: String,
    /// The rows or objects that fail it.
    pub failing: u64,
    /// The objects it could not check.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub errors: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One table's exact row count at backup time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRows {
    /// The table's schema.
    pub schema: String,
    /// The table's name.
    pub table: String,
    /// Its rows, counted on the dump's snapshot.
    pub rows: u64,
}

/// The `pg_dumpall --globals-only` script stored with a backup, as its sidecar records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalsFile {
    /// Its file name, next to the backup: `<backup file>.globals.sql` (`.age` when encrypted).
    pub file: String,
    /// Its length in bytes.
    pub size_bytes: u64,
    /// Lowercase hex SHA-256 of its bytes.
    pub sha256: String,
    /// Whether it holds the roles' password hashes (`--globals-with-passwords`).
    pub role_passwords: bool,
}

/// Why a backup is suspect: it was kept, but not trusted to cause deletions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspect {
    /// What dropped, in words.
    pub reason: String,
    /// The backup it was compared with.
    pub previous_id: String,
}

impl Meta {
    /// A sidecar for tests: a custom-format zstd backup `file` of `size` bytes with SHA-256
    /// `sha256`, made now.
    #[cfg(test)]
    #[must_use]
    pub fn for_test(file: &str, size: u64, sha256: &str) -> Meta {
        let now = Utc::now();
        Meta {
            format_version: META_FORMAT_VERSION,
            id: "20240101-000000".into(),
            label: None,
            file: file.into(),
            started_at: now,
            finished_at: now,
            duration_ms: 0,
            database: "db".into(),
            host: "localhost".into(),
            port: Some(5432),
            server_version: "15.1".into(),
            pg_dump_version: "15.1".into(),
            tool_version: "0".into(),
            format: DumpFormat::Custom.into(),
            compression: Algorithm::Zstd.into(),
            compression_level: 1,
            encryption: EncryptionKind::None.into(),
            size_bytes: size,
            dump_bytes: size,
            sha256: sha256.into(),
            tables: 1,
            files: vec![],
            archive_tables: None,
            suspect: None,
            recipients: vec![],
            globals: None,
            row_counts: None,
            validation: None,
        }
    }

    /// The sidecar path for a backup at `path`.
    #[must_use]
    pub fn path_for(backup: &Path) -> PathBuf {
        let mut name = backup.file_name().unwrap_or_default().to_os_string();
        name.push(META_SUFFIX);
        backup.with_file_name(name)
    }

    /// Reads and parses a sidecar.
    pub fn read(path: &Path) -> Result<Meta> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Meta::from_json(&text, &path.display().to_string())
    }

    /// Parses a sidecar's bytes; `shown` names it in the error (a path, or a storage location).
    pub fn from_json(text: &[u8], shown: &str) -> Result<Meta> {
        serde_json::from_slice(text).map_err(|e| {
            Error::integrity(format!("metadata {shown} is unreadable: {e}"))
                .hint("the sidecar was damaged or edited; the backup cannot be verified")
                .into()
        })
    }

    /// Writes the sidecar atomically; it never replaces an existing one.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self).context("encoding metadata")?;
        json.push(b'\n');
        crate::runtime::fsutil::write_new_atomic(path, &json)
    }

    /// Whether the backup is encrypted: anything but a recorded `none` (an encryption this
    /// version does not know counts as encrypted).
    #[must_use]
    pub fn is_encrypted(&self) -> bool {
        self.encryption
            .known()
            .is_none_or(EncryptionKind::is_encrypted)
    }
}

/// A value as a sidecar recorded it: one this version knows, or, from another version or an
/// edit, text kept as it was (such a sidecar still loads, and is written back unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded<T> {
    /// A value this version knows, recorded by its exact name.
    Known(T),
    /// Any other text, kept as it was.
    Other(String),
}

/// A value recorded in a sidecar by its name.
pub trait Named: Copy + DeserializeOwned {
    /// The name the sidecar holds.
    fn name(self) -> &'static str;
}

impl Named for DumpFormat {
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Named for Algorithm {
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Named for EncryptionKind {
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl<T: Named> Recorded<T> {
    /// The value, when this version knows it.
    #[must_use]
    pub fn known(&self) -> Option<T> {
        match self {
            Recorded::Known(v) => Some(*v),
            Recorded::Other(_) => None,
        }
    }

    /// The text the sidecar holds.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Recorded::Known(v) => v.name(),
            Recorded::Other(s) => s,
        }
    }

    /// Only the exact name is known: an alias or another spelling stays as written.
    fn parse(text: String) -> Self {
        let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            text.as_str().into_deserializer();
        match T::deserialize(de) {
            Ok(v) if v.name() == text => Recorded::Known(v),
            _ => Recorded::Other(text),
        }
    }
}

impl<T> From<T> for Recorded<T> {
    fn from(v: T) -> Self {
        Recorded::Known(v)
    }
}

impl<T: Named> fmt::Display for Recorded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<T: Named> Serialize for Recorded<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de, T: Named> Deserialize<'de> for Recorded<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(Recorded::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIDECAR: &str = r#"{
  "format_version": 1,
  "id": "20240101-000000",
  "label": null,
  "file": "aos-backup-20240101-000000.dump.zst",
  "started_at": "2024-01-01T00:00:00Z",
  "finished_at": "2024-01-01T00:00:01Z",
  "duration_ms": 1000,
  "database": "db",
  "host": "localhost",
  "port": 5432,
  "server_version": "15.1",
  "pg_dump_version": "15.1",
  "tool_version": "0",
  "format": "custom",
  "compression": "pg_dump",
  "compression_level": -1,
  "encryption": "age-recipients",
  "size_bytes": 3,
  "dump_bytes": 3,
  "sha256": "",
  "tables": 1,
  "recipients": [
    "age1abc"
  ]
}
"#;

    fn round_trip(text: &str) -> (Meta, String) {
        let meta: Meta = serde_json::from_str(text).unwrap();
        let mut json = serde_json::to_string_pretty(&meta).unwrap();
        json.push('\n');
        (meta, json)
    }

    #[test]
    fn known_values_load_as_enums_and_write_back_the_same_bytes() {
        let (meta, json) = round_trip(SIDECAR);
        assert_eq!(meta.format, Recorded::Known(DumpFormat::Custom));
        assert_eq!(meta.compression, Recorded::Known(Algorithm::PgDump));
        assert_eq!(
            meta.encryption,
            Recorded::Known(EncryptionKind::AgeRecipients)
        );
        assert!(meta.is_encrypted());
        assert_eq!(json, SIDECAR);
    }

    #[test]
    fn unknown_values_and_aliases_load_and_are_kept_as_written() {
        let text = SIDECAR
            .replace(r#""custom""#, r#""Custom""#)
            .replace(r#""pg_dump""#, r#""pg-dump""#)
            .replace(r#""age-recipients""#, r#""rot13""#);
        let (meta, json) = round_trip(&text);
        assert_eq!(meta.format, Recorded::Other("Custom".into()));
        assert_eq!(meta.compression, Recorded::Other("pg-dump".into()));
        assert_eq!(meta.encryption.known(), None);
        assert!(meta.is_encrypted(), "an unknown encryption is not `none`");
        assert_eq!(json, text);
    }

    #[test]
    fn a_recorded_none_is_not_encrypted() {
        let (meta, _) = round_trip(&SIDECAR.replace(r#""age-recipients""#, r#""none""#));
        assert!(!meta.is_encrypted());
    }
}
