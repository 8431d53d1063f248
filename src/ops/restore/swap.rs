//! `restore --swap`: the backup is restored into a new database next to the target
//! (`<db>__aos_swap_<time>`, `--jobs` allowed: nothing is at risk there), checked (its row
//! counts against the backup's, then `validate`), and only then swapped in by two renames from a
//! maintenance connection: the target becomes `<db>__aos_old_<time>`, the new one takes its
//! name. Any failure before the renames drops the new database and leaves the target as it was.

use super::plan::{self, Held, RestorePlan, Target};
use super::{safety, Planned, RestoreReport, Run};
use crate::archive::meta::Meta;
use crate::archive::swaps::SwapRecord;
use crate::error::{Error, Kind};
use crate::ops::Context;
use crate::pg::conninfo::ConnInfo;
use crate::pg::consistency::{self, ValidationReport};
use crate::pg::db::Db;
use crate::pg::sessions::Session;
use crate::runtime::units::count;
use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::{Duration, Instant};

/// The longest database name PostgreSQL keeps (NAMEDATALEN - 1 bytes).
const MAX_NAME_BYTES: usize = 63;
/// What the new database's name adds to the target's.
const ASIDE_MARK: &str = "__aos_swap_";
/// The time stamp at the end of the names made aside, and its length.
const STAMP_FORMAT: &str = "%Y%m%d%H%M%S";
const STAMP_LEN: usize = 14;
/// What the old database's name adds to the target's.
pub const OLD_MARK: &str = "__aos_old_";

/// What `--swap` asks for.
#[derive(Debug, Clone, Default)]
pub struct SwapOptions {
    /// Drop the old database once the new one is in place (`--drop-old`).
    pub drop_old: bool,
}

/// The swap decided: the names of the two databases besides the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwapPlan {
    /// The new database the backup is restored into.
    pub aside: String,
    /// The name the target is kept under once the new database takes its place.
    pub old: String,
    /// The old database is dropped at the end (`--drop-old`).
    pub drop_old: bool,
    /// Other sessions on the target are ended before the renames (`--terminate-sessions`).
    pub terminate_sessions: bool,
}

impl SwapPlan {
    /// The names for a swap of `target` at `now`.
    pub(super) fn new(
        target: &str,
        now: DateTime<Utc>,
        options: &SwapOptions,
        terminate_sessions: bool,
    ) -> SwapPlan {
        let stamp = now.format(STAMP_FORMAT).to_string();
        SwapPlan {
            aside: marked(target, ASIDE_MARK, &stamp),
            old: marked(target, OLD_MARK, &stamp),
            drop_old: options.drop_old,
            terminate_sessions,
        }
    }
}

/// What every name [`SwapPlan::new`] gives the copy aside of `target` starts with (the
/// target's part shortened as there).
fn aside_prefix(target: &str) -> String {
    let mut full = marked(target, ASIDE_MARK, &"0".repeat(STAMP_LEN));
    full.truncate(full.len() - STAMP_LEN);
    full
}

/// `<target><mark><stamp>`, the target's part shortened (at a character boundary) to fit.
fn marked(target: &str, mark: &str, stamp: &str) -> String {
    let room = MAX_NAME_BYTES.saturating_sub(mark.len() + stamp.len());
    let mut end = target.len().min(room);
    while !target.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{mark}{stamp}", &target[..end])
}

/// What a swap did.
#[derive(Debug, Clone, Serialize)]
pub struct SwapReport {
    /// The name the old database is kept under (or was, when it was dropped).
    pub old: String,
    /// It was dropped (`--drop-old`).
    pub old_dropped: bool,
    /// How many tables' row counts matched the backup's; `None`: the backup recorded none.
    pub tables_checked: Option<usize>,
    /// The other sessions ended before the renames.
    pub sessions_ended: usize,
}

/// `--swap` into a database that does not exist: there is nothing to swap.
pub(super) fn refuse_missing(conn: &ConnInfo) -> anyhow::Error {
    Error::usage(format!(
        "--swap needs an existing target, and database {:?} does not exist",
        conn.dbname().unwrap_or_default()
    ))
    .hint("leave out --swap: with --create, the backup is restored into the new database directly")
    .into()
}

