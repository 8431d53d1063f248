//! `aos-backup check`: the check operation's findings as a Nagios plugin prints them (a status
//! line with performance data, then a line per finding), or as JSON, ending with check's own
//! exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) rather than the other commands' codes.

use super::{Ctx, Finish};
use crate::cli::args::CheckArgs;
use crate::error::Error;
use crate::ops::check::{self, CheckOptions, CheckReport, CheckStatus, DatabaseCheck};
use crate::runtime::redact::sanitize;
use crate::runtime::units::compact_duration;
use anyhow::Result;
use serde_json::json;

/// What starts the status line, as Nagios plugins name themselves.
const SERVICE: &str = "AOS-BACKUP";

/// Runs check. An error (the folder cannot be read) is returned as usual: the front end turns
/// it into UNKNOWN with [`print_unknown`].
pub fn run(ctx: &Ctx, args: &CheckArgs) -> Result<Finish> {
    let report = check::check(&ctx.ops(), &options(ctx, args)?)?;
    ctx.emit(&text(&report), &json(&report));
    Ok(Finish::Code(report.status().code()))
}

/// The flags over the settings: which databases, and the thresholds.
fn options(ctx: &Ctx, args: &CheckArgs) -> Result<CheckOptions> {
    let warn_age = ctx.settings.check.max_age.value;
    let crit_age = match &args.crit_age {
        None => warn_age * 2,
        Some(text) => crate::runtime::units::parse_span(text).map_err(|e| {
            Error::usage(format!("invalid --crit-age: {e}")).hint("give an age like 52h or 3d")
        })?,
    };
    if crit_age < warn_age {
        return Err(Error::usage(format!(
            "--crit-age {} is shorter than the warning age {}",
            compact_duration(crit_age.as_secs()),
            compact_duration(warn_age.as_secs())
        ))
        .hint("give a --crit-age at least as long as --max-age (BACKUP_CHECK_MAX_AGE)")
        .into());
    }
    let database = match (&args.database, args.all_databases) {
        (Some(db), _) => Some(db.clone()),
        (None, true) => None,
        (None, false) => ctx.target_database(),
    };
    let max_drill_age = Some(ctx.settings.check.max_drill_age.value).filter(|d| !d.is_zero());
    Ok(CheckOptions {
        database,
        warn_age,
        crit_age,
        min_size: ctx.settings.check.min_size.value,
        max_drill_age,
    })
}

