//! Before pg_dump runs: the backup folder (created private), the server (its tables and version,
//! the matching pg_dump), and a free id for the new backup.

use super::{BackupPlan, Globals};
use crate::archive::naming;
use crate::error::{Error, Kind};
use crate::ops::Context;
use crate::pg::conninfo::ConnInfo;
use crate::pg::consistency::{self, ValidationReport};
use crate::pg::tools::Tool;
use crate::runtime::fsutil;
use anyhow::{Context as _, Result};
use std::path::Path;

/// The server being backed up, as seen before pg_dump starts.
pub(super) struct Source {
    /// Its user tables.
    pub tables: u64,
    pub server_version: String,
    /// The pg_dump that dumps it (not older than the server).
    pub pg_dump: Tool,
    /// The pg_dumpall that stores its roles and tablespaces, with `--globals`.
    pub pg_dumpall: Option<Tool>,
    /// The connection pg_dump gets (with the session options that stop its backend with it).
    pub conn: ConnInfo,
    /// What the consistency checks found before the dump, or why they could not run (`None`:
    /// not asked).
    pub validation: Option<Result<ValidationReport, String>>,
}

/// Creates the backup folder (private) when it is missing.
pub(super) fn create_folder(dir: &Path) -> Result<()> {
    fsutil::create_private_dir_all(dir).map_err(|e| {
        // A file where the folder (or one of its parents) should be: the setting is wrong, and
        // permissions have nothing to do with it.
        if e.kind() == std::io::ErrorKind::AlreadyExists || e.raw_os_error() == Some(libc::ENOTDIR)
        {
            return Error::usage(format!(
                "the backup folder {} is not a folder: a file is in the way ({e})",
                dir.display()
            ))
            .hint("set BACKUP_DIR (or --backup-dir) to a folder, or move that file away");
        }
        Error::new(
            Kind::Failure,
            format!("cannot create the backup folder {}: {e}", dir.display()),
        )
        .hint(
            "check the permissions of BACKUP_DIR's parent, or set BACKUP_DIR to a writable folder",
        )
    })?;
    Ok(())
}

/// Connects once: counts the tables, finds a pg_dump not older than the server. In a container,
/// pg_dump is found first: a missing or stopped container is the error worth showing.
pub(super) async fn source(ctx: &Context, plan: &BackupPlan) -> Result<Source> {
    let lookup = |k: &str| ctx.var(k);
    let early = match ctx.locator.container() {
        Some(_) => Some(ctx.locator.find("pg_dump", None)?),
        None => None,
    };
    let db = ctx.connect(&plan.conn).await?;
    let tables = db.table_count().await?;
    let validation = if plan.validate {
        Some(validate(&db).await)
    } else {
        None
    };
    let pg_dump = match early {
        Some(tool) => tool,
        None => ctx.locator.find("pg_dump", Some(db.info.major))?,
    };
    crate::pg::tools::check_not_older(&pg_dump, &db.info.version, db.info.major)?;
    let pg_dumpall = match plan.globals {
        Globals::Off => None,
        Globals::WithoutPasswords | Globals::WithPasswords => {
            if plan.globals == Globals::WithPasswords && plan.encryption.is_none() {
                tracing::warn!("--globals-with-passwords on an unencrypted backup: the roles' password hashes are stored in clear (the file is private to its owner); encrypt backups that hold them (BACKUP_ENCRYPTION, --encrypt)");
            }
            let tool = ctx.locator.find("pg_dumpall", Some(db.info.major))?;
            crate::pg::tools::check_not_older(&tool, &db.info.version, db.info.major)?;
            Some(tool)
        }
    };
    // pg_dump's backend stops soon after pg_dump dies, even while it waits for a lock.
    let options = crate::pg::sessions::child_options(db.info.major, None);
    let conn = if options.is_empty() {
        plan.conn.clone()
    } else {
        plan.conn.with_options(&options, &lookup)
    };
    Ok(Source {
        tables,
        server_version: db.info.version.clone(),
        pg_dump,
        pg_dumpall,
        conn,
        validation,
    })
}

/// The consistency checks, before the dump; their failure is only reported.
async fn validate(db: &crate::pg::db::Db) -> Result<ValidationReport, String> {
    tracing::info!("validating the database before the backup (BACKUP_VALIDATE)");
    consistency::validate(db.client(), &consistency::Options::default())
        .await
        .map_err(|e| format!("{e:#}"))
}

/// The id of the new backup: `base`, or `base-2`, `base-3`... when a backup, a sidecar or a
/// leftover `.partial` of an interrupted run already holds it (see [`naming::free_id`]).
pub(super) fn choose_id(dir: &Path, base: &str) -> Result<String> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    naming::free_id(base, names.iter().map(String::as_str)).ok_or_else(|| {
        Error::new(
            Kind::Failure,
            format!("no free file name for backup {base} in {}", dir.display()),
        )
        .hint("remove leftovers with `aos-backup prune`, or wait a second")
        .into()
    })
}
