//! The backup operation: [`plan`] checks the options, [`execute`] runs pg_dump through the sink
//! into a temp file, checks it is whole, renames it without overwriting, writes its sidecar, and
//! then applies the retention policy when one is configured. It prints nothing: it returns a
//! [`BackupReport`] and logs through `tracing`.

mod dump;
mod finish;
mod globals;
mod plan;
mod prepare;
mod rows;

pub use dump::Completeness;
pub use plan::{BackupPlan, EncryptionPlan};

use crate::archive::crypto::{KeySource, Recipients, Sealer};
use crate::archive::format::{Compression, DumpFormat};
use crate::archive::meta::GlobalsFile;
use crate::archive::meta::Meta;
use crate::archive::naming;
use crate::catalog::retention::Policy;
use crate::ops::Context;
use crate::pg::conninfo::ConnInfo;
use crate::runtime::units::count;
use crate::storage::lock::FolderLock;
use anyhow::{Context as _, Result};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a backup is asked to do, free of the command line (flags already merged over the
/// settings by the caller).
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The connection, resolved (the URL's parts over the PG* variables).
    pub conn: ConnInfo,
    /// A label for the file name: `aos-backup-YYYYMMDD-HHMMSS-LABEL`.
    pub label: Option<String>,
    /// pg_dump's output format.
    pub format: DumpFormat,
    /// The compression asked for; the format may replace it (see [`BackupPlan::compression`]).
    pub compression: Compression,
    /// Parallel pg_dump jobs (directory format only).
    pub jobs: Option<u32>,
    /// Whether to encrypt, and to what.
    pub encryption: EncryptionRequest,
    /// The keys that read backups back (identity and passphrase files): a new backup that the
    /// stream check cannot judge is read through with them.
    pub read_keys: KeySource,
    /// The retention policy to apply after a good backup (None: no prune).
    pub prune: Option<Policy>,
    /// A new backup smaller than this fraction of the previous one (size or tables) is suspect;
    /// 0 turns the comparison off.
    pub suspect_ratio: f64,
    /// Whether to store the server's roles and tablespaces next to the backup.
    pub globals: Globals,
    /// Run the consistency checks first (`BACKUP_VALIDATE`): findings are logged and recorded
    /// in the sidecar, and never stop the backup.
    pub validate: bool,
    /// Count every table's rows on the dump's snapshot (`BACKUP_ROW_COUNTS`).
    pub row_counts: bool,
    /// Told the path of the backup's `.partial` file as soon as it exists (a file backup, not
    /// a directory archive), so that it can be followed while it grows: the off-site upload
    /// during the dump.
    pub on_writing: Option<OnWriting>,
}

/// A callback given the path of a backup file being written (see
/// [`BackupOptions::on_writing`]). It runs on the dump's thread and must return at once.
#[derive(Clone)]
pub struct OnWriting(pub std::sync::Arc<dyn Fn(&std::path::Path) + Send + Sync>);

impl std::fmt::Debug for OnWriting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnWriting")
    }
}

/// Whether a backup also stores the server's roles and tablespaces (`pg_dumpall
/// --globals-only`), which pg_dump leaves out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Globals {
    /// Not stored.
    #[default]
    Off,
    /// Stored without the roles' passwords (`--no-role-passwords`: any user can do it).
    WithoutPasswords,
    /// Stored with the roles' password hashes (reading them needs a superuser).
    WithPasswords,
}

/// The encryption asked for; [`plan`] turns it into an [`EncryptionPlan`], or refuses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionRequest {
    /// Whether the backup is to be encrypted.
    pub wanted: bool,
    /// The age public keys to encrypt to, if configured (exclusive with `passphrase_file`).
    pub recipients: Option<Recipients>,
    /// The file holding the passphrase to encrypt with, if configured.
    pub passphrase_file: Option<PathBuf>,
}

/// What a backup did.
#[derive(Debug)]
pub struct BackupReport {
    /// The new backup (a file, or a folder for the directory format).
    pub path: PathBuf,
    /// Its sidecar: id, database, sizes, tables, duration, checksum, suspect...
    pub meta: Meta,
    /// How long the dump took.
    pub elapsed: Duration,
    /// Whether the archive was checked complete, or why it could not be.
    pub completeness: Completeness,
    /// The automatic prune after the backup.
    pub prune: AutoPrune,
    /// The warnings logged on the way, in order.
    pub warnings: Vec<String>,
}

/// The automatic prune after a backup.
#[derive(Debug)]
pub enum AutoPrune {
    /// No retention policy applies.
    Off,
    /// Not run, for this reason (the backup is suspect, or its completeness unchecked).
    Blocked(String),
    /// Ran.
    Done(crate::ops::prune::Report),
    /// Failed: the backup itself is complete and kept.
    Failed(anyhow::Error),
}

/// Checks `options` for a backup into `ctx`'s folder; changes nothing.
pub fn plan(ctx: &Context, options: &BackupOptions) -> Result<BackupPlan> {
    let plan = BackupPlan::new(&ctx.dir, options)?;
    if let Some(place) = ctx.locator.container() {
        plan.check_in_container(&place)?;
    }
    Ok(plan)
}

/// Carries out `plan`: the folder lock is held from before pg_dump starts until the prune ends.
pub async fn execute(ctx: &Context, plan: BackupPlan) -> Result<BackupReport> {
    execute_under(ctx, plan, None).await
}

