//! `aos-backup push`: copy every backup that an off-site destination lacks there, and say what
//! was copied; running it again copies nothing more.

use super::Ctx;
use crate::cli::args::PushArgs;
use crate::cli::runs;
use crate::error::Error;
use anyhow::Result;

/// Runs `aos-backup push`.
pub async fn run(ctx: &Ctx, _args: &PushArgs) -> Result<()> {
    if ctx.settings.remote.destinations.is_empty() {
        return Err(Error::usage("no off-site destination is configured")
            .hint("set BACKUP_REMOTE=s3://bucket/prefix (or file:///path), or pass --remote URL")
            .into());
    }
    let report = crate::ops::push::execute(&ctx.ops(), runs::push_options(&ctx.settings)).await;
    let lines: Vec<String> = report
        .results
        .iter()
        .map(|r| match &r.error {
            None => format!(
                "{}: {} copied, {} already there",
                r.url,
                r.uploaded.len(),
                r.present
            ),
            Some(e) => format!("{}: {} copied, then failed: {e}", r.url, r.uploaded.len()),
        })
        .collect();
    let json: Vec<serde_json::Value> = report
        .results
        .iter()
        .map(|r| {
            serde_json::json!({
                "url": r.url,
                "uploaded": r.uploaded,
                "present": r.present,
                "bytes": r.bytes,
                "error": r.error,
            })
        })
        .collect();
    ctx.emit(&lines.join("\n"), &serde_json::Value::Array(json));
    report.verdict()
}
