//! `aos-backup restore`: the restore operation planned (guards first: production, remote host, a
//! populated target, a damaged file), confirmed on the terminal when the plan requires it, then
//! carried out in one transaction (after a safety backup of a target with tables), so a restore
//! that fails half-way leaves the target exactly as it was; or, with `--swap`, restored aside and
//! renamed in; or, with `--dry-run`, only shown.

mod render;

use super::Ctx;
use crate::cli::args::{BackupArgs, RestoreArgs};
use crate::error::{Error, Kind};
use crate::ops::restore::{self, Checksum, Confirmation, RestoreOptions, RestorePlan};
use anyhow::{Context, Result};
use std::io::{IsTerminal, Write};

/// Runs a restore, or with `--dry-run` shows what it would do.
pub async fn run(ctx: &Ctx, args: &RestoreArgs) -> Result<()> {
    let result = restore_and_report(ctx, args).await;
    if !crate::cli::notify::nothing_was_done(&result) {
        let database = ctx.target_database();
        crate::cli::notify::restore_ended(ctx, database.as_deref(), &result).await;
    }
    result
}

/// Plans, confirms and runs the restore, and prints its report.
async fn restore_and_report(ctx: &Ctx, args: &RestoreArgs) -> Result<()> {
    if args.swap {
        // A signal stops the swap before its renames; it then drops the copy made aside.
        ctx.reports_when_cancelled.set();
    }
    let ops = ctx.ops();
    let mut options = options(ctx, args)?;
    let _fetched = match &args.remote {
        Some(choice) => {
            let fetched = ctx.fetch_remote(choice, &options.backup, args.from_database.clone())?;
            options.backup = fetched.path.display().to_string();
            Some(fetched)
        }
        None => None,
    };
    if args.dry_run {
        let plan = restore::preview(&ops, &options).await?;
        ctx.emit(
            &render::preview_text(&plan, ctx.now),
            &render::preview_json(&plan, ctx.now),
        );
        return refused_by_checksum(&plan);
    }
    let mut plan = restore::plan(&ops, &options).await?;
    if let Some(confirmation) = plan.confirmation_needed() {
        confirm(&plan, confirmation).await?;
        plan.confirm();
    }
    let report = restore::execute(&ops, plan).await?;
    ctx.record.restore(&report);
    ctx.emit(
        &render::summary_text(&report, args),
        &render::json(&report, args),
    );
    Ok(())
}

/// The operation's options: the flags over the settings.
fn options(ctx: &Ctx, args: &RestoreArgs) -> Result<RestoreOptions> {
    let target = ctx.conninfo().map_err(|e| {
        e.downcast::<Error>()
            .unwrap_or_else(|e| Error::from_chain(e, |_, _| None))
    });
    let wanted = ctx.settings.safety_backup && !args.no_safety_backup;
    let safety_backup = match (&target, wanted) {
        (Ok(conn), true) => Some(safety_options(ctx, conn.clone(), args.dry_run)?),
        _ => None,
    };
    Ok(RestoreOptions {
        backup: args.target.clone(),
        from_database: args.from_database.clone(),
        target,
        jobs: args.jobs,
        lock_timeout: Some(ctx.settings.lock_timeout.value).filter(|d| !d.is_zero()),
        terminate_sessions: args.terminate_sessions,
        force: args.force,
        confirmed: args.yes,
        production_marker: ctx.settings.env.production_marker(),
        keys: ctx.keys(&args.keys),
        validate: !args.no_validate,
        scratch_target: false,
        target_db: args.target_db.clone(),
        create: args.create,
        swap: args.swap.then_some(restore::SwapOptions {
            drop_old: args.drop_old,
        }),
        safety_backup,
    })
}

/// The safety backup: a backup as `aos-backup backup` makes it (format, compression,
/// encryption), labelled `pre-restore`, never pruning. A preview does not refuse what the preset
/// would (it takes no backup).
fn safety_options(
    ctx: &Ctx,
    conn: crate::pg::conninfo::ConnInfo,
    dry_run: bool,
) -> Result<crate::ops::backup::BackupOptions> {
    let args = BackupArgs {
        name: Some(restore::SAFETY_LABEL.to_string()),
        no_prune: true,
        ..BackupArgs::default()
    };
    if dry_run {
        return Ok(crate::cli::runs::backup_options(&ctx.settings, &args, conn));
    }
    crate::cli::runs::checked_options(&ctx.settings, &args, conn)
}

/// A preview whose backup failed its checksum ends as the restore would: refused (exit 4).
fn refused_by_checksum(plan: &RestorePlan) -> Result<()> {
    match &plan.backup.checksum {
        Checksum::Failed { message } => Err(Error::new(
            Kind::Integrity,
            format!(
                "a restore of {} would be refused: the backup failed its checksum: {message}",
                plan.backup.path.display()
            ),
        )
        .hint("use another backup (see `aos-backup list` and `aos-backup verify`)")
        .into()),
        Checksum::Verified | Checksum::NoSidecar => Ok(()),
    }
}

/// Asks on the terminal; refuses at once when nobody can answer. Reads one line: only `y` or
/// `yes` goes on; an empty line, anything else, or the end of input (Ctrl-D) is no.
async fn confirm(plan: &RestorePlan, confirmation: &Confirmation) -> Result<()> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !interactive {
        return Err(Error::refused(format!(
            "refusing to restore into database {:?} on {}: {}, and there is no terminal to confirm",
            plan.target.database, plan.target.host, confirmation.reason
        ))
        .hint("add --yes to confirm that its objects may be dropped and replaced by the backup's")
        .into());
    }
    let prompt = confirmation.question.clone();
    let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        // stderr is not held while waiting for the answer: a signal's message must get through.
        {
            let mut err = std::io::stderr().lock();
            write!(err, "{prompt}\nType y to go on [y/N]: ")?;
            err.flush()?;
        }
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line)? == 0 {
            // End of input (Ctrl-D): no.
            eprintln!();
        }
        Ok(line)
    })
    .await
    .context("the prompt failed")?;
    match answer.map(|a| a.trim().to_ascii_lowercase()) {
        Ok(a) if a == "y" || a == "yes" => Ok(()),
        _ => Err(Error::refused("restore cancelled; nothing was changed").into()),
    }
}
