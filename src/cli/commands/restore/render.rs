//! What `restore` prints: the preview of `--dry-run` (text and JSON) and the summary of a
//! restore (its safety backup and the command that undoes it).

use crate::cli::args::RestoreArgs;
use crate::cli::commands::human_bytes;
use crate::ops::restore::{Checksum, Preview, RestorePlan, RestoreReport, TableChange};
use crate::ops::validate::ValidationReport;
use crate::runtime::redact::sanitize;
use crate::runtime::shell::{drop_database_command, word as shell_word};
use crate::runtime::units::{age_phrase, count};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// What `restore --json` prints.
pub(super) fn json(report: &RestoreReport, args: &RestoreArgs) -> Value {
    json!({
        "restored": report.path.display().to_string(),
        "database": report.database,
        "host": report.host,
        "duration_ms": u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        "parallel_jobs": report.strategy.method.jobs(),
        "safety_backup": report.safety_backup.as_ref().map(|s| json!({
            "id": s.id,
            "path": s.path.display().to_string(),
            "undo": undo_command(&s.id, args),
        })),
        "swap": report.swap,
        "validation": report.validation.as_ref().map(validation_json),
    })
}

/// The checks after the restore, as `--json` shows them: findings are warnings.
fn validation_json(v: &ValidationReport) -> Value {
    json!({
        "clean": v.is_clean(),
        "findings": v.findings(),
        "checks": v.summary(chrono::Utc::now()).checks,
        "warnings": v.warnings(),
    })
}

/// The lines a restore prints on stdout: its safety backup and how to undo it (nothing when
/// it took none).
pub(super) fn summary_text(report: &RestoreReport, args: &RestoreArgs) -> String {
    let mut lines = Vec::new();
    if let Some(s) = &report.swap {
        lines.push(swap_text(&report.database, s));
    }
    if let Some(s) = &report.safety_backup {
        lines.push(format!(
            "safety backup of {:?} before the restore: {} ({})\nto undo this restore: {}",
            sanitize(&s.database),
            s.id,
            s.path.display(),
            undo_command(&s.id, args)
        ));
    }
    lines.join("\n")
}

/// What a swap did, and how to drop the old database by hand.
fn swap_text(database: &str, s: &crate::ops::restore::SwapReport) -> String {
    let checked = match s.tables_checked {
        Some(n) => format!(
            "row counts of {} match the backup's",
            count(n as u64, "table")
        ),
        None => "the backup recorded no row counts to compare".to_string(),
    };
    let mut text = format!(
        "swapped: database {:?} is now the restored copy ({checked})",
        sanitize(database)
    );
    if s.old_dropped {
        let _ = write!(text, "; the old database was dropped (--drop-old)");
    } else {
        let _ = write!(
            text,
            "\nthe old database is kept as {:?}; to drop it: {}",
            sanitize(&s.old),
            drop_database_command(&s.old)
        );
    }
    text
}

/// The command that restores the safety backup `id` into the same database.
fn undo_command(id: &str, args: &RestoreArgs) -> String {
    match &args.target_db {
        Some(db) => format!("aos-backup restore {id} --target-db {}", shell_word(db)),
        None => format!("aos-backup restore {id}"),
    }
}

/// The text of `restore --dry-run`.
pub(super) fn preview_text(plan: &RestorePlan, now: DateTime<Utc>) -> String {
    let mut out = String::from("Dry run: nothing was changed, no lock was taken.\n");
    backup_lines(&mut out, plan, now);
    target_lines(&mut out, plan);
    guard_lines(&mut out, plan);
    if let Some(s) = &plan.swap {
        let _ = writeln!(
            out,
            "Swap: restored aside into the new database {:?} and checked, then {:?} is kept as {:?}{}",
            sanitize(&s.aside),
            sanitize(&plan.target.database),
            sanitize(&s.old),
            if s.drop_old { " and dropped (--drop-old)" } else { "" }
        );
    }
    if let Some(p) = &plan.preview {
        table_lines(&mut out, p);
    }
    let _ = write!(
        out,
        "\nSafety backup: {}",
        if plan.safety_backup {
            "yes: the target is backed up first (labelled pre-restore)"
        } else if plan.target.tables == 0 {
            "no: the target holds no tables"
        } else {
            "no: turned off (--no-safety-backup or BACKUP_SAFETY_BACKUP=false)"
        }
    );
    out
}

fn backup_lines(out: &mut String, plan: &RestorePlan, now: DateTime<Utc>) {
    let b = &plan.backup;
    let _ = writeln!(out, "\nBackup: {}", b.path.display());
    if let Some(m) = &b.meta {
        let _ = writeln!(
            out,
            "  id {}, database {:?}, taken {} ({})",
            m.id,
            sanitize(&m.database),
            m.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            age_phrase(m.started_at, now)
        );
        let _ = writeln!(
            out,
            "  {}, {} format{}, encryption {}",
            human_bytes(m.size_bytes),
            b.format,
            b.layers_note(),
            m.encryption
        );
    } else {
        let _ = writeln!(
            out,
            "  no metadata: its database and date are unknown; {} format{}",
            b.format,
            b.layers_note()
        );
    }
    let _ = writeln!(out, "  checksum: {}", checksum_text(&b.checksum));
}

