//! The library's front door: an [`Engine`] is built from a connection and a backup folder, and
//! runs the same operations as the command line (backup, list, verify, restore, prune, validate), each with
//! its own runtime context, returning typed reports and one [`Error`] type.

use crate::archive::format::{Algorithm, Compression, DumpFormat};
use crate::catalog::retention::Policy;
use crate::error::Error;
use crate::ops::backup::{BackupOptions, BackupReport, EncryptionRequest};
use crate::ops::drill::{DrillOptions, DrillReport, ScratchChoice};
use crate::ops::list::{ListOptions, ListReport};
use crate::ops::prune::{Databases, Report as PruneReport};
use crate::ops::restore::{RestoreOptions, RestorePlan, RestoreReport};
use crate::ops::validate::{ValidateOptions, ValidateReport};
use crate::ops::verify::{VerifyOptions, VerifyReport};
use crate::ops::{Context, Lookup};
use crate::pg::conninfo::ConnInfo;
use crate::pg::tools::Locator;
use crate::runtime::context::OpContext;
use crate::runtime::progress::{Progress, Silent};
use crate::storage::{LocalFolder, Storage};
use std::path::PathBuf;
use std::sync::Arc;

/// What the library's calls return.
pub type Result<T> = std::result::Result<T, Error>;

