//! `aos-backup list`: every backup in the folder (or one database's), newest first, with its
//! status; backups dated in the future are flagged.

use super::Ctx;
use crate::catalog::Status;
use crate::cli::args::ListArgs;
use crate::ops::list::{self, ListEntry, ListOptions, ListReport};
use crate::runtime::redact::sanitize;
use anyhow::Result;

/// Runs list.
pub fn run(ctx: &Ctx, args: &ListArgs) -> Result<()> {
    let options = ListOptions {
        database: args.database.clone(),
    };
    if args.all_databases {
        return run_all(ctx, &options);
    }
    let report = match &args.remote {
        Some(choice) => {
            let remote = ctx.remote_storage(choice)?;
            list::list_in(&*remote, remote.root_location().into(), ctx.now, &options)?
        }
        None => list::list(&ctx.ops(), &options)?,
    };
    if report.entries.is_empty() && !ctx.json {
        log_empty(&report);
        return Ok(());
    }
    let json = report
        .entries
        .iter()
        .map(|e| json_entry(e, &report))
        .collect();
    ctx.emit(&table(&report), &serde_json::Value::Array(json));
    log_doubts(&report);
    log_kept(&report, "");
    log_summary(&report);
    Ok(())
}

/// `list --all-databases`: the folder and each database subfolder in one table, each entry's
/// id after its subfolder (`shop/20250101-120000`); `--json` entries carry `folder`.
fn run_all(ctx: &Ctx, options: &ListOptions) -> Result<()> {
    let listings = list::list_all(&ctx.ops(), options)?;
    let total: usize = listings.iter().map(|l| l.report.entries.len()).sum();
    if total == 0 && !ctx.json {
        tracing::info!(
            "no backups in {} or its database subfolders",
            ctx.backup_dir().display()
        );
        return Ok(());
    }
    let mut rows = vec![header()];
    let mut json = Vec::new();
    for l in &listings {
        let prefix = folder_prefix(l);
        for e in &l.report.entries {
            rows.push(row(e, &l.report, &prefix));
            let mut j = json_entry(e, &l.report);
            j["folder"] = serde_json::json!(l.folder);
            json.push(j);
        }
    }
    ctx.emit(&rows.join("\n"), &serde_json::Value::Array(json));
    for l in &listings {
        log_doubts(&l.report);
        let prefix = folder_prefix(l);
        log_kept(&l.report, &prefix);
    }
    Ok(())
}

/// What an entry's id is shown after: its database subfolder and a slash, or nothing.
fn folder_prefix(listing: &list::FolderListing) -> String {
    listing
        .folder
        .as_ref()
        .map(|f| format!("{f}/"))
        .unwrap_or_default()
}

fn header() -> String {
    format!(
        "{:<28} {:<20} {:>6} {:>10} {:<14} {:<16} {}",
        "ID", "CREATED (UTC)", "AGE", "SIZE", "LABEL", "DATABASE", "STATUS"
    )
}

/// The table: a header, then a row per entry.
fn table(report: &ListReport) -> String {
    let mut rows = vec![header()];
    rows.extend(report.entries.iter().map(|e| row(e, report, "")));
    rows.join("\n")
}

/// An entry's row; its id (or file name) after `prefix`.
fn row(e: &ListEntry, report: &ListReport, prefix: &str) -> String {
    format!(
        "{:<28} {:<20} {:>6} {:>10} {:<14} {:<16} {}",
        format!(
            "{prefix}{}",
            e.id.clone().unwrap_or_else(|| sanitize(&e.file))
        ),
        e.time.format("%Y-%m-%d %H:%M:%S"),
        super::human_age(e.time, report.now),
        super::human_bytes(e.size),
        dash_if_empty(e.label.as_deref()),
        dash_if_empty(e.database.as_deref()),
        match (e.future, e.name_time) {
            (true, _) => format!("{}, dated in the future", status_text(e)),
            (false, Some(_)) => format!("{}, time disagrees with its name", status_text(e)),
            (false, None) => status_text(e).to_string(),
        }
    )
}

/// `text` sanitized, or `-` when it is missing or empty.
fn dash_if_empty(text: Option<&str>) -> String {
    match text {
        None | Some("") => "-".into(),
        Some(t) => sanitize(t),
    }
}

