//! The validate operation: connects to a live database and runs the consistency checks
//! ([`crate::pg::consistency`]), with pg_amcheck when `deep` is asked; returns a typed report
//! and prints nothing. Findings are in the report; [`ValidateReport::verdict`] turns them into
//! the error that decides the exit code.

use crate::error::{Error, Kind};
use crate::ops::Context;
use crate::pg::conninfo::ConnInfo;
use crate::pg::consistency::{self, AmcheckRun, Options};
use anyhow::Result;
use std::time::{Duration, Instant};

pub use crate::pg::consistency::{Check, CheckKind, ValidationReport, DEFAULT_EXAMPLES};

/// What validate is asked to do.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// The database to check.
    pub conn: ConnInfo,
    /// Also run pg_amcheck over heaps and B-tree indexes (`--deep`).
    pub deep: bool,
    /// Up to how many examples each check shows (at least 1).
    pub examples: usize,
}

/// A checked request: what [`execute`] carries out.
#[derive(Debug, Clone)]
pub struct ValidatePlan {
    options: ValidateOptions,
}

/// What validate found.
#[derive(Debug, Clone)]
pub struct ValidateReport {
    /// The checks' results, pg_amcheck's last (skipped unless `deep`).
    pub validation: ValidationReport,
    /// The server, as `host:port` or the socket.
    pub host: String,
    /// Whether pg_amcheck was asked for.
    pub deep: bool,
    /// How long the checks took.
    pub elapsed: Duration,
}

impl ValidateReport {
    /// Rows and objects failing any check.
    #[must_use]
    pub fn findings(&self) -> u64 {
        self.validation.findings()
    }

    /// Ok when clean; findings are a [`Kind::Findings`] error (exit 9); objects that could not
    /// be checked, with no findings, a [`Kind::Failure`] (exit 1): a check that did not run
    /// proves nothing.
    pub fn verdict(&self) -> Result<()> {
        let database = &self.validation.database;
        if !self.validation.is_clean() {
            return Err(Error::new(
                Kind::Findings,
                format!("database {database:?}: {}", self.validation.headline()),
            )
            .hint("each failing check and its examples are listed above (or with --json); the database itself was not changed")
            .into());
        }
        match self.validation.errors() {
            0 => Ok(()),
            n => Err(Error::new(
                Kind::Failure,
                format!("database {database:?}: {n} object(s) could not be checked"),
            )
            .hint("the reasons are listed above: often a permission (run validate as the database owner) or a lock held by another session")
            .into()),
        }
    }
}

/// Checks `options`; changes nothing.
pub fn plan(_ctx: &Context, options: &ValidateOptions) -> Result<ValidatePlan> {
    if options.examples == 0 {
        return Err(Error::usage("validate needs to show at least 1 example per check").into());
    }
    Ok(ValidatePlan {
        options: options.clone(),
    })
}

/// Connects and runs the checks (read-only: the database is not changed).
pub async fn execute(ctx: &Context, plan: ValidatePlan) -> Result<ValidateReport> {
    let options = plan.options;
    let started = Instant::now();
    let db = ctx.connect(&options.conn).await?;
    tracing::info!(
        "validating database {:?} on {}",
        db.info.database,
        options.conn.host_display()
    );
    let limit = Options {
        examples: options.examples,
    };
    let mut validation = consistency::validate(db.client(), &limit).await?;
    let amcheck = if options.deep {
        let run = AmcheckRun {
            locator: ctx.locator.clone(),
            server_major: db.info.major,
            conn: child_conn(ctx, &options.conn, db.info.major),
            op: ctx.op.clone(),
        };
        consistency::amcheck(db.client(), run, options.examples).await
    } else {
        Check::skipped(CheckKind::Amcheck, "not asked for (--deep runs it)")
    };
    validation.checks.push(amcheck);
    log(&validation);
    Ok(ValidateReport {
        validation,
        host: options.conn.host_display(),
        deep: options.deep,
        elapsed: started.elapsed(),
    })
}

/// The connection a tool gets: its backend stops soon after the tool dies.
fn child_conn(ctx: &Context, conn: &ConnInfo, major: u32) -> ConnInfo {
    let options = crate::pg::sessions::child_options(major, None);
    if options.is_empty() {
        conn.clone()
    } else {
        conn.with_options(&options, &|k| ctx.var(k))
    }
}

/// Logs the result: the headline, and each check that could not run in full.
fn log(validation: &ValidationReport) {
    for check in &validation.checks {
        for e in &check.errors {
            tracing::warn!("{}: could not check {e}", check.check.name());
        }
    }
    if validation.is_clean() {
        tracing::info!("{}", validation.headline());
    } else {
        tracing::warn!("{}", validation.headline());
    }
}
