//! Applying the retention plan to the folder: which backups each database has, the pure plan of
//! `retention`, the files removed through the [`Storage`] seam under its lock, and a typed report
//! of it all. Below the commands, so that `prune` and `backup` (which prunes after a good run)
//! share it.

use crate::archive::naming::{self, META_SUFFIX};
use crate::catalog::retention::{self, Candidate, Decision, Policy};
use crate::catalog::{self, Status};
use crate::storage::lock::FolderLock;
use crate::storage::{LocalFolder, Lock, Storage};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use std::path::Path;

/// Whose backups the policy applies to: retention never counts one database's backups against
/// another's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Databases {
    /// The backups of this database only.
    One(String),
    /// The backups of each database in the folder, each set on its own.
    Each,
}

/// One complete backup and what the plan decided for it.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The backup's id, when it has one.
    pub id: Option<String>,
    /// Its file name in the folder.
    pub file: String,
    /// Keep or delete, and every rule that kept it.
    pub decision: Decision,
}

/// The plan for one database's backups, and how many were deleted.
#[derive(Debug, Clone)]
pub struct DatabaseOutcome {
    /// The database, as the backups' metadata names it.
    pub database: String,
    /// Its complete backups, newest first, each with its decision.
    pub planned: Vec<Planned>,
    /// Backups actually deleted (0 on a dry run).
    pub deleted: usize,
}

/// A leftover of an interrupted run, or a sidecar without its backup.
#[derive(Debug, Clone)]
pub struct Leftover {
    /// Its file name in the folder.
    pub file: String,
    /// What it is, in words: a leftover of an interrupted run, or metadata without its backup.
    pub what: &'static str,
    /// Why it could not be removed (it is left in place).
    pub error: Option<String>,
}

/// What [`apply`] decided and did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Nothing was deleted: the report says what would be.
    pub dry_run: bool,
    /// The databases the policy was applied to.
    pub databases: Vec<String>,
    /// One per database of `databases`, in the same order.
    pub outcomes: Vec<DatabaseOutcome>,
    /// Partial files and orphaned sidecars: removed, unless this is a dry run or removal failed.
    pub leftovers: Vec<Leftover>,
    /// Files that are not ours, left alone.
    pub unmanaged: usize,
}

impl Report {
    fn verb(&self) -> &'static str {
        if self.dry_run {
            "would delete"
        } else {
            "deleted"
        }
    }

    /// The plan, a line per backup and per leftover.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for o in &self.outcomes {
            let shown_db = sanitize(&o.database);
            for p in &o.planned {
                let d = &p.decision;
                let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
                let action = if d.keep { "keep" } else { "delete" };
                lines.push(format!(
                    "{action:<7} {}  {shown_db}  {}  {}",
                    p.id.as_deref().unwrap_or(&p.file),
                    d.time.format("%Y-%m-%d %H:%M:%S"),
                    reasons.join(", ")
                ));
            }
        }
        for l in &self.leftovers {
            lines.push(format!("remove  {}  ({})", l.file, l.what));
        }
        lines
    }

    /// The plan as `prune --json` prints it.
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        let mut plan = Vec::new();
        for o in &self.outcomes {
            for p in &o.planned {
                let d = &p.decision;
                let action = if d.keep { "keep" } else { "delete" };
                plan.push(serde_json::json!({
                    "id": p.id, "file": p.file, "database": o.database, "time": d.time,
                    "action": action, "reasons": d.reasons,
                }));
            }
        }
        for l in &self.leftovers {
            let mut item =
                serde_json::json!({ "file": l.file, "action": "remove", "reasons": [l.what] });
            if let Some(err) = &l.error {
                item["error"] = serde_json::Value::String(err.clone());
            }
            plan.push(item);
        }
        serde_json::json!({ "dry_run": self.dry_run, "databases": self.databases, "plan": plan })
    }

    /// One summary line per database (the last one counts the unmanaged files).
    #[must_use]
    pub fn summaries(&self) -> Vec<String> {
        let verb = self.verb();
        let mut summaries: Vec<String> = self
            .outcomes
            .iter()
            .map(|o| {
                let kept = o.planned.iter().filter(|p| p.decision.keep).count();
                let gone = if self.dry_run {
                    o.planned.len() - kept
                } else {
                    o.deleted
                };
                format!(
                    "database {:?}: {verb} {gone} backup(s), kept {kept}",
                    sanitize(&o.database)
                )
            })
            .collect();
        if self.databases.is_empty() {
            summaries.push(format!("{verb} 0 backup(s): no complete backups"));
        }
        if self.unmanaged > 0 {
            if let Some(last) = summaries.last_mut() {
                last.push_str(&format!(", {} unmanaged file(s) untouched", self.unmanaged));
            }
        }
        summaries
    }
}

