//! A drill, as an operation: it proves that a backup restores without touching the live
//! database. [`plan`] chooses the backup and where the scratch database goes (a new database on
//! the live server, on another server, or in an ephemeral cluster); [`execute`] creates it,
//! restores into it through the restore operation, runs the checks (row counts, validate, the
//! user's queries), removes it, and returns a [`DrillReport`] with the RTO, the RPO and every mismatch,
//! also written next to the backup.

use crate::archive::crypto::KeySource;
use crate::archive::drill::Outcome;
use crate::archive::meta::Meta;
use crate::catalog::gaps::Gap;
use crate::error::{Error, Kind};
use crate::ops::restore::{self, RestoreOptions};
use crate::ops::validate::{ValidateOptions, ValidationReport};
use crate::ops::Context;
use crate::pg::checks::{QueryCheck, RowMismatch};
use crate::pg::cluster::Cluster;
use crate::pg::conninfo::ConnInfo;
use crate::pg::db::Db;
use crate::pg::scratch;
use crate::runtime::owner::Owner;
use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the scratch database goes.
#[derive(Debug, Clone)]
pub enum ScratchChoice {
    /// On the live server when its role may create databases, else in an ephemeral cluster.
    Auto,
    /// On the server of this connection (`--scratch-url`; its database is only connected to).
    Server(ConnInfo),
    /// In an ephemeral cluster of the backup's major version (`--ephemeral`).
    Ephemeral,
}

/// What to drill, and where: free of the command line.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The backup: an id or a unique prefix of one, `latest`, or a path.
    pub backup: String,
    /// Among whose backups `latest` and id prefixes look (none: the live database's, else the
    /// whole folder).
    pub database: Option<String>,
    /// The live database (`DATABASE_URL`), resolved: the default scratch server, and the one
    /// database the scratch database must never be.
    pub live: Option<ConnInfo>,
    /// Where the scratch database goes.
    pub scratch: ScratchChoice,
    /// The file of queries that must each return `true` or at least one row (`--check-sql`).
    pub check_sql: Option<PathBuf>,
    /// Run validate's deep checks too (`--deep`).
    pub deep: bool,
    /// The identities or passphrase that open encrypted backups.
    pub keys: KeySource,
}

/// A drill, decided, not yet run.
#[derive(Debug)]
pub struct DrillPlan {
    /// The backup's file or folder.
    pub path: PathBuf,
    /// Its sidecar.
    pub meta: Meta,
    /// Where the scratch database goes.
    pub place: Place,
    /// The `--check-sql` statements.
    pub queries: Vec<String>,
    /// Run validate's deep checks too.
    pub deep: bool,
    live: Option<ConnInfo>,
    keys: KeySource,
}

/// Where the scratch database goes, decided.
#[derive(Debug, Clone)]
pub enum Place {
    /// A new database on this server (connected to through this connection's database).
    Server(ConnInfo),
    /// An ephemeral cluster of this major version.
    Ephemeral {
        /// The backup's server major version.
        major: u32,
    },
}

/// What a drill found.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// When it ran.
    pub drilled_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: Outcome,
    /// The RTO: how long the restore took, in milliseconds (none when it failed).
    pub rto_ms: Option<u64>,
    /// The backup drilled.
    pub backup: DrilledBackup,
    /// Where it was restored.
    pub scratch: Scratch,
    /// The RPO, as far as the folder shows it.
    pub rpo: Rpo,
    /// Why the restore failed.
    pub restore_error: Option<String>,
    /// The row counts compared with the backup's.
    pub row_counts: RowCounts,
    /// What validate found in the restored database (none when the restore failed).
    pub validation: Option<ValidationReport>,
    /// The `--check-sql` queries and their verdicts.
    pub checks: Vec<QueryCheck>,
    /// The whole drill, from the scratch database's creation to its removal.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
}

/// The backup a drill restored.
#[derive(Debug, Clone, Serialize)]
pub struct DrilledBackup {
    /// Its id.
    pub id: String,
    /// Its file or folder.
    pub path: PathBuf,
    /// The database it holds.
    pub database: String,
    /// When it was taken.
    pub taken_at: DateTime<Utc>,
    /// The server version it was taken from.
    pub server_version: String,
}

/// Where a scratch database was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScratchKind {
    /// A new database on a server (DATABASE_URL's, or `--scratch-url`'s).
    Database,
    /// A database in an ephemeral cluster of its own.
    Ephemeral,
}

