//! `aos-backup backup`: the flags over the settings become [`BackupOptions`], the backup
//! operation ([`crate::ops::backup`]) runs, and its new backup's path is printed (its sidecar
//! with `--json`); the single-database backup goes through [`crate::cli::runs`], shared with the
//! daemon. With several databases (a whole server, or the config file's list), each is
//! backed up into its subfolder ([`crate::ops::many`]) and the run ends with a summary.

use super::Ctx;
use crate::cli::args::BackupArgs;
use crate::cli::hooks::{Hooks, Produced};
use crate::cli::runs::checked_options;
use crate::error::{Error, Kind};
use crate::ops::backup::{AutoPrune, BackupReport};
use crate::ops::many::{self, DatabaseResult, ManyReport, Target};
use anyhow::Result;

/// Which databases a `backup` covers.
enum Scope {
    /// DATABASE_URL's.
    One,
    /// Every database on DATABASE_URL's server (`--all-databases`).
    Server,
    /// The config file's `[[databases]]` list.
    Configured,
}

/// Runs a backup between its hooks.
pub async fn run(ctx: &Ctx, args: &BackupArgs) -> Result<()> {
    let hooks = Hooks::before(ctx, "backup").await?;
    let mut produced = Produced::default();
    let result = backup(ctx, args, &mut produced).await;
    hooks.finish(result.as_ref().err(), &produced).await;
    result
}

/// The backup of one database, or of several; records what it produced for the hooks.
async fn backup(ctx: &Ctx, args: &BackupArgs, produced: &mut Produced) -> Result<()> {
    match scope(ctx, args)? {
        Scope::One => run_one(ctx, args, produced).await,
        Scope::Server => run_many(ctx, server_targets(ctx, args).await?).await,
        Scope::Configured => run_many(ctx, configured_targets(ctx, args)).await,
    }
}

/// `--all-databases`; else `--all-configured`, or a configured list without DATABASE_URL; else
/// DATABASE_URL's database alone.
fn scope(ctx: &Ctx, args: &BackupArgs) -> Result<Scope> {
    let listed = ctx.settings.databases.len();
    if args.all_databases {
        return Ok(Scope::Server);
    }
    if args.all_configured && listed == 0 {
        return Err(Error::usage("--all-configured: the config file lists no [[databases]]")
            .hint("add [[databases]] tables (name, url_env or url_file) to the config file; see the README's \"Many databases\"")
            .into());
    }
    if args.all_configured || (listed > 0 && ctx.settings.database_url.is_none()) {
        return Ok(Scope::Configured);
    }
    if listed > 0 {
        tracing::info!("DATABASE_URL is set, so only its database is backed up; `backup --all-configured` backs up the {listed} database(s) of the config file");
    }
    Ok(Scope::One)
}

/// Backs up DATABASE_URL's database.
async fn run_one(ctx: &Ctx, args: &BackupArgs, produced: &mut Produced) -> Result<()> {
    let report = crate::cli::runs::backup(ctx, args).await?;
    ctx.record.backup(&report);
    produced.file = Some(report.path.clone());
    produced.size = Some(report.meta.size_bytes);
    render(ctx, &report);
    match report.prune {
        AutoPrune::Failed(e) => Err(e),
        AutoPrune::Off | AutoPrune::Blocked(_) | AutoPrune::Done(_) => Ok(()),
    }
}

/// Every database on DATABASE_URL's server that the user may connect to, with the global
/// settings.
async fn server_targets(ctx: &Ctx, args: &BackupArgs) -> Result<Vec<Target>> {
    let conn = ctx.conninfo()?;
    let names = many::server_databases(&ctx.ops(), &conn).await?;
    if names.is_empty() {
        return Err(Error::usage(format!(
            "no database on {} that {} may connect to (templates and databases that take no connections are left out)",
            conn.host_display(),
            conn.effective_user(&|k| ctx.settings.env.var(k))
        ))
        .hint("grant CONNECT on the databases to back up, or back up as their owner")
        .into());
    }
    Ok(names
        .into_iter()
        .map(|name| Target {
            options: checked_options(&ctx.settings, args, conn.with_dbname(&name))
                .map_err(Error::from_anyhow),
            name,
        })
        .collect())
}

/// The config file's databases, each with its own URL and retention; one whose URL cannot be
/// read fails alone.
fn configured_targets(ctx: &Ctx, args: &BackupArgs) -> Vec<Target> {
    ctx.settings
        .databases
        .iter()
        .map(|entry| Target {
            name: entry.name.clone(),
            options: ctx
                .database_conninfo(entry)
                .and_then(|conn| {
                    let mut o = checked_options(&ctx.settings, args, conn)?;
                    if let Some(own) = &entry.retention {
                        o.prune = (!args.no_prune && !own.is_empty()).then(|| own.clone());
                    }
                    Ok(o)
                })
                .map_err(Error::from_anyhow),
        })
        .collect()
}

/// Backs up each target into its subfolder, prints the new backups (one result per database
/// with `--json`), logs the summary, and fails with the worst result.
async fn run_many(ctx: &Ctx, targets: Vec<Target>) -> Result<()> {
    ctx.reports_when_cancelled.set();
    let report = many::backup_each(&ctx.ops(), targets).await;
    let paths: Vec<String> = report
        .results
        .iter()
        .filter_map(|r| Some(r.report()?.path.display().to_string()))
        .collect();
    let json = report.results.iter().map(json_result).collect();
    ctx.emit(&paths.join("\n"), &serde_json::Value::Array(json));
    log_summary(&report);
    match report.worst() {
        None => Ok(()),
        Some(kind) => Err(summary_error(&report, kind).into()),
    }
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

/// The counts, then a line per database (and the hint of a failure).
fn log_summary(report: &ManyReport) {
    tracing::info!("summary: {}", counts_text(report));
    for r in &report.results {
        let name = crate::runtime::redact::sanitize(&r.name);
        match (r.report(), r.error()) {
            (Some(m), None) => tracing::info!(
                "  ok           {name}: {} ({})",
                m.path.display(),
                super::human_bytes(m.meta.size_bytes)
            ),
            (_, error) => {
                tracing::warn!(
                    "  {:<12} {name}: {}",
                    r.status().replace('_', " "),
                    error.unwrap_or_default()
                );
                if let Some(h) = r.hint() {
                    tracing::warn!("               hint: {h}");
                }
            }
        }
    }
}

/// `2 of 3 databases backed up, 1 failed`, with the interrupted and not started ones.
fn counts_text(report: &ManyReport) -> String {
    let [done, failed, interrupted, not_started] = report.counts();
    let mut text = format!("{done} of {} database(s) backed up", report.results.len());
    for (n, what) in [
        (failed, "failed"),
        (interrupted, "interrupted"),
        (not_started, "not started"),
    ] {
        if n > 0 {
            text.push_str(&format!(", {n} {what}"));
        }
    }
    text
}

/// The run's error: its worst kind, the counts, and the databases that need a look.
fn summary_error(report: &ManyReport, kind: Kind) -> Error {
    let names: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.kind().is_some())
        .map(|r| crate::runtime::redact::sanitize(&r.name))
        .collect();
    let what = match kind {
        Kind::Interrupted => "interrupted (Ctrl-C): ",
        Kind::Terminated => "terminated (SIGTERM): ",
        _ => "",
    };
    let look = if names.is_empty() {
        String::new()
    } else {
        format!(" (needs a look: {})", names.join(", "))
    };
    Error::new(kind, format!("{what}{}{look}", counts_text(report)))
    .hint("each database's outcome is listed above (or with --json); the exit code is the worst of them")
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