/// Applies `policy` in the backup folder `dir`: the local-folder form of [`apply_in`], for
/// callers that hold a path and the folder's lock.
pub fn apply(
    dir: &Path,
    policy: &Policy,
    which: &Databases,
    protected: Option<&str>,
    now: DateTime<Utc>,
    dry_run: bool,
    _lock: &FolderLock,
) -> Result<Report> {
    let run = Run {
        storage: &LocalFolder::new(dir),
        policy,
        protected,
        now,
        dry_run,
    };
    run.apply(which)
}

/// Applies `policy` in `storage` to the backups of `which` database(s), as of `now`; `protected`
/// (a backup's file name: the one a backup run just wrote) is never deleted. Deletions and
/// removals are logged as they happen; the plan itself is returned for the caller to show.
///
/// The caller must hold `_lock` (from [`Storage::lock`]): it is what makes leftovers safe to
/// remove.
pub fn apply_in(
    storage: &dyn Storage,
    policy: &Policy,
    which: &Databases,
    protected: Option<&str>,
    now: DateTime<Utc>,
    dry_run: bool,
    _lock: &Lock,
) -> Result<Report> {
    let run = Run {
        storage,
        policy,
        protected,
        now,
        dry_run,
    };
    run.apply(which)
}

/// One application of a policy to a storage.
struct Run<'a> {
    storage: &'a dyn Storage,
    policy: &'a Policy,
    protected: Option<&'a str>,
    now: DateTime<Utc>,
    dry_run: bool,
}

