//! `aos-backup backup`: the flags over the settings become [`BackupOptions`], the backup
//! operation ([`crate::ops::backup`]) runs, and its new backup's path is printed (its sidecar
//! with `--json`).

use super::Ctx;
use crate::archive::crypto::{KeySource, Recipients};
use crate::archive::format::Compression;
use crate::cli::args::BackupArgs;
use crate::config::Settings;
use crate::ops::backup::{
    self, AutoPrune, BackupOptions, BackupReport, EncryptionRequest, Globals,
};
use crate::pg::conninfo::ConnInfo;
use anyhow::Result;

/// Runs a backup.
pub async fn run(ctx: &Ctx, args: &BackupArgs) -> Result<()> {
    let options = options(&ctx.settings, args, ctx.conninfo()?);
    let ops = ctx.ops();
    let plan = backup::plan(&ops, &options)?;
    let report = backup::execute(&ops, plan).await?;
    render(ctx, &report);
    match report.prune {
        AutoPrune::Failed(e) => Err(e),
        AutoPrune::Off | AutoPrune::Blocked(_) | AutoPrune::Done(_) => Ok(()),
    }
}

/// The flags over the settings, for the connection `conn`.
fn options(settings: &Settings, args: &BackupArgs, conn: ConnInfo) -> BackupOptions {
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

/// The new backup's path; with `--json`, its sidecar and path.
fn render(ctx: &Ctx, report: &BackupReport) {
    let mut json = serde_json::to_value(&report.meta).unwrap_or_default();
    json["path"] = serde_json::Value::String(report.path.display().to_string());
    ctx.emit(&report.path.display().to_string(), &json);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::format::{Algorithm, DumpFormat};
    use crate::cli::args::{Cli, Command as Sub};
    use crate::config::Env;
    use crate::ops::backup::{BackupPlan, EncryptionPlan};
    use clap::Parser;
    use std::path::Path;

    fn plan(args: &[&str], env: &[(&str, &str)]) -> Result<BackupPlan> {
        let mut full = vec!["aos-backup", "backup"];
        full.extend_from_slice(args);
        let cli = Cli::try_parse_from(full).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::resolve(&cli.overrides(), Env::from_pairs(env), dir.path())?;
        let Sub::Backup(a) = &cli.command else {
            unreachable!()
        };
        let conn = ConnInfo::parse("postgresql://localhost/app").unwrap();
        let ctx = crate::ops::Context {
            op: crate::runtime::context::OpContext::default(),
            dir: settings.backup_dir.value.clone(),
            locator: crate::pg::tools::Locator::new(None),
            now: chrono::Utc::now(),
            lookup: std::sync::Arc::new(|_: &str| None),
        };
        backup::plan(&ctx, &options(&settings, a, conn))
    }

    fn usage_message(r: Result<BackupPlan>) -> String {
        let err = r.unwrap_err();
        let e = crate::error::find(&err).expect("typed");
        assert_eq!(e.kind, crate::error::Kind::Usage);
        e.message.clone()
    }

    #[test]
    fn default_plan_is_custom_zstd_unencrypted() {
        let p = plan(&[], &[]).unwrap();
        assert_eq!(p.format, DumpFormat::Custom);
        assert_eq!(
            p.compression,
            Compression {
                algorithm: Algorithm::Zstd,
                level: 1
            }
        );
        assert!(p.encryption.is_none() && p.prune.is_none());
        let args = p.pg_dump_args(None);
        assert!(args.contains(&"--compress=0".to_string()), "{args:?}");
        assert!(args.contains(&"--no-owner".to_string()) && args.contains(&"--no-acl".to_string()));
    }

    #[test]
    fn pg_dump_compression_keeps_pg_dumps_default() {
        let p = plan(&["--compression", "pg_dump"], &[]).unwrap();
        assert!(!p
            .pg_dump_args(None)
            .iter()
            .any(|a| a.starts_with("--compress")));
        let p = plan(&["--compression", "gzip", "--compression-level", "9"], &[]).unwrap();
        assert_eq!(p.compression.level, 9);
    }

    #[test]
    fn invalid_combinations_are_usage_errors() {
        assert!(usage_message(plan(&["--jobs", "4"], &[])).contains("--format directory"));
        assert!(usage_message(plan(&["--name", "a/b"], &[])).contains("label"));
        assert!(usage_message(plan(&["--compression-level", "42"], &[])).contains("out of range"));
        assert!(usage_message(plan(&["--encrypt"], &[])).contains("no age recipients"));
        assert!(usage_message(plan(
            &["--format", "directory", "--encrypt"],
            &[("BACKUP_AGE_RECIPIENTS", "age1x")]
        ))
        .contains("directory"));
    }

    #[test]
    fn directory_format_uses_pg_dumps_compression_and_jobs() {
        let p = plan(&["--format", "directory", "--jobs", "2"], &[]).unwrap();
        assert_eq!(p.compression.algorithm, Algorithm::PgDump);
        let args = p.pg_dump_args(Some(Path::new("/x")));
        assert!(args.contains(&"--jobs=2".to_string()) && args.contains(&"--file=/x".to_string()));
    }

    #[test]
    fn encryption_and_retention_come_from_the_environment() {
        let p = plan(
            &[],
            &[
                ("BACKUP_ENCRYPTION", "age"),
                ("BACKUP_AGE_RECIPIENTS", "age1abc"),
                ("BACKUP_KEEP_LAST", "3"),
            ],
        )
        .unwrap();
        assert_eq!(
            p.encryption,
            Some(EncryptionPlan::Recipients(Recipients::Keys(vec![
                "age1abc".into()
            ])))
        );
        assert_eq!(p.prune.unwrap().keep_last, Some(3));
        let p = plan(
            &["--no-encrypt", "--no-prune"],
            &[("BACKUP_ENCRYPTION", "age"), ("BACKUP_KEEP_LAST", "3")],
        )
        .unwrap();
        assert!(p.encryption.is_none() && p.prune.is_none());
    }
}
