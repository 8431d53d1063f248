//! Whether a new backup shrank sharply against the previous one of the same database: a pg_dump
//! that "succeeds" with a fraction of the data must not push the good backups out of retention.

use crate::archive::format::{Algorithm, DumpFormat};
use crate::archive::meta::{Meta, Recorded, Suspect};
use crate::catalog::{self, Status};
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

/// pg_dump's raw output in bytes, before our compression and encryption: comparable across
/// formats and our compressions. None when pg_dump compressed its output itself.
fn raw_size(m: &Meta) -> Option<u64> {
    match (&m.compression, &m.format) {
        (Recorded::Known(Algorithm::PgDump), _) => None,
        // A directory archive's files are pg_dump's own output.
        (_, Recorded::Known(DumpFormat::Directory)) => Some(m.size_bytes),
        _ => Some(m.dump_bytes),
    }
}

/// The two sizes to compare, when they measure the same thing: pg_dump's raw output when both
/// have it, else the stored bytes when both are of the same format and compression.
fn comparable_sizes(new: &Meta, old: &Meta) -> Option<(u64, u64)> {
    match (raw_size(new), raw_size(old)) {
        (Some(n), Some(o)) => Some((n, o)),
        _ if new.format == old.format && new.compression == old.compression => {
            Some((new.size_bytes, old.size_bytes))
        }
        _ => None,
    }
}

#[allow(clippy::cast_precision_loss)]
fn below(new: u64, old: u64, ratio: f64) -> bool {
    old > 0 && (new as f64) < (old as f64) * ratio
}

/// Compares `new` with `previous`: suspect when its size, the live database's table count, or
/// the archive's table count fell below `ratio` of the previous one's. Sizes are compared on
/// pg_dump's raw output (whatever the format and our compression); when one of them was
/// compressed by pg_dump, only against a backup of the same format and compression, else not
/// at all (the archive's table count still is). `ratio` 0 turns the comparison off.
#[must_use]
pub fn judge(new: &Meta, previous: &Meta, ratio: f64) -> Option<Suspect> {
    if ratio <= 0.0 {
        return None;
    }
    let mut drops = Vec::new();
    if let Some((size, old_size)) = comparable_sizes(new, previous) {
        if below(size, old_size, ratio) {
            drops.push(format!("size fell from {old_size} to {size} bytes"));
        }
    }
    if below(new.tables, previous.tables, ratio) {
        drops.push(format!(
            "tables fell from {} to {}",
            previous.tables, new.tables
        ));
    }
    if let (Some(n), Some(o)) = (new.archive_tables, previous.archive_tables) {
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
    use crate::archive::format::EncryptionKind;
    use crate::archive::meta::META_FORMAT_VERSION;
    use chrono::Utc;

    fn meta(id: &str, size: u64, dump: u64, tables: u64, archive: Option<u64>) -> Meta {
        Meta {
            format_version: META_FORMAT_VERSION,
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
            format: DumpFormat::Custom.into(),
            compression: Algorithm::Zstd.into(),
            compression_level: 1,
            encryption: EncryptionKind::None.into(),
            size_bytes: size,
            dump_bytes: dump,
            sha256: String::new(),
            tables,
            files: vec![],
            archive_tables: archive,
            suspect: None,
            recipients: vec![],
            globals: None,
            row_counts: None,
            validation: None,
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
    fn sizes_are_compared_on_pg_dumps_raw_output() {
        let prev = meta("a", 1000, 10_000, 10, None);
        // pg_dump's own compression: dump_bytes are compressed bytes, not comparable with raw.
        let mut new = meta("b", 100, 100, 10, None);
        new.compression = Algorithm::PgDump.into();
        assert_eq!(judge(&new, &prev, 0.5), None);
        // ... but comparable with the same format and compression.
        let mut old = prev.clone();
        old.compression = Algorithm::PgDump.into();
        assert!(judge(&new, &old, 0.5).is_some());
        new.format = DumpFormat::Plain.into();
        assert_eq!(judge(&new, &old, 0.5), None);
        // Another of our compressions, or another format: pg_dump's raw output is comparable.
        for (format, compression) in [
            (DumpFormat::Custom, Algorithm::Gzip),
            (DumpFormat::Plain, Algorithm::Zstd),
            (DumpFormat::Plain, Algorithm::None),
        ] {
            let mut new = meta("b", 100, 1_000, 10, None);
            new.format = format.into();
            new.compression = compression.into();
            assert!(judge(&new, &prev, 0.5).is_some(), "{format} {compression}");
            new.dump_bytes = 9_000;
            assert_eq!(judge(&new, &prev, 0.5), None, "{format} {compression}");
        }
        // A directory archive without pg_dump's compression: its files are the raw output.
        let mut new = meta("b", 1_000, 0, 10, None);
        new.format = DumpFormat::Directory.into();
        new.compression = Algorithm::None.into();
        assert!(judge(&new, &prev, 0.5).is_some());
        new.size_bytes = 9_000;
        assert_eq!(judge(&new, &prev, 0.5), None);
        // An empty previous backup never makes the next one suspect.
        assert_eq!(
            judge(&meta("b", 0, 0, 0, None), &meta("a", 0, 0, 0, None), 0.5),
            None
        );
    }

    #[test]
    fn archive_table_counts_are_compared_whatever_the_sizes() {
        // pg_dump-compressed custom against a plain dump: sizes say nothing, table counts do.
        let mut prev = meta("a", 1000, 1000, 10, Some(8));
        prev.compression = Algorithm::PgDump.into();
        let mut new = meta("b", 900, 9_000, 10, Some(0));
        new.format = DumpFormat::Plain.into();
        let s = judge(&new, &prev, 0.5).unwrap();
        assert!(
            s.reason.contains("archive fell from 8 to 0"),
            "{}",
            s.reason
        );
        // Both counts reported when both fell.
        let s = judge(
            &meta("b", 1000, 10_000, 2, Some(1)),
            &meta("a", 1000, 10_000, 10, Some(8)),
            0.5,
        )
        .unwrap();
        assert!(
            s.reason.contains("tables fell from 10 to 2")
                && s.reason.contains("archive fell from 8 to 1"),
            "{}",
            s.reason
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