/// Carries out a swap plan (its confirmation already checked).
pub(super) async fn execute(ctx: &Context, plan: RestorePlan, held: Held) -> Result<RestoreReport> {
    let Held {
        conn,
        db,
        safety_backup,
        lock,
        input,
    } = held;
    // A rename needs no session on the target: ours goes first.
    drop(db);
    let mut swap = plan.swap.clone().context("not a swap")?;
    let target = plan.target.clone();
    let maintenance = plan::maintenance_avoiding(ctx, &conn, Some(&target.database)).await?;
    check_privileges(&maintenance, &target.database).await?;
    remove_stale(&maintenance, &target.database).await;
    // A swap of the same second before (its old database kept) has these names already.
    swap.old = free_name(&maintenance, &target.database, OLD_MARK, &swap.old).await?;
    swap.aside = free_name(&maintenance, &target.database, ASIDE_MARK, &swap.aside).await?;
    let safety = match safety_backup {
        Some(options) => Some(safety::take(ctx, options, &conn, &target, lock.as_ref()).await?),
        None => None,
    };
    let aside = Aside {
        ctx,
        maintenance: &maintenance,
        planned: Planned::of(&plan),
        target: &target,
        meta: plan.backup.meta.as_ref(),
        swap: &swap,
        conn: conn.with_dbname(&swap.aside),
        validate: plan.validate,
        force: plan.force,
    };
    let prepared = aside.prepare(input).await;
    let done = match prepared {
        Ok(done) => done,
        Err(e) => return Err(aside.abandon(e).await),
    };
    aside.rename(&target.database).await?;
    let old_dropped = drop_old(&maintenance, &swap).await;
    record(
        ctx,
        &plan.backup.path,
        SwapRecord {
            swapped_at: Utc::now(),
            server: target.host.clone(),
            database: target.database.clone(),
            old: swap.old.clone(),
            old_dropped,
        },
    );
    let mut report = super::completed(plan, done.duration, done.bytes);
    report.safety_backup = safety;
    report.validation = done.validation;
    report.swap = Some(SwapReport {
        old: swap.old,
        old_dropped,
        tables_checked: done.checked,
        sessions_ended: done.ended,
    });
    Ok(report)
}

/// Records the swap next to the backup (and next to the backup folder's copy of a backup
/// fetched from elsewhere), so that `list` names the old database it kept. The swap is done
/// whatever happens here: a record that cannot be written is a warning.
fn record(ctx: &Context, backup: &std::path::Path, swap: SwapRecord) {
    let mut places = vec![backup.to_path_buf()];
    if let Some(name) = backup.file_name() {
        let local = ctx.dir.join(name);
        if local != backup && Meta::path_for(&local).is_file() {
            places.push(local);
        }
    }
    for place in places {
        if let Err(e) = crate::archive::swaps::append(&place, swap.clone()) {
            tracing::warn!(
                "the swap could not be recorded next to {} (so `list` will not name {:?}): {e:#}",
                place.display(),
                swap.old
            );
        }
    }
}

/// `name` (`<target><mark><stamp>`) when no database has it; else the first free
/// `<target><mark><stamp>_<n>`.
async fn free_name(maintenance: &Db, target: &str, mark: &str, name: &str) -> Result<String> {
    if !maintenance.database_exists(name).await? {
        return Ok(name.to_string());
    }
    let stamp = name.rsplit_once(mark).map_or(name, |(_, stamp)| stamp);
    for n in 2..100 {
        let candidate = marked(target, mark, &format!("{stamp}_{n}"));
        if !maintenance.database_exists(&candidate).await? {
            return Ok(candidate);
        }
    }
    Err(Error::refused(format!(
        "refusing to swap: databases {name:?} to {name:?}_99 all exist"
    ))
    .hint("drop the old copies kept by earlier swaps")
    .into())
}

/// Refuses a swap the role cannot finish, before anything is restored.
async fn check_privileges(maintenance: &Db, database: &str) -> Result<()> {
    let missing = maintenance.missing_rename_privileges(database).await?;
    if missing.is_empty() {
        return Ok(());
    }
    let role = maintenance.current_user().await.unwrap_or_default();
    Err(Error::new(
        Kind::Refused,
        format!(
            "refusing to swap: renaming database {database:?} needs the CREATEDB privilege and ownership of the database, and role {:?} lacks {}; nothing was changed",
            crate::runtime::redact::sanitize(&role),
            missing.join(" and ")
        ),
    )
    .hint("as a superuser: ALTER ROLE <role> CREATEDB; ALTER DATABASE <db> OWNER TO <role> (or swap as the owner); or restore in place without --swap")
    .into())
}

/// Drops what a killed swap of `database` left aside (`<db>__aos_swap_*` with nobody connected;
/// one in use by a running swap cannot be dropped and stays).
async fn remove_stale(maintenance: &Db, database: &str) {
    let prefix = aside_prefix(database);
    let Ok(stale) = maintenance.databases_starting_with(&prefix).await else {
        return;
    };
    for name in stale {
        match maintenance.drop_database(&name, false).await {
            Ok(()) => tracing::info!("dropped {name:?}, left by an interrupted swap"),
            Err(e) => tracing::debug!("left {name:?} alone: {e:#}"),
        }
    }
}

