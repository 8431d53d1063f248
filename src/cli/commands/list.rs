//! `aos-backup list`: every backup in the folder (or one database's), newest first, with its
//! status; backups dated in the future are flagged.

use super::Ctx;
use crate::catalog::{self, Status};
use crate::cli::args::ListArgs;
use crate::runtime::redact::sanitize;
use anyhow::Result;

/// Runs list.
pub fn run(ctx: &Ctx, args: &ListArgs) -> Result<()> {
    let dir = ctx.backup_dir();
    let mut entries = catalog::scan(&dir)?;
    let databases = catalog::databases(&entries);
    if let Some(db) = &args.database {
        // Files without metadata belong to no known database: a filter leaves them out.
        entries.retain(|e| e.database() == Some(db.as_str()));
    }
    let mut json = Vec::with_capacity(entries.len());
    let mut rows = vec![format!(
        "{:<28} {:<20} {:>6} {:>10} {:<14} {:<16} {}",
        "ID", "CREATED (UTC)", "AGE", "SIZE", "LABEL", "DATABASE", "STATUS"
    )];
    for e in &entries {
        let meta = e.meta.as_ref();
        let label = meta.and_then(|m| m.label.clone()).unwrap_or_default();
        let database = meta.map(|m| m.database.clone()).unwrap_or_default();
        let future = e.is_future(ctx.now);
        let mismatch = e.time_mismatch();
        rows.push(format!(
            "{:<28} {:<20} {:>6} {:>10} {:<14} {:<16} {}",
            e.id.clone().unwrap_or_else(|| sanitize(&e.name)),
            e.time.format("%Y-%m-%d %H:%M:%S"),
            super::human_age(e.time, ctx.now),
            super::human_bytes(e.size),
            if label.is_empty() {
                "-".into()
            } else {
                sanitize(&label)
            },
            if database.is_empty() {
                "-".into()
            } else {
                sanitize(&database)
            },
            match (future, mismatch) {
                (true, _) => format!("{}, dated in the future", status_text(e)),
                (false, Some(_)) => format!("{}, time disagrees with its name", status_text(e)),
                (false, None) => status_text(e).to_string(),
            }
        ));
        json.push(serde_json::json!({
            "id": e.id,
            "file": e.name,
            "path": e.path.display().to_string(),
            "time": e.time,
            "age_seconds": (ctx.now - e.time).num_seconds(),
            "size_bytes": e.size,
            "label": meta.and_then(|m| m.label.clone()),
            "database": meta.map(|m| m.database.clone()),
            "host": meta.map(|m| m.host.clone()),
            "future": future,
            "time_mismatch": mismatch.is_some(),
            "name_time": mismatch,
            "format": meta.map(|m| m.format.clone()),
            "compression": meta.map(|m| m.compression.clone()),
            "encryption": meta.map(|m| m.encryption.clone()),
            "status": e.status,
            "suspect": meta.and_then(|m| m.suspect.clone()),
        }));
    }
    if entries.is_empty() && !ctx.json {
        match &args.database {
            Some(db) if !databases.is_empty() => tracing::info!(
                "no backups of database {db:?} in {}; it holds backups of {}",
                dir.display(),
                sanitize(&databases.join(", "))
            ),
            Some(db) => tracing::info!("no backups of database {db:?} in {}", dir.display()),
            None => tracing::info!("no backups in {}", dir.display()),
        }
        return Ok(());
    }
    ctx.emit(&rows.join("\n"), &serde_json::Value::Array(json));
    let incomplete = entries
        .iter()
        .filter(|e| e.status == Status::Incomplete)
        .count();
    for e in &entries {
        if let Some(s) = e.meta.as_ref().and_then(|m| m.suspect.as_ref()) {
            tracing::warn!(
                "{} is suspect: {}",
                sanitize(e.id.as_deref().unwrap_or(&e.name)),
                sanitize(&s.reason)
            );
        }
    }
    let future: Vec<String> = entries
        .iter()
        .filter(|e| e.status == Status::Complete && e.is_future(ctx.now))
        .map(|e| sanitize(e.id.as_deref().unwrap_or(&e.name)))
        .collect();
    if !future.is_empty() {
        tracing::warn!(
            "{} backup(s) dated in the future ({}): check the clocks; prune keeps them, and `latest` picks them only when nothing else is left",
            future.len(),
            future.join(", ")
        );
    }
    for e in entries.iter().filter(|e| !e.is_future(ctx.now)) {
        if let Some(named) = e.time_mismatch() {
            tracing::warn!(
                "{}: its metadata says it was taken {}, but its name says {}: the sidecar was edited or damaged; prune keeps it (counted in no rule), and `latest` passes over it",
                sanitize(e.id.as_deref().unwrap_or(&e.name)),
                e.time.format("%Y-%m-%d %H:%M:%S UTC"),
                named.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
    }
    if args.database.is_none() && databases.len() > 1 {
        tracing::info!(
            "backups of {} databases: {}; `aos-backup list --database NAME` shows one",
            databases.len(),
            sanitize(&databases.join(", "))
        );
    }
    if incomplete > 0 {
        tracing::info!(
            "{incomplete} leftover(s) of interrupted runs; `aos-backup prune` removes them"
        );
    }
    Ok(())
}

/// The STATUS column: a complete backup that shrank sharply is marked `suspect`.
fn status_text(e: &catalog::Entry) -> &'static str {
    match &e.meta {
        Some(m) if m.suspect.is_some() && e.status == Status::Complete => "complete,suspect",
        _ => e.status.as_str(),
    }
}
