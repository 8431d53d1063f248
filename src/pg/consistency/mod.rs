//! Data-consistency checks on a live database: what a restore, a `NOT VALID` constraint or a
//! session with triggers disabled can leave behind that PostgreSQL itself does not flag. Each
//! check counts the rows or objects that fail it and keeps a few examples. Reused by `validate`,
//! after a restore, before a backup and by drills.

mod amcheck;
mod checks;

pub use amcheck::{amcheck, AmcheckRun};

use crate::archive::meta::{CheckCount, ValidationSummary};
use crate::pg::db::error_text;
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Client, Row};

/// How many examples a check keeps by default.
pub const DEFAULT_EXAMPLES: usize = 5;

/// What [`validate`] is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Up to how many examples each check keeps.
    pub examples: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            examples: DEFAULT_EXAMPLES,
        }
    }
}

/// One kind of check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Rows whose foreign key finds no referenced row (every foreign key, valid or not: rows get
    /// in under `NOT VALID`, or while triggers are disabled).
    Orphans,
    /// Rows that violate a `CHECK` constraint added `NOT VALID`.
    NotValidChecks,
    /// Indexes marked invalid (`indisvalid = false`), e.g. a failed `CREATE INDEX CONCURRENTLY`.
    InvalidIndexes,
    /// Duplicate keys under unique indexes that are not valid.
    UniqueDuplicates,
    /// Sequences whose next value is not above the largest value of a column they feed.
    SequencesBehind,
    /// Materialized views that were never populated (`WITH NO DATA`).
    UnpopulatedMatviews,
    /// pg_amcheck over heaps and B-tree indexes (`--deep`).
    Amcheck,
}

impl CheckKind {
    /// The check's name, as in `--json` and the sidecar.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::Orphans => "orphans",
            CheckKind::NotValidChecks => "not_valid_checks",
            CheckKind::InvalidIndexes => "invalid_indexes",
            CheckKind::UniqueDuplicates => "unique_duplicates",
            CheckKind::SequencesBehind => "sequences_behind",
            CheckKind::UnpopulatedMatviews => "unpopulated_matviews",
            CheckKind::Amcheck => "amcheck",
        }
    }

    /// What fails the check, in words.
    #[must_use]
    pub fn title(self) -> &'static str {
        match self {
            CheckKind::Orphans => "rows whose foreign key finds no referenced row",
            CheckKind::NotValidChecks => "rows violating NOT VALID check constraints",
            CheckKind::InvalidIndexes => "invalid indexes",
            CheckKind::UniqueDuplicates => "duplicate rows under invalid unique indexes",
            CheckKind::SequencesBehind => "sequences behind their column's data",
            CheckKind::UnpopulatedMatviews => "materialized views not populated",
            CheckKind::Amcheck => "corruption found by pg_amcheck",
        }
    }

    /// What the check counts: `rows` or `objects`.
    #[must_use]
    pub fn unit(self) -> &'static str {
        match self {
            CheckKind::Orphans | CheckKind::NotValidChecks | CheckKind::UniqueDuplicates => "rows",
            CheckKind::InvalidIndexes
            | CheckKind::SequencesBehind
            | CheckKind::UnpopulatedMatviews
            | CheckKind::Amcheck => "objects",
        }
    }

    /// `n` of what the check counts, in words: `1 row`, `3 objects`.
    #[must_use]
    pub fn counted(self, n: u64) -> String {
        crate::runtime::units::count(n, self.unit().trim_end_matches('s'))
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Which check.
    pub check: CheckKind,
    /// How many objects it looked at (foreign keys, constraints, indexes, sequences...).
    pub examined: u64,
    /// How many rows or objects ([`CheckKind::unit`]) fail it.
    pub failing: u64,
    /// Up to [`Options::examples`] of them, described.
    pub examples: Vec<String>,
    /// Why the check did not run at all (pg_amcheck missing), if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// The objects it could not check, and why (a query failed: a permission, a lock wait).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Check {
    /// A check that has examined nothing yet.
    #[must_use]
    pub fn new(check: CheckKind) -> Check {
        Check {
            check,
            examined: 0,
            failing: 0,
            examples: Vec::new(),
            skipped: None,
            errors: Vec::new(),
        }
    }

    /// A check that did not run, for `why`.
    #[must_use]
    pub fn skipped(check: CheckKind, why: impl Into<String>) -> Check {
        Check {
            skipped: Some(why.into()),
            ..Check::new(check)
        }
    }

    /// Records `failing` rows or objects, with `examples` kept up to `limit` in all.
    fn fail(&mut self, failing: u64, examples: impl IntoIterator<Item = String>, limit: usize) {
        self.failing += failing;
        let room = limit.saturating_sub(self.examples.len());
        self.examples.extend(
            examples
                .into_iter()
                .take(room)
                .map(|e| crate::runtime::redact::sanitize(&e)),
        );
    }
}

