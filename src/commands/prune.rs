//! `aos-backup prune`: apply the retention policy to the complete backups, remove leftovers of
//! interrupted runs, and never touch unmanaged files.

use super::Ctx;
use crate::catalog::{self, Status};
use crate::cli::PruneArgs;
use crate::error::Error;
use crate::lock::FolderLock;
use crate::retention::{self, Candidate, Policy};
use anyhow::{Context, Result};
use std::path::Path;

/// Runs `aos-backup prune`.
pub fn run(ctx: &Ctx, args: &PruneArgs) -> Result<()> {
    let mut policy = ctx.settings.retention.clone();
    crate::config::overlay_policy(&mut policy, &args.policy);
    if policy.is_empty() {
        return Err(Error::usage("no retention policy is configured, so there is nothing to prune")
            .hint("set BACKUP_RETENTION_DAYS, BACKUP_KEEP_LAST, BACKUP_KEEP_DAILY... or pass --keep-last N, --max-age-days N")
            .into());
    }
    let dir = ctx.backup_dir();
    if !dir.is_dir() {
        return Err(Error::usage(format!(
            "the backup folder {} does not exist",
            dir.display()
        ))
        .into());
    }
    let lock = crate::lock::acquire(&dir, "prune")?;
    apply(ctx, &dir, &policy, args.dry_run, true, &lock)?;
    Ok(())
}

/// Applies `policy` in `dir`. With `report` (the `prune` command) the plan goes to stdout; after
/// a backup, stdout carries only the backup's path, so the plan is only logged.
///
/// The caller must hold `_lock`: it is what makes leftovers safe to remove.
pub fn apply(
    ctx: &Ctx,
    dir: &Path,
    policy: &Policy,
    dry_run: bool,
    report: bool,
    _lock: &FolderLock,
) -> Result<()> {
    let entries = catalog::scan(dir)?;
    let complete: Vec<&catalog::Entry> = entries
        .iter()
        .filter(|e| e.status == Status::Complete)
        .collect();
    let candidates: Vec<Candidate> = complete
        .iter()
        .map(|e| Candidate {
            id: e.name.clone(),
            time: e.time,
        })
        .collect();
    let decisions = retention::plan(&candidates, policy, ctx.now);
    if !candidates.is_empty() && decisions.iter().all(|d| !d.keep) {
        anyhow::bail!(
            "internal error: the retention plan would delete every backup; nothing was deleted"
        );
    }
    let mut lines = Vec::new();
    let mut json = Vec::new();
    let mut deleted = 0;
    let verb = if dry_run { "would delete" } else { "deleted" };
    for d in &decisions {
        let entry = complete
            .iter()
            .find(|e| e.name == d.id)
            .context("plan names an unknown backup")?;
        let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
        let action = if d.keep { "keep" } else { "delete" };
        lines.push(format!(
            "{action:<7} {}  {}  {}",
            entry.id.as_deref().unwrap_or(&entry.name),
            d.time.format("%Y-%m-%d %H:%M:%S"),
            reasons.join(", ")
        ));
        json.push(serde_json::json!({
            "id": entry.id, "file": entry.name, "time": d.time, "action": action, "reasons": d.reasons,
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
        json.push(serde_json::json!({ "file": e.name, "action": "remove", "reasons": [what] }));
        if !dry_run {
            crate::fsutil::remove_any(&e.path)
                .with_context(|| format!("removing {}", e.path.display()))?;
            tracing::info!("removed {} ({what})", e.name);
        }
    }
    let unmanaged = entries
        .iter()
        .filter(|e| e.status == Status::Unmanaged)
        .count();
    if unmanaged > 0 {
        tracing::debug!("{unmanaged} unmanaged file(s) left alone");
    }
    let kept = decisions.iter().filter(|d| d.keep).count();
    let summary = format!(
        "{} {} backup(s), kept {kept}{}",
        verb,
        if dry_run {
            decisions.len() - kept
        } else {
            deleted
        },
        if unmanaged > 0 {
            format!(", {unmanaged} unmanaged file(s) untouched")
        } else {
            String::new()
        }
    );
    if report {
        ctx.emit(
            &lines.join("\n"),
            &serde_json::json!({ "dry_run": dry_run, "plan": json }),
        );
    } else {
        for l in &lines {
            tracing::debug!("{l}");
        }
    }
    tracing::info!("{summary}");
    Ok(())
}