fn checksum_text(c: &Checksum) -> String {
    match c {
        Checksum::Verified => "verified".into(),
        Checksum::NoSidecar => "cannot be checked (no sidecar)".into(),
        Checksum::Failed { message } => {
            format!("FAILED ({message}): a restore would refuse this backup")
        }
    }
}

fn target_lines(out: &mut String, plan: &RestorePlan) {
    let t = &plan.target;
    let size = plan
        .preview
        .as_ref()
        .map(|p| format!(", {}", human_bytes(p.target_bytes)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\nTarget: database {:?} on {} (PostgreSQL {}): {}{size}",
        sanitize(&t.database),
        t.host,
        t.server_major,
        count(t.tables, "table")
    );
    if t.create {
        let _ = writeln!(
            out,
            "  it does not exist yet: the restore creates it (--create)"
        );
    }
    if t.other_sessions.is_empty() {
        let _ = writeln!(out, "  other sessions: none");
    } else {
        let _ = writeln!(
            out,
            "  {} connected{}:",
            count(t.other_sessions.len() as u64, "other session"),
            if t.terminate_sessions {
                " (--terminate-sessions would end them)"
            } else {
                ""
            }
        );
        for s in &t.other_sessions {
            let _ = writeln!(out, "    {s}");
        }
    }
}

fn guard_lines(out: &mut String, plan: &RestorePlan) {
    if plan.warnings.is_empty() {
        let _ = writeln!(out, "\nGuards: none fired");
    } else {
        let _ = writeln!(out, "\nGuards that fired:");
        for w in &plan.warnings {
            let _ = writeln!(out, "  - {}", w.message);
        }
    }
    match &plan.confirmation {
        None => {
            let _ = writeln!(out, "Confirmation: none needed");
        }
        Some(c) => {
            let given = if c.given { " (given: --yes)" } else { "" };
            let _ = writeln!(out, "Confirmation asked{given}:");
            for line in c.question.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    let s = plan.strategy;
    let _ = writeln!(
        out,
        "Method: {}{}",
        match s.method.jobs() {
            Some(j) => format!("pg_restore --jobs {j} (not one transaction)"),
            None => "one transaction".to_string(),
        },
        if s.clean {
            ", the backup's objects dropped first"
        } else {
            ""
        }
    );
}

fn table_lines(out: &mut String, p: &Preview) {
    let _ = writeln!(
        out,
        "\nPlan (the backup's objects from its {}):",
        p.objects_from
    );
    let locked = "unknown (locked by another session)";
    section(out, "Tables replaced", &p.replaced, locked);
    section(
        out,
        "Tables only in the target (they stay)",
        &p.kept,
        locked,
    );
    section(out, "Tables created", &p.created, "no");
    let names = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter().map(|n| sanitize(n)).collect::<Vec<_>>().join(", ")
        }
    };
    let _ = writeln!(out, "  Schemas created: {}", names(&p.schemas_created));
    let _ = write!(
        out,
        "  Extensions created: {}",
        names(&p.extensions_created)
    );
}

fn section(out: &mut String, title: &str, tables: &[TableChange], now_unknown: &str) {
    let _ = writeln!(
        out,
        "  {title}: {}",
        if tables.is_empty() { "none" } else { "" }
    );
    let in_backup = title != "Tables only in the target (they stay)";
    for t in tables {
        let now = t
            .rows_now
            .map_or_else(|| now_unknown.to_string(), |n| n.to_string());
        let then = if in_backup {
            let n = t
                .rows_in_backup
                .map_or_else(|| "unknown".to_string(), |n| n.to_string());
            format!(", in the backup {n}")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "    {}.{}: rows now {now}{then}",
            sanitize(&t.schema),
            sanitize(&t.table),
        );
    }
}

/// The JSON of `restore --dry-run`.
pub(super) fn preview_json(plan: &RestorePlan, now: DateTime<Utc>) -> Value {
    let b = &plan.backup;
    let meta = b.meta.as_ref();
    let t = &plan.target;
    json!({
        "dry_run": true,
        "backup": {
            "path": b.path.display().to_string(),
            "id": meta.map(|m| m.id.clone()),
            "database": meta.map(|m| m.database.clone()),
            "taken_at": meta.map(|m| m.started_at.to_rfc3339()),
            "age_seconds": meta.map(|m| (now - m.started_at).num_seconds()),
            "size_bytes": meta.map(|m| m.size_bytes),
            "format": b.format.to_string(),
            "layers": serde_json::to_value(b).ok().map(|v| v["layers"].clone()),
            "encryption": meta.map(|m| m.encryption.as_str().to_string()),
            "checksum": b.checksum,
        },
        "target": {
            "database": t.database,
            "host": t.host,
            "server_major": t.server_major,
            "tables": t.tables,
            "size_bytes": plan.preview.as_ref().map(|p| p.target_bytes),
            "other_sessions": serde_json::to_value(t).ok().map(|v| v["other_sessions"].clone()),
            "terminate_sessions": t.terminate_sessions,
            "create": t.create,
        },
        "guards": plan.warnings,
        "confirmation": plan.confirmation,
        "strategy": plan.strategy,
        "plan": plan.preview,
        "swap": plan.swap,
        "safety_backup": plan.safety_backup,
    })
}
