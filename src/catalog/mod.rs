//! The backup folder as a catalog: the scan that sorts files into complete (the metadata
//! sidecar, written last, is present), unmanaged and incomplete, and resolving `latest` or an id
//! to a backup.

pub mod gaps;
pub mod retention;

use crate::archive::meta::Meta;
use crate::archive::naming::{self, META_SUFFIX, PARTIAL_SUFFIX};
use crate::error::Error;
use crate::storage::{Listed, LocalFolder, Storage};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a catalog entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// A backup with its metadata: made by aos-backup and finished.
    Complete,
    /// A backup-looking file without metadata (copied in, or made by another tool).
    Unmanaged,
    /// A leftover of an interrupted run (`*.partial`).
    Incomplete,
    /// Metadata whose backup file is gone.
    #[serde(rename = "orphaned-metadata")]
    Orphaned,
}

impl Status {
    /// The name shown by `list` and in its JSON (`complete`, `orphaned-metadata`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Unmanaged => "unmanaged",
            Status::Incomplete => "incomplete",
            Status::Orphaned => "orphaned-metadata",
        }
    }
}

/// One thing found in the backup folder.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its path, for callers that open it in a local folder (for any other storage: its
    /// location, for messages). Storage-neutral code uses `name` with the storage.
    pub path: PathBuf,
    /// Its name, relative to the storage's root.
    pub name: String,
    /// What kind of thing it is: a finished backup, a leftover, an orphaned sidecar...
    pub status: Status,
    /// The id (from metadata, else from our file name).
    pub id: Option<String>,
    /// When it was made: metadata start time, else the file's modification time.
    pub time: DateTime<Utc>,
    /// Size on disk (metadata for complete backups, else the file's size).
    pub size: u64,
    /// Its readable sidecar; `None` without one, or when it cannot be read (see `meta_error`).
    pub meta: Option<Meta>,
    /// Why the metadata could not be used, if it exists but is unreadable.
    pub meta_error: Option<String>,
}

/// Lists the backup folder at `dir`. A missing folder is an empty catalog.
///
/// The local-folder form of [`scan_in`], for callers that hold a path.
pub fn scan(dir: &Path) -> Result<Vec<Entry>> {
    scan_in(&LocalFolder::new(dir))
}

/// Lists the backups in `storage`, newest first (ties by name, descending). A storage that does
/// not exist yet is an empty catalog.
pub fn scan_in(storage: &dyn Storage) -> Result<Vec<Entry>> {
    let listed: BTreeMap<String, Listed> = storage
        .list()
        .with_context(|| format!("reading the backup folder {}", storage.root_location()))?
        .into_iter()
        .map(|l| (l.name.clone(), l))
        .collect();
    let mut entries: Vec<Entry> = listed
        .values()
        .filter_map(|l| entry_for(storage, l, &listed))
        .collect();
    entries.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
    Ok(entries)
}

/// What the catalog makes of one listed name, among all of them; `None` for a name that is
/// not ours to show (notes, the lock file, other programs' files).
fn entry_for(
    storage: &dyn Storage,
    item: &Listed,
    listed: &BTreeMap<String, Listed>,
) -> Option<Entry> {
    let name = item.name.as_str();
    if let Some(base) = name.strip_suffix(PARTIAL_SUFFIX) {
        // `x.partial` and `x.meta.json.partial` are leftovers of interrupted runs.
        let ours = naming::looks_like_backup(base.trim_end_matches(META_SUFFIX))
            || base.ends_with(META_SUFFIX);
        return ours.then(|| Entry {
            id: naming::id_of(base.trim_end_matches(META_SUFFIX)).map(str::to_string),
            ..unread(storage, item, Status::Incomplete)
        });
    }
    if let Some(base) = name.strip_suffix(META_SUFFIX) {
        return (!listed.contains_key(base)).then(|| orphaned(storage, name));
    }
    // A backup's globals script is part of it; without its backup, it is left over like a sidecar.
    if let Some(owner) = naming::globals_owner(name) {
        return (!listed.contains_key(owner)).then(|| orphaned(storage, name));
    }
    if !naming::looks_like_backup(name) {
        return None;
    }
    let sidecar = format!("{name}{META_SUFFIX}");
    let read = listed
        .contains_key(&sidecar)
        .then(|| read_meta(storage, &sidecar));
    Some(match read {
        Some(Ok(meta)) => complete(storage, name, meta),
        // Unreadable metadata: the backup can't be trusted, but is never deleted.
        Some(Err(e)) => Entry {
            meta_error: Some(format!("{e:#}")),
            ..unmanaged(storage, item)
        },
        None => unmanaged(storage, item),
    })
}

