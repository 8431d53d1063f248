//! The restore's guards, run before anything touches the target: each one refuses (a typed error
//! saying why and what to do), lets the restore go on with a warning (logged as it fires, and
//! kept in the plan), or requires a confirmation that the caller obtains.

use super::plan::{Checksum, Target};
use crate::archive::format::DumpFormat;
use crate::archive::meta::Meta;
use crate::archive::sqlfeed::CleanSection;
use crate::error::Error;
use crate::ops::Context;
use crate::pg::conninfo::ConnInfo;
use crate::pg::sessions::Session;
use crate::runtime::units::count;
use anyhow::{Context as _, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::AtomicU64;

/// A guard that let the restore go on with a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    /// A backup of another database, restored because `--from-database` names it.
    OtherDatabase,
    /// The environment says production, and `--force` was given.
    Production,
    /// The target is on another host.
    RemoteHost,
    /// The backup has no metadata: its checksum cannot be checked.
    NoChecksum,
    /// `--jobs` with plain SQL, which psql runs as one transaction.
    JobsIgnored,
    /// A SQL dump without DROP statements, into a database that holds objects (`--force`).
    NoCleanSection,
    /// Other sessions are connected to the target.
    OtherSessions,
}

/// A warning of a guard, as it was logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardWarning {
    /// Which guard it was.
    pub guard: Guard,
    /// The warning's text.
    pub message: String,
}

/// A confirmation that the restore needs before it changes the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confirmation {
    /// The question to ask (its later lines list the other sessions, if any).
    pub question: String,
    /// What makes it needed, for a refusal when nobody can answer: `it holds 3 tables`.
    pub reason: String,
    /// Given: in advance (`--yes`), or by the caller once asked.
    pub given: bool,
}

/// The warnings of the guards that fired, in order.
#[derive(Debug, Default)]
pub(super) struct Fired(pub(super) Vec<GuardWarning>);

impl Fired {
    /// Logs `message` as a warning and records it.
    fn warn(&mut self, guard: Guard, message: String) {
        tracing::warn!("{message}");
        self.0.push(GuardWarning { guard, message });
    }
}

