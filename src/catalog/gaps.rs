//! The recovery point as the catalog shows it: the largest gap between two consecutive complete
//! backups of a database, the most data a failure between them could have lost.

use super::{Entry, Status};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The largest gap between two consecutive complete backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// The backup before the gap.
    pub from_id: String,
    /// When it was taken.
    pub from: DateTime<Utc>,
    /// The backup after it.
    pub to_id: String,
    /// When that one was taken.
    pub to: DateTime<Utc>,
    /// The gap in seconds.
    pub seconds: i64,
}

/// The largest gap between consecutive complete backups of `database` taken up to `now` (the
/// catalog holds what retention kept); `None` with fewer than two.
#[must_use]
pub fn largest_gap(entries: &[Entry], database: &str, now: DateTime<Utc>) -> Option<Gap> {
    let mut times: Vec<(DateTime<Utc>, String)> = entries
        .iter()
        .filter(|e| scheduled(e, database))
        .filter(|e| e.time <= now)
        .map(|e| (e.time, e.id.clone().unwrap_or_else(|| e.name.clone())))
        .collect();
    times.sort();
    times
        .windows(2)
        .map(|w| Gap {
            from_id: w[0].1.clone(),
            from: w[0].0,
            to_id: w[1].1.clone(),
            to: w[1].0,
            seconds: (w[1].0 - w[0].0).num_seconds(),
        })
        .max_by_key(|g| g.seconds)
}

/// How many complete backups of `database` the catalog holds (safety backups not counted).
#[must_use]
pub fn complete_count(entries: &[Entry], database: &str) -> usize {
    entries.iter().filter(|e| scheduled(e, database)).count()
}

/// A complete backup of `database` that is not a restore's safety backup: those come from
/// restores, not from the backup schedule whose gaps the RPO measures.
fn scheduled(e: &Entry, database: &str) -> bool {
    e.status == Status::Complete && e.database() == Some(database) && !e.is_safety_backup()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry(id: &str, db: &str, hours: i64, status: Status) -> Entry {
        let time = Utc.timestamp_opt(1_704_067_200 + hours * 3600, 0).unwrap();
        let meta: Option<crate::archive::meta::Meta> = serde_json::from_value(serde_json::json!({
            "format_version": 1, "id": id, "label": null, "file": id, "started_at": time,
            "finished_at": time, "duration_ms": 0, "database": db, "host": "h", "port": null,
            "server_version": "15.1", "pg_dump_version": "15.1", "tool_version": "0",
            "format": "custom", "compression": "zstd", "compression_level": 1,
            "encryption": "none", "size_bytes": 1, "dump_bytes": 1, "sha256": "x", "tables": 1
        }))
        .ok();
        assert!(meta.is_some());
        Entry {
            path: id.into(),
            name: id.into(),
            status,
            id: Some(id.into()),
            time,
            size: 1,
            meta,
            meta_error: None,
        }
    }

    #[test]
    fn the_largest_gap_is_between_consecutive_complete_backups_of_the_database() {
        let now = Utc.timestamp_opt(1_704_067_200 + 100 * 3600, 0).unwrap();
        let entries = vec![
            entry("d", "shop", 30, Status::Complete),
            entry("other", "blog", 20, Status::Complete),
            entry("broken", "shop", 15, Status::Unmanaged),
            entry("b", "shop", 10, Status::Complete),
            entry("a", "shop", 0, Status::Complete),
            entry("future", "shop", 500, Status::Complete),
        ];
        let gap = largest_gap(&entries, "shop", now).unwrap();
        assert_eq!((gap.from_id.as_str(), gap.to_id.as_str()), ("b", "d"));
        assert_eq!(gap.seconds, 20 * 3600);
        assert_eq!(largest_gap(&entries, "blog", now), None);
        assert_eq!(complete_count(&entries, "shop"), 4);
    }

    #[test]
    fn a_safety_backup_does_not_close_a_gap() {
        let now = Utc.timestamp_opt(1_704_067_200 + 100 * 3600, 0).unwrap();
        let mut safety = entry("s", "shop", 5, Status::Complete);
        if let Some(m) = safety.meta.as_mut() {
            m.label = Some(crate::archive::naming::SAFETY_LABEL.to_string());
        }
        let entries = vec![
            entry("b", "shop", 10, Status::Complete),
            safety,
            entry("a", "shop", 0, Status::Complete),
        ];
        let gap = largest_gap(&entries, "shop", now).unwrap();
        assert_eq!((gap.from_id.as_str(), gap.to_id.as_str()), ("a", "b"));
        assert_eq!(complete_count(&entries, "shop"), 2);
    }
}