/// An entry as the listing alone describes it: its time and size are the storage's.
fn unread(storage: &dyn Storage, item: &Listed, status: Status) -> Entry {
    Entry {
        path: local_path(storage, &item.name),
        name: item.name.clone(),
        status,
        id: None,
        time: item.modified.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        size: item.size,
        meta: None,
        meta_error: None,
    }
}

/// A backup-looking file without (readable) metadata.
fn unmanaged(storage: &dyn Storage, item: &Listed) -> Entry {
    Entry {
        id: naming::id_of(&item.name).map(str::to_string),
        ..unread(storage, item, Status::Unmanaged)
    }
}

/// A backup with its sidecar: time and size are the sidecar's.
fn complete(storage: &dyn Storage, name: &str, meta: Meta) -> Entry {
    Entry {
        path: local_path(storage, name),
        name: name.to_string(),
        status: Status::Complete,
        id: Some(meta.id.clone()),
        time: meta.started_at,
        size: meta.size_bytes,
        meta: Some(meta),
        meta_error: None,
    }
}

/// A sidecar whose backup is gone.
fn orphaned(storage: &dyn Storage, name: &str) -> Entry {
    let meta = read_meta(storage, name).ok();
    Entry {
        path: local_path(storage, name),
        name: name.to_string(),
        status: Status::Orphaned,
        id: meta.as_ref().map(|m| m.id.clone()),
        time: meta
            .as_ref()
            .map_or(DateTime::<Utc>::UNIX_EPOCH, |m| m.started_at),
        size: 0,
        meta,
        meta_error: None,
    }
}

/// The path of `name` in a local folder; elsewhere, its location.
fn local_path(storage: &dyn Storage, name: &str) -> PathBuf {
    storage.as_local().map_or_else(
        || PathBuf::from(storage.location(name)),
        |folder| folder.path(name),
    )
}

/// Reads and parses the sidecar `name`, with the messages of [`Meta::read`].
fn read_meta(storage: &dyn Storage, name: &str) -> Result<Meta> {
    let shown = storage.location(name);
    let text = storage
        .read_small(name)
        .with_context(|| format!("reading {shown}"))?;
    Meta::from_json(&text, &shown)
}

impl Entry {
    /// Whether it is a restore's safety backup (labelled
    /// [`SAFETY_LABEL`](naming::SAFETY_LABEL)).
    #[must_use]
    pub fn is_safety_backup(&self) -> bool {
        self.meta.as_ref().and_then(|m| m.label.as_deref()) == Some(naming::SAFETY_LABEL)
    }

    /// The database this backup belongs to, as its sidecar records it; `None` for files without
    /// readable metadata (unmanaged, leftovers), which cannot be attributed to any.
    #[must_use]
    pub fn database(&self) -> Option<&str> {
        self.meta.as_ref().map(|m| m.database.as_str())
    }

    /// Whether the backup is dated after `now` (clock skew, or a file from another host).
    #[must_use]
    pub fn is_future(&self, now: DateTime<Utc>) -> bool {
        self.time > now
    }

    /// For a complete backup whose sidecar's start time disagrees with the time in its file
    /// name (by more than `TIME_TOLERANCE_SECS`, 2 minutes): the time its name says. The id is made from
    /// the start time, so a disagreement means an edited or damaged sidecar, and its date
    /// cannot be trusted for retention or `latest`.
    #[must_use]
    pub fn time_mismatch(&self) -> Option<DateTime<Utc>> {
        let meta = self
            .meta
            .as_ref()
            .filter(|_| self.status == Status::Complete)?;
        let named = naming::id_of(&self.name).and_then(id_time)?;
        ((meta.started_at - named).num_seconds().abs() > TIME_TOLERANCE_SECS).then_some(named)
    }
}