/// Prints the status line of a check that could not run, on stdout (a JSON object with
/// `--json`); the front end logs the error itself on stderr.
pub fn print_unknown(message: &str, hint: Option<&str>, as_json: bool) {
    let status = CheckStatus::Unknown;
    if as_json {
        let v = json!({
            "status": status.label(),
            "exit_code": status.code(),
            "summary": message,
            "error": message,
            "hint": hint,
            "databases": [],
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        let words = first_line(message).replace('|', "/");
        println!("{SERVICE} {} - {words}", status.label());
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The status line, then each database's status and findings.
fn text(report: &CheckReport) -> String {
    let mut lines = vec![status_line(report)];
    for db in &report.databases {
        lines.push(format!(
            "{}: {}",
            sanitize(&db.database),
            db.status().label()
        ));
        for f in &db.findings {
            lines.push(format!(
                "  {:<9} {}: {}",
                f.status.label(),
                f.probe.as_str(),
                f.message
            ));
        }
    }
    lines.join("\n")
}

/// `AOS-BACKUP OK - summary | perfdata`.
fn status_line(report: &CheckReport) -> String {
    let status = report.status();
    let perf = perfdata(report);
    // A `|` would start the performance data early.
    let words = summary(report).replace('|', "/");
    let mut line = format!("{SERVICE} {} - {words}", status.label());
    if !perf.is_empty() {
        line.push_str(" | ");
        line.push_str(&perf);
    }
    line
}

/// In words: how many databases and how old their last backups are when all is well, else the
/// findings that are not OK, worst first.
fn summary(report: &CheckReport) -> String {
    if report.databases.is_empty() {
        let missing = if report.dir_exists {
            ""
        } else {
            " (the folder does not exist)"
        };
        return format!("no backups in {}{missing}", report.dir.display());
    }
    if report.status() == CheckStatus::Ok {
        return healthy_summary(&report.databases);
    }
    let mut problems: Vec<(CheckStatus, String)> = report
        .databases
        .iter()
        .flat_map(|db| {
            db.findings
                .iter()
                .filter(|f| f.status != CheckStatus::Ok)
                .map(|f| {
                    (
                        f.status,
                        format!("{}: {}", sanitize(&db.database), f.message),
                    )
                })
        })
        .collect();
    problems.sort_by_key(|p| std::cmp::Reverse(p.0));
    problems
        .into_iter()
        .map(|(_, p)| p)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `1 database, last backup 3h old` or `2 databases, last backups 3h to 20h old`.
fn healthy_summary(databases: &[DatabaseCheck]) -> String {
    let ages: Vec<u64> = databases
        .iter()
        .filter_map(|db| db.last_trusted.as_ref())
        .map(|b| u64::try_from(b.age_seconds).unwrap_or(0))
        .collect();
    let (newest, oldest) = (
        ages.iter().min().copied().unwrap_or(0),
        ages.iter().max().copied().unwrap_or(0),
    );
    match databases.len() {
        1 => format!("1 database, last backup {} old", compact_duration(newest)),
        n if newest == oldest => {
            format!(
                "{n} databases, last backups {} old",
                compact_duration(newest)
            )
        }
        n => format!(
            "{n} databases, last backups {} to {} old",
            compact_duration(newest),
            compact_duration(oldest)
        ),
    }
}

/// Nagios performance data: each database's age (seconds, with the warning and critical ages,
/// from the newest trusted backup) and its last backup's size (bytes, critical below the
/// minimum when one is set).
fn perfdata(report: &CheckReport) -> String {
    let o = &report.options;
    let mut items = Vec::new();
    for db in &report.databases {
        let name = perf_label(&db.database);
        if let Some(t) = &db.last_trusted {
            items.push(format!(
                "'{name}_age'={}s;{};{};0",
                t.age_seconds.max(0),
                o.warn_age.as_secs(),
                o.crit_age.as_secs()
            ));
        }
        if let Some(last) = &db.last {
            let crit = if o.min_size > 0 {
                format!("{}:", o.min_size)
            } else {
                String::new()
            };
            items.push(format!("'{name}_size'={}B;;{crit};0", last.size_bytes));
        }
    }
    items.join(" ")
}

/// A database name as a performance-data label: the characters the format reserves (quote,
/// equals sign, bar), blanks and control characters become `_`.
fn perf_label(database: &str) -> String {
    database
        .chars()
        .map(|c| match c {
            '\'' | '=' | '|' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// `check --json`: the status, the summary, the thresholds and each database's findings.
fn json(report: &CheckReport) -> serde_json::Value {
    let status = report.status();
    let o = &report.options;
    json!({
        "status": status.label(),
        "exit_code": status.code(),
        "summary": summary(report),
        "dir": report.dir.display().to_string(),
        "now": report.now,
        "thresholds": {
            "warn_age_seconds": o.warn_age.as_secs(),
            "crit_age_seconds": o.crit_age.as_secs(),
            "min_size_bytes": o.min_size,
            "max_drill_age_seconds": o.max_drill_age.map(|d| d.as_secs()),
        },
        "databases": report.databases.iter().map(|db| json!({
            "database": db.database,
            "status": db.status().label(),
            "last_backup": db.last,
            "last_trusted_backup": db.last_trusted,
            "findings": db.findings,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::{BackupSeen, Finding, Probe};
    use std::time::Duration;

    fn report(databases: Vec<DatabaseCheck>) -> CheckReport {
        CheckReport {
            dir: "/b".into(),
            dir_exists: true,
            now: chrono::Utc::now(),
            options: CheckOptions {
                database: None,
                warn_age: Duration::from_secs(93600),
                crit_age: Duration::from_secs(187_200),
                min_size: 1000,
                max_drill_age: None,
            },
            databases,
        }
    }

    fn db(name: &str, hours: i64, status: CheckStatus, message: &str) -> DatabaseCheck {
        let b = BackupSeen {
            id: "20240501-020000".into(),
            time: chrono::Utc::now(),
            age_seconds: hours * 3600,
            size_bytes: 5000,
            suspect: None,
        };
        DatabaseCheck {
            database: name.into(),
            last: Some(b.clone()),
            last_trusted: Some(b),
            findings: vec![Finding {
                probe: Probe::Age,
                status,
                message: message.into(),
            }],
        }
    }

    #[test]
    fn the_status_line_is_a_nagios_plugin_line() {
        let ok = report(vec![
            db("app", 3, CheckStatus::Ok, "fine"),
            db("shop", 20, CheckStatus::Ok, "fine"),
        ]);
        assert_eq!(
            status_line(&ok),
            "AOS-BACKUP OK - 2 databases, last backups 3h to 20h old | \
             'app_age'=10800s;93600;187200;0 'app_size'=5000B;;1000:;0 \
             'shop_age'=72000s;93600;187200;0 'shop_size'=5000B;;1000:;0"
        );
        let bad = report(vec![
            db("app", 30, CheckStatus::Warning, "old"),
            db("sh'op=x", 60, CheckStatus::Critical, "older"),
        ]);
        let line = status_line(&bad);
        assert!(
            line.starts_with("AOS-BACKUP CRITICAL - sh'op=x: older; app: old | 'app_age'="),
            "{line}"
        );
        assert!(line.contains(" 'sh_op_x_age'=216000s;"), "{line}");
        assert_eq!(
            status_line(&report(vec![])),
            "AOS-BACKUP CRITICAL - no backups in /b"
        );
    }
}