/// What was done aside before the renames.
struct Prepared {
    duration: Duration,
    bytes: u64,
    /// The tables whose row counts matched (none: the backup recorded none).
    checked: Option<usize>,
    /// The sessions ended on the target.
    ended: usize,
    validation: Option<ValidationReport>,
}

/// The new database next to the target, from its creation to the renames.
struct Aside<'a> {
    ctx: &'a Context,
    maintenance: &'a Db,
    planned: Planned<'a>,
    /// The target, as planned.
    target: &'a Target,
    /// The backup's sidecar (its row counts).
    meta: Option<&'a Meta>,
    swap: &'a SwapPlan,
    /// Its connection.
    conn: ConnInfo,
    /// Run `validate` on it.
    validate: bool,
    /// Swap it in despite validate's findings.
    force: bool,
}

impl Aside<'_> {
    /// Creates it, restores into it, checks it, and clears the target of other sessions.
    async fn prepare(&self, input: Option<Box<dyn std::io::Read + Send>>) -> Result<Prepared> {
        let name = &self.swap.aside;
        self.maintenance.create_database(name).await?;
        // From here until the renames, an interruption is about the database aside: the
        // target is untouched.
        self.ctx.op.restore().begins(name);
        tracing::info!("restoring aside into the new database {name:?}");
        let target = Target {
            database: name.clone(),
            tables: 0,
            empty: true,
            other_sessions: Vec::new(),
            terminate_sessions: false,
            create: false,
            ..self.target.clone()
        };
        let run = Run {
            ctx: self.ctx,
            conn: &self.conn,
            plan: self.planned,
            target: &target,
        };
        let (duration, bytes) = run.run(input).await?;
        self.stop_if_cancelled()?;
        let checked = self.check_rows(self.meta).await?;
        let validation = if self.validate {
            validate_aside(self.ctx, &self.conn, self.force).await?
        } else {
            None
        };
        self.stop_if_cancelled()?;
        let ended = self.clear_target().await?;
        Ok(Prepared {
            duration,
            bytes,
            checked,
            ended,
            validation,
        })
    }

    /// A signal (one that came while the COMMIT aside waited, say) stops the swap before the
    /// renames.
    fn stop_if_cancelled(&self) -> Result<()> {
        match self.ctx.op.cancelled() {
            Some(sig) => Err(self.ctx.op.interrupted_error(sig).into()),
            None => Ok(()),
        }
    }

    /// Compares each table's rows with the counts recorded at backup time.
    async fn check_rows(&self, meta: Option<&Meta>) -> Result<Option<usize>> {
        let Some(recorded) = meta.and_then(|m| m.row_counts.as_ref()) else {
            tracing::warn!(
                "the backup recorded no row counts: the restored copy's are not compared"
            );
            return Ok(None);
        };
        let db = self.ctx.connect(&self.conn).await?;
        let now = crate::pg::rowcount::count_rows(db.client()).await?;
        let mismatches: Vec<String> = recorded
            .iter()
            .filter_map(|r| {
                let found = now
                    .iter()
                    .find(|t| t.schema == r.schema && t.table == r.table)
                    .map(|t| t.rows);
                let shown = format!(
                    "{}.{}",
                    crate::runtime::redact::sanitize(&r.schema),
                    crate::runtime::redact::sanitize(&r.table)
                );
                match found {
                    Some(n) if n == r.rows => None,
                    Some(n) => Some(format!(
                        "{shown}: {n} rows restored, {} at backup time",
                        r.rows
                    )),
                    None => Some(format!("{shown}: missing ({} rows at backup time)", r.rows)),
                }
            })
            .collect();
        if mismatches.is_empty() {
            tracing::info!(
                "row counts match the backup's ({})",
                count(recorded.len() as u64, "table")
            );
            return Ok(Some(recorded.len()));
        }
        Err(Error::new(
            Kind::Failure,
            format!(
                "the copy restored aside does not match the backup's row counts: {}",
                mismatches.join("; ")
            ),
        )
        .hint("the backup or its sidecar is not what it was; use another backup")
        .into())
    }

    /// The renames need no other session on the target: they are ended with
    /// `--terminate-sessions` (confirmed with the restore), else the swap stops here.
    async fn clear_target(&self) -> Result<usize> {
        let target = &self.target.database;
        let others = self.maintenance.sessions_on(target).await?;
        if others.is_empty() {
            return Ok(0);
        }
        if !self.swap.terminate_sessions {
            return Err(Error::new(
                Kind::Refused,
                format!(
                    "the swap renames database {target:?}, which needs no other session on it, and {} connected: {}",
                    count(others.len() as u64, "other session is"),
                    crate::pg::sessions::describe(&others)
                ),
            )
            .hint("stop those applications, or add --terminate-sessions to end the sessions (asks first; --yes confirms)")
            .into());
        }
        end_sessions(self.maintenance, target, &others).await?;
        Ok(others.len())
    }

    /// Target -> old, aside -> target. If the second rename fails, the first is undone.
    async fn rename(&self, target: &str) -> Result<()> {
        let m = self.maintenance;
        if let Err(e) = m.swap_names(target, &self.swap.old, &self.swap.aside).await {
            return Err(self.abandon(e).await);
        }
        tracing::info!(
            "swapped: {:?} is the restored database; the old one is kept as {:?}",
            target,
            self.swap.old
        );
        Ok(())
    }

    /// Drops the new database after a failure before the renames: the target is as it was.
    async fn abandon(&self, e: anyhow::Error) -> anyhow::Error {
        let name = &self.swap.aside;
        // Not WITH (FORCE): for a role that is not a superuser it fails on an autovacuum worker,
        // which a plain DROP DATABASE waits for.
        let dropped = match self.maintenance.drop_database(name, false).await {
            Ok(()) => "the copy restored aside was dropped".to_string(),
            Err(d) => {
                tracing::warn!("could not drop the database restored aside, {name:?}: {d:#}");
                format!("the copy restored aside is left as {name:?} (drop it by hand, or the next swap does)")
            }
        };
        e.context(format!(
            "the swap stopped before its renames: database {:?} is as it was, and {dropped}",
            self.target.database
        ))
    }
}