/// Backs up and restores one PostgreSQL database into one backup folder.
///
/// ```no_run
/// # async fn demo() -> aos_backup::Result<()> {
/// let engine = aos_backup::Engine::new("postgresql://app@localhost/shop", "/var/backups/shop")?;
/// let report = engine.backup(&engine.backup_options()?).await?;
/// println!("{}", report.path.display());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    conn: Option<ConnInfo>,
    dir: PathBuf,
    locator: Locator,
    lookup: Lookup,
    progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("conn", &self.conn)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine for the database at `database_url` (a `postgresql://` URL; libpq's PG*
    /// environment variables fill what it leaves out), keeping its backups in `backup_dir`.
    ///
    /// # Errors
    /// A URL that does not parse, or PG* variables that cannot be used ([`crate::Kind::Usage`]).
    pub fn new(database_url: &str, backup_dir: impl Into<PathBuf>) -> Result<Engine> {
        let mut engine = Engine::for_folder(backup_dir);
        let conn = ConnInfo::parse(database_url)
            .and_then(|c| c.resolve(&|k| std::env::var(k).ok()))
            .map_err(|e| Error::usage(format!("invalid database URL: {e}")))?;
        engine.conn = Some(conn);
        Ok(engine)
    }

    /// An engine for a backup folder alone: list, verify and prune need no connection.
    #[must_use]
    pub fn for_folder(backup_dir: impl Into<PathBuf>) -> Engine {
        Engine {
            conn: None,
            dir: backup_dir.into(),
            locator: Locator::new(None),
            lookup: Arc::new(|k: &str| std::env::var(k).ok()),
            progress: Arc::new(Silent),
        }
    }

    /// Looks for pg_dump, pg_restore and psql in `pg_bin` only (as `PG_BIN` does).
    #[must_use]
    pub fn with_pg_bin(mut self, pg_bin: impl Into<PathBuf>) -> Engine {
        self.locator = Locator::new(Some(pg_bin.into()));
        self
    }

    /// Shows the operations' progress through `progress` (nothing by default).
    #[must_use]
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Engine {
        self.progress = progress;
        self
    }

    /// The backup folder.
    #[must_use]
    pub fn backup_dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// A fresh context for one operation: its own cancellation (`context().op.cancel(..)` from
    /// another task stops it), children, temp files and secrets. The methods below make one per
    /// call; pass one to the functions of [`crate::ops`] to control it yourself.
    #[must_use]
    pub fn context(&self) -> Context {
        Context {
            op: OpContext::new(self.progress.clone()),
            dir: self.dir.clone(),
            locator: self.locator.clone(),
            now: chrono::Utc::now(),
            lookup: self.lookup.clone(),
        }
    }

    fn conn(&self) -> Result<ConnInfo> {
        self.conn.clone().ok_or_else(|| {
            Error::usage("this engine has no database connection")
                .hint("build it with Engine::new(database_url, backup_dir)")
        })
    }

    /// The defaults of `aos-backup backup`: custom format, zstd, no encryption, no prune.
    ///
    /// # Errors
    /// The engine was built without a connection ([`Engine::for_folder`]).
    pub fn backup_options(&self) -> Result<BackupOptions> {
        Ok(BackupOptions {
            conn: self.conn()?,
            label: None,
            format: DumpFormat::Custom,
            compression: Compression {
                algorithm: Algorithm::Zstd,
                level: Algorithm::Zstd.default_level(),
            },
            jobs: None,
            encryption: EncryptionRequest::default(),
            read_keys: crate::archive::crypto::KeySource::default(),
            prune: None,
            suspect_ratio: crate::config::DEFAULT_SUSPECT_RATIO,
            globals: crate::ops::backup::Globals::Off,
            validate: false,
            row_counts: true,
            on_writing: None,
        })
    }

    /// Backs the database up into the folder: the new backup appears only once it is complete
    /// and checked.
    ///
    /// # Errors
    /// See [`crate::Kind`]: the connection, the tools, the folder, a damaged dump...
    pub async fn backup(&self, options: &BackupOptions) -> Result<BackupReport> {
        let ctx = self.context();
        let result = async {
            let plan = crate::ops::backup::plan(&ctx, options)?;
            crate::ops::backup::execute(&ctx, plan).await
        }
        .await;
        finish(&ctx, result)
    }

    /// The backups in the folder (of `options.database` only, when set).
    ///
    /// # Errors
    /// The folder cannot be read.
    pub fn list(&self, options: &ListOptions) -> Result<ListReport> {
        let ctx = self.context();
        finish(&ctx, crate::ops::list::list(&ctx, options))
    }

    /// Verifies backups: checksum against the sidecar, and a read-through of the content.
    /// Damaged backups are reported in [`VerifyReport`], not as an error.
    ///
    /// # Errors
    /// Nothing to verify, or the selection does not name a backup.
    pub async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport> {
        let ctx = self.context();
        let result = async {
            let plan = crate::ops::verify::plan(&ctx, options)?;
            crate::ops::verify::execute(&ctx, plan).await
        }
        .await;
        finish(&ctx, result)
    }

    /// The defaults of `aos-backup restore BACKUP` into this engine's database: one transaction,
    /// no confirmation given, no production marker, no keys, a safety backup (the defaults of
    /// [`Engine::backup_options`]) of a target that holds tables, the consistency checks afterwards.
    ///
    /// # Errors
    /// The engine was built without a connection.
    pub fn restore_options(&self, backup: &str) -> Result<RestoreOptions> {
        let safety_backup = BackupOptions {
            label: Some(crate::ops::restore::SAFETY_LABEL.to_string()),
            ..self.backup_options()?
        };
        Ok(RestoreOptions {
            safety_backup: Some(safety_backup),
            target_db: None,
            create: false,
            swap: None,
            backup: backup.to_string(),
            from_database: None,
            target: Ok(self.conn()?),
            jobs: None,
            lock_timeout: Some(std::time::Duration::from_secs(30)),
            terminate_sessions: false,
            force: false,
            confirmed: false,
            production_marker: None,
            keys: crate::archive::crypto::KeySource::default(),
            validate: true,
            scratch_target: false,
        })
    }

    /// What a restore with `options` would do (the backup, the target, the strategy, the guards
    /// that fired, the confirmation it needs), without touching the target.
    ///
    /// # Errors
    /// A guard refused, the backup failed its checksum, the target cannot be reached...
    pub async fn plan_restore(&self, options: &RestoreOptions) -> Result<RestorePlan> {
        let ctx = self.context();
        let result = crate::ops::restore::plan(&ctx, options).await;
        finish(&ctx, result)
    }

    /// A preview of a restore with `options` (`restore --dry-run`): the plan, with
    /// [`RestorePlan::preview`] saying what would change table by table. It takes no lock and
    /// changes nothing; the plan returned cannot be carried out.
    ///
    /// # Errors
    /// As [`Engine::plan_restore`], except that a failed checksum is reported in the plan.
    pub async fn preview_restore(&self, options: &RestoreOptions) -> Result<RestorePlan> {
        let ctx = self.context();
        let result = crate::ops::restore::preview(&ctx, options).await;
        finish(&ctx, result)
    }

    /// Restores with `options`. When the plan needs a confirmation (the target holds data),
    /// `confirm` is asked with the plan; a `false` refuses the restore before anything changes.
    ///
    /// # Errors
    /// As [`Engine::plan_restore`], a refused confirmation ([`crate::Kind::Refused`]), or the
    /// restore failed (the message says what is known about the target).
    pub async fn restore(
        &self,
        options: &RestoreOptions,
        confirm: impl FnOnce(&RestorePlan) -> bool + Send,
    ) -> Result<RestoreReport> {
        let ctx = self.context();
        let result = async {
            let mut plan = crate::ops::restore::plan(&ctx, options).await?;
            if let Some(question) = plan.confirmation_needed() {
                let question = question.question.clone();
                if !confirm(&plan) {
                    return Err(Error::refused(format!("not confirmed: {question}")).into());
                }
                plan.confirm();
            }
            crate::ops::restore::execute(&ctx, plan).await
        }
        .await;
        finish(&ctx, result)
    }

    /// The defaults of `aos-backup drill BACKUP`: the scratch database beside this engine's
    /// database (in an ephemeral cluster when its role may not create databases, or when the
    /// engine has no connection), no queries, no deep checks.
    #[must_use]
    pub fn drill_options(&self, backup: &str) -> DrillOptions {
        DrillOptions {
            backup: backup.to_string(),
            database: None,
            live: self.conn.clone(),
            scratch: ScratchChoice::Auto,
            check_sql: None,
            deep: false,
            keys: crate::archive::crypto::KeySource::default(),
        }
    }

    /// Drills a backup: restores it into a scratch database, checks it, removes it. A backup
    /// that did not restore, or a check that failed, is in the report
    /// ([`DrillReport::outcome`], [`DrillReport::error`]), not an error; the report is also
    /// written next to the backup.
    ///
    /// # Errors
    /// The backup cannot be found, the scratch server refused, a guard refused (the scratch
    /// database would be the live one), the tools are missing...
    pub async fn drill(&self, options: &DrillOptions) -> Result<DrillReport> {
        let ctx = self.context();
        let result = async {
            let plan = crate::ops::drill::plan(&ctx, options).await?;
            crate::ops::drill::execute(&ctx, plan).await
        }
        .await;
        finish(&ctx, result)
    }

    /// The defaults of `aos-backup validate` on this engine's database: the SQL checks, no
    /// pg_amcheck, 5 examples per check.
    ///
    /// # Errors
    /// The engine was built without a connection.
    pub fn validate_options(&self) -> Result<ValidateOptions> {
        Ok(ValidateOptions {
            conn: self.conn()?,
            deep: false,
            examples: crate::ops::validate::DEFAULT_EXAMPLES,
        })
    }

    /// Runs the consistency checks on the live database (read-only). Findings are in the
    /// report ([`ValidateReport::findings`]), not an error; [`ValidateReport::verdict`] makes
    /// them one ([`crate::Kind::Findings`]).
    ///
    /// # Errors
    /// The database cannot be reached, or its catalog cannot be read.
    pub async fn validate(&self, options: &ValidateOptions) -> Result<ValidateReport> {
        let ctx = self.context();
        let result = async {
            let plan = crate::ops::validate::plan(&ctx, options)?;
            crate::ops::validate::execute(&ctx, plan).await
        }
        .await;
        finish(&ctx, result)
    }

    /// Applies `policy` to the backups of `which` database(s); with `dry_run`, only says what
    /// it would delete.
    ///
    /// # Errors
    /// The folder is locked by another run, or cannot be read or changed.
    pub fn prune(&self, policy: &Policy, which: &Databases, dry_run: bool) -> Result<PruneReport> {
        let ctx = self.context();
        let storage = LocalFolder::new(&self.dir);
        let result = storage.lock("prune").and_then(|lock| {
            crate::ops::prune::apply_in(&storage, policy, which, None, ctx.now, dry_run, &lock)
        });
        finish(&ctx, result)
    }
}

/// The end of one operation: its temp files go, and an error becomes an [`Error`].
fn finish<T>(ctx: &Context, result: anyhow::Result<T>) -> Result<T> {
    ctx.op.cleanup_temps();
    result.map_err(Error::from_anyhow)
}
