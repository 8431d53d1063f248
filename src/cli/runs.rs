//! What the `backup` command and each `daemon` run share: the same run (the hooks around it, the
//! choice of databases, one backup or one per database with its summary), built from the same
//! settings and flags, so a scheduled backup is exactly the one `aos-backup backup` makes. The
//! front ends only render (or log) what it made.

mod scope;
mod summary;

pub use summary::counts_text;

use crate::archive::crypto::{KeySource, Recipients};
use crate::archive::format::Compression;
use crate::cli::args::BackupArgs;
use crate::cli::commands::Ctx;
use crate::cli::hooks::{Hooks, Produced};
use crate::config::Settings;
use crate::error::Error;
use crate::ops::backup::{
    self, AutoPrune, BackupOptions, BackupPlan, BackupReport, EncryptionRequest, Globals,
};
use crate::ops::many::{self, ManyReport, Target};
use crate::pg::conninfo::ConnInfo;
use anyhow::Result;
use scope::Scope;

/// What a backup run made.
#[derive(Debug)]
pub enum Made {
    /// DATABASE_URL's database was backed up (its automatic prune may still have failed).
    One(Box<BackupReport>),
    /// Several databases, each into its subfolder: what became of each.
    Many(ManyReport),
}

impl Made {
    /// The backups made: one, or each database's that succeeded.
    #[must_use]
    pub fn reports(&self) -> Vec<&BackupReport> {
        match self {
            Made::One(report) => vec![report],
            Made::Many(many) => many.results.iter().filter_map(|r| r.report()).collect(),
        }
    }

    /// How the run ends: the failed prune after one backup, or the worst result of several
    /// (its message the summary's counts).
    ///
    /// # Errors
    /// That failure.
    pub fn into_result(self) -> Result<()> {
        match self {
            Made::One(report) => match report.prune {
                AutoPrune::Failed(e) => Err(e),
                AutoPrune::Off | AutoPrune::Blocked(_) | AutoPrune::Done(_) => Ok(()),
            },
            Made::Many(report) => summary::error(&report).map_or(Ok(()), |e| Err(e.into())),
        }
    }
}

/// Runs the backup `args` over the settings ask for between its hooks: DATABASE_URL's database,
/// every database on its server, or the config file's list. `show` renders
/// what was made before the `after` hooks run. What became of each database is recorded for the
/// metrics file, and told to the notification destinations (`BACKUP_NOTIFY`).
///
/// # Errors
/// A run that made nothing: the `before` hook failed, the scope or a connection is unusable, or
/// the one backup failed. What a made run ends with is [`Made::into_result`].
pub async fn backup(ctx: &Ctx, args: &BackupArgs, show: &dyn Fn(&Made)) -> Result<Made> {
    let notifier = crate::cli::notify::notifier(ctx);
    if !notifier.is_empty() {
        // A signal then lets the run end by itself (stopped children, bounded wait), so that
        // its failure is still sent and the healthchecks ping ends with `/fail`.
        ctx.reports_when_cancelled.set();
    }
    let started = std::time::Instant::now();
    crate::cli::notify::backup_started(&notifier).await;
    let result = backup_between_hooks(ctx, args, show).await;
    crate::cli::notify::backup_ended(ctx, &notifier, started, &result).await;
    result
}

/// The backup run between its hooks.
async fn backup_between_hooks(ctx: &Ctx, args: &BackupArgs, show: &dyn Fn(&Made)) -> Result<Made> {
    let hooks = Hooks::before(ctx, "backup").await?;
    let result = backup_in_scope(ctx, args, show).await;
    finish_hooks(hooks, &result).await;
    result
}

/// The backup of one database, or of several with their summary.
async fn backup_in_scope(ctx: &Ctx, args: &BackupArgs, show: &dyn Fn(&Made)) -> Result<Made> {
    let made = match scope::of(ctx, args)? {
        Scope::One => Made::One(Box::new(backup_one(ctx, args).await?)),
        Scope::Server => backup_many(ctx, scope::server_targets(ctx, args).await?).await,
        Scope::Configured => backup_many(ctx, scope::configured_targets(ctx, args)).await,
    };
    match &made {
        Made::One(report) => ctx.record.backup(report),
        Made::Many(report) => ctx.record.many(report),
    }
    ctx.made
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(
            made.reports()
                .into_iter()
                .map(|r| (r.path.clone(), r.meta.clone())),
        );
    show(&made);
    if let Made::Many(report) = &made {
        summary::log(report);
    }
    Ok(made)
}