/// Runs `validate`'s checks on the copy restored aside, before it is swapped in: findings stop
/// the swap (the target stays as it was) unless `force`. Checks that cannot run are a warning.
async fn validate_aside(
    ctx: &Context,
    conn: &ConnInfo,
    force: bool,
) -> Result<Option<ValidationReport>> {
    let checked = async {
        let db = ctx.connect(conn).await?;
        consistency::validate(db.client(), &consistency::Options::default()).await
    }
    .await;
    let report = match checked {
        Ok(report) => report,
        Err(e) => {
            tracing::warn!("validate could not run on the copy restored aside: {e:#}");
            return Ok(None);
        }
    };
    for line in report.warnings() {
        tracing::warn!("validate, on the copy restored aside: {line}");
    }
    if report.is_clean() || force {
        return Ok(Some(report));
    }
    Err(Error::new(
        Kind::Findings,
        format!(
            "validate found consistency problems in the copy restored aside ({}), so it was not swapped in",
            report.headline()
        ),
    )
    .hint("they came with the backup: run `aos-backup validate` on a restored copy for the details; --force swaps it in anyway")
    .into())
}

/// Ends the other sessions on `database` and waits (up to 5 s) until they are gone.
async fn end_sessions(maintenance: &Db, database: &str, others: &[Session]) -> Result<()> {
    for s in others {
        match maintenance.terminate(s.pid).await {
            Ok(true) => tracing::info!("ended session {s}"),
            Ok(false) => tracing::warn!("could not end session pid {}", s.pid),
            Err(e) => tracing::warn!("could not end the session: {e:#}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = maintenance.sessions_on(database).await?;
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::new(
                Kind::Failure,
                format!(
                    "other sessions are still connected to {database:?}: {}",
                    crate::pg::sessions::describe(&left)
                ),
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With `--drop-old`, drops the old database; whether it is gone.
async fn drop_old(maintenance: &Db, swap: &SwapPlan) -> bool {
    if !swap.drop_old {
        return false;
    }
    match maintenance.drop_database(&swap.old, false).await {
        Ok(()) => {
            tracing::info!("dropped the old database {:?} (--drop-old)", swap.old);
            true
        }
        Err(e) => {
            tracing::warn!("could not drop the old database {:?}: {e:#}", swap.old);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stale_copies_prefix_matches_the_names_given_even_for_long_targets() {
        let now = chrono::Utc::now();
        for target in [
            "shop",
            "customer_ledger_production_europe_west_primary",
            &"é".repeat(31),
        ] {
            let plan = SwapPlan::new(target, now, &SwapOptions::default(), false);
            assert!(
                plan.aside.starts_with(&aside_prefix(target)),
                "{target}: {}",
                plan.aside
            );
            assert!(plan.aside.len() <= MAX_NAME_BYTES);
        }
    }

    #[test]
    fn names_are_dated_and_fit_postgresql() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T10:15:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let p = SwapPlan::new("shop", now, &SwapOptions::default(), false);
        assert_eq!(p.aside, "shop__aos_swap_20261129101500");
        assert_eq!(p.old, "shop__aos_old_20261129101500");
        let long = "é".repeat(40);
        let p = SwapPlan::new(&long, now, &SwapOptions::default(), false);
        assert!(p.aside.len() <= MAX_NAME_BYTES && p.aside.ends_with("__aos_swap_20261129101500"));
        assert!(p.old.len() <= MAX_NAME_BYTES);
    }
}