fn json_entry(e: &ListEntry, report: &ListReport) -> serde_json::Value {
    serde_json::json!({
        "id": e.id,
        "file": e.file,
        "path": e.path.display().to_string(),
        "time": e.time,
        "age_seconds": (report.now - e.time).num_seconds(),
        "size_bytes": e.size,
        "label": e.label,
        "database": e.database,
        "host": e.host,
        "future": e.future,
        "time_mismatch": e.name_time.is_some(),
        "name_time": e.name_time,
        "format": e.format,
        "compression": e.compression,
        "encryption": e.encryption,
        "status": e.status,
        "suspect": e.suspect,
        "globals": e.globals,
        "drill": e.drill,
        "swaps": e.swaps,
    })
}

/// Why an empty list is empty.
fn log_empty(report: &ListReport) {
    let dir = report.dir.display();
    match &report.database {
        Some(db) if !report.databases.is_empty() => tracing::info!(
            "no backups of database {db:?} in {dir}; it holds backups of {}",
            sanitize(&report.databases.join(", "))
        ),
        Some(db) => tracing::info!("no backups of database {db:?} in {dir}"),
        None => tracing::info!("no backups in {dir}"),
    }
}

/// A warning for each backup that is suspect, dated in the future, or misdated.
fn log_doubts(report: &ListReport) {
    for e in &report.entries {
        if let Some(s) = &e.suspect {
            tracing::warn!("{} is suspect: {}", sanitize(e.name()), sanitize(&s.reason));
        }
    }
    let future: Vec<String> = report
        .entries
        .iter()
        .filter(|e| e.status == Status::Complete && e.future)
        .map(|e| sanitize(e.name()))
        .collect();
    if !future.is_empty() {
        tracing::warn!(
            "{} backup(s) dated in the future ({}): check the clocks; prune keeps them, and `latest` picks them only when nothing else is left",
            future.len(),
            future.join(", ")
        );
    }
    for e in report.entries.iter().filter(|e| !e.future) {
        if let Some(named) = e.name_time {
            tracing::warn!(
                "{}: its metadata says it was taken {}, but its name says {}: the sidecar was edited or damaged; prune keeps it (counted in no rule), and `latest` passes over it",
                sanitize(e.name()),
                e.time.format("%Y-%m-%d %H:%M:%S UTC"),
                named.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
    }
}

/// The other databases in the folder, and the leftovers prune would remove.
fn log_summary(report: &ListReport) {
    if report.database.is_none() && report.databases.len() > 1 {
        tracing::info!(
            "backups of {} databases: {}; `aos-backup list --database NAME` shows one",
            report.databases.len(),
            sanitize(&report.databases.join(", "))
        );
    }
    let incomplete = report.incomplete();
    if incomplete > 0 {
        tracing::info!(
            "{incomplete} leftover(s) of interrupted runs; `aos-backup prune` removes them"
        );
    }
}

/// The STATUS column: a complete backup that shrank sharply is marked `suspect`; one stored
/// with its roles and tablespaces, `+globals`; one that was drilled, its last drill's outcome
/// and date (`drill:passed 2026-11-29`); one whose swaps kept old databases, their names
/// (`kept:shop__aos_old_20261129101500`).
fn status_text(e: &ListEntry) -> String {
    let status = match &e.suspect {
        Some(_) if e.status == Status::Complete => "complete,suspect",
        _ => e.status.as_str(),
    };
    let status = match &e.globals {
        Some(_) => format!("{status} +globals"),
        None => status.to_string(),
    };
    let mut status = match &e.drill {
        Some(d) => format!(
            "{status} drill:{} {}",
            d.outcome.as_str(),
            d.drilled_at.format("%Y-%m-%d")
        ),
        None => status,
    };
    for kept in e.kept_databases() {
        status.push_str(" kept:");
        status.push_str(&sanitize(&kept.old));
    }
    status
}

/// For each old database a swap kept: its name and how to drop it (the swap's record cannot
/// know whether it was dropped by hand since).
fn log_kept(report: &ListReport, prefix: &str) {
    for e in &report.entries {
        for kept in e.kept_databases() {
            tracing::info!(
                "{prefix}{}: its swap of {} into {:?} on {} kept the old database as {:?}; unless dropped since, it still takes its space: {}",
                sanitize(e.name()),
                kept.swapped_at.format("%Y-%m-%d %H:%M UTC"),
                sanitize(&kept.database),
                sanitize(&kept.server),
                sanitize(&kept.old),
                crate::runtime::shell::drop_database_command(&kept.old)
            );
        }
    }
}