/// The databases a backup run of `args` is for, as far as is known before it runs (by the names
/// the metrics file records them under): DATABASE_URL's, or the config file's list; none for a
/// whole server, whose databases are only listed when it runs.
#[must_use]
pub fn databases_named(ctx: &Ctx, args: &BackupArgs) -> Vec<String> {
    match scope::of(ctx, args) {
        Ok(Scope::Server) => Vec::new(),
        Ok(Scope::Configured) => ctx
            .settings
            .databases
            .iter()
            .map(|e| e.name.clone())
            .collect(),
        Ok(Scope::One) | Err(_) => ctx.target_database().into_iter().collect(),
    }
}

/// Backs up each target into its subfolder; a cancelled run still reports what it finished.
async fn backup_many(ctx: &Ctx, targets: Vec<Target>) -> Made {
    ctx.reports_when_cancelled.set();
    Made::Many(many::backup_each(&ctx.ops(), targets).await)
}

/// Runs the `after` or `on-failure` hooks, then `finally`, told how the run ended and, after
/// one backup, its file and size.
async fn finish_hooks(hooks: Hooks, result: &Result<Made>) {
    let summary = match result {
        Ok(Made::Many(report)) => summary::error(report).map(anyhow::Error::from),
        _ => None,
    };
    let mut produced = Produced::default();
    let error = match result {
        Err(e) => Some(e),
        Ok(Made::One(report)) => {
            produced.file = Some(report.path.clone());
            produced.size = Some(report.meta.size_bytes);
            match &report.prune {
                AutoPrune::Failed(e) => Some(e),
                AutoPrune::Off | AutoPrune::Blocked(_) | AutoPrune::Done(_) => None,
            }
        }
        Ok(Made::Many(_)) => summary.as_ref(),
    };
    hooks.finish(error, &produced).await;
}

/// Checks, connecting nowhere, the backup that `args` asks for: DATABASE_URL's, or each
/// configured database's (the first that cannot be made is the error). A whole server's
/// databases are only known when it runs: its URL is checked.
///
/// # Errors
/// The first backup that cannot be made.
pub fn check_backup(ctx: &Ctx, args: &BackupArgs) -> Result<()> {
    let ops = ctx.ops();
    match scope::of(ctx, args)? {
        Scope::One => plan_backup(ctx, &ops, args).map(drop),
        Scope::Server => ctx.conninfo().map(drop),
        Scope::Configured => {
            for target in scope::configured_targets(ctx, args) {
                backup::plan(&ops, &target.options.map_err(summed_up)?)?;
            }
            Ok(())
        }
    }
}

/// An error that already sums up its chain, without the chain (which would repeat its message).
fn summed_up(e: Error) -> anyhow::Error {
    let Error {
        kind,
        message,
        hint,
        ..
    } = e;
    let mut plain = Error::new(kind, message);
    plain.hint = hint;
    plain.into()
}

/// Runs a backup of DATABASE_URL's database (and its automatic prune) in `ctx`'s operation.
async fn backup_one(ctx: &Ctx, args: &BackupArgs) -> Result<BackupReport> {
    let ops = ctx.ops();
    let mut options = checked_options(&ctx.settings, args, ctx.conninfo()?)?;
    options.on_writing = upload_while_writing(ctx, &ops);
    let plan = backup::plan(&ops, &options)?;
    let result = backup::execute(&ops, plan).await;
    if result.is_err() {
        ctx.followers.clear();
    }
    result
}

/// With off-site destinations, the backup file goes up while pg_dump writes it; the push after
/// the backup completes those uploads ([`offsite`]).
fn upload_while_writing(ctx: &Ctx, ops: &crate::ops::Context) -> Option<backup::OnWriting> {
    if ctx.settings.remote.destinations.is_empty() {
        return None;
    }
    let options = offsite_options(ctx);
    let ops = ops.clone();
    Some(backup::OnWriting(std::sync::Arc::new(move |partial| {
        crate::ops::push::follow(&ops, &options, partial);
    })))
}

/// The push after a backup: [`push_options`], with the uploads started during the backup.
fn offsite_options(ctx: &Ctx) -> crate::ops::push::PushOptions {
    crate::ops::push::PushOptions {
        followers: Some(std::sync::Arc::clone(&ctx.followers)),
        ..push_options(&ctx.settings)
    }
}

/// Checks the backup that `args` over the settings asks for; changes nothing, connects nowhere.
pub fn plan_backup(ctx: &Ctx, ops: &crate::ops::Context, args: &BackupArgs) -> Result<BackupPlan> {
    let options = checked_options(&ctx.settings, args, ctx.conninfo()?)?;
    backup::plan(ops, &options)
}