impl Run<'_> {
    /// The whole run: each database's plan carried out, then the leftovers.
    fn apply(&self, which: &Databases) -> Result<Report> {
        let entries = catalog::scan_in(self.storage)?;
        let in_folder = catalog::databases(&entries);
        let databases = match which {
            Databases::One(db) => vec![db.clone()],
            Databases::Each => in_folder.clone(),
        };
        let outcomes = databases
            .iter()
            .map(|db| self.database(&entries, db))
            .collect::<Result<Vec<_>>>()?;
        if let Databases::One(db) = which {
            note_others(&in_folder, db);
        }
        let leftovers = self.leftovers(&entries);
        let unmanaged = entries
            .iter()
            .filter(|e| e.status == Status::Unmanaged)
            .count();
        if unmanaged > 0 {
            tracing::debug!("{unmanaged} unmanaged file(s) left alone");
        }
        Ok(Report {
            dry_run: self.dry_run,
            databases,
            outcomes,
            leftovers,
            unmanaged,
        })
    }

    /// The plan for `db`'s complete backups, carried out unless this is a dry run.
    fn database(&self, entries: &[catalog::Entry], db: &str) -> Result<DatabaseOutcome> {
        let complete: Vec<&catalog::Entry> = entries
            .iter()
            .filter(|e| e.status == Status::Complete && e.database() == Some(db))
            .collect();
        let candidates: Vec<Candidate> = complete
            .iter()
            .map(|e| Candidate {
                id: e.name.clone(),
                time: e.time,
            })
            .collect();
        // Backups whose recorded time disagrees with their name: kept, and counted in no rule.
        let untrusted: Vec<&str> = complete
            .iter()
            .filter(|e| e.time_mismatch().is_some())
            .map(|e| e.name.as_str())
            .collect();
        let protected: Vec<&str> = self.protected.into_iter().collect();
        let safety: Vec<&str> = complete
            .iter()
            .filter(|e| e.is_safety_backup())
            .map(|e| e.name.as_str())
            .collect();
        let keep = self
            .policy
            .safety_backup_keep
            .unwrap_or(retention::DEFAULT_SAFETY_BACKUP_KEEP);
        let decisions = retention::plan_with_safety(
            &candidates,
            self.policy,
            self.now,
            (&protected, &untrusted),
            &safety,
            keep,
        );
        if !candidates.is_empty() && decisions.iter().all(|d| !d.keep) {
            anyhow::bail!(
                "internal error: the retention plan would delete every backup of {db:?}; nothing was deleted"
            );
        }
        let mut planned = Vec::new();
        let mut deleted = 0;
        for d in decisions {
            let entry = complete
                .iter()
                .find(|e| e.name == d.id)
                .context("plan names an unknown backup")?;
            if !d.keep && !self.dry_run {
                self.delete(entry, &d)?;
                deleted += 1;
            }
            planned.push(Planned {
                id: entry.id.clone(),
                file: entry.name.clone(),
                decision: d,
            });
        }
        Ok(DatabaseOutcome {
            database: db.to_string(),
            planned,
            deleted,
        })
    }

    /// Deletes a backup, then its globals script, its last drill's result and its swaps, then
    /// its sidecar.
    fn delete(&self, entry: &catalog::Entry, d: &Decision) -> Result<()> {
        let sidecar = format!("{}{META_SUFFIX}", entry.name);
        let globals = globals_of(entry);
        let drill = format!("{}{}", entry.name, crate::archive::drill::DRILL_SUFFIX);
        let swaps = format!("{}{}", entry.name, crate::archive::swaps::SWAPS_SUFFIX);
        // Read before the record goes: the old databases it names stay on the server.
        let kept_by_swaps: Vec<crate::archive::swaps::SwapRecord> = self
            .storage
            .read_small(&swaps)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Vec<_>>(&bytes).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|s: &crate::archive::swaps::SwapRecord| !s.old_dropped)
            .collect();
        let parts = std::iter::once(entry.name.as_str())
            .chain(globals.as_deref())
            .chain([drill.as_str(), swaps.as_str(), sidecar.as_str()]);
        for name in parts {
            self.storage
                .remove(name)
                .with_context(|| format!("deleting {}", self.storage.location(name)))?;
        }
        for kept in kept_by_swaps {
            tracing::warn!(
                "{}: its swap of {} into {:?} on {} kept the old database {:?}, which stays on the server and which `list` no longer names now that the backup is deleted; unless dropped since: {}",
                sanitize(&entry.name),
                kept.swapped_at.format("%Y-%m-%d %H:%M UTC"),
                sanitize(&kept.database),
                sanitize(&kept.server),
                sanitize(&kept.old),
                crate::runtime::shell::drop_database_command(&kept.old)
            );
        }
        let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
        tracing::info!(
            file = %entry.name,
            bytes = entry.size,
            database = entry.database().unwrap_or(""),
            "deleted {} ({})",
            entry.name,
            reasons.join(", ")
        );
        Ok(())
    }

    /// Leftovers of interrupted runs and sidecars without their backup, removed unless this is
    /// a dry run. We hold the lock, so no running aos-backup owns them.
    fn leftovers(&self, entries: &[catalog::Entry]) -> Vec<Leftover> {
        entries
            .iter()
            .filter(|e| matches!(e.status, Status::Incomplete | Status::Orphaned))
            .map(|e| {
                let what = if e.status == Status::Incomplete {
                    "leftover of an interrupted run"
                } else if naming::globals_owner(&e.name).is_some() {
                    "globals script without its backup"
                } else {
                    "metadata without its backup"
                };
                let error = (!self.dry_run)
                    .then(|| self.remove_leftover(e, what))
                    .flatten();
                Leftover {
                    file: e.name.clone(),
                    what,
                    error,
                }
            })
            .collect()
    }

    /// Removes one leftover; why it could not be, if so. A leftover is not a backup: one we
    /// cannot remove (another owner, immutable) is worth a warning, not a failed run.
    fn remove_leftover(&self, e: &catalog::Entry, what: &str) -> Option<String> {
        match self.storage.remove(&e.name) {
            Ok(()) => {
                tracing::info!("removed {} ({what})", e.name);
                None
            }
            Err(err) => {
                tracing::warn!(
                    "cannot remove {} ({what}): {err}; it is left in place (remove it by hand)",
                    self.storage.location(&e.name)
                );
                Some(err.to_string())
            }
        }
    }
}

/// The globals script the sidecar of `entry` records, when it is this backup's own (an edited
/// sidecar must not make prune delete another file).
fn globals_of(entry: &catalog::Entry) -> Option<String> {
    let file = &entry.meta.as_ref()?.globals.as_ref()?.file;
    (naming::globals_owner(file) == Some(entry.name.as_str())).then(|| file.clone())
}

