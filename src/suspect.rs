//! Whether a new backup shrank sharply against the previous one of the same database: a pg_dump
//! that "succeeds" with a fraction of the data must not push the good backups out of retention.

use crate::catalog::{self, Meta, Status, Suspect};
use anyhow::Result;
use std::path::Path;

/// The newest complete, non-suspect backup of `database` in `dir`, other than `except_id`.
pub fn baseline(dir: &Path, database: &str, except_id: &str) -> Result<Option<Meta>> {
    Ok(catalog::scan(dir)?
        .into_iter()
        .filter(|e| e.status == Status::Complete)
        .filter_map(|e| e.meta)
        .find(|m| m.database == database && m.suspect.is_none() && m.id != except_id))
}

/// What a backup's size measures, and the size: pg_dump's own output when it is uncompressed
/// (comparable across our compressions), else the stored bytes of that format and compression.
fn size_measure(m: &Meta) -> (String, u64) {
    if m.dump_bytes > 0 && m.compression != "pg_dump" {
        (format!("{} dump", m.format), m.dump_bytes)
    } else {
        (format!("{} {}", m.format, m.compression), m.size_bytes)
    }
}

#[allow(clippy::cast_precision_loss)]
fn below(new: u64, old: u64, ratio: f64) -> bool {
    old > 0 && (new as f64) < (old as f64) * ratio
}

/// Compares `new` with `previous`: suspect when its size, or its table count, fell below
/// `ratio` of the previous one's. Sizes are compared only when they measure the same thing
/// (same format, and same compression unless both are pg_dump's raw output). `ratio` 0 turns
/// the comparison off.
#[must_use]
pub fn judge(new: &Meta, previous: &Meta, ratio: f64) -> Option<Suspect> {
    if ratio <= 0.0 {
        return None;
    }
    let mut drops = Vec::new();
    let (kind, size) = size_measure(new);
    let (old_kind, old_size) = size_measure(previous);
    if kind == old_kind && below(size, old_size, ratio) {
        drops.push(format!("size fell from {old_size} to {size} bytes"));
    }
    if below(new.tables, previous.tables, ratio) {
        drops.push(format!(
            "tables fell from {} to {}",
            previous.tables, new.tables
        ));
    } else if let (Some(n), Some(o)) = (new.archive_tables, previous.archive_tables) {
        if below(n, o, ratio) {
            drops.push(format!("tables in the archive fell from {o} to {n}"));
        }
    }
    if drops.is_empty() {
        return None;
    }
    Some(Suspect {
        reason: format!(
            "{} (below {}% of backup {})",
            drops.join("; "),
            (ratio * 100.0).round(),
            previous.id
        ),
        previous_id: previous.id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn meta(id: &str, size: u64, dump: u64, tables: u64, archive: Option<u64>) -> Meta {
        Meta {
            format_version: catalog::META_FORMAT_VERSION,
            id: id.into(),
            label: None,
            file: format!("aos-backup-{id}.dump.zst"),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            duration_ms: 0,
            database: "app".into(),
            host: "h".into(),
            port: None,
            server_version: "15".into(),
            pg_dump_version: "15".into(),
            tool_version: "0".into(),
            format: "custom".into(),
            compression: "zstd".into(),
            compression_level: 1,
            encryption: "none".into(),
            size_bytes: size,
            dump_bytes: dump,
            sha256: String::new(),
            tables,
            files: vec![],
            archive_tables: archive,
            suspect: None,
            recipients: vec![],
        }
    }

    #[test]
    fn a_sharp_drop_in_size_or_tables_is_suspect() {
        let prev = meta("a", 1000, 10_000, 10, Some(8));
        assert_eq!(judge(&meta("b", 900, 9_000, 10, Some(8)), &prev, 0.5), None);
        let s = judge(&meta("b", 90, 500, 10, Some(8)), &prev, 0.5).unwrap();
        assert_eq!(s.previous_id, "a");
        assert!(
            s.reason.contains("size fell from 10000 to 500 bytes"),
            "{}",
            s.reason
        );
        assert!(s.reason.contains("below 50% of backup a"), "{}", s.reason);
        let s = judge(&meta("b", 1000, 10_000, 4, Some(8)), &prev, 0.5).unwrap();
        assert!(
            s.reason.contains("tables fell from 10 to 4"),
            "{}",
            s.reason
        );
        let s = judge(&meta("b", 1000, 10_000, 10, Some(3)), &prev, 0.5).unwrap();
        assert!(
            s.reason.contains("archive fell from 8 to 3"),
            "{}",
            s.reason
        );
        // Exactly half is not below half; ratio 0 is off; a stricter ratio catches more.
        assert_eq!(judge(&meta("b", 500, 5_000, 5, Some(4)), &prev, 0.5), None);
        assert_eq!(judge(&meta("b", 1, 1, 0, Some(0)), &prev, 0.0), None);
        assert!(judge(&meta("b", 900, 8_000, 10, Some(8)), &prev, 0.9).is_some());
    }

    #[test]
    fn sizes_of_different_kinds_are_not_compared() {
        let prev = meta("a", 1000, 10_000, 10, None);
        // pg_dump's own compression: dump_bytes are compressed bytes, not comparable.
        let mut new = meta("b", 100, 100, 10, None);
        new.compression = "pg_dump".into();
        assert_eq!(judge(&new, &prev, 0.5), None);
        let mut new = meta("b", 100, 0, 10, None);
        new.format = "directory".into();
        assert_eq!(judge(&new, &prev, 0.5), None);
        // Another of our compressions: pg_dump's raw output is still comparable.
        let mut new = meta("b", 100, 1_000, 10, None);
        new.compression = "gzip".into();
        assert!(judge(&new, &prev, 0.5).is_some());
        // An empty previous backup never makes the next one suspect.
        assert_eq!(
            judge(&meta("b", 0, 0, 0, None), &meta("a", 0, 0, 0, None), 0.5),
            None
        );
    }

    #[test]
    fn the_baseline_is_the_newest_trusted_backup_of_the_same_database() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let write = |m: &Meta, secs: i64| {
            let mut m = m.clone();
            m.started_at = chrono::DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap();
            let p = d.join(&m.file);
            std::fs::write(&p, b"x").unwrap();
            m.write(&Meta::path_for(&p)).unwrap();
        };
        write(&meta("20240101-000000", 1000, 10, 1, None), 0);
        let mut other = meta("20240102-000000", 5, 5, 1, None);
        other.database = "other".into();
        write(&other, 10);
        let mut sus = meta("20240103-000000", 5, 5, 1, None);
        sus.suspect = Some(Suspect {
            reason: "r".into(),
            previous_id: "20240101-000000".into(),
        });
        write(&sus, 20);
        let b = baseline(d, "app", "20240104-000000").unwrap().unwrap();
        assert_eq!(b.id, "20240101-000000");
        assert!(baseline(d, "app", "20240101-000000").unwrap().is_none());
        assert!(baseline(d, "nope", "x").unwrap().is_none());
    }
}