/// [`backup_options`], refused when the preset requires encryption and none is configured, or
/// when off-site destinations require it.
///
/// # Errors
/// The production preset without encryption (a usage error with a hint), or
/// `remote_require_encryption` without encryption.
pub fn checked_options(
    settings: &Settings,
    args: &BackupArgs,
    conn: ConnInfo,
) -> Result<BackupOptions> {
    let options = backup_options(settings, args, conn);
    let enc = &options.encryption;
    settings.check_preset_encryption(
        enc.wanted,
        enc.recipients.is_some() || enc.passphrase_file.is_some(),
        args.no_encrypt,
    )?;
    let remote = &settings.remote;
    if let Some(dest) = remote
        .destinations
        .iter()
        .find(|d| d.overlaps_folder(&settings.backup_dir.value))
    {
        return Err(crate::ops::push::overlap_error(dest));
    }
    if remote.require_encryption && !remote.destinations.is_empty() && !enc.wanted {
        return Err(Error::usage(
            "off-site destinations are set and remote_require_encryption is on, but this backup would not be encrypted",
        )
        .hint("set BACKUP_ENCRYPTION=age with BACKUP_AGE_RECIPIENTS (or a passphrase file), or unset BACKUP_REMOTE_REQUIRE_ENCRYPTION")
        .into());
    }
    Ok(options)
}

/// Copies every backup the configured off-site destinations lack (the new one among them):
/// what the backup command and each daemon run do after the backup.
///
/// # Errors
/// A destination still misses a backup ([`crate::error::Kind::Offsite`], naming it and why).
pub async fn offsite(ctx: &Ctx) -> Result<crate::ops::push::PushReport> {
    let report = crate::ops::push::execute(&ctx.ops(), offsite_options(ctx)).await;
    ctx.followers.clear();
    for r in &report.results {
        if !r.uploaded.is_empty() {
            tracing::info!(
                "off-site: {} backup(s) copied to {} ({})",
                r.uploaded.len(),
                r.url,
                crate::runtime::units::human_bytes(r.bytes)
            );
        }
    }
    if let Err(e) = report.verdict() {
        crate::cli::notify::offsite_ended(ctx, &report, &e).await;
        return Err(e);
    }
    Ok(report)
}

/// `remote_only`: removes the local copy of each backup this run made (sidecar first), once
/// every destination holds it ([`offsite`] succeeded).
///
/// # Errors
/// A removal failed.
pub fn drop_local_copies(ctx: &Ctx) -> Result<()> {
    let made = std::mem::take(
        &mut *ctx
            .made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for (path, meta) in made {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let folder = crate::storage::LocalFolder::new(dir);
        let name = name.to_string_lossy();
        crate::storage::transfer::remove_backup(&folder, &name, &meta)?;
        tracing::info!("remote only: removed the local copy of {name}");
    }
    Ok(())
}

/// The off-site settings as the push operation takes them.
#[must_use]
pub fn push_options(settings: &Settings) -> crate::ops::push::PushOptions {
    crate::ops::push::PushOptions {
        destinations: settings.remote.destinations.clone(),
        timeout: settings.remote.timeout,
        require_encryption: settings.remote.require_encryption,
        followers: None,
    }
}

/// The flags over the settings, for the connection `conn`.
#[must_use]
pub fn backup_options(settings: &Settings, args: &BackupArgs, conn: ConnInfo) -> BackupOptions {
    let enc = &settings.encryption;
    BackupOptions {
        conn,
        label: args.name.clone(),
        format: args.format.unwrap_or(settings.format.value),
        compression: compression(settings.compression.value, args),
        jobs: args.jobs.or(settings.jobs),
        encryption: EncryptionRequest {
            wanted: !args.no_encrypt
                && (args.encrypt
                    || enc.enabled
                    || args.recipients_file.is_some()
                    || args.passphrase_file.is_some()),
            recipients: args
                .recipients_file
                .clone()
                .map(Recipients::File)
                .or_else(|| enc.recipients.clone()),
            passphrase_file: args
                .passphrase_file
                .clone()
                .or_else(|| enc.passphrase_file.clone()),
        },
        read_keys: KeySource {
            identity_file: enc.identity_file.clone(),
            passphrase_file: enc.passphrase_file.clone(),
        },
        prune: (!args.no_prune && !settings.retention.is_empty())
            .then(|| settings.retention.clone()),
        suspect_ratio: settings.suspect_ratio.value,
        globals: if args.globals_with_passwords {
            Globals::WithPasswords
        } else if settings.globals {
            Globals::WithoutPasswords
        } else {
            Globals::Off
        },
        validate: settings.validate_before_backup,
        row_counts: settings.row_counts,
        on_writing: None,
    }
}

/// `--compression` and `--compression-level` over the configured compression.
fn compression(configured: Compression, args: &BackupArgs) -> Compression {
    let algorithm = args.compression.unwrap_or(configured.algorithm);
    let level = match (args.compression_level, args.compression) {
        (Some(l), _) => l,
        // A new algorithm on the command line gets its own default level.
        (None, Some(a)) if a != configured.algorithm => a.default_level(),
        (None, _) => configured.level,
    };
    Compression { algorithm, level }
}
