//! Which databases a backup covers, and the backup each of several databases gets: the one rule
//! the `backup` command and the daemon's runs share.

use super::checked_options;
use crate::cli::args::BackupArgs;
use crate::cli::commands::Ctx;
use crate::error::Error;
use crate::ops::many::{self, Target};
use anyhow::Result;

/// Which databases a backup covers.
pub(super) enum Scope {
    /// DATABASE_URL's.
    One,
    /// Every database on DATABASE_URL's server (`--all-databases`).
    Server,
    /// The config file's `[[databases]]` list.
    Configured,
}

/// `--all-databases`; else `--all-configured`, or a configured list without DATABASE_URL; else
/// DATABASE_URL's database alone.
pub(super) fn of(ctx: &Ctx, args: &BackupArgs) -> Result<Scope> {
    let listed = ctx.settings.databases.len();
    if args.all_databases {
        return Ok(Scope::Server);
    }
    if args.all_configured && listed == 0 {
        return Err(Error::usage("--all-configured: the config file lists no [[databases]]")
            .hint("add [[databases]] tables (name, url_env or url_file) to the config file; see the README's \"Many databases\"")
            .into());
    }
    if args.all_configured || (listed > 0 && ctx.settings.database_url.is_none()) {
        return Ok(Scope::Configured);
    }
    if listed > 0 {
        tracing::info!("DATABASE_URL is set, so only its database is backed up; `backup --all-configured` backs up the {listed} database(s) of the config file");
    }
    Ok(Scope::One)
}

/// Every database on DATABASE_URL's server that the user may connect to, with the global
/// settings.
pub(super) async fn server_targets(ctx: &Ctx, args: &BackupArgs) -> Result<Vec<Target>> {
    let conn = ctx.conninfo()?;
    let names = many::server_databases(&ctx.ops(), &conn).await?;
    if names.is_empty() {
        return Err(Error::usage(format!(
            "no database on {} that {} may connect to (templates and databases that take no connections are left out)",
            conn.host_display(),
            conn.effective_user(&|k| ctx.settings.env.var(k))
        ))
        .hint("grant CONNECT on the databases to back up, or back up as their owner")
        .into());
    }
    Ok(names
        .into_iter()
        .map(|name| Target {
            options: checked_options(&ctx.settings, args, conn.with_dbname(&name))
                .map_err(Error::from_anyhow),
            name,
        })
        .collect())
}

/// The config file's databases, each with its own URL and retention; one whose URL cannot be
/// read fails alone.
pub(super) fn configured_targets(ctx: &Ctx, args: &BackupArgs) -> Vec<Target> {
    ctx.settings
        .databases
        .iter()
        .map(|entry| Target {
            name: entry.name.clone(),
            options: ctx
                .database_conninfo(entry)
                .and_then(|conn| {
                    let mut o = checked_options(&ctx.settings, args, conn)?;
                    if let Some(own) = &entry.retention {
                        o.prune = (!args.no_prune && !own.is_empty()).then(|| own.clone());
                    }
                    Ok(o)
                })
                .map_err(Error::from_anyhow),
        })
        .collect()
}
