//! `aos-backup drill`: restores a backup into a scratch database, checks it and drops it, then
//! prints the RTO, the RPO and every mismatch; the exit code says whether the drill passed.

use super::Ctx;
use crate::cli::args::DrillArgs;
use crate::error::Error;
use crate::ops::drill::{self, DrillOptions, DrillReport, ScratchChoice, ScratchKind};
use crate::pg::conninfo::ConnInfo;
use crate::runtime::redact::sanitize;
use crate::runtime::units::human_duration;
use anyhow::Result;
use std::time::Duration;

/// Runs a drill, and tells the notification destinations how it went.
pub async fn run(ctx: &Ctx, args: &DrillArgs) -> Result<()> {
    // A signal stops the restore; the drill then still drops its scratch database.
    ctx.reports_when_cancelled.set();
    let result = drill_once(ctx, args).await;
    if !crate::cli::notify::nothing_was_done(&result) {
        crate::cli::notify::drill_ended(ctx, &result).await;
    }
    let report = result?;
    ctx.record
        .drill(&metrics_name(ctx, &report), report.error().is_none());
    ctx.emit(&text(&report), &serde_json::to_value(&report)?);
    match report.error() {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// The name the metrics file knows the drilled database by, as its backups' metrics do: the
/// config file's name for a backup in the subfolder of a database of its list, else the
/// database's own.
fn metrics_name(ctx: &Ctx, report: &DrillReport) -> String {
    let folder = report
        .backup
        .path
        .parent()
        .filter(|p| p.parent() == Some(ctx.backup_dir().as_path()))
        .and_then(|p| p.file_name())
        .and_then(|f| f.to_str())
        .and_then(crate::archive::naming::database_of_folder);
    match folder {
        Some(name) if ctx.settings.databases.iter().any(|e| e.name == name) => name,
        _ => report.backup.database.clone(),
    }
}

/// Plans and runs the drill; a backup of an off-site destination is downloaded first, and its
/// drill record kept next to the local copy of the same backup when there is one.
async fn drill_once(ctx: &Ctx, args: &DrillArgs) -> Result<DrillReport> {
    let ops = ctx.ops();
    let mut options = options(ctx, args)?;
    let fetched = match &args.remote {
        Some(choice) => {
            let fetched = ctx.fetch_remote(choice, &options.backup, args.database.clone())?;
            options.backup = fetched.path.display().to_string();
            Some(fetched)
        }
        None => None,
    };
    let plan = drill::plan(&ops, &options).await?;
    let report = drill::execute(&ops, plan).await?;
    if let Some(fetched) = fetched {
        keep_record_locally(ctx, &fetched.path);
    }
    Ok(report)
}

/// Copies the drill record of a downloaded backup next to the local copy of the same backup,
/// if the backup folder holds one (so that `list` shows it); else the record goes with the
/// temporary folder, and the report is all there is.
fn keep_record_locally(ctx: &Ctx, fetched: &std::path::Path) {
    let Some(name) = fetched.file_name() else {
        return;
    };
    let local = ctx.backup_dir().join(name);
    if !crate::archive::meta::Meta::path_for(&local).is_file() {
        return;
    }
    let record = crate::archive::drill::path_for(fetched);
    let copied = std::fs::read(&record)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| {
            crate::runtime::fsutil::replace_atomic(
                &crate::archive::drill::path_for(&local),
                &bytes,
                0o600,
            )
        });
    if let Err(e) = copied {
        tracing::warn!(
            "the drill record could not be kept next to {}: {e:#}",
            local.display()
        );
    }
}

/// The operation's options: the flags over the settings.
fn options(ctx: &Ctx, args: &DrillArgs) -> Result<DrillOptions> {
    let live = match ctx.settings.database_url {
        Some(_) => Some(ctx.conninfo()?),
        None => None,
    };
    let scratch = match (&args.scratch_url, args.ephemeral) {
        (_, true) => ScratchChoice::Ephemeral,
        (Some(url), false) => ScratchChoice::Server(scratch_conninfo(ctx, url)?),
        (None, false) => ScratchChoice::Auto,
    };
    Ok(DrillOptions {
        backup: args.target.clone(),
        database: args.database.clone(),
        live,
        scratch,
        check_sql: args.check_sql.clone(),
        deep: args.deep,
        keys: ctx.keys(&args.keys),
    })
}

/// `--scratch-url`, parsed and resolved as `DATABASE_URL` is, its password kept secret.
fn scratch_conninfo(ctx: &Ctx, url: &str) -> Result<ConnInfo> {
    let conn = ConnInfo::parse(url).map_err(|e| {
        Error::usage(format!("invalid --scratch-url: {e}"))
            .hint("expected postgresql://user@host:port/dbname (the password from PGPASSWORD or ~/.pgpass)")
    })?;
    if let Some(p) = conn.password() {
        ctx.op.secrets().register(p);
        tracing::warn!("--scratch-url holds a password, which other users can see in `ps`; prefer ~/.pgpass or PGPASSWORD");
    }
    ctx.finish_conninfo(&conn)
}

/// The text report: the verdict, where it ran, RTO, RPO, the checks, then every mismatch.
fn text(r: &DrillReport) -> String {
    let mut lines = vec![format!(
        "drill of {} (database {:?}, taken {}): {}",
        r.backup.id,
        sanitize(&r.backup.database),
        r.backup.taken_at.format("%Y-%m-%d %H:%M UTC"),
        r.outcome.as_str().to_uppercase()
    )];
    lines.push(format!(
        "  scratch:    {} {:?} on {}{}",
        if r.scratch.kind == ScratchKind::Ephemeral {
            "ephemeral cluster, database"
        } else {
            "database"
        },
        r.scratch.database,
        sanitize(&r.scratch.host),
        if r.scratch.removed {
            " (removed)"
        } else {
            " (NOT removed: the next drill drops it)"
        }
    ));
    lines.push(format!(
        "  RTO:        {}",
        r.rto_ms.map_or_else(
            || "none (the restore failed)".into(),
            |ms| format!(
                "{} (measured restore time)",
                human_duration(Duration::from_millis(ms))
            )
        )
    ));
    lines.push(format!("  RPO:        {}", rpo_text(r)));
    lines.push(format!("  row counts: {}", rows_text(r)));
    if let Some(v) = &r.validation {
        lines.push(format!("  validate:   {}", v.headline()));
    }
    if !r.checks.is_empty() {
        let passed = r.checks.iter().filter(|c| c.passed).count();
        lines.push(format!(
            "  check-sql:  {passed} of {} passed",
            r.checks.len()
        ));
    }
    let mismatches = r.mismatches();
    if !mismatches.is_empty() {
        lines.push(format!("mismatches ({}):", mismatches.len()));
        lines.extend(mismatches.iter().map(|m| format!("  - {}", sanitize(m))));
    }
    lines.join("\n")
}

fn rpo_text(r: &DrillReport) -> String {
    let secs = |s: i64| super::human_age(r.drilled_at - chrono::Duration::seconds(s), r.drilled_at);
    let age = secs(r.rpo.backup_age_seconds);
    match &r.rpo.largest_gap {
        Some(g) => format!(
            "backup age {age}; largest gap between complete backups {} ({} to {}, over {} backups)",
            secs(g.seconds),
            g.from_id,
            g.to_id,
            r.rpo.complete_backups
        ),
        None => format!(
            "backup age {age}; largest gap between complete backups: none yet ({} backup)",
            r.rpo.complete_backups
        ),
    }
}

fn rows_text(r: &DrillReport) -> String {
    let rows = &r.row_counts;
    if r.restore_error.is_some() {
        "not compared (the restore failed)".into()
    } else if !rows.recorded {
        "not recorded (the backup is older than row counting)".into()
    } else if rows.mismatches.is_empty() && rows.tables == 1 {
        "1 table matches".into()
    } else if rows.mismatches.is_empty() {
        format!("{} tables match", rows.tables)
    } else {
        format!("{} of {} tables differ", rows.mismatches.len(), rows.tables)
    }
}