/// The scratch database.
#[derive(Debug, Clone, Serialize)]
pub struct Scratch {
    /// Where it was.
    pub kind: ScratchKind,
    /// Its server, as shown to people.
    pub host: String,
    /// Its name.
    pub database: String,
    /// It was dropped (or its cluster removed) after the drill.
    pub removed: bool,
}

/// The recovery point: how much data a restore of this backup would lose.
#[derive(Debug, Clone, Serialize)]
pub struct Rpo {
    /// The backup's age when the drill ran, in seconds.
    pub backup_age_seconds: i64,
    /// The largest gap between consecutive complete backups of its database in the folder.
    pub largest_gap: Option<Gap>,
    /// How many complete backups of its database the folder holds.
    pub complete_backups: usize,
}

/// The row counts, restored against recorded.
#[derive(Debug, Clone, Serialize)]
pub struct RowCounts {
    /// The backup recorded its row counts (older backups did not).
    pub recorded: bool,
    /// How many tables were compared.
    pub tables: usize,
    /// The tables whose counts differ.
    pub mismatches: Vec<RowMismatch>,
}

impl DrillReport {
    /// Every mismatch, in words: the failed restore, each table whose rows differ, each query
    /// that failed.
    #[must_use]
    pub fn mismatches(&self) -> Vec<String> {
        let restore = self
            .restore_error
            .iter()
            .map(|e| format!("restore failed: {e}"));
        let rows = self.row_counts.mismatches.iter().map(ToString::to_string);
        let validation = self.validation.iter().flat_map(|v| {
            v.failed().map(|c| {
                let examples = if c.examples.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.examples.join("; "))
                };
                format!(
                    "validate: {} {} ({}){examples}",
                    c.failing,
                    c.check.unit(),
                    c.check.title()
                )
            })
        });
        let queries = self.checks.iter().filter(|c| !c.passed).map(|c| {
            format!(
                "check-sql: {} returned {}",
                crate::runtime::redact::sanitize(&one_line(&c.statement)),
                c.result
            )
        });
        restore
            .chain(rows)
            .chain(validation)
            .chain(queries)
            .collect()
    }

    /// The error a failed drill ends with (its kind decides the exit code); none when it passed.
    #[must_use]
    pub fn error(&self) -> Option<Error> {
        let id = &self.backup.id;
        match self.outcome {
            Outcome::Passed => None,
            Outcome::RestoreFailed => Some(
                Error::new(
                    Kind::DrillRestore,
                    format!("drill of {id} failed: the backup did not restore"),
                )
                .hint("the backup cannot be trusted: check its restore error above, and make a new backup"),
            ),
            Outcome::CheckFailed => Some(
                Error::new(
                    Kind::DrillCheck,
                    format!(
                        "drill of {id} failed: {} mismatch(es) after the restore",
                        self.mismatches().len()
                    ),
                )
                .hint("the backup restored, but not as expected: see the mismatches above"),
            ),
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn millis<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Plans a drill: chooses the backup, reads the queries, and decides where the scratch database
/// goes; refuses a scratch server that is the live database. Changes nothing.
pub async fn plan(ctx: &Context, opts: &DrillOptions) -> Result<DrillPlan> {
    let (path, meta) = choose_backup(ctx, opts)?;
    let queries = read_queries(opts.check_sql.as_deref())?;
    let place = choose_place(ctx, opts, &meta).await?;
    Ok(DrillPlan {
        path,
        meta,
        place,
        queries,
        deep: opts.deep,
        live: opts.live.clone(),
        keys: opts.keys.clone(),
    })
}

/// The backup to drill and its sidecar (a drill needs one: its database, date and row counts).
fn choose_backup(ctx: &Context, opts: &DrillOptions) -> Result<(PathBuf, Meta)> {
    let wanted = &opts.backup;
    let path = if Path::new(wanted).exists() {
        PathBuf::from(wanted)
    } else {
        let entries = crate::catalog::scan(&ctx.dir)?;
        let scope = crate::catalog::Scope {
            database: opts
                .database
                .as_deref()
                .or_else(|| opts.live.as_ref().and_then(ConnInfo::dbname)),
            now: ctx.now,
        };
        crate::catalog::resolve(&entries, wanted, &ctx.dir, &scope)?
            .path
            .clone()
    };
    let meta = Meta::read(&Meta::path_for(&path)).map_err(|e| {
        Error::usage(format!(
            "{}: a drill needs the backup's metadata: {e:#}",
            path.display()
        ))
        .hint("drill a backup that aos-backup made (see `aos-backup list`)")
    })?;
    tracing::info!(
        "drilling backup {} of database {:?}, taken {}",
        meta.id,
        meta.database,
        meta.started_at.format("%Y-%m-%d %H:%M UTC")
    );
    Ok((path, meta))
}

/// The `--check-sql` statements; a file without any is a mistake.
fn read_queries(file: Option<&Path>) -> Result<Vec<String>> {
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::usage(format!("cannot read --check-sql {}: {e}", file.display())))?;
    let queries = crate::archive::sqlfeed::split_statements(&text);
    if queries.is_empty() {
        return Err(Error::usage(format!(
            "--check-sql {} holds no query",
            file.display()
        ))
        .hint("write one query per statement, ending each with `;`, e.g. SELECT count(*) > 0 FROM users;")
        .into());
    }
    Ok(queries)
}

/// Decides where the scratch database goes: `--ephemeral`, `--scratch-url` (never the live
/// database), else the live server when its role may create databases, else an ephemeral
/// cluster.
async fn choose_place(ctx: &Context, opts: &DrillOptions, meta: &Meta) -> Result<Place> {
    let ephemeral = Place::Ephemeral {
        major: backup_major(meta)?,
    };
    let place = match (&opts.scratch, &opts.live) {
        (ScratchChoice::Ephemeral, _) | (ScratchChoice::Auto, None) => ephemeral,
        (ScratchChoice::Server(conn), live) => {
            refuse_live(ctx, conn, live.as_ref())?;
            Place::Server(conn.clone())
        }
        (ScratchChoice::Auto, Some(live)) => {
            let db = ctx.connect(live).await?;
            if scratch::can_create(&db).await? {
                Place::Server(live.clone())
            } else {
                tracing::info!("the role of DATABASE_URL may not create databases (no CREATEDB): drilling in an ephemeral cluster");
                ephemeral
            }
        }
    };
    if matches!(place, Place::Ephemeral { .. }) {
        if let Some(where_) = ctx.locator.container() {
            return Err(Error::usage(format!(
                "an ephemeral cluster runs on this machine, but the tools run in the {where_}"
            ))
            .hint("drill on a server the container can reach with --scratch-url, or give DATABASE_URL's role CREATEDB")
            .into());
        }
    }
    Ok(place)
}

/// The backup's server major version (`15.4` is 15, `9.6.3` is 9).
fn backup_major(meta: &Meta) -> Result<u32> {
    crate::pg::tools::parse_version(&format!("x (PostgreSQL) {}", meta.server_version))
        .map(|(_, major)| major)
        .with_context(|| {
            format!(
                "the backup's server version {:?} is unreadable",
                meta.server_version
            )
        })
}

/// The guard: the scratch server must not name the live database.
fn refuse_live(ctx: &Context, scratch: &ConnInfo, live: Option<&ConnInfo>) -> Result<()> {
    let Some(live) = live else { return Ok(()) };
    let lookup = |k: &str| ctx.var(k);
    if scratch::same_database(scratch, live, &lookup) {
        return Err(Error::refused(format!(
            "refusing to drill: --scratch-url names the live database {:?} on {}",
            live.effective_dbname(&lookup),
            live.host_display()
        ))
        .hint("a drill never touches the live database: give --scratch-url another server (its maintenance database, e.g. postgres), leave it out to create a scratch database beside the live one, or use --ephemeral")
        .into());
    }
    Ok(())
}

/// Runs the drill: the scratch database is created, restored into, checked and removed
/// (interrupted, it is removed too; killed, the next drill removes it). A restore or a check
/// that fails is in the report; the report is also written next to the backup.
pub async fn execute(ctx: &Context, plan: DrillPlan) -> Result<DrillReport> {
    let started = Instant::now();
    crate::pg::cluster::sweep();
    let (server, cluster) = open_server(ctx, &plan.place).await?;
    let admin = ctx.connect(&server).await?;
    scratch::sweep(&admin).await?;
    let name = scratch::name_for(&plan.meta.id);
    guard_name(ctx, &server, &name, plan.live.as_ref())?;
    scratch::create(&admin, &name, &Owner::current()).await?;
    let target = server.with_dbname(&name);
    let ran = run_in(ctx, &plan, &target).await;
    let removed = remove(&admin, &name, cluster).await;
    let found = match ran {
        Ok(found) => found,
        Err(e) if !removed => {
            return Err(e.context(format!(
                "the scratch database {name:?} could not be dropped and is left (the next drill drops it)"
            )))
        }
        Err(e) => return Err(e),
    };
    let report = report(ctx, &plan, &server, &name, found, removed, started);
    record(&ctx.dir, &plan.path, &report);
    Ok(report)
}

/// The server the scratch database goes on, and the ephemeral cluster that runs it if any.
async fn open_server(ctx: &Context, place: &Place) -> Result<(ConnInfo, Option<Cluster>)> {
    match place {
        Place::Server(conn) => Ok((conn.clone(), None)),
        Place::Ephemeral { major } => {
            let bins = crate::pg::cluster::find_binaries(&ctx.locator, *major)?;
            let cluster = Cluster::start(&ctx.op, &bins, &|k| ctx.var(k)).await?;
            Ok((cluster.conn.clone(), Some(cluster)))
        }
    }
}

/// The scratch database is never the live one (its name says `aos_drill_`; this makes sure).
fn guard_name(ctx: &Context, server: &ConnInfo, name: &str, live: Option<&ConnInfo>) -> Result<()> {
    refuse_live(ctx, &server.with_dbname(name), live)
}

/// Drops the scratch database (or removes the cluster, which holds it); whether it is gone.
async fn remove(admin: &Db, name: &str, cluster: Option<Cluster>) -> bool {
    if let Some(cluster) = cluster {
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .is_ok()
    } else {
        match scratch::drop_database(admin, name).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("{e:#}; the next drill drops it");
                false
            }
        }
    }
}