/// What [`validate`] found in one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationReport {
    /// The database checked.
    pub database: String,
    /// Each check's result, in [`CheckKind`] order.
    pub checks: Vec<Check>,
}

impl ValidationReport {
    /// Rows and objects failing any check.
    #[must_use]
    pub fn findings(&self) -> u64 {
        self.checks.iter().map(|c| c.failing).sum()
    }

    /// Whether no check found anything (checks that could not run are not findings).
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.findings() == 0
    }

    /// The objects that could not be checked, across checks.
    #[must_use]
    pub fn errors(&self) -> usize {
        self.checks.iter().map(|c| c.errors.len()).sum()
    }

    /// The checks that found something.
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.failing > 0)
    }

    /// The counts of each check that ran, for a sidecar.
    #[must_use]
    pub fn summary(&self, checked_at: DateTime<Utc>) -> ValidationSummary {
        let checks = self
            .checks
            .iter()
            .filter(|c| c.skipped.is_none())
            .map(|c| CheckCount {
                check: c.check.name().to_string(),
                failing: c.failing,
                errors: u64::try_from(c.errors.len()).unwrap_or(0),
            })
            .collect();
        ValidationSummary {
            checked_at,
            findings: self.findings(),
            checks,
        }
    }

    /// One line per failing check with its first examples, and per object not checked: what
    /// a caller logs as warnings.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for c in &self.checks {
            if c.failing > 0 {
                lines.push(format!(
                    "{} ({}), e.g. {}",
                    c.check.counted(c.failing),
                    c.check.title(),
                    c.examples.join("; ")
                ));
            }
            lines.extend(
                c.errors
                    .iter()
                    .map(|e| format!("{}: could not check {e}", c.check.name())),
            );
        }
        lines
    }

    /// One line: `clean`, or the count of each failing check.
    #[must_use]
    pub fn headline(&self) -> String {
        let failed: Vec<String> = self
            .failed()
            .map(|c| format!("{} ({})", c.check.counted(c.failing), c.check.title()))
            .collect();
        if failed.is_empty() {
            "no consistency problems found".into()
        } else {
            format!("consistency problems: {}", failed.join("; "))
        }
    }
}

/// Runs the SQL checks on `client`'s database, in one read-only REPEATABLE READ transaction (one
/// view of the data; row security off, as in pg_dump, so no policy hides rows). A query that
/// fails is recorded in its check's `errors`, and the others still run. `client` must not be
/// inside a transaction.
///
/// # Errors
/// The transaction cannot start, or the catalog cannot be read.
pub async fn validate(client: &Client, options: &Options) -> Result<ValidationReport> {
    let session = Session::begin(client).await?;
    let checked = checks::run_all(&session, options.examples).await;
    session.end().await;
    let (database, checks) = checked?;
    Ok(ValidationReport { database, checks })
}

/// The checks' transaction: each query runs under a savepoint, so one failure spoils nothing else.
struct Session<'a> {
    client: &'a Client,
}

impl<'a> Session<'a> {
    async fn begin(client: &'a Client) -> Result<Session<'a>> {
        client
            .batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
                 SET LOCAL row_security = off; SET LOCAL lock_timeout = '30s'",
            )
            .await
            .map_err(|e| anyhow::anyhow!("starting the checks: {}", error_text(&e)))?;
        Ok(Session { client })
    }

    /// Runs `sql`; an error is the server's message, and leaves the transaction usable.
    async fn query(&self, sql: &str) -> std::result::Result<Vec<Row>, String> {
        let text = |e: &tokio_postgres::Error| error_text(e);
        self.client
            .batch_execute("SAVEPOINT aos_check")
            .await
            .map_err(|e| text(&e))?;
        match self.client.query(sql, &[]).await {
            Ok(rows) => {
                self.client
                    .batch_execute("RELEASE SAVEPOINT aos_check")
                    .await
                    .map_err(|e| text(&e))?;
                Ok(rows)
            }
            Err(e) => {
                let _ = self
                    .client
                    .batch_execute("ROLLBACK TO SAVEPOINT aos_check; RELEASE SAVEPOINT aos_check")
                    .await;
                Err(text(&e))
            }
        }
    }

    /// A catalog query, whose failure fails the checks.
    async fn catalog(&self, what: &str, sql: &str) -> Result<Vec<Row>> {
        self.query(sql)
            .await
            .map_err(|e| anyhow::anyhow!("reading the {what} from the catalog: {e}"))
    }

    async fn end(self) {
        if let Err(e) = self.client.batch_execute("ROLLBACK").await {
            tracing::debug!("ending the checks' transaction: {}", error_text(&e));
        }
    }
}
