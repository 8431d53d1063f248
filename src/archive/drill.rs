//! The result of a backup's last drill, kept next to it as `<backup file>.drill.json` (replaced by
//! the next drill, deleted with the backup): the whole report, of which `list` reads the
//! summary. Each database's most recent drill is also kept in its folder as
//! `.aos-backup.drill.<database>.json`, which prune leaves alone, so that `check` still knows it
//! once the drilled backup is gone.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The suffix of a drill result after its backup's file name.
pub const DRILL_SUFFIX: &str = ".drill.json";

/// How a drill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The backup restored and every check passed.
    Passed,
    /// The backup did not restore into the scratch database.
    RestoreFailed,
    /// The backup restored, but a check failed (row counts, validate, `--check-sql`).
    CheckFailed,
}

impl Outcome {
    /// `passed`, `restore-failed`, `check-failed`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::RestoreFailed => "restore-failed",
            Outcome::CheckFailed => "check-failed",
        }
    }
}

/// What `list` shows of a backup's last drill: the fields every drill result starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// When the drill ran.
    pub drilled_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: Outcome,
    /// The measured restore time, in milliseconds (none when the restore failed).
    pub rto_ms: Option<u64>,
}

/// A database's most recent drill: which backup, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastDrill {
    /// The id of the backup it drilled.
    pub backup: String,
    /// When, and how it ended.
    #[serde(flatten)]
    pub summary: Summary,
}

/// Where the most recent drill of `database` is kept in `folder`; `None` for a name that has
/// no folder name.
#[must_use]
pub fn last_path(folder: &Path, database: &str) -> Option<PathBuf> {
    let name = crate::archive::naming::database_folder(database)?;
    Some(folder.join(format!(".aos-backup.drill.{name}.json")))
}

/// Keeps `last` as the most recent drill of `database` in `folder`, atomically.
pub fn write_last(folder: &Path, database: &str, last: &LastDrill) -> Result<()> {
    let path = last_path(folder, database)
        .ok_or_else(|| anyhow::anyhow!("database {database:?} has no folder name"))?;
    let mut bytes = serde_json::to_vec_pretty(last)?;
    bytes.push(b'\n');
    crate::runtime::fsutil::replace_atomic(&path, &bytes, 0o600)
}

/// The most recent drill of `database` kept in `folder`; `None` when there is none or it is
/// unreadable.
#[must_use]
pub fn read_last(folder: &Path, database: &str) -> Option<LastDrill> {
    let text = std::fs::read(last_path(folder, database)?).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The drill result's path for the backup at `backup`.
#[must_use]
pub fn path_for(backup: &Path) -> PathBuf {
    let mut name = backup.file_name().unwrap_or_default().to_os_string();
    name.push(DRILL_SUFFIX);
    backup.with_file_name(name)
}

/// Writes (or replaces) the drill result of the backup at `backup`, atomically.
pub fn write(backup: &Path, report: &serde_json::Value) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(report)?;
    bytes.push(b'\n');
    crate::runtime::fsutil::replace_atomic(&path_for(backup), &bytes, 0o600)
}

/// The summary of the backup's last drill; `None` when it had none or its result is unreadable.
#[must_use]
pub fn read_summary(backup: &Path) -> Option<Summary> {
    let text = std::fs::read(path_for(backup)).ok()?;
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_sits_next_to_its_backup_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("aos-backup-20260101-000000.dump");
        assert_eq!(read_summary(&backup), None);
        let report = serde_json::json!({
            "drilled_at": "2026-01-02T03:04:05Z",
            "outcome": "check-failed",
            "rto_ms": 1200,
            "more": [1, 2],
        });
        write(&backup, &report).unwrap();
        let summary = read_summary(&backup).unwrap();
        assert_eq!(summary.outcome, Outcome::CheckFailed);
        assert_eq!(summary.rto_ms, Some(1200));
        assert!(!crate::archive::naming::looks_like_backup(
            &path_for(&backup).file_name().unwrap().to_string_lossy()
        ));
    }

    #[test]
    fn a_databases_last_drill_is_kept_in_its_folder_under_a_safe_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_last(dir.path(), "shop"), None);
        let last = LastDrill {
            backup: "20260101-000000".into(),
            summary: Summary {
                drilled_at: "2026-01-02T03:04:05Z".parse().unwrap(),
                outcome: Outcome::Passed,
                rto_ms: Some(5),
            },
        };
        write_last(dir.path(), "../shop", &last).unwrap();
        assert_eq!(read_last(dir.path(), "../shop"), Some(last));
        assert_eq!(read_last(dir.path(), "shop"), None);
        let name = last_path(dir.path(), "../shop").unwrap();
        assert_eq!(name.parent(), Some(dir.path()));
        assert!(name.file_name().unwrap().to_string_lossy().starts_with('.'));
    }
}