/// How far a sidecar's start time may be from the time in the backup's name.
pub const TIME_TOLERANCE_SECS: i64 = 120;

/// The time at the start of an id (`YYYYMMDD-HHMMSS`, UTC), if it has one.
#[must_use]
pub fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let stamp = id.get(..15)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d-%H%M%S")
        .ok()
        .map(|t| t.and_utc())
}

/// What a lookup by `latest` or id prefix looks among.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Only this database's backups (plus, for an id prefix, files that belong to no known
    /// database); `None`: every backup in the folder.
    pub database: Option<&'a str>,
    /// What counts as "dated in the future".
    pub now: DateTime<Utc>,
}

impl Scope<'_> {
    fn admits(&self, e: &Entry) -> bool {
        match (self.database, e.database()) {
            (None, _) | (_, None) => true,
            (Some(wanted), Some(db)) => wanted == db,
        }
    }

    fn of_db(&self) -> String {
        self.database
            .map(|db| format!(" of database {db:?}"))
            .unwrap_or_default()
    }
}

/// The databases with complete backups in `entries`, sorted, without repeats.
#[must_use]
pub fn databases(entries: &[Entry]) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.status == Status::Complete)
        .filter_map(Entry::database)
        .collect();
    set.into_iter().map(str::to_string).collect()
}

/// The database subfolders of `dir` (the folders named by
/// [`database_folder`](naming::database_folder); links are not followed), by name; none when
/// `dir` does not exist.
pub fn database_folders(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", dir.display()))),
    };
    let mut folders: Vec<String> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            (e.file_type().ok()?.is_dir() && naming::database_of_folder(&name).is_some())
                .then_some(name)
        })
        .collect();
    folders.sort();
    Ok(folders)
}

/// Among `candidates` (newest first), the newest that is not suspect; newer suspect ones are
/// passed over with a warning. When every candidate is suspect, the newest, with a warning.
fn prefer_trusted<'a>(candidates: &[&'a Entry]) -> Option<&'a Entry> {
    let suspect = |e: &Entry| e.meta.as_ref().and_then(|m| m.suspect.clone());
    if let Some(good) = candidates.iter().copied().find(|e| suspect(e).is_none()) {
        for e in candidates.iter().take_while(|e| e.name != good.name) {
            if let Some(s) = suspect(e) {
                tracing::warn!(
                    "latest: passing over the newer backup {} because it is suspect ({}); give its id to use it",
                    e.id.as_deref().unwrap_or(&e.name),
                    crate::runtime::redact::sanitize(&s.reason)
                );
            }
        }
        return Some(good);
    }
    let newest = candidates.first().copied()?;
    if let Some(s) = suspect(newest) {
        tracing::warn!(
            "latest: every complete backup is suspect; using {} ({})",
            newest.id.as_deref().unwrap_or(&newest.name),
            crate::runtime::redact::sanitize(&s.reason)
        );
    }
    Some(newest)
}

fn warn_if_suspect(e: &Entry) {
    if let Some(s) = e.meta.as_ref().and_then(|m| m.suspect.as_ref()) {
        tracing::warn!(
            "{} is marked suspect: {}",
            e.id.as_deref().unwrap_or(&e.name),
            crate::runtime::redact::sanitize(&s.reason)
        );
    }
}

/// Finds a backup by `latest`, an id, a unique id prefix, or a file name in the folder.
///
/// `latest` is the newest complete backup of the scope's database that is not dated in the
/// future; only when every one of them is future-dated, the newest of those, with a warning.
/// Files without metadata are never `latest`. An id prefix matches the scope's backups and the
/// files that cannot be attributed to a database; a full id or file name matches any backup
/// (the caller checks whose it is).
/// `dir` is named in its errors.
pub fn resolve<'a>(
    entries: &'a [Entry],
    wanted: &str,
    dir: &Path,
    scope: &Scope<'_>,
) -> Result<&'a Entry> {
    find(entries, wanted, &dir.display().to_string(), scope)
}