/// What the restore and the checks found.
struct Found {
    rto: Option<Duration>,
    restore_error: Option<String>,
    rows: RowCounts,
    validation: Option<ValidationReport>,
    checks: Vec<QueryCheck>,
}

/// Restores into `target`, then checks it.
async fn run_in(ctx: &Context, plan: &DrillPlan, target: &ConnInfo) -> Result<Found> {
    let rto = match restore_into(ctx, plan, target).await {
        Ok(rto) => rto,
        Err(e) => return restore_failed(ctx, e),
    };
    let db = ctx.connect(target).await?;
    // Nothing else writes to the scratch database: the row counts and the consistency checks
    // read it side by side, on two connections.
    let (rows, validation) =
        tokio::join!(compare_rows(&db, &plan.meta), validate(ctx, plan, target));
    let (rows, validation) = (rows?, validation?);
    let checks = crate::pg::checks::run_queries(&db, &plan.queries).await;
    Ok(Found {
        rto: Some(rto),
        restore_error: None,
        rows,
        validation: Some(validation),
        checks,
    })
}

/// The restore operation, into the scratch database; its duration.
async fn restore_into(ctx: &Context, plan: &DrillPlan, target: &ConnInfo) -> Result<Duration> {
    let sub = Context {
        op: ctx.op.child(),
        ..ctx.clone()
    };
    let options = RestoreOptions {
        backup: plan.path.display().to_string(),
        from_database: Some(plan.meta.database.clone()),
        target: Ok(target.clone()),
        jobs: None,
        lock_timeout: None,
        terminate_sessions: false,
        force: false,
        confirmed: true,
        production_marker: None,
        keys: plan.keys.clone(),
        validate: false,
        scratch_target: true,
        target_db: None,
        create: false,
        swap: None,
        safety_backup: None,
    };
    let restore_plan = restore::plan(&sub, &options).await?;
    let report = restore::execute(&sub, restore_plan).await?;
    Ok(report.duration)
}

