//! `aos-backup validate`: runs the consistency checks on `DATABASE_URL`'s database and shows
//! each check's result (text or `--json`); findings exit 9.

use super::{human_duration, Ctx};
use crate::cli::args::ValidateArgs;
use crate::ops::validate::{self, Check, ValidateOptions, ValidateReport, DEFAULT_EXAMPLES};
use anyhow::Result;

/// Runs validate.
pub async fn run(ctx: &Ctx, args: &ValidateArgs) -> Result<()> {
    let op = ctx.ops();
    let options = ValidateOptions {
        conn: ctx.conninfo()?,
        deep: args.deep,
        examples: DEFAULT_EXAMPLES,
    };
    let plan = validate::plan(&op, &options)?;
    let report = validate::execute(&op, plan).await?;
    ctx.emit(&text(&report), &json(&report));
    report.verdict()
}

/// A line per check (`ok`, `FAIL`, `skip`), its examples and errors indented below, then the
/// headline.
fn text(report: &ValidateReport) -> String {
    let v = &report.validation;
    let mut lines = vec![format!(
        "database {:?} on {} ({})",
        v.database,
        report.host,
        human_duration(report.elapsed)
    )];
    for c in &v.checks {
        lines.push(check_line(c));
        lines.extend(c.examples.iter().map(|e| format!("        {e}")));
        lines.extend(
            c.errors
                .iter()
                .map(|e| format!("        could not check {e}")),
        );
    }
    lines.push(v.headline());
    lines.join("\n")
}

fn check_line(c: &Check) -> String {
    let name = c.check.name();
    if let Some(why) = &c.skipped {
        return format!("skip  {name:<21} {why}");
    }
    let status = if c.failing > 0 { "FAIL" } else { "ok  " };
    let mut line = format!(
        "{status}  {name:<21} {:>6} {:<7} {} ({} examined",
        c.failing,
        c.check.unit(),
        c.check.title(),
        c.examined
    );
    if !c.errors.is_empty() {
        line.push_str(&format!(", {} could not be checked", c.errors.len()));
    }
    line.push(')');
    line
}

/// The report as `--json` shows it: each check with its name, what it counts, and results.
fn json(report: &ValidateReport) -> serde_json::Value {
    let v = &report.validation;
    let checks: Vec<serde_json::Value> = v.checks.iter().map(json_check).collect();
    serde_json::json!({
        "database": v.database,
        "host": report.host,
        "deep": report.deep,
        "elapsed_ms": u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
        "clean": v.is_clean(),
        "findings": v.findings(),
        "checks": checks,
    })
}

fn json_check(c: &Check) -> serde_json::Value {
    serde_json::json!({
        "check": c.check.name(),
        "title": c.check.title(),
        "unit": c.check.unit(),
        "examined": c.examined,
        "failing": c.failing,
        "examples": c.examples,
        "skipped": c.skipped,
        "errors": c.errors,
    })
}