/// Refuses (exit 3) a backup of another database than the target unless `--from-database` names
/// that database, and any backup whose database is not the one `--from-database` names.
pub(super) fn database_of_backup(
    backup_db: &str,
    target: &str,
    from: Option<&str>,
    scratch: bool,
    path: &Path,
    fired: &mut Fired,
) -> Result<()> {
    let shown = crate::runtime::redact::sanitize(backup_db);
    match from {
        Some(from) if from != backup_db => Err(Error::refused(format!(
            "refusing to restore: {} is a backup of database {backup_db:?}, not of {from:?} as --from-database says",
            path.display()
        ))
        .hint(format!(
            "check the backup; to restore it into {target:?}, pass --from-database {shown}"
        ))
        .into()),
        None if backup_db != target => Err(Error::refused(format!(
            "refusing to restore: {} is a backup of database {backup_db:?}, and the target is database {target:?}",
            path.display()
        ))
        .hint(format!(
            "to restore {backup_db:?}'s backup into {target:?}, add --from-database {shown}"
        ))
        .into()),
        Some(_) if backup_db != target && !scratch => {
            fired.warn(
                Guard::OtherDatabase,
                format!("restoring a backup of database {backup_db:?} into database {target:?} (--from-database)"),
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Refuses to restore where the environment says production, unless forced.
pub(super) fn production(
    marker: Option<&(String, String)>,
    force: bool,
    fired: &mut Fired,
) -> Result<()> {
    let Some((var, value)) = marker else {
        return Ok(());
    };
    if !force {
        return Err(Error::refused(format!(
            "refusing to restore: {var}={value} says this is production"
        ))
        .hint("restoring replaces the data in the database; if you really mean it, add --force")
        .into());
    }
    fired.warn(
        Guard::Production,
        format!("{var}={value}: restoring into production because --force was given"),
    );
    Ok(())
}

/// Warns when the target is on another host: make sure it is the server meant.
pub(super) fn remote_host(ctx: &Context, conn: &ConnInfo, fired: &mut Fired) {
    if conn.is_local() {
        return;
    }
    fired.warn(
        Guard::RemoteHost,
        format!(
            "the target is on a remote host: {} (database {:?}); make sure this is the server you mean",
            conn.host_display(),
            conn.effective_dbname(&|k| ctx.var(k))
        ),
    );
}

/// Checks the stored bytes against the sidecar (size and SHA-256) when there is one, before the
/// target is touched; returns the sidecar.
pub(super) async fn checksum(
    ctx: &Context,
    path: &Path,
    fired: &mut Fired,
) -> Result<(Option<Meta>, Checksum)> {
    let meta = verify(ctx, path).await?.map_err(|e| {
        e.context(
            "refusing to restore: the backup failed its checksum; the database was not touched",
        )
    })?;
    if meta.is_some() {
        tracing::info!("checksum verified: {}", path.display());
        return Ok((meta, Checksum::Verified));
    }
    fired.warn(
        Guard::NoChecksum,
        format!(
            "{} has no metadata: its checksum cannot be checked; restoring it as it is",
            path.display()
        ),
    );
    Ok((None, Checksum::NoSidecar))
}

/// For a preview: checks the stored bytes against the sidecar and says how that went, without
/// refusing (the sidecar is still read when the bytes do not match it).
pub(super) async fn checksum_status(
    ctx: &Context,
    path: &Path,
) -> Result<(Option<Meta>, Checksum)> {
    Ok(match verify(ctx, path).await? {
        Ok(Some(meta)) => (Some(meta), Checksum::Verified),
        Ok(None) => (None, Checksum::NoSidecar),
        Err(e) => (
            Meta::read(&Meta::path_for(path)).ok(),
            Checksum::Failed {
                message: format!("{e:#}"),
            },
        ),
    })
}

/// Reads the backup through against its sidecar (with progress) on a blocking thread.
async fn verify(ctx: &Context, path: &Path) -> Result<Result<Option<Meta>>> {
    let progress = if Meta::path_for(path).exists() {
        let size = std::fs::metadata(path)
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len());
        ctx.op.progress("verifying", size)
    } else {
        crate::runtime::progress::Task::hidden()
    };
    let counter = progress.counter.clone();
    let p2 = path.to_path_buf();
    let checked = tokio::task::spawn_blocking(move || check_against_meta(&p2, &counter))
        .await
        .context("the verify thread failed")?;
    drop(progress);
    Ok(checked)
}

/// The sidecar, if there is one, after checking the stored bytes against it.
fn check_against_meta(path: &Path, counter: &AtomicU64) -> Result<Option<Meta>> {
    let meta_path = Meta::path_for(path);
    if !meta_path.exists() {
        return Ok(None);
    }
    let meta = Meta::read(&meta_path)?;
    crate::archive::integrity::check_stored(path, &meta, counter)?;
    Ok(Some(meta))
}

/// The parallel jobs the restore uses: none for plain SQL (warned about), nor for 1.
pub(super) fn jobs(format: DumpFormat, jobs: Option<u32>, fired: &mut Fired) -> Option<u32> {
    if format == DumpFormat::Plain && jobs.is_some_and(|j| j > 1) {
        fired.warn(
            Guard::JobsIgnored,
            "--jobs is ignored for plain SQL (psql runs it as one transaction)".to_string(),
        );
    }
    jobs.filter(|j| *j > 1 && format != DumpFormat::Plain)
}

/// A pg_dump script without DROP statements (made without `--clean`) fails on the first object
/// the target already has; into a database that holds objects, it is refused up front.
pub(super) fn clean_section(
    section: CleanSection,
    empty: bool,
    force: bool,
    dbname: &str,
    path: &Path,
    fired: &mut Fired,
) -> Result<()> {
    if section != CleanSection::Missing || empty {
        return Ok(());
    }
    if force {
        fired.warn(
            Guard::NoCleanSection,
            format!(
                "{} drops nothing before creating its objects; trying it on {dbname:?} anyway because of --force",
                path.display()
            ),
        );
        return Ok(());
    }
    Err(Error::refused(format!(
        "refusing to restore {} into {dbname:?}: the SQL dump has no DROP statements (it was made without pg_dump --clean), so it restores only into an empty database, and {dbname:?} holds objects",
        path.display()
    ))
    .hint("restore it into a new empty database, or make the dump again with `pg_dump --clean --if-exists`")
    .into())
}

/// Warns about the other sessions connected to the target: the restore waits for their locks.
pub(super) fn other_sessions(dbname: &str, others: &[Session], fired: &mut Fired) {
    if others.is_empty() {
        return;
    }
    fired.warn(
        Guard::OtherSessions,
        format!(
            "{} connected to database {dbname:?}: {}",
            count(others.len() as u64, "other session"),
            crate::pg::sessions::describe(others)
        ),
    );
}

/// Refuses `--jobs` into a database with tables unless forced: a parallel restore is not one
/// transaction, so a failure would leave it half-restored.
pub(super) fn parallel_into_populated(
    tables: u64,
    jobs: Option<u32>,
    force: bool,
    dbname: &str,
) -> Result<()> {
    if tables == 0 || jobs.is_none() || force {
        return Ok(());
    }
    Err(Error::refused(format!(
        "refusing a parallel restore into {dbname:?}, which holds {tables} tables: --jobs cannot run in one transaction, so a failure would leave it half-restored"
    ))
    .hint("restore without --jobs (one transaction, all or nothing), or add --force to accept the risk")
    .into())
}

/// The confirmation a restore into a database with tables, or one that ends other sessions,
/// needs; `given` when it was given in advance.
pub(super) fn confirmation(target: &Target, about: &str, given: bool) -> Option<Confirmation> {
    let (tables, others) = (target.tables, &target.other_sessions);
    if tables == 0 && !target.terminate_sessions {
        return None;
    }
    let (db, host) = (&target.database, &target.host);
    let reason = if tables > 0 {
        format!("it holds {tables} tables")
    } else {
        format!(
            "--terminate-sessions would end {}",
            count(others.len() as u64, "other session")
        )
    };
    let mut question = if tables > 0 {
        format!("Database {db:?} on {host} holds {tables} tables. Replace its objects with the {about}?")
    } else {
        format!("Restore into database {db:?} on {host}?")
    };
    if !others.is_empty() {
        let _ = write!(
            question,
            "\nOther sessions connected to it{}:",
            if target.terminate_sessions {
                " (--terminate-sessions ends them first)"
            } else {
                " (a restore waits for their table locks)"
            }
        );
        for s in others {
            let _ = write!(question, "\n  {s}");
        }
    }
    Some(Confirmation {
        question,
        reason,
        given,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(tables: u64, others: usize, terminate: bool) -> Target {
        let session = |pid| Session {
            pid,
            user: "app".into(),
            application: "psql".into(),
            state: Some("idle".into()),
            seconds: None,
            holds_locks: false,
        };
        Target {
            database: "shop".into(),
            host: "localhost:5432".into(),
            server_major: 15,
            tables,
            empty: tables == 0,
            other_sessions: (1..=others).map(|p| session(p as i32)).collect(),
            terminate_sessions: terminate,
            create: false,
        }
    }

    #[test]
    fn a_backup_of_another_database_needs_from_database() {
        let path = Path::new("b.dump");
        let mut fired = Fired::default();
        let check = |target, from, scratch, fired: &mut Fired| {
            database_of_backup("shop", target, from, scratch, path, fired)
        };
        assert!(check("shop", None, false, &mut fired).is_ok());
        let err = check("shop2", None, false, &mut fired).unwrap_err();
        assert!(format!("{err}").contains("and the target is database \"shop2\""));
        let err = check("shop2", Some("x"), false, &mut fired).unwrap_err();
        assert!(format!("{err}").contains("not of \"x\" as --from-database says"));
        assert!(fired.0.is_empty());
        // A drill's scratch database: allowed, and no warning.
        assert!(check("aos_drill_x", Some("shop"), true, &mut fired).is_ok());
        assert!(fired.0.is_empty());
        assert!(check("shop2", Some("shop"), false, &mut fired).is_ok());
        assert_eq!(fired.0[0].guard, Guard::OtherDatabase);
    }

    #[test]
    fn production_refuses_unless_forced_and_then_warns() {
        let marker = ("APP_ENV".to_string(), "production".to_string());
        let mut fired = Fired::default();
        assert!(production(Some(&marker), false, &mut fired).is_err());
        assert!(production(None, false, &mut fired).is_ok());
        assert!(fired.0.is_empty());
        assert!(production(Some(&marker), true, &mut fired).is_ok());
        assert_eq!(
            fired.0[0].message,
            "APP_ENV=production: restoring into production because --force was given"
        );
    }

    #[test]
    fn jobs_apply_to_archives_only() {
        let mut fired = Fired::default();
        assert_eq!(jobs(DumpFormat::Custom, Some(4), &mut fired), Some(4));
        assert_eq!(jobs(DumpFormat::Custom, Some(1), &mut fired), None);
        assert!(fired.0.is_empty());
        assert_eq!(jobs(DumpFormat::Plain, Some(4), &mut fired), None);
        assert_eq!(fired.0[0].guard, Guard::JobsIgnored);
    }

    #[test]
    fn parallel_into_tables_is_refused_unless_forced() {
        assert!(parallel_into_populated(3, Some(2), false, "shop").is_err());
        assert!(parallel_into_populated(3, Some(2), true, "shop").is_ok());
        assert!(parallel_into_populated(0, Some(2), false, "shop").is_ok());
        assert!(parallel_into_populated(3, None, false, "shop").is_ok());
    }

    #[test]
    fn confirmation_asks_about_tables_and_sessions() {
        assert!(confirmation(&target(0, 2, false), "backup", false).is_none());
        let c = confirmation(&target(3, 1, false), "backup of \"shop\"", true).unwrap();
        assert!(c.given);
        assert_eq!(c.reason, "it holds 3 tables");
        assert!(c.question.starts_with(
            "Database \"shop\" on localhost:5432 holds 3 tables. Replace its objects with the backup of \"shop\"?\nOther sessions connected to it (a restore waits for their table locks):\n  pid 1 (user app"
        ));
        let c = confirmation(&target(0, 2, true), "backup", false).unwrap();
        assert_eq!(c.reason, "--terminate-sessions would end 2 other sessions");
        assert!(c
            .question
            .starts_with("Restore into database \"shop\" on localhost:5432?\nOther sessions connected to it (--terminate-sessions ends them first):"));
    }
}