/// [`execute`] under `held`, the folder's lock that the caller already holds (a restore takes
/// its safety backup under its own lock); `None`: the backup takes the lock itself.
pub async fn execute_under(
    ctx: &Context,
    plan: BackupPlan,
    held: Option<&FolderLock>,
) -> Result<BackupReport> {
    let sealer = plan.sealer()?.map(Arc::new);
    prepare::create_folder(&plan.dir)?;
    let own;
    let lock = match held {
        Some(lock) => lock,
        None => {
            own = crate::storage::lock::acquire(&plan.dir, "backup")?;
            &own
        }
    };
    let source = prepare::source(ctx, &plan).await?;
    let id = prepare::choose_id(&plan.dir, &naming::make_id(ctx.now, plan.label.as_deref()))?;
    let ext = naming::extension(plan.format, plan.compression.algorithm, sealer.is_some());
    tracing::info!(
        "backing up database {:?} on {} with {} ({})",
        source.conn.effective_dbname(&|k| ctx.var(k)),
        source.conn.host_display(),
        source.pg_dump.version_line,
        count(source.tables, "table")
    );
    let started = Instant::now();
    let mut warnings = Vec::new();
    let outcome = dump_and_count(
        ctx,
        &plan,
        &source,
        (id, ext),
        sealer.clone(),
        &mut warnings,
    )
    .await?;
    let globals = store_globals(ctx, &plan, &source, &outcome, sealer).await?;
    let elapsed = started.elapsed();
    let meta = finish::record(
        ctx,
        &plan,
        &source,
        &outcome,
        globals,
        elapsed,
        &mut warnings,
    )?;
    finish::log_complete(&meta, &outcome.path, elapsed, &mut warnings);
    let prune = finish::auto_prune(ctx, &plan, &meta, &outcome, lock, &mut warnings);
    Ok(BackupReport {
        path: outcome.path,
        meta,
        elapsed,
        completeness: outcome.checked,
        prune,
        warnings,
    })
}

/// The dump, with the rows of each table counted on the same snapshot once pg_dump has started
/// writing (it then holds its locks: the counting never waits for a lock before pg_dump does). A
/// pg_dump that cannot import the snapshot (it reaches another server or database than our own
/// connection, as a container's may) dumps again without it, and the backup records no row
/// counts.
async fn dump_and_count(
    ctx: &Context,
    plan: &BackupPlan,
    source: &prepare::Source,
    names: (String, String),
    sealer: Option<Arc<Sealer>>,
    warnings: &mut Vec<String>,
) -> Result<dump::Outcome> {
    let progress = ctx.op.progress("dumping", None);
    let written = progress.counter.clone();
    let counting = if plan.row_counts {
        rows::Counting::start(ctx, plan, written.clone(), warnings).await
    } else {
        None
    };
    let Some(counting) = counting else {
        return dump(ctx, plan, source, names, sealer, None, written).await;
    };
    let snapshot = Some(counting.snapshot_id());
    let dumped = dump(
        ctx,
        plan,
        source,
        names.clone(),
        sealer.clone(),
        snapshot,
        written.clone(),
    )
    .await;
    match dumped {
        Ok(mut outcome) => {
            drop(progress);
            outcome.row_counts = counting.finish(warnings).await;
            Ok(outcome)
        }
        Err(e) => {
            counting.abandon();
            if ctx.op.cancelled().is_some() || !rows::snapshot_refused(&e) {
                return Err(e);
            }
            finish::warn(
                warnings,
                format!("pg_dump could not use the snapshot the row counts are taken on ({e:#}); dumping again without it, and the backup records no row counts"),
            );
            dump(ctx, plan, source, names, sealer, None, written).await
        }
    }
}

/// Runs the blocking [`dump::Job`] on its own thread, adding the bytes read to `written` (the
/// progress); pg_dump dumps `snapshot` when given.
async fn dump(
    ctx: &Context,
    plan: &BackupPlan,
    source: &prepare::Source,
    (id, ext): (String, String),
    sealer: Option<Arc<Sealer>>,
    snapshot: Option<String>,
    written: Arc<AtomicU64>,
) -> Result<dump::Outcome> {
    let job = dump::Job {
        plan: plan.clone(),
        pg_dump: source.pg_dump.clone(),
        env: source.conn.child_env(),
        dbname: source.conn.conninfo_without_password(),
        id,
        ext,
        counter: written,
        locator: ctx.locator.clone(),
        op: ctx.op.clone(),
        snapshot,
    };
    tokio::task::spawn_blocking(move || job.run(sealer.as_deref()))
        .await
        .context("the backup thread failed")?
}

/// With `--globals`, pg_dumpall's script of the roles and tablespaces, next to the published
/// backup (on its own thread); on failure the backup is removed too.
async fn store_globals(
    ctx: &Context,
    plan: &BackupPlan,
    source: &prepare::Source,
    outcome: &dump::Outcome,
    sealer: Option<Arc<Sealer>>,
) -> Result<Option<(PathBuf, GlobalsFile)>> {
    let Some(pg_dumpall) = source.pg_dumpall.clone() else {
        return Ok(None);
    };
    let job = globals::Job {
        pg_dumpall,
        env: source.conn.child_env(),
        dbname: source.conn.conninfo_without_password(),
        database: source.conn.effective_dbname(&|k| ctx.var(k)),
        globals: plan.globals,
        backup: outcome.path.clone(),
        op: ctx.op.clone(),
    };
    let stored = tokio::task::spawn_blocking(move || job.run(sealer.as_deref()))
        .await
        .context("the globals thread failed")
        .and_then(|r| r);
    if stored.is_err() {
        let _ = crate::runtime::fsutil::remove_any(&outcome.path);
        ctx.op.unregister_temp(&outcome.path);
    }
    stored
        .map(Some)
        .context("storing the roles and tablespaces (--globals); the backup was removed")
}
