//! The operations: each one is planned, then executed, and returns a typed report; none prints
//! (results go back to the caller, logs go through `tracing`). Operations share code through the
//! layers below (archive, catalog, storage, pg, runtime), never through each other's modules.

pub mod backup;
pub mod check;
pub mod list;
pub mod many;
pub mod metrics;
pub mod prune;
pub mod restore;
pub mod validate;
pub mod verify;

use crate::error::{Error, Kind};
use crate::pg::conninfo::ConnInfo;
use crate::pg::db::Db;
use crate::pg::tools::Locator;
use crate::runtime::context::OpContext;
use anyhow::Result;
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::Arc;

/// Looks up a variable: the environment, then `./.env` (what the connection falls back to,
/// as libpq's PG* variables).
pub type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What every operation is given, free of the command line: the backup folder, how to find and
/// run the client tools, "now", where variables come from, and its runtime context.
#[derive(Clone)]
pub struct Context {
    /// This operation's cancellation, children, temp files and progress.
    pub op: OpContext,
    /// The backup folder.
    pub dir: PathBuf,
    /// Where pg_dump, pg_restore and psql are found, and how they are run.
    pub locator: Locator,
    /// "Now" (injectable, for tests and for a daemon's schedule).
    pub now: DateTime<Utc>,
    /// Variables for the connection (libpq's PG* fallbacks).
    pub lookup: Lookup,
}

impl Context {
    /// Looks up the variable `key`.
    #[must_use]
    pub fn var(&self, key: &str) -> Option<String> {
        (self.lookup)(key)
    }

    /// Our own connection to `conn`. It is made from this machine even when the tools run in a
    /// container: a failure then says so.
    pub async fn connect(&self, conn: &ConnInfo) -> Result<Db> {
        let connected = Db::connect(conn, &|k| self.var(k)).await;
        match (connected, self.locator.container()) {
            (Err(e), Some(place)) => Err(from_this_machine(e, &place)),
            (connected, _) => connected,
        }
    }
}

/// A connection failure in docker-exec mode: the tools would reach the server from inside the
/// container, but aos-backup itself connects from this machine.
fn from_this_machine(e: anyhow::Error, place: &str) -> anyhow::Error {
    let Some(t) = crate::error::find(&e).filter(|t| t.kind == Kind::Connection) else {
        return e;
    };
    let hint = format!(
        "the tools run in the {place}, but aos-backup itself connects from this machine with DATABASE_URL (for the server's version and table count): publish the database's port to this machine (e.g. ports: [\"127.0.0.1:5432:5432\"]) and use a host and port that work both here and inside the container, such as localhost:5432{}",
        t.hint.as_deref().map_or_else(String::new, |h| format!("; also: {h}"))
    );
    Error::new(Kind::Connection, t.message.clone())
        .hint(hint)
        .into()
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("dir", &self.dir)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}