/// The validate operation, on the scratch database.
async fn validate(ctx: &Context, plan: &DrillPlan, target: &ConnInfo) -> Result<ValidationReport> {
    let options = ValidateOptions {
        conn: target.clone(),
        deep: plan.deep,
        examples: crate::ops::validate::DEFAULT_EXAMPLES,
    };
    let validate_plan = crate::ops::validate::plan(ctx, &options)?;
    Ok(crate::ops::validate::execute(ctx, validate_plan)
        .await?
        .validation)
}

/// A restore that failed: a finding of the drill, unless it says nothing about the backup (an
/// interruption, a tool or a connection missing, bad input), which ends the drill as an error.
fn restore_failed(ctx: &Context, e: anyhow::Error) -> Result<Found> {
    if let Some(sig) = ctx.op.cancelled() {
        return Err(ctx.op.interrupted_error(sig).into());
    }
    let kind = crate::error::find(&e).map(|t| t.kind);
    if matches!(
        kind,
        Some(
            Kind::Usage
                | Kind::Locked
                | Kind::Tools
                | Kind::Connection
                | Kind::Interrupted
                | Kind::Terminated
        )
    ) {
        return Err(e);
    }
    let message = Error::from_anyhow(e).message;
    tracing::error!("the backup did not restore: {message}");
    Ok(Found {
        rto: None,
        restore_error: Some(message),
        rows: RowCounts {
            recorded: false,
            tables: 0,
            mismatches: Vec::new(),
        },
        validation: None,
        checks: Vec::new(),
    })
}

