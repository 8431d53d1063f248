//! `aos-backup prune`: apply the retention policy to the complete backups of one database (or of
//! each database separately), remove leftovers of interrupted runs, and never touch unmanaged
//! files. What it deleted is told to the notification destinations (`BACKUP_NOTIFY_ON=always`).

use super::Ctx;
use crate::cli::args::PruneArgs;
use crate::error::Error;
use crate::storage::{LocalFolder, Storage};
use anyhow::Result;

pub use crate::ops::prune::Databases;

/// Runs `aos-backup prune`.
pub async fn run(ctx: &Ctx, args: &PruneArgs) -> Result<()> {
    let mut policy = ctx.settings.retention.clone();
    crate::config::overlay_policy(&mut policy, &args.policy.policy());
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
    let storage: Box<dyn Storage> = match &args.remote {
        Some(choice) => ctx.remote_storage(choice)?,
        None => Box::new(local_folder(ctx)?),
    };
    let lock = storage.lock("prune")?;
    let report = crate::ops::prune::apply_in(
        &*storage,
        &policy,
        &which,
        None,
        ctx.now,
        args.dry_run,
        &lock,
    )?;
    ctx.record.prune(&report);
    ctx.emit(&report.lines().join("\n"), &report.json());
    for s in report.summaries() {
        tracing::info!("{s}");
    }
    drop(lock);
    crate::cli::notify::prune_ended(ctx, &report).await;
    Ok(())
}

/// The backup folder, which must exist.
fn local_folder(ctx: &Ctx) -> Result<LocalFolder> {
    let dir = ctx.backup_dir();
    if !dir.is_dir() {
        return Err(Error::usage(format!(
            "the backup folder {} does not exist",
            dir.display()
        ))
        .into());
    }
    Ok(LocalFolder::new(dir))
}
