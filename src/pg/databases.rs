//! Whole databases, from a maintenance connection to another database of the same server:
//! whether one exists, creating, renaming and dropping one (names always quoted), and the
//! sessions connected to one (a rename needs none).

use crate::error::{Error, Kind};
use crate::pg::contents::quote_ident;
use crate::pg::db::{error_text, Db};
use crate::pg::sessions::Session;
use anyhow::Result;

/// The client sessions connected to database `$1` (other than ours).
const SESSIONS_ON_SQL: &str = concat!(
    "\
SELECT a.pid, coalesce(a.usename, '')::text, coalesce(a.application_name, '')::text, \
       a.state::text, \
       extract(epoch FROM now() - coalesce(a.state_change, a.backend_start))::float8 \
FROM pg_catalog.pg_stat_activity a \
WHERE a.datname = $1 AND a.pid <> pg_catalog.pg_backend_pid() AND ",
    crate::pg::sessions::client_sessions!(),
    " ORDER BY a.pid"
);

impl Db {
    /// Whether database `name` exists on the server.
    pub async fn database_exists(&self, name: &str) -> Result<bool> {
        let row = self
            .client()
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)",
                &[&name],
            )
            .await
            .map_err(|e| anyhow::anyhow!("looking for database {name:?}: {}", error_text(&e)))?;
        Ok(row.get(0))
    }

    /// Whether database `name` is a template or takes no connections (`template0`,
    /// `template1`, or one marked so): never a restore's target.
    pub async fn is_template_or_closed(&self, name: &str) -> Result<bool> {
        let row = self
            .client()
            .query_opt(
                "SELECT datistemplate OR NOT datallowconn FROM pg_catalog.pg_database WHERE datname = $1",
                &[&name],
            )
            .await
            .map_err(|e| anyhow::anyhow!("looking for database {name:?}: {}", error_text(&e)))?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    /// The databases whose name starts with `prefix`, by name.
    pub async fn databases_starting_with(&self, prefix: &str) -> Result<Vec<String>> {
        let rows = self
            .client()
            .query(
                "SELECT datname FROM pg_catalog.pg_database \
                 WHERE left(datname, length($1)) = $1 ORDER BY datname",
                &[&prefix],
            )
            .await
            .map_err(|e| anyhow::anyhow!("listing the databases: {}", error_text(&e)))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// `CREATE DATABASE name` (owned by our role, which needs CREATEDB).
    pub async fn create_database(&self, name: &str) -> Result<()> {
        self.ddl(
            &format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name)),
            &format!("creating database {name:?}"),
        )
        .await
    }

    /// Renames `target` to `old` and `aside` to `target` in one transaction (a multi-statement
    /// query is one implicit transaction): either both renames happen or neither, so no instant
    /// exists at which no database has the target's name.
    pub async fn swap_names(&self, target: &str, old: &str, aside: &str) -> Result<()> {
        self.ddl(
            &format!(
                "ALTER DATABASE {} RENAME TO {}; ALTER DATABASE {} RENAME TO {}",
                quote_ident(target),
                quote_ident(old),
                quote_ident(aside),
                quote_ident(target)
            ),
            &format!("renaming database {target:?} to {old:?} and {aside:?} to {target:?}"),
        )
        .await
    }

    /// `DROP DATABASE IF EXISTS name`; `force` ends its sessions first (PostgreSQL 13+).
    pub async fn drop_database(&self, name: &str, force: bool) -> Result<()> {
        let with = if force && self.info.major >= 13 {
            " WITH (FORCE)"
        } else {
            ""
        };
        self.ddl(
            &format!("DROP DATABASE IF EXISTS {}{with}", quote_ident(name)),
            &format!("dropping database {name:?}"),
        )
        .await
    }

    /// What our role lacks to rename database `name` and create others: `CREATEDB`, and
    /// ownership of `name` (a superuser lacks neither). Empty when it lacks nothing.
    pub async fn missing_rename_privileges(&self, name: &str) -> Result<Vec<&'static str>> {
        let row = self
            .client()
            .query_one(
                "SELECT r.rolsuper OR r.rolcreatedb, \
                        r.rolsuper OR pg_catalog.pg_has_role(d.datdba, 'MEMBER') \
                 FROM pg_catalog.pg_roles r, pg_catalog.pg_database d \
                 WHERE r.rolname = current_user AND d.datname = $1",
                &[&name],
            )
            .await
            .map_err(|e| anyhow::anyhow!("reading the role's privileges: {}", error_text(&e)))?;
        let mut missing = Vec::new();
        if !row.get::<_, bool>(0) {
            missing.push("the CREATEDB privilege");
        }
        if !row.get::<_, bool>(1) {
            missing.push("ownership of the database");
        }
        Ok(missing)
    }

    /// The role we are connected as.
    pub async fn current_user(&self) -> Result<String> {
        let row = self
            .client()
            .query_one("SELECT current_user::text", &[])
            .await
            .map_err(|e| anyhow::anyhow!("reading the role: {}", error_text(&e)))?;
        Ok(row.get(0))
    }

    /// The client sessions connected to database `name`, oldest pid first.
    pub async fn sessions_on(&self, name: &str) -> Result<Vec<Session>> {
        let rows = self
            .client()
            .query(SESSIONS_ON_SQL, &[&name])
            .await
            .map_err(|e| anyhow::anyhow!("listing the sessions of {name:?}: {}", error_text(&e)))?;
        Ok(rows
            .iter()
            .map(|r| Session {
                pid: r.get(0),
                user: r.get(1),
                application: r.get(2),
                state: r.get(3),
                seconds: r.get(4),
                holds_locks: false,
            })
            .collect())
    }

    /// Runs one statement that changes a whole database; a refusal for want of a privilege says
    /// which privileges are needed.
    async fn ddl(&self, sql: &str, doing: &str) -> Result<()> {
        self.client().batch_execute(sql).await.map_err(|e| {
            let text = error_text(&e);
            let denied =
                e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
            if denied {
                Error::new(Kind::Failure, format!("{doing}: {text}"))
                    .hint("the role needs the CREATEDB privilege (ALTER ROLE name CREATEDB) and, to rename or drop a database, must own it")
                    .into()
            } else {
                anyhow::anyhow!("{doing}: {text}")
            }
        })
    }
}
