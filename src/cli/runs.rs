//! What the `backup` command and each `daemon` run share: the same backup, built from the same
//! settings and flags, so a scheduled backup is exactly the one `aos-backup backup` makes.

use crate::archive::crypto::{KeySource, Recipients};
use crate::archive::format::Compression;
use crate::cli::args::BackupArgs;
use crate::cli::commands::Ctx;
use crate::config::Settings;
use crate::ops::backup::{
    self, BackupOptions, BackupPlan, BackupReport, EncryptionRequest, Globals,
};
use crate::pg::conninfo::ConnInfo;
use anyhow::Result;

/// Runs a backup (and its automatic prune) in `ctx`'s operation.
pub async fn backup(ctx: &Ctx, args: &BackupArgs) -> Result<BackupReport> {
    let ops = ctx.ops();
    let plan = plan_backup(ctx, &ops, args)?;
    backup::execute(&ops, plan).await
}

/// Checks the backup that `args` over the settings asks for; changes nothing, connects nowhere.
pub fn plan_backup(ctx: &Ctx, ops: &crate::ops::Context, args: &BackupArgs) -> Result<BackupPlan> {
    let options = checked_options(&ctx.settings, args, ctx.conninfo()?)?;
    backup::plan(ops, &options)
}

/// [`backup_options`], refused when the preset requires encryption and none is configured.
///
/// # Errors
/// The production preset without encryption (a usage error with a hint).
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
    Ok(options)
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
