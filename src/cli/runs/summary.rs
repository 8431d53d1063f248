//! The summary of a run over several databases: its counts, a log line per database, and the
//! error that carries its worst result.

use crate::error::{Error, Kind};
use crate::ops::many::ManyReport;
use crate::runtime::redact::sanitize;
use crate::runtime::units::human_bytes;

/// The counts, then a line per database (and the hint of a failure).
pub(super) fn log(report: &ManyReport) {
    tracing::info!("summary: {}", counts_text(report));
    for r in &report.results {
        let name = sanitize(&r.name);
        match (r.report(), r.error()) {
            (Some(m), None) => tracing::info!(
                "  ok           {name}: {} ({})",
                m.path.display(),
                human_bytes(m.meta.size_bytes)
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
#[must_use]
pub fn counts_text(report: &ManyReport) -> String {
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

/// The run's error, `None` when every database was backed up (and pruned): its worst kind, the
/// counts, and the databases that need a look.
pub(super) fn error(report: &ManyReport) -> Option<Error> {
    let kind = report.worst()?;
    let names: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.kind().is_some())
        .map(|r| sanitize(&r.name))
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
    Some(Error::new(kind, format!("{what}{}{look}", counts_text(report)))
    .hint("each database's outcome is listed above (or with --json); the exit code is the worst of them"))
}
