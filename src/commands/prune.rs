//! `aos-backup prune`: apply the retention policy to the complete backups of one database (or of
//! each database separately), remove leftovers of interrupted runs, and never touch unmanaged
//! files.

use super::Ctx;
use crate::catalog::{self, Status};
use crate::cli::PruneArgs;
use crate::error::Error;
use crate::lock::FolderLock;
use crate::retention::{self, Candidate, Policy};
use anyhow::{Context, Result};
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

/// Runs `aos-backup prune`.
pub fn run(ctx: &Ctx, args: &PruneArgs) -> Result<()> {
    let mut policy = ctx.settings.retention.clone();
    crate::config::overlay_policy(&mut policy, &args.policy);
    if policy.is_empty() {
        return Err(Error::usage("no retention policy is configured (every rule is unset or 0, which means off), so there is nothing to prune")
            .hint("set BACKUP_RETENTION_DAYS, BACKUP_KEEP_LAST, BACKUP_KEEP_DAILY... or pass --keep-last N, --max-age-days N (N of 1 or more)")
            .into());
    }
    let which = if args.all_databases {
        Databases::Each
    } else if let Some(db) = &args.database {
        Databases::One(db.clone())
    } else if ctx.settings.database_url.is_some() {
        let conn = ctx.conninfo()?;
        Databases::One(conn.effective_dbname(&|k| ctx.settings.env.var(k)))
    } else {
        return Err(Error::usage(
            "prune applies the policy to one database's backups, and no database is given",
        )
        .hint("set DATABASE_URL (its database), or pass --database NAME, or --all-databases for each database in the folder")
        .into());
    };
    let dir = ctx.backup_dir();
    if !dir.is_dir() {
        return Err(Error::usage(format!(
            "the backup folder {} does not exist",
            dir.display()
        ))
        .into());
    }
    let lock = crate::lock::acquire(&dir, "prune")?;
    apply(ctx, &dir, &policy, &which, None, args.dry_run, true, &lock)?;
    Ok(())
}

/// Applies `policy` in `dir` to the backups of `which` database(s); `protected` (a backup's file
/// name: the one a backup run just wrote) is never deleted. With `report` (the `prune` command)
/// the plan goes to stdout; after a backup, stdout carries only the backup's path, so the plan is
/// only logged.
///
/// The caller must hold `_lock`: it is what makes leftovers safe to remove.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    ctx: &Ctx,
    dir: &Path,
    policy: &Policy,
    which: &Databases,
    protected: Option<&str>,
    dry_run: bool,
    report: bool,
    _lock: &FolderLock,
) -> Result<()> {
    let entries = catalog::scan(dir)?;
    let in_folder = catalog::databases(&entries);
    let databases = match which {
        Databases::One(db) => vec![db.clone()],
        Databases::Each => in_folder.clone(),
    };
    let protected: Vec<&str> = protected.into_iter().collect();
    let mut lines = Vec::new();
    let mut json = Vec::new();
    let mut summaries = Vec::new();
    let verb = if dry_run { "would delete" } else { "deleted" };
    for db in &databases {
        let complete: Vec<&catalog::Entry> = entries
            .iter()
            .filter(|e| e.status == Status::Complete && e.database() == Some(db.as_str()))
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
        let decisions = retention::plan_full(&candidates, policy, ctx.now, &protected, &untrusted);
        if !candidates.is_empty() && decisions.iter().all(|d| !d.keep) {
            anyhow::bail!(
                "internal error: the retention plan would delete every backup of {db:?}; nothing was deleted"
            );
        }
        let shown_db = sanitize(db);
        let mut deleted = 0;
        for d in &decisions {
            let entry = complete
                .iter()
                .find(|e| e.name == d.id)
                .context("plan names an unknown backup")?;
            let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
            let action = if d.keep { "keep" } else { "delete" };
            lines.push(format!(
                "{action:<7} {}  {shown_db}  {}  {}",
                entry.id.as_deref().unwrap_or(&entry.name),
                d.time.format("%Y-%m-%d %H:%M:%S"),
                reasons.join(", ")
            ));
            json.push(serde_json::json!({
                "id": entry.id, "file": entry.name, "database": db, "time": d.time,
                "action": action, "reasons": d.reasons,
            }));
            if !d.keep && !dry_run {
                crate::fsutil::remove_any(&entry.path)
                    .with_context(|| format!("deleting {}", entry.path.display()))?;
                let meta = catalog::Meta::path_for(&entry.path);
                crate::fsutil::remove_any(&meta)
                    .with_context(|| format!("deleting {}", meta.display()))?;
                deleted += 1;
                tracing::info!("{verb} {} ({})", entry.name, reasons.join(", "));
            }
        }
        let kept = decisions.iter().filter(|d| d.keep).count();
        let gone = if dry_run {
            decisions.len() - kept
        } else {
            deleted
        };
        summaries.push(format!(
            "database {shown_db:?}: {verb} {gone} backup(s), kept {kept}"
        ));
    }
    if let Databases::One(db) = which {
        let others: Vec<&str> = in_folder
            .iter()
            .map(String::as_str)
            .filter(|d| d != db)
            .collect();
        if !others.is_empty() {
            tracing::info!(
                "backups of {} left alone (`prune --database NAME` or `--all-databases` applies the policy to them)",
                sanitize(&others.join(", "))
            );
        }
    }
    // We hold the folder lock, so no running aos-backup owns these leftovers.
    for e in entries
        .iter()
        .filter(|e| matches!(e.status, Status::Incomplete | Status::Orphaned))
    {
        let what = if e.status == Status::Incomplete {
            "leftover of an interrupted run"
        } else {
            "metadata without its backup"
        };
        lines.push(format!("remove  {}  ({what})", e.name));
        let mut item = serde_json::json!({ "file": e.name, "action": "remove", "reasons": [what] });
        if !dry_run {
            // A leftover is not a backup: one we cannot remove (another owner, immutable) is
            // worth a warning, not a failed run.
            match crate::fsutil::remove_any(&e.path) {
                Ok(()) => tracing::info!("removed {} ({what})", e.name),
                Err(err) => {
                    tracing::warn!(
                        "cannot remove {} ({what}): {err}; it is left in place (remove it by hand)",
                        e.path.display()
                    );
                    item["error"] = serde_json::Value::String(err.to_string());
                }
            }
        }
        json.push(item);
    }
    let unmanaged = entries
        .iter()
        .filter(|e| e.status == Status::Unmanaged)
        .count();
    if unmanaged > 0 {
        tracing::debug!("{unmanaged} unmanaged file(s) left alone");
    }
    if report {
        ctx.emit(
            &lines.join("\n"),
            &serde_json::json!({ "dry_run": dry_run, "databases": databases, "plan": json }),
        );
    } else {
        for l in &lines {
            tracing::debug!("{l}");
        }
    }
    if databases.is_empty() {
        summaries.push(format!("{verb} 0 backup(s): no complete backups"));
    }
    let last = summaries.len() - 1;
    if unmanaged > 0 {
        summaries[last].push_str(&format!(", {unmanaged} unmanaged file(s) untouched"));
    }
    for s in summaries {
        tracing::info!("{s}");
    }
    Ok(())
}

/// Database names come from sidecars; keep control characters off the terminal.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