/// The scratch database's row counts against the backup's ("not recorded" for older backups).
async fn compare_rows(db: &Db, meta: &Meta) -> Result<RowCounts> {
    let Some(recorded) = &meta.row_counts else {
        tracing::info!("row counts: not recorded (the backup is older than row counting)");
        return Ok(RowCounts {
            recorded: false,
            tables: 0,
            mismatches: Vec::new(),
        });
    };
    let restored = crate::pg::rowcount::count_rows(db.client()).await?;
    Ok(RowCounts {
        recorded: true,
        tables: recorded.len().max(restored.len()),
        mismatches: crate::pg::checks::compare_rows(recorded, &restored),
    })
}

/// The report, from what was found and the folder's catalog.
fn report(
    ctx: &Context,
    plan: &DrillPlan,
    server: &ConnInfo,
    name: &str,
    found: Found,
    removed: bool,
    started: Instant,
) -> DrillReport {
    let meta = &plan.meta;
    let outcome = if found.restore_error.is_some() {
        Outcome::RestoreFailed
    } else if !found.rows.mismatches.is_empty()
        || found.validation.as_ref().is_some_and(|v| !v.is_clean())
        || found.checks.iter().any(|c| !c.passed)
    {
        Outcome::CheckFailed
    } else {
        Outcome::Passed
    };
    DrillReport {
        drilled_at: ctx.now,
        outcome,
        rto_ms: found
            .rto
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        backup: DrilledBackup {
            id: meta.id.clone(),
            path: plan.path.clone(),
            database: meta.database.clone(),
            taken_at: meta.started_at,
            server_version: meta.server_version.clone(),
        },
        scratch: Scratch {
            kind: match plan.place {
                Place::Server(_) => ScratchKind::Database,
                Place::Ephemeral { .. } => ScratchKind::Ephemeral,
            },
            host: server.host_display(),
            database: name.to_string(),
            removed,
        },
        rpo: rpo(ctx, plan),
        restore_error: found.restore_error,
        row_counts: found.rows,
        validation: found.validation,
        checks: found.checks,
        duration: started.elapsed(),
    }
}

/// The backup's age now, and the largest gap between the complete backups of its database in
/// the folder that holds it.
fn rpo(ctx: &Context, plan: &DrillPlan) -> Rpo {
    let folder = plan.path.parent().unwrap_or(&ctx.dir);
    let entries = crate::catalog::scan(folder).unwrap_or_default();
    let db = &plan.meta.database;
    Rpo {
        backup_age_seconds: (ctx.now - plan.meta.started_at).num_seconds(),
        largest_gap: crate::catalog::gaps::largest_gap(&entries, db, ctx.now),
        complete_backups: crate::catalog::gaps::complete_count(&entries, db),
    }
}

/// Writes the report next to the backup, and its summary as the database's most recent drill
/// in the folder `dir`; a drill that could not record its result still reports it.
fn record(dir: &Path, backup: &Path, report: &DrillReport) {
    if backup.exists() {
        let written = serde_json::to_value(report)
            .map_err(anyhow::Error::from)
            .and_then(|v| crate::archive::drill::write(backup, &v));
        if let Err(e) = written {
            tracing::warn!("cannot record the drill's result next to the backup: {e:#}");
        }
    }
    if !dir.is_dir() {
        return;
    }
    let last = crate::archive::drill::LastDrill {
        backup: report.backup.id.clone(),
        summary: crate::archive::drill::Summary {
            drilled_at: report.drilled_at,
            outcome: report.outcome,
            rto_ms: report.rto_ms,
        },
    };
    if let Err(e) = crate::archive::drill::write_last(dir, &report.backup.database, &last) {
        tracing::warn!(
            "cannot record the drill as the database's most recent in {}: {e:#}",
            dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)]
    fn plan_and_execute_are_send(ctx: &Context, opts: &DrillOptions, plan: DrillPlan) {
        fn send<T: Send>(_: T) {}
        send(super::plan(ctx, opts));
        send(execute(ctx, plan));
    }

    #[test]
    fn statements_are_shown_on_one_line() {
        assert_eq!(one_line("SELECT 1\n  FROM t"), "SELECT 1 FROM t");
    }
}
