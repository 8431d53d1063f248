//! `aos-backup verify`: recompute the checksum against the metadata, then read the whole archive
//! through (decrypting and decompressing, and pg_restore over every data block).

use super::Ctx;
use crate::cli::args::VerifyArgs;
use crate::ops::verify::{self, BackupResult, Selection, VerifyOptions, VerifyReport};
use anyhow::Result;

/// One backup's result as `--json` shows it.
#[derive(serde::Serialize)]
struct JsonResult<'a> {
    id: &'a Option<String>,
    file: String,
    ok: bool,
    checks: &'a [String],
    error: &'a Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    key_error: bool,
}

/// Runs verify.
pub async fn run(ctx: &Ctx, args: &VerifyArgs) -> Result<()> {
    let op = ctx.ops();
    let report = if let Some(choice) = &args.remote {
        let remote = ctx.remote_storage(choice)?;
        let database = args.database.as_deref();
        crate::ops::remote::verify(&op, &*remote, database, &ctx.keys(&args.keys)).await?
    } else {
        let plan = verify::plan(&op, &options(ctx, args))?;
        verify::execute(&op, plan).await?
    };
    ctx.record.verify(&report);
    ctx.emit(&text(&report), &json(&report));
    report.verdict()?;
    tracing::info!("{} backup(s) verified", report.results.len());
    Ok(())
}

/// The options the flags and settings give.
fn options(ctx: &Ctx, args: &VerifyArgs) -> VerifyOptions {
    let selection = if args.all {
        Selection::All {
            database: args.database.clone(),
        }
    } else {
        // `latest` and id prefixes look among one database's backups, as restore does:
        // --database, else DATABASE_URL's; without either, the whole folder.
        Selection::One {
            target: args.target.clone().unwrap_or_else(|| "latest".into()),
            database: args.database.clone().or_else(|| ctx.target_database()),
        }
    };
    VerifyOptions {
        selection,
        keys: ctx.keys(&args.keys),
    }
}

/// A line per backup: `ok` with its checks, or `FAIL` with why.
fn text(report: &VerifyReport) -> String {
    report
        .results
        .iter()
        .map(|r| match &r.error {
            None => format!("ok    {}  ({})", r.path.display(), r.checks.join(", ")),
            Some(e) => format!("FAIL  {e}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn json(report: &VerifyReport) -> serde_json::Value {
    let results: Vec<JsonResult<'_>> = report.results.iter().map(json_result).collect();
    serde_json::to_value(results).unwrap_or_default()
}

fn json_result(r: &BackupResult) -> JsonResult<'_> {
    JsonResult {
        id: &r.id,
        file: r.path.display().to_string(),
        ok: r.ok,
        checks: &r.checks,
        error: &r.error,
        key_error: r.key_error,
    }
}
