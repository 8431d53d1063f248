//! The swaps a backup was restored by, kept next to it as `<backup file>.swaps.json` (one entry
//! per `restore --swap`, deleted with the backup), so that `list` can name the old databases
//! those swaps kept: disk a user may forget.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The suffix of a swap record after its backup's file name.
pub const SWAPS_SUFFIX: &str = ".swaps.json";

/// The most swaps one record keeps (the oldest go first).
const MAX_KEPT: usize = 50;

/// One `restore --swap` of the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapRecord {
    /// When the new database took the target's name.
    pub swapped_at: DateTime<Utc>,
    /// The server (host and port, as the connection named them).
    pub server: String,
    /// The database the backup was swapped into.
    pub database: String,
    /// The name the old database was given at the swap.
    pub old: String,
    /// The old database was dropped at the swap (`--drop-old`); else it was kept.
    pub old_dropped: bool,
}

/// The swap record's path for the backup at `backup`.
#[must_use]
pub fn path_for(backup: &Path) -> PathBuf {
    let mut name = backup.file_name().unwrap_or_default().to_os_string();
    name.push(SWAPS_SUFFIX);
    backup.with_file_name(name)
}

/// The swaps recorded for the backup at `backup`, oldest first; none when it has no record or
/// its record is unreadable.
#[must_use]
pub fn read(backup: &Path) -> Vec<SwapRecord> {
    read_strict(backup).unwrap_or_default()
}

/// The swaps recorded for the backup at `backup`; none when it has no record, an error when its
/// record cannot be read or parsed.
fn read_strict(backup: &Path) -> Result<Vec<SwapRecord>> {
    let path = path_for(backup);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a swap record ({e}); it was left as it is",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

/// Adds `swap` to the record of the backup at `backup` (replaced atomically). A record that
/// cannot be read is never replaced. Past [`MAX_KEPT`] swaps, those whose old database was
/// dropped go first, then the oldest.
pub fn append(backup: &Path, swap: SwapRecord) -> Result<()> {
    let mut swaps = read_strict(backup)?;
    swaps.push(swap);
    while swaps.len() > MAX_KEPT {
        let first_dropped = swaps.iter().position(|s| s.old_dropped).unwrap_or(0);
        swaps.remove(first_dropped);
    }
    let mut bytes = serde_json::to_vec_pretty(&swaps)?;
    bytes.push(b'\n');
    crate::runtime::fsutil::replace_atomic(&path_for(backup), &bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swap(old: &str, dropped: bool) -> SwapRecord {
        SwapRecord {
            swapped_at: "2026-11-29T10:15:00Z".parse().unwrap(),
            server: "db1:5432".into(),
            database: "shop".into(),
            old: old.into(),
            old_dropped: dropped,
        }
    }

    #[test]
    fn swaps_add_up_next_to_their_backup_and_are_no_backup_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("aos-backup-20261129-101500.dump.zst");
        assert_eq!(read(&backup), Vec::new());
        append(&backup, swap("shop__aos_old_1", false)).unwrap();
        append(&backup, swap("shop__aos_old_2", true)).unwrap();
        assert_eq!(
            read(&backup),
            vec![
                swap("shop__aos_old_1", false),
                swap("shop__aos_old_2", true)
            ]
        );
        assert!(!crate::archive::naming::looks_like_backup(
            &path_for(&backup).file_name().unwrap().to_string_lossy()
        ));
    }

    #[test]
    fn a_full_record_forgets_dropped_databases_first_then_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("aos-backup-20261129-101500.dump");
        append(&backup, swap("kept_first", false)).unwrap();
        append(&backup, swap("dropped", true)).unwrap();
        for n in 2..MAX_KEPT {
            append(&backup, swap(&format!("old_{n}"), false)).unwrap();
        }
        append(&backup, swap("newest", false)).unwrap();
        let swaps = read(&backup);
        assert_eq!(swaps.len(), MAX_KEPT);
        assert_eq!(swaps[0].old, "kept_first", "the dropped one went first");
        assert!(swaps.iter().all(|s| !s.old_dropped));
        append(&backup, swap("newer", false)).unwrap();
        let swaps = read(&backup);
        assert_eq!(swaps[0].old, "old_2");
        assert_eq!(swaps[MAX_KEPT - 1].old, "newer");
    }

    #[test]
    fn an_unreadable_record_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("aos-backup-20261129-101500.dump");
        std::fs::write(path_for(&backup), "{not json").unwrap();
        assert_eq!(read(&backup), Vec::new());
        let e = append(&backup, swap("old", false)).unwrap_err();
        assert!(e.to_string().contains("left as it is"), "{e}");
        assert_eq!(std::fs::read(path_for(&backup)).unwrap(), b"{not json");
    }
}
