//! `aos-backup backup`: the run shared with the daemon ([`crate::cli::runs`]: the hooks around
//! it, the flags over the settings, one database or several) makes its backups, and this front
//! end prints them: the new backup's path (its sidecar with `--json`), or with several databases
//! (a whole server, or the config file's list) each one's new backup (one result per database
//! with `--json`), the summary being logged.

use super::Ctx;
use crate::cli::args::BackupArgs;
use crate::cli::runs::{self, Made};
use crate::ops::backup::BackupReport;
use crate::ops::many::{DatabaseResult, ManyReport};
use anyhow::Result;

/// Runs the backup and prints what it made, then copies it off-site when destinations are set;
/// fails as the run ends (a missing off-site copy after a good run: exit 8).
pub async fn run(ctx: &Ctx, args: &BackupArgs) -> Result<()> {
    let remote_only = args.remote_only || ctx.settings.remote.only;
    if remote_only && ctx.settings.remote.destinations.is_empty() {
        return Err(crate::error::Error::usage(
            "--remote-only (or BACKUP_REMOTE_ONLY) needs an off-site destination",
        )
        .hint("set BACKUP_REMOTE=s3://bucket/prefix, or pass --remote URL")
        .into());
    }
    let made = runs::backup(ctx, args, &|made| render(ctx, made)).await?;
    let offsite = if ctx.settings.remote.destinations.is_empty() {
        Ok(())
    } else {
        runs::offsite(ctx).await.map(drop)
    };
    if remote_only && offsite.is_ok() {
        runs::drop_local_copies(ctx)?;
    }
    made.into_result()?;
    offsite
}

/// What the run made, on stdout.
fn render(ctx: &Ctx, made: &Made) {
    match made {
        Made::One(report) => render_one(ctx, report),
        Made::Many(report) => render_many(ctx, report),
    }
}

/// The new backup's path; with `--json`, its sidecar and path.
fn render_one(ctx: &Ctx, report: &BackupReport) {
    let mut json = serde_json::to_value(&report.meta).unwrap_or_default();
    json["path"] = serde_json::Value::String(report.path.display().to_string());
    ctx.emit(&report.path.display().to_string(), &json);
}

/// The new backups, one a line; with `--json`, one result per database.
fn render_many(ctx: &Ctx, report: &ManyReport) {
    let paths: Vec<String> = report
        .results
        .iter()
        .filter_map(|r| Some(r.report()?.path.display().to_string()))
        .collect();
    let json = report.results.iter().map(json_result).collect();
    ctx.emit(&paths.join("\n"), &serde_json::Value::Array(json));
}

/// One database's result as `--json` shows it.
fn json_result(r: &DatabaseResult) -> serde_json::Value {
    let made = r.report();
    serde_json::json!({
        "name": r.name,
        "dir": r.dir.as_ref().map(|d| d.display().to_string()),
        "status": r.status(),
        "ok": r.kind().is_none() && made.is_some(),
        "path": made.map(|m| m.path.display().to_string()),
        "id": made.map(|m| m.meta.id.clone()),
        "size_bytes": made.map(|m| m.meta.size_bytes),
        "error": r.error(),
        "hint": r.hint(),
        "exit_code": r.kind().map_or(0, |k| k.exit_code().code()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::crypto::Recipients;
    use crate::archive::format::{Algorithm, Compression, DumpFormat};
    use crate::cli::args::{Cli, Command as Sub};
    use crate::cli::runs::backup_options as options;
    use crate::config::{Env, Settings};
    use crate::ops::backup::{self, BackupPlan, EncryptionPlan};
    use crate::pg::conninfo::ConnInfo;
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