/// [`resolve`], with the storage shown as `root` in errors.
fn find<'a>(
    entries: &'a [Entry],
    wanted: &str,
    root: &str,
    scope: &Scope<'_>,
) -> Result<&'a Entry> {
    let usable = |e: &&Entry| matches!(e.status, Status::Complete | Status::Unmanaged);
    if wanted == "latest" {
        return latest(entries, root, scope);
    }
    if let Some(e) = entries
        .iter()
        .filter(usable)
        .find(|e| e.id.as_deref() == Some(wanted) || e.name == wanted)
    {
        warn_if_suspect(e);
        return Ok(e);
    }
    let prefixed = |e: &&Entry| e.id.as_deref().is_some_and(|id| id.starts_with(wanted));
    let matches: Vec<&Entry> = entries
        .iter()
        .filter(usable)
        .filter(prefixed)
        .filter(|e| scope.admits(e))
        .collect();
    match matches.as_slice() {
        [one] => {
            warn_if_suspect(one);
            Ok(one)
        }
        [] => {
            let elsewhere: Vec<String> = entries
                .iter()
                .filter(usable)
                .filter(prefixed)
                .filter_map(|e| {
                    Some(format!(
                        "{} of {}",
                        e.id.as_deref()?,
                        crate::runtime::redact::sanitize(e.database()?)
                    ))
                })
                .take(5)
                .collect();
            if elsewhere.is_empty() {
                Err(Error::usage(format!(
                    "{wanted:?} is neither a file nor a backup id in {root}"
                ))
                .hint("see `aos-backup list` for ids, or give a path to a backup file")
                .into())
            } else {
                Err(Error::usage(format!(
                    "{wanted:?} matches no backup{} but backups of other databases: {}",
                    scope.of_db(),
                    elsewhere.join(", ")
                ))
                .hint("to restore another database's backup, add --from-database NAME")
                .into())
            }
        }
        many => Err(Error::usage(format!(
            "{wanted:?} matches {} backups{} ({})",
            many.len(),
            scope.of_db(),
            many.iter()
                .filter_map(|e| e.id.clone())
                .take(5)
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .hint("give more of the id")
        .into()),
    }
}

/// `latest` within the scope; see [`resolve`].
fn latest<'a>(entries: &'a [Entry], root: &str, scope: &Scope<'_>) -> Result<&'a Entry> {
    let in_scope: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.status == Status::Complete && scope.admits(e))
        .collect();
    // A restore's safety backup is an undo point, named by its id: `latest` passes over it
    // unless it is all there is.
    let regular: Vec<&Entry> = in_scope
        .iter()
        .copied()
        .filter(|e| !e.is_safety_backup())
        .collect();
    let complete = if regular.is_empty() {
        in_scope
    } else {
        regular
    };
    // Entries are sorted newest first.
    let first = complete.first().copied();
    let current: Vec<&Entry> = complete
        .iter()
        .copied()
        .filter(|e| !e.is_future(scope.now) && e.time_mismatch().is_none())
        .collect();
    if let Some(e) = prefer_trusted(&current) {
        for m in complete.iter().take_while(|m| m.name != e.name) {
            if let Some(named) = m.time_mismatch() {
                tracing::warn!(
                    "latest: passing over {}: its metadata says it was taken {}, its name says {}; give its id to use it",
                    m.id.as_deref().unwrap_or(&m.name),
                    m.time.format("%Y-%m-%d %H:%M:%S UTC"),
                    named.format("%Y-%m-%d %H:%M:%S UTC")
                );
            }
        }
        return Ok(e);
    }
    if let Some(e) = first.filter(|e| !e.is_future(scope.now)) {
        tracing::warn!(
            "every backup{} has a time that disagrees with its name (or is dated in the future); `latest` is {}: check its metadata",
            scope.of_db(),
            e.id.as_deref().unwrap_or(&e.name)
        );
        return Ok(e);
    }
    if let Some(e) = first {
        tracing::warn!(
            "every backup{} is dated in the future; `latest` is {}, dated {} (now is {}): check the clocks",
            scope.of_db(),
            e.id.as_deref().unwrap_or(&e.name),
            e.time.format("%Y-%m-%d %H:%M:%S UTC"),
            scope.now.format("%Y-%m-%d %H:%M:%S UTC")
        );
        return Ok(e);
    }
    let others: Vec<String> = databases(entries)
        .into_iter()
        .filter(|db| Some(db.as_str()) != scope.database)
        .collect();
    let mut err = Error::usage(format!("no complete backup{} in {root}", scope.of_db()));
    err = if others.is_empty() {
        err.hint("make one with `aos-backup backup`, or give a file path")
    } else {
        err.hint(format!(
            "the folder holds backups of {}; to restore one of them, add --from-database NAME",
            crate::runtime::redact::sanitize(&others.join(", "))
        ))
    };
    Err(err.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// 2024-01-01 00:00:00 UTC: ids of that day agree with their sidecar's time.
    const BASE: i64 = 1_704_067_200;

    fn meta(id: &str, file: &str, secs: i64) -> Meta {
        let t = Utc.timestamp_opt(BASE + secs, 0).unwrap();
        Meta {
            id: id.into(),
            started_at: t,
            finished_at: t,
            ..Meta::for_test(file, 3, "")
        }
    }

    #[test]
    fn scan_sorts_files_into_statuses_and_resolves_ids() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (id, secs) in [("20240101-000000", 0), ("20240102-000000", 86_400)] {
            let name = format!("aos-backup-{id}.dump.zst");
            std::fs::write(d.join(&name), "abc").unwrap();
            meta(id, &name, secs)
                .write(&Meta::path_for(&d.join(&name)))
                .unwrap();
        }
        std::fs::write(d.join("backup_2024.sql.gz"), "x").unwrap();
        std::fs::write(d.join("aos-backup-20240103-000000.dump.zst.partial"), "x").unwrap();
        std::fs::write(
            d.join("aos-backup-20231231-000000.dump.meta.json"),
            serde_json::to_vec(&meta("20231231-000000", "gone", -5)).unwrap(),
        )
        .unwrap();
        std::fs::write(d.join("notes.txt"), "x").unwrap();
        let entries = scan(d).unwrap();
        let by = |s: Status| entries.iter().filter(|e| e.status == s).count();
        assert_eq!(by(Status::Complete), 2);
        assert_eq!(by(Status::Unmanaged), 1);
        assert_eq!(by(Status::Incomplete), 1);
        assert_eq!(by(Status::Orphaned), 1);
        assert_eq!(entries.len(), 5);
        let all = Scope {
            database: None,
            now: Utc::now(),
        };
        assert_eq!(
            resolve(&entries, "latest", d, &all).unwrap().id.as_deref(),
            Some("20240102-000000")
        );
        assert_eq!(
            resolve(&entries, "20240101", d, &all)
                .unwrap()
                .id
                .as_deref(),
            Some("20240101-000000")
        );
        assert!(
            resolve(&entries, "2024010", d, &all).is_err(),
            "ambiguous prefix"
        );
        assert!(resolve(&entries, "nope", d, &all).is_err());
    }

    #[test]
    fn a_globals_script_is_part_of_its_backup_and_left_over_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let name = "aos-backup-20240101-000000.dump.zst";
        std::fs::write(d.join(name), "abc").unwrap();
        meta("20240101-000000", name, 0)
            .write(&Meta::path_for(&d.join(name)))
            .unwrap();
        std::fs::write(d.join(naming::globals_name(name, false)), "CREATE ROLE x;").unwrap();
        let entries = scan(d).unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].status, Status::Complete);
        std::fs::remove_file(d.join(name)).unwrap();
        let entries = scan(d).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|e| e.status == Status::Orphaned));
    }

    #[test]
    fn latest_and_prefixes_stay_within_the_database_and_skip_future_dates() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // (id, database, seconds after the base time); "now" is base + 100.
        for (id, db, secs) in [
            ("20240101-000001", "shop", 1),
            ("20240101-000002", "shop2", 2),
            ("20240101-000003", "shop", 3),
            ("20250101-000000", "shop", 1_000_000),
            ("20240101-000004", "shop2", 4),
        ] {
            let name = format!("aos-backup-{id}.dump.zst");
            std::fs::write(d.join(&name), "abc").unwrap();
            let mut m = meta(id, &name, secs);
            m.database = db.into();
            m.write(&Meta::path_for(&d.join(&name))).unwrap();
        }
        // A file of ours without a sidecar, newer than all: never `latest`.
        std::fs::write(d.join("aos-backup-20240101-000050.dump.zst"), "x").unwrap();
        let entries = scan(d).unwrap();
        let now = Utc.timestamp_opt(BASE + 100, 0).unwrap();
        let scope = |database| Scope { database, now };
        let id = |wanted, database| {
            resolve(&entries, wanted, d, &scope(database))
                .map(|e| e.id.clone().unwrap())
                .map_err(|e| format!("{e:#}"))
        };
        assert_eq!(id("latest", Some("shop")).unwrap(), "20240101-000003");
        assert_eq!(id("latest", Some("shop2")).unwrap(), "20240101-000004");
        assert_eq!(id("latest", None).unwrap(), "20240101-000004");
        let err = id("latest", Some("shop3")).unwrap_err();
        assert!(
            err.contains("no complete backup of database \"shop3\""),
            "{err}"
        );
        // Prefixes: ambiguous across the folder, unique within a database.
        assert!(id("20240101-00000", None).is_err());
        assert!(id("20240101-00000", Some("shop")).is_err(), "two of shop");
        assert_eq!(
            id("20240101-000002", Some("shop")).unwrap(),
            "20240101-000002"
        );
        assert!(
            id("20240101-0000", Some("shop2")).is_err(),
            "two of shop2 and one without"
        );
        let err = id("20240101-00000", Some("shop3")).unwrap_err();
        assert!(err.contains("other databases"), "{err}");
        // The unmanaged file is found by its id and prefix (it has no database).
        assert_eq!(
            id("20240101-00005", Some("shop")).unwrap(),
            "20240101-000050"
        );
        // Only future-dated backups: the newest of them, with a warning.
        let only_future: Vec<Entry> = entries
            .iter()
            .filter(|e| e.id.as_deref() == Some("20250101-000000"))
            .cloned()
            .collect();
        let e = resolve(&only_future, "latest", d, &scope(Some("shop"))).unwrap();
        assert_eq!(e.id.as_deref(), Some("20250101-000000"));
        assert_eq!(databases(&entries), ["shop", "shop2"]);
    }

    #[test]
    fn json_status_is_the_text_status() {
        for s in [
            Status::Complete,
            Status::Unmanaged,
            Status::Incomplete,
            Status::Orphaned,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn a_temp_is_no_backup_until_published_with_its_sidecar() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let folder = LocalFolder::new(dir.path());
        let name = "aos-backup-20240101-000000.dump.zst";
        let mut w = folder.create_partial(name).unwrap();
        w.write_all(b"abc").unwrap();
        w.finish().unwrap();
        let statuses = || -> Vec<(String, Status)> {
            scan_in(&folder)
                .unwrap()
                .into_iter()
                .map(|e| (e.name, e.status))
                .collect()
        };
        assert_eq!(
            statuses(),
            [(crate::storage::partial_name(name), Status::Incomplete)]
        );
        folder
            .publish(&crate::storage::partial_name(name), name)
            .unwrap();
        assert_eq!(statuses(), [(name.to_string(), Status::Unmanaged)]);
        meta("20240101-000000", name, 0)
            .write(&Meta::path_for(&folder.path(name)))
            .unwrap();
        assert_eq!(statuses(), [(name.to_string(), Status::Complete)]);
        let entries = scan_in(&folder).unwrap();
        assert_eq!(entries[0].path, dir.path().join(name));
    }

    #[test]
    fn any_storage_is_a_catalog() {
        use crate::storage::memory::Memory;
        let store = Memory::default();
        let name = "aos-backup-20240101-000000.dump.zst";
        store.put(name, "abc");
        let json = serde_json::to_vec(&meta("20240101-000000", name, 0)).unwrap();
        store.put(&format!("{name}{META_SUFFIX}"), json.clone());
        store.put("aos-backup-20231231-000000.dump.meta.json", json);
        store.put("aos-backup-20240102-000000.dir/toc.dat", "t");
        store.put("aos-backup-20240103-000000.sql.gz.partial", "x");
        store.put("aos-backup-20240104-000000.dump.zst.meta.json", "{not json");
        store.put("aos-backup-20240104-000000.dump.zst", "y");
        let entries = scan_in(&store).unwrap();
        let status = |n: &str| entries.iter().find(|e| e.name == n).map(|e| e.status);
        assert_eq!(status(name), Some(Status::Complete));
        assert_eq!(
            status("aos-backup-20231231-000000.dump.meta.json"),
            Some(Status::Orphaned)
        );
        assert_eq!(
            status("aos-backup-20240102-000000.dir"),
            Some(Status::Unmanaged)
        );
        assert_eq!(
            status("aos-backup-20240103-000000.sql.gz.partial"),
            Some(Status::Incomplete)
        );
        let damaged = entries
            .iter()
            .find(|e| e.name == "aos-backup-20240104-000000.dump.zst")
            .unwrap();
        assert_eq!(damaged.status, Status::Unmanaged);
        let why = damaged.meta_error.as_deref().unwrap();
        assert!(
            why.contains(
                "metadata mem:aos-backup-20240104-000000.dump.zst.meta.json is unreadable"
            ),
            "{why}"
        );
        assert_eq!(
            damaged.path,
            Path::new("mem:aos-backup-20240104-000000.dump.zst")
        );
        let all = Scope {
            database: None,
            now: Utc::now(),
        };
        let err = find(&entries, "nope", &store.root_location(), &all).unwrap_err();
        assert!(format!("{err:#}").contains("backup id in mem:"), "{err:#}");
    }

    #[test]
    fn missing_folder_is_empty() {
        assert!(scan(Path::new("/nonexistent/aos-backup-test"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_sidecar_time_that_disagrees_with_the_name_is_flagged_and_never_latest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // (id, seconds after the base time): the second's sidecar claims a later time.
        for (id, secs) in [
            ("20240101-000000", 0),
            ("20240101-000100-label", 60),
            ("20240101-000010", 86_400),
            ("20240101-000020", 20 + TIME_TOLERANCE_SECS),
        ] {
            let name = format!("aos-backup-{id}.dump.zst");
            std::fs::write(d.join(&name), "abc").unwrap();
            meta(id, &name, secs)
                .write(&Meta::path_for(&d.join(&name)))
                .unwrap();
        }
        let entries = scan(d).unwrap();
        let by = |id: &str| {
            entries
                .iter()
                .find(|e| e.id.as_deref() == Some(id))
                .unwrap()
        };
        assert_eq!(by("20240101-000000").time_mismatch(), None);
        assert_eq!(by("20240101-000100-label").time_mismatch(), None);
        assert_eq!(
            by("20240101-000020").time_mismatch(),
            None,
            "within the tolerance"
        );
        assert_eq!(
            by("20240101-000010").time_mismatch(),
            Some(Utc.timestamp_opt(BASE + 10, 0).unwrap())
        );
        let now = Utc.timestamp_opt(BASE + 2 * 86_400, 0).unwrap();
        let scope = Scope {
            database: None,
            now,
        };
        let latest = resolve(&entries, "latest", d, &scope).unwrap();
        assert_eq!(latest.id.as_deref(), Some("20240101-000020"));
        // Alone, it is still `latest` (with a warning).
        let alone: Vec<Entry> = entries
            .iter()
            .filter(|e| e.id.as_deref() == Some("20240101-000010"))
            .cloned()
            .collect();
        let e = resolve(&alone, "latest", d, &scope).unwrap();
        assert_eq!(e.id.as_deref(), Some("20240101-000010"));
    }

    #[test]
    fn only_real_folders_with_database_folder_names_are_database_folders() {
        let dir = tempfile::tempdir().unwrap();
        for d in [
            "shop",
            "we%2Fird",
            "aos-backup-20250101-000000.dir",
            "a.b",
            "%2e",
        ] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("file"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("shop"), dir.path().join("link")).unwrap();
        assert_eq!(database_folders(dir.path()).unwrap(), ["shop", "we%2Fird"]);
        assert!(database_folders(&dir.path().join("missing"))
            .unwrap()
            .is_empty());
    }
}