/// Says which databases' backups a one-database run left alone.
fn note_others(in_folder: &[String], db: &str) {
    let others: Vec<&str> = in_folder
        .iter()
        .map(String::as_str)
        .filter(|d| *d != db)
        .collect();
    if !others.is_empty() {
        tracing::info!(
            "backups of {} left alone (`prune --database NAME` or `--all-databases` applies the policy to them)",
            sanitize(&others.join(", "))
        );
    }
}

/// Database names come from sidecars; keep control characters off the terminal.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::retention::Reason;

    fn planned(file: &str, keep: bool, reason: Reason) -> Planned {
        Planned {
            id: None,
            file: file.into(),
            decision: Decision {
                id: file.into(),
                time: DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
                keep,
                reasons: vec![reason],
            },
        }
    }

    #[test]
    fn apply_in_deletes_through_the_storage_and_removes_leftovers() {
        use crate::storage::memory::Memory;
        let store = Memory::default();
        for day in ["01", "02", "03"] {
            let id = format!("202401{day}-000000");
            let name = format!("aos-backup-{id}.dump.zst");
            let meta = serde_json::json!({
                "format_version": 1, "id": id, "label": null, "file": name,
                "started_at": format!("2024-01-{day}T00:00:00Z"),
                "finished_at": format!("2024-01-{day}T00:00:00Z"), "duration_ms": 0,
                "database": "app", "host": "h", "port": 5432, "server_version": "15",
                "pg_dump_version": "15", "tool_version": "0", "format": "custom",
                "compression": "zstd", "compression_level": 1, "encryption": "none",
                "size_bytes": 3, "dump_bytes": 3, "sha256": "", "tables": 1,
            });
            store.put(&name, "abc");
            store.put(&format!("{name}{META_SUFFIX}"), meta.to_string());
        }
        store.put("aos-backup-20240104-000000.dump.zst.partial", "x");
        store.put("notes.txt", "mine");
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let now = DateTime::parse_from_rfc3339("2024-01-05T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let which = Databases::One("app".into());
        let lock = store.lock("prune").unwrap();
        let dry = apply_in(&store, &policy, &which, None, now, true, &lock).unwrap();
        assert_eq!(dry.outcomes[0].deleted, 0);
        assert_eq!(store.names().len(), 8, "a dry run changes nothing");
        let protected = Some("aos-backup-20240101-000000.dump.zst");
        let report = apply_in(&store, &policy, &which, protected, now, false, &lock).unwrap();
        assert_eq!(report.outcomes[0].deleted, 1);
        assert_eq!(report.leftovers.len(), 1);
        assert_eq!(
            store.names(),
            [
                "aos-backup-20240101-000000.dump.zst",
                "aos-backup-20240101-000000.dump.zst.meta.json",
                "aos-backup-20240103-000000.dump.zst",
                "aos-backup-20240103-000000.dump.zst.meta.json",
                "notes.txt",
            ]
        );
    }

    #[test]
    fn report_renders_plan_json_and_summaries() {
        let report = Report {
            dry_run: true,
            databases: vec!["app\n".into()],
            outcomes: vec![DatabaseOutcome {
                database: "app\n".into(),
                planned: vec![
                    planned("new.dump", true, Reason::Newest),
                    planned("old.dump", false, Reason::Unmatched),
                ],
                deleted: 0,
            }],
            leftovers: vec![Leftover {
                file: "x.partial".into(),
                what: "leftover of an interrupted run",
                error: Some("denied".into()),
            }],
            unmanaged: 2,
        };
        let lines = report.lines();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("delete  old.dump  app?  2024-05-01 10:00:00"));
        assert_eq!(
            lines[2],
            "remove  x.partial  (leftover of an interrupted run)"
        );
        assert_eq!(
            report.summaries(),
            ["database \"app?\": would delete 1 backup(s), kept 1, 2 unmanaged file(s) untouched"]
        );
        let json = report.json();
        assert_eq!(json["dry_run"], true);
        assert_eq!(json["plan"][1]["action"], "delete");
        assert_eq!(json["plan"][2]["error"], "denied");

        let empty = Report {
            dry_run: false,
            databases: vec![],
            outcomes: vec![],
            leftovers: vec![],
            unmanaged: 0,
        };
        assert_eq!(
            empty.summaries(),
            ["deleted 0 backup(s): no complete backups"]
        );
    }
}
