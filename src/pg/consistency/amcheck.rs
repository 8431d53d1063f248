//! `validate --deep`: pg_amcheck over the database's heaps and B-tree indexes, when the tool and
//! the `amcheck` extension are there; when either is missing, the check says so and is skipped.

use super::{Check, CheckKind};
use crate::pg::conninfo::ConnInfo;
use crate::pg::db::error_text;
use crate::pg::tools::{Locator, Tool};
use crate::runtime::context::OpContext;
use std::io::Read;
use std::process::Stdio;
use tokio_postgres::Client;

/// How to run pg_amcheck against the database being validated.
#[derive(Debug, Clone)]
pub struct AmcheckRun {
    /// Where pg_amcheck is looked for (`PG_BIN`, the Debian folder of the server, `PATH`, or
    /// the container).
    pub locator: Locator,
    /// The server's major version, to pick its Debian folder.
    pub server_major: u32,
    /// The connection pg_amcheck gets (its password through the environment).
    pub conn: ConnInfo,
    /// The operation pg_amcheck runs under (cancellation, children).
    pub op: OpContext,
}

/// Runs pg_amcheck over `client`'s database as `run` says, keeping up to `limit` examples.
/// Never an error: a missing tool or extension skips the check, a failed run is in `errors`.
pub async fn amcheck(client: &Client, run: AmcheckRun, limit: usize) -> Check {
    if let Some(why) = missing_extension(client).await {
        return Check::skipped(CheckKind::Amcheck, why);
    }
    let tool = match run.locator.find("pg_amcheck", Some(run.server_major)) {
        Ok(tool) => tool,
        Err(e) => {
            return Check::skipped(
                CheckKind::Amcheck,
                format!("pg_amcheck is not installed ({e:#}); install the PostgreSQL client tools (14 or later) to use --deep"),
            )
        }
    };
    let ran = tokio::task::spawn_blocking(move || run_tool(&tool, &run)).await;
    let mut check = Check::new(CheckKind::Amcheck);
    match ran {
        Ok(Ok(out)) => {
            let (problems, refused): (Vec<String>, Vec<String>) = parse_report(&out)
                .into_iter()
                .partition(|p| !p.contains("permission denied"));
            check.examined = 1;
            check.fail(u64::try_from(problems.len()).unwrap_or(0), problems, limit);
            check.errors.extend(refused.into_iter().take(limit));
        }
        Ok(Err(e)) => check.errors.push(format!("pg_amcheck: {e:#}")),
        Err(e) => check.errors.push(format!("pg_amcheck: {e}")),
    }
    check
}

/// Whether the `amcheck` extension is in the database, and whether we may run the functions
/// pg_amcheck calls (by default only superusers may).
const EXTENSION_SQL: &str = "\
SELECT e.extnamespace::regnamespace::text, current_user::text, \
       NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid = d.objid \
                   WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = e.oid \
                     AND d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e' \
                     AND p.proname IN ('verify_heapam', 'bt_index_check') \
                     AND NOT pg_catalog.has_function_privilege(p.oid, 'EXECUTE')) \
FROM pg_catalog.pg_extension e WHERE e.extname = 'amcheck'";

/// Why the check cannot run in this database: the `amcheck` extension is not in it, or we may
/// not run its functions.
async fn missing_extension(client: &Client) -> Option<String> {
    let found = client.query_opt(EXTENSION_SQL, &[]).await;
    match found {
        Ok(Some(row)) if row.get::<_, bool>(2) => None,
        Ok(Some(row)) => {
            let (schema, user): (String, String) = (row.get(0), row.get(1));
            Some(format!(
                "role {user} may not run the amcheck functions: run validate --deep as a superuser, or GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {user} (as a superuser)"
            ))
        }
        Ok(None) => Some(
            "the amcheck extension is not installed in this database: a superuser can add it with CREATE EXTENSION amcheck"
                .into(),
        ),
        Err(e) => Some(format!(
            "cannot look for the amcheck extension: {}",
            error_text(&e)
        )),
    }
}

/// pg_amcheck's report (stdout): exit 0 is clean, 2 is corruption found, anything else failed.
fn run_tool(tool: &Tool, run: &AmcheckRun) -> anyhow::Result<String> {
    let mut cmd = tool.command(&run.conn.child_env());
    cmd.arg("--no-password");
    let dbname = run.conn.conninfo_without_password();
    if !dbname.is_empty() {
        cmd.arg(dbname);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut running = tool.spawn(&run.op, &mut cmd)?;
    let mut out = String::new();
    if let Some(mut stdout) = running.child.stdout.take() {
        if let Err(e) = stdout.read_to_string(&mut out) {
            running.kill();
            anyhow::bail!("reading pg_amcheck's report: {e}");
        }
    }
    let finished = running.wait()?;
    if finished.status.code() != Some(2) {
        finished.check()?;
    }
    Ok(out)
}

/// Each problem pg_amcheck reports starts a line at the left margin (`heap table "db.s.t",
/// block 0, offset 1:`, `btree index "db.s.i":`), its details indented below: one string each,
/// with its first detail.
fn parse_report(out: &str) -> Vec<String> {
    let mut problems: Vec<String> = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        match problems.last_mut() {
            Some(last) if line.starts_with(char::is_whitespace) => {
                if !last.contains(" — ") {
                    last.push_str(" — ");
                    last.push_str(line.trim());
                }
            }
            _ => problems.push(line.trim_end_matches(':').to_string()),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_unindented_line_is_one_problem_with_its_first_detail() {
        let out = "heap table \"db.public.t\", block 0, offset 1:\n    xmin 3 precedes relation freeze threshold 0:10\n    second detail\nbtree index \"db.public.t_pkey\":\n    ERROR:  item order invariant violated\n";
        assert_eq!(
            parse_report(out),
            [
                "heap table \"db.public.t\", block 0, offset 1 — xmin 3 precedes relation freeze threshold 0:10",
                "btree index \"db.public.t_pkey\" — ERROR:  item order invariant violated"
            ]
        );
        assert!(parse_report("").is_empty());
    }
}
