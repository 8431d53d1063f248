//! The restore planned: which backup, checked how, into which database, by which strategy and
//! tools, and what the guards said. One value decides everything [`super::execute`] does, so a
//! preview can show it before anything changes.

use super::guards::{self, Confirmation, Fired, GuardWarning};
use super::RestoreOptions;
use crate::archive::crypto::KeySource;
use crate::archive::format::DumpFormat;
use crate::archive::layers::{self, Layer, Opened};
use crate::archive::meta::Meta;
use crate::archive::sqlfeed::CleanSection;
use crate::catalog;
use crate::error::Error;
use crate::ops::Context;
use crate::pg::conninfo::ConnInfo;
use crate::pg::db::Db;
use crate::pg::sessions::Session;
use crate::pg::tools::{Locator, Tool};
use crate::storage::lock::FolderLock;
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A restore, decided and checked, not yet carried out.
#[derive(Debug, Serialize)]
pub struct RestorePlan {
    /// The backup chosen, opened and checked.
    pub backup: Backup,
    /// The database it goes into, as found.
    pub target: Target,
    /// How the restore will run.
    pub strategy: Strategy,
    /// The client tools it will run.
    pub tools: Tools,
    /// What the progress counts towards, when the bytes it counts are the dump's.
    pub progress_total: Option<u64>,
    /// How long a lock wait may last (none: forever).
    pub lock_timeout: Option<Duration>,
    /// The warnings of the guards that let the restore go on, in the order they fired.
    pub warnings: Vec<GuardWarning>,
    /// The confirmation the restore needs, if any.
    pub confirmation: Option<Confirmation>,
    /// Whether the target is backed up first (labelled `pre-restore`): it holds tables and the
    /// safety backup was not turned off.
    pub safety_backup: bool,
    /// With `--swap`: the database restored aside, and the name the target is kept under.
    pub swap: Option<super::swap::SwapPlan>,
    /// What the restore would change, table by table: only in a preview ([`super::preview`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<super::preview::Preview>,
    /// Whether the consistency checks run on the target after the restore.
    pub validate: bool,
    /// Guards and checks that refuse only what may be meant were overridden (`--force`).
    pub force: bool,
    /// What the restore holds from planning on: the folder lock, the connection, the open
    /// backup. A preview holds nothing and cannot be carried out.
    #[serde(skip)]
    pub(super) held: Option<Held>,
}

impl RestorePlan {
    /// The confirmation to obtain before [`super::execute`], unless it was given already.
    #[must_use]
    pub fn confirmation_needed(&self) -> Option<&Confirmation> {
        self.confirmation.as_ref().filter(|c| !c.given)
    }

    /// Records that the confirmation was given.
    pub fn confirm(&mut self) {
        if let Some(c) = &mut self.confirmation {
            c.given = true;
        }
    }
}

/// The backup to restore.
#[derive(Debug, Clone, Serialize)]
pub struct Backup {
    /// Its file or directory.
    pub path: PathBuf,
    /// Its metadata, against which the file was checked (none: it has no sidecar).
    pub meta: Option<Meta>,
    /// `backup of "shop" (from db1) taken 2026-11-28 02:15 UTC, 1 day ago`.
    pub description: String,
    /// The dump's format, read from its content.
    pub format: DumpFormat,
    /// The layers around the dump, outermost first.
    #[serde(serialize_with = "layer_names")]
    pub layers: Vec<Layer>,
    /// Whether its stored bytes match its sidecar.
    pub checksum: Checksum,
}

/// Whether a backup's stored bytes match its sidecar (size and SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Checksum {
    /// They match.
    Verified,
    /// It has no sidecar: there is nothing to check against.
    NoSidecar,
    /// They do not (only a preview gets this far: a restore refuses).
    Failed {
        /// Why.
        message: String,
    },
}

impl Backup {
    /// `, inside age+zstd`, or nothing for a bare dump.
    #[must_use]
    pub fn layers_note(&self) -> String {
        if self.layers.is_empty() {
            return String::new();
        }
        let names: Vec<&str> = self.layers.iter().copied().map(layer_name).collect();
        format!(", inside {}", names.join("+"))
    }
}

/// The database restored into, as it was found.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The database's name, as the server reports it.
    pub database: String,
    /// Its server, as shown to people.
    pub host: String,
    /// The server's major version, e.g. 15 (the tools are found for it).
    pub server_major: u32,
    /// The user tables it holds now (not counting extensions' tables).
    pub tables: u64,
    /// It holds nothing a clean section could drop.
    pub empty: bool,
    /// The other sessions connected to it.
    #[serde(serialize_with = "as_lines")]
    pub other_sessions: Vec<Session>,
    /// They are ended before the restore (`--terminate-sessions`, and there are some).
    pub terminate_sessions: bool,
    /// It does not exist yet: the restore creates it (`--target-db NAME --create`).
    pub create: bool,
}

/// How the restore runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Strategy {
    /// Which tools move the backup into the database.
    #[serde(flatten)]
    pub method: Method,
    /// The archive's objects are dropped first; not into an empty database, where that could
    /// only fail (the restore is then exactly one without `--clean`).
    pub clean: bool,
}

/// Which tools move the backup into the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Method {
    /// Plain SQL into psql, inside one transaction that we open and close.
    PlainSql,
    /// pg_restore turns the archive into SQL, which psql runs inside one transaction that we open
    /// and close.
    Script {
        /// Where pg_restore reads the archive from.
        input: ScriptInput,
    },
    /// pg_restore --jobs reads the archive itself: not one transaction.
    Parallel {
        /// pg_restore's `--jobs`.
        jobs: u32,
    },
    /// The compressed or encrypted archive is unpacked into an unnamed temp file first, which
    /// pg_restore --jobs then reads: not one transaction.
    UnpackThenParallel {
        /// pg_restore's `--jobs`.
        jobs: u32,
    },
}

/// Where pg_restore reads the archive from when it writes the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptInput {
    /// The file or directory itself.
    File,
    /// Its stdin: we peel the layers (decrypt, decompress) and stream the archive.
    Stream,
}

impl Method {
    /// Decides the method for an opened backup and the jobs allowed.
    fn choose(opened: &Opened, jobs: Option<u32>, path: &Path) -> Result<Method> {
        let bare_or_dir = opened.format == DumpFormat::Directory || opened.is_bare();
        let readable = opened.reader.is_some();
        Ok(match (opened.format, readable, jobs) {
            (DumpFormat::Plain, true, _) => Method::PlainSql,
            (_, _, Some(jobs)) if bare_or_dir => Method::Parallel { jobs },
            (_, true, Some(jobs)) => Method::UnpackThenParallel { jobs },
            (_, _, None) if bare_or_dir => Method::Script {
                input: ScriptInput::File,
            },
            (_, true, None) => Method::Script {
                input: ScriptInput::Stream,
            },
            (_, false, _) => anyhow::bail!("nothing to read in {}", path.display()),
        })
    }

    /// The method when the tools run in a container (`place`), which sees none of our files: the
    /// archive reaches psql or pg_restore on stdin, never by its path, so neither `--jobs` (which
    /// needs a file pg_restore can seek in) nor a directory archive can be restored.
    fn choose_in_container(
        opened: &Opened,
        jobs: Option<u32>,
        path: &Path,
        place: &str,
    ) -> Result<Method> {
        let local = "restore it with client tools on this machine (unset BACKUP_DOCKER_CONTAINER and BACKUP_DOCKER_COMPOSE_SERVICE)";
        if opened.format == DumpFormat::Directory {
            return Err(Error::usage(format!(
                "{} is a directory archive, which pg_restore in the {place} cannot see",
                path.display()
            ))
            .hint(local)
            .into());
        }
        if jobs.is_some() {
            return Err(Error::usage(format!(
                "--jobs cannot be used when the tools run in the {place}: pg_restore --jobs reads the archive from a file, and the container cannot see this machine's files"
            ))
            .hint(format!("leave out --jobs (the restore then streams into one transaction), or {local}"))
            .into());
        }
        Ok(match (opened.format, opened.reader.is_some()) {
            (_, false) => anyhow::bail!("nothing to read in {}", path.display()),
            (DumpFormat::Plain, true) => Method::PlainSql,
            (_, true) => Method::Script {
                input: ScriptInput::Stream,
            },
        })
    }

    /// The parallel jobs, when the restore is not one transaction.
    #[must_use]
    pub fn jobs(self) -> Option<u32> {
        match self {
            Method::Parallel { jobs } | Method::UnpackThenParallel { jobs } => Some(jobs),
            Method::PlainSql | Method::Script { .. } => None,
        }
    }

    /// Whether pg_restore runs.
    #[must_use]
    pub fn uses_pg_restore(self) -> bool {
        self != Method::PlainSql
    }

    /// Whether psql runs (the restore is then one transaction).
    #[must_use]
    pub fn uses_psql(self) -> bool {
        self.jobs().is_none()
    }

    /// Whether the bytes the progress counts are the dump's (so its size is their total).
    #[must_use]
    pub fn counts_dump_bytes(self) -> bool {
        matches!(
            self,
            Method::PlainSql
                | Method::Script {
                    input: ScriptInput::Stream
                }
        )
    }
}

/// The client tools the method needs, found for the target's server version.
#[derive(Debug, Clone, Serialize)]
pub struct Tools {
    /// pg_restore, when the method runs it.
    #[serde(serialize_with = "tool_path")]
    pub pg_restore: Option<Tool>,
    /// psql, when the method runs it (the one-transaction methods).
    #[serde(serialize_with = "tool_path")]
    pub psql: Option<Tool>,
}

/// What the plan holds for the execution, and what ends with it.
pub(super) struct Held {
    /// The target's connection (the tools get it through their environment).
    pub(super) conn: ConnInfo,
    /// Our own connection, for `--terminate-sessions`.
    pub(super) db: Db,
    /// The safety backup's options, when one is taken.
    pub(super) safety_backup: Option<crate::ops::backup::BackupOptions>,
    /// The backup folder's lock, held until the restore ends.
    pub(super) lock: Option<FolderLock>,
    /// The dump with every layer peeled off (none for a directory archive).
    pub(super) input: Option<Box<dyn Read + Send>>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("conn", &self.conn)
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

/// Plans a restore: chooses the backup and checks it (its database, its checksum, its content),
/// connects to the target and inspects it, runs the guards and decides the strategy. Nothing is
/// changed, but from the moment the target is known, an interruption names it.
pub async fn plan(ctx: &Context, opts: &RestoreOptions) -> Result<RestorePlan> {
    plan_as(ctx, opts, Mode::Restore).await
}

/// What a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A restore: the folder is locked, a failed checksum refuses, the target is named.
    Restore,
    /// A preview: no lock, a failed checksum is reported, nothing is named.
    Preview,
}

/// [`plan`] for `mode`.
pub(super) async fn plan_as(
    ctx: &Context,
    opts: &RestoreOptions,
    mode: Mode,
) -> Result<RestorePlan> {
    let mut fired = Fired::default();
    let (path, description) = choose_backup(ctx, opts, &mut fired)?;
    let lock = match mode {
        Mode::Restore => lock_folder(&ctx.dir)?,
        Mode::Preview => None,
    };
    guards::production(opts.production_marker.as_ref(), opts.force, &mut fired)?;
    let conn = connection(opts)?;
    guards::remote_host(ctx, &conn, &mut fired);
    let (meta, checksum) = match mode {
        Mode::Restore => guards::checksum(ctx, &path, &mut fired).await?,
        Mode::Preview => guards::checksum_status(ctx, &path).await?,
    };
    let (mut opened, section) = open_backup(&path, &opts.keys)?;
    let jobs = guards::jobs(opened.format, opts.jobs, &mut fired);
    let look = Look {
        section,
        path: &path,
        jobs,
        mode,
        swap: opts.swap.is_some(),
    };
    let (db, target) = match missing_target(ctx, opts, &conn).await? {
        Some(_) if look.swap => return Err(super::swap::refuse_missing(&conn)),
        Some(maintenance) => new_target(ctx, maintenance, &conn, mode),
        None => inspect_target(ctx, opts, &conn, &look, &mut fired).await?,
    };
    let swap = opts
        .swap
        .as_ref()
        .map(|s| super::swap::SwapPlan::new(&target.database, ctx.now, s, opts.terminate_sessions));
    let confirmation = guards::confirmation(&target, &description, opts.confirmed);
    let method = match ctx.locator.container() {
        Some(place) => Method::choose_in_container(&opened, jobs, &path, &place)?,
        None => Method::choose(&opened, jobs, &path)?,
    };
    let tools = find_tools(&ctx.locator, method, target.server_major)?;
    let progress_total = meta
        .as_ref()
        .map(|m| m.dump_bytes)
        .filter(|n| *n > 0 && method.counts_dump_bytes());
    let input = opened.reader.take();
    // A swap keeps the old database, unless it is to be dropped.
    let replaces = swap.as_ref().is_none_or(|s| s.drop_old);
    let safety_backup = opts
        .safety_backup
        .clone()
        .filter(|_| target.tables > 0 && replaces);
    Ok(RestorePlan {
        backup: Backup {
            path,
            meta,
            description,
            format: opened.format,
            layers: opened.layers,
            checksum,
        },
        strategy: Strategy {
            method,
            // Aside, the restore goes into a new, empty database.
            clean: !target.empty && swap.is_none(),
        },
        target,
        tools,
        progress_total,
        lock_timeout: opts.lock_timeout,
        warnings: fired.0,
        confirmation,
        safety_backup: safety_backup.is_some(),
        swap,
        validate: opts.validate,
        force: opts.force,
        preview: None,
        held: Some(Held {
            conn,
            db,
            safety_backup,
            lock,
            input,
        }),
    })
}

/// Picks the backup among the target database's backups (or `--from-database`'s) and checks
/// whose it is. Returns its path and how to name it to people.
fn choose_backup(
    ctx: &Context,
    opts: &RestoreOptions,
    fired: &mut Fired,
) -> Result<(PathBuf, String)> {
    let target = opts
        .target_db
        .as_deref()
        .or_else(|| opts.target.as_ref().ok().and_then(ConnInfo::dbname));
    let scope = catalog::Scope {
        database: opts.from_database.as_deref().or(target),
        now: ctx.now,
    };
    let path = resolve_backup(&opts.backup, &ctx.dir, &scope)?;
    // An unreadable sidecar is refused by the checksum guard; here it only names nothing.
    let meta = Meta::read(&Meta::path_for(&path)).ok();
    let about = describe_backup(meta.as_ref(), &path, ctx.now);
    if let (Some(meta), Some(target)) = (&meta, target) {
        let from = opts.from_database.as_deref();
        let scratch = opts.scratch_target;
        guards::database_of_backup(&meta.database, target, from, scratch, &path, fired)?;
    }
    tracing::info!("restoring the {about}");
    Ok((path, about))
}

/// Finds the backup: an existing path, else `latest` or an id in the backup folder (`latest`
/// and id prefixes among the backups of `scope`'s database).
fn resolve_backup(wanted: &str, dir: &Path, scope: &catalog::Scope<'_>) -> Result<PathBuf> {
    let p = Path::new(wanted);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    let looks_like_path = wanted.contains('/') || crate::archive::naming::looks_like_backup(wanted);
    let entries = catalog::scan(dir)?;
    match catalog::resolve(&entries, wanted, dir, scope) {
        Ok(e) => Ok(e.path.clone()),
        Err(_) if looks_like_path => Err(Error::usage(format!("{wanted}: no such file"))
            .hint("check the path, or give a backup id or `latest` (see `aos-backup list`)")
            .into()),
        Err(e) => Err(e),
    }
}

/// `backup of "shop2" (from db1) taken 2026-11-28 02:15 UTC, 1 day ago`.
fn describe_backup(meta: Option<&Meta>, path: &Path, now: DateTime<Utc>) -> String {
    match meta {
        Some(m) => format!(
            "backup of {:?} (from {}) taken {}, {}",
            m.database,
            m.host.escape_debug(),
            m.started_at.format("%Y-%m-%d %H:%M UTC"),
            crate::runtime::units::age_phrase(m.started_at, now)
        ),
        None => format!(
            "file {} (no metadata: its database and date are unknown)",
            path.display()
        ),
    }
}

/// The backup folder's lock for reading, when the folder exists: no backup or prune runs while
/// the restore reads it.
fn lock_folder(dir: &Path) -> Result<Option<FolderLock>> {
    if dir.is_dir() {
        crate::storage::lock::acquire_for_reading(dir, "restore")
    } else {
        Ok(None)
    }
}

/// The target's connection, or the reason the caller found none.
fn connection(opts: &RestoreOptions) -> Result<ConnInfo> {
    match &opts.target {
        Ok(conn) => Ok(match &opts.target_db {
            Some(name) => conn.with_dbname(name),
            None => conn.clone(),
        }),
        Err(e) => {
            let again = Error::new(e.kind, e.message.clone());
            Err(match &e.hint {
                Some(hint) => again.hint(hint.clone()),
                None => again,
            }
            .into())
        }
    }
}

/// Opens the backup (its layers peeled off) and, for plain SQL, reads its head to learn whether
/// it drops what it creates (other formats always can: pg_restore writes the clean section).
fn open_backup(path: &Path, keys: &KeySource) -> Result<(Opened, CleanSection)> {
    let mut opened = layers::open(path, keys)?;
    if opened.format != DumpFormat::Plain {
        return Ok((opened, CleanSection::Present));
    }
    let Some(reader) = opened.reader.take() else {
        return Ok((opened, CleanSection::Unknown));
    };
    let (section, reader) = crate::archive::sqlfeed::peek_clean_section(reader)
        .map_err(|e| super::feed::unreadable_backup(path, &e))?;
    opened.reader = Some(reader);
    Ok((opened, section))
}

/// What the target is checked against.
struct Look<'a> {
    section: CleanSection,
    path: &'a Path,
    jobs: Option<u32>,
    mode: Mode,
    /// The restore goes aside, into a new empty database (`--swap`).
    swap: bool,
}

/// Connects to the target and runs the guards that depend on what it holds. From here on, the
/// operation's restore state names the target.
async fn inspect_target(
    ctx: &Context,
    opts: &RestoreOptions,
    conn: &ConnInfo,
    look: &Look<'_>,
    fired: &mut Fired,
) -> Result<(Db, Target)> {
    let db = ctx.connect(conn).await?;
    let tables = db.table_count().await?;
    let database = db.info.database.clone();
    let empty = db.is_empty().await?;
    let into_empty = empty || look.swap;
    guards::clean_section(
        look.section,
        into_empty,
        opts.force,
        &database,
        look.path,
        fired,
    )?;
    if look.mode == Mode::Restore {
        ctx.op.restore().begins(&database);
    }
    let others = db.other_sessions().await?;
    guards::other_sessions(&database, &others, fired);
    let terminate_sessions = opts.terminate_sessions && !others.is_empty();
    let populated = if look.swap { 0 } else { tables };
    guards::parallel_into_populated(populated, look.jobs, opts.force, &database)?;
    let target = Target {
        database,
        host: conn.host_display(),
        server_major: db.info.major,
        tables,
        empty,
        other_sessions: others,
        terminate_sessions,
        create: false,
    };
    Ok((db, target))
}

/// With `--target-db`: `None` when that database exists; when it does not, refuses unless
/// `--create` was given, and then returns a connection to another database of the server
/// (the restore creates it from there).
async fn missing_target(
    ctx: &Context,
    opts: &RestoreOptions,
    conn: &ConnInfo,
) -> Result<Option<Db>> {
    let Some(name) = &opts.target_db else {
        return Ok(None);
    };
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(Error::usage(format!("invalid --target-db {name:?}"))
            .hint("a database name is 1 to 63 bytes long")
            .into());
    }
    let given = opts.target.as_ref().unwrap_or(conn);
    let maintenance = maintenance_avoiding(ctx, given, Some(name)).await?;
    if maintenance.is_template_or_closed(name).await? {
        return Err(Error::refused(format!(
            "database {name:?} is a template or takes no connections: a restore never goes there"
        ))
        .hint("give the name of an ordinary database, or a new one with --create")
        .into());
    }
    if maintenance.database_exists(name).await? {
        return Ok(None);
    }
    if opts.create {
        return Ok(Some(maintenance));
    }
    Err(Error::usage(format!(
        "database {name:?} does not exist on {}",
        conn.host_display()
    ))
    .hint("check the name, or add --create to create it (the role needs CREATEDB)")
    .into())
}

/// The target that `--create` will create: empty, nobody connected.
fn new_target(ctx: &Context, maintenance: Db, conn: &ConnInfo, mode: Mode) -> (Db, Target) {
    let database = conn.dbname().unwrap_or_default().to_string();
    if mode == Mode::Restore {
        ctx.op.restore().begins(&database);
    }
    tracing::info!("database {database:?} does not exist: the restore creates it (--create)");
    let target = Target {
        database,
        host: conn.host_display(),
        server_major: maintenance.info.major,
        tables: 0,
        empty: true,
        other_sessions: Vec::new(),
        terminate_sessions: false,
        create: true,
    };
    (maintenance, target)
}

/// A connection to another database of `conn`'s server, for statements about whole databases:
/// the database the connection itself names (unless that is `avoid`), else `postgres`, else
/// `template1`.
pub(super) async fn maintenance_avoiding(
    ctx: &Context,
    conn: &ConnInfo,
    avoid: Option<&str>,
) -> Result<Db> {
    let own = conn.effective_dbname(&|k| ctx.var(k));
    let mut last = None;
    for name in [own.as_str(), "postgres", "template1"] {
        if Some(name) == avoid {
            continue;
        }
        match ctx.connect(&conn.with_dbname(name)).await {
            Ok(db) => return Ok(db),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no database to connect to on the server")))
}

/// Finds the tools `method` runs, for the server's major version.
fn find_tools(locator: &Locator, method: Method, major: u32) -> Result<Tools> {
    let pg_restore = if method.uses_pg_restore() {
        Some(locator.find("pg_restore", Some(major))?)
    } else {
        None
    };
    let psql = if method.uses_psql() {
        Some(locator.find("psql", Some(major))?)
    } else {
        None
    };
    Ok(Tools { pg_restore, psql })
}

fn layer_name(layer: Layer) -> &'static str {
    match layer {
        Layer::Age => "age",
        Layer::Zstd => "zstd",
        Layer::Gzip => "gzip",
    }
}

fn layer_names<S: Serializer>(layers: &[Layer], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(layers.iter().copied().map(layer_name))
}

fn as_lines<S: Serializer>(sessions: &[Session], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(sessions.iter().map(ToString::to_string))
}

fn tool_path<S: Serializer>(tool: &Option<Tool>, s: S) -> Result<S::Ok, S::Error> {
    match tool {
        None => s.serialize_none(),
        Some(t) => s.collect_map([
            ("path", t.path.display().to_string()),
            ("version", t.version.clone()),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(format: DumpFormat, layers: Vec<Layer>, readable: bool) -> Opened {
        Opened {
            layers,
            format,
            reader: readable.then(|| Box::new(std::io::empty()) as Box<dyn Read + Send>),
        }
    }

    #[test]
    fn one_decision_picks_the_method() {
        let p = Path::new("b");
        let choose = |o: &Opened, jobs| Method::choose(o, jobs, p).unwrap();
        let plain_gz = opened(DumpFormat::Plain, vec![Layer::Gzip], true);
        assert_eq!(choose(&plain_gz, None), Method::PlainSql);
        let bare = opened(DumpFormat::Custom, vec![], true);
        assert_eq!(choose(&bare, Some(4)), Method::Parallel { jobs: 4 });
        let file = Method::Script {
            input: ScriptInput::File,
        };
        assert_eq!(choose(&bare, None), file);
        let dir = opened(DumpFormat::Directory, vec![], false);
        assert_eq!(choose(&dir, Some(2)), Method::Parallel { jobs: 2 });
        assert_eq!(choose(&dir, None), file);
        let zst = opened(DumpFormat::Custom, vec![Layer::Age, Layer::Zstd], true);
        assert_eq!(
            choose(&zst, Some(3)),
            Method::UnpackThenParallel { jobs: 3 }
        );
        let stream = Method::Script {
            input: ScriptInput::Stream,
        };
        assert_eq!(choose(&zst, None), stream);
        assert!(Method::choose(
            &opened(DumpFormat::Custom, vec![Layer::Zstd], false),
            None,
            p
        )
        .is_err());
    }

    #[test]
    fn the_method_says_which_tools_run_and_what_is_counted() {
        let stream = Method::Script {
            input: ScriptInput::Stream,
        };
        assert!(!Method::PlainSql.uses_pg_restore() && Method::PlainSql.uses_psql());
        assert!(stream.uses_pg_restore() && stream.uses_psql());
        let parallel = Method::UnpackThenParallel { jobs: 2 };
        assert!(parallel.uses_pg_restore() && !parallel.uses_psql());
        assert!(Method::PlainSql.counts_dump_bytes() && stream.counts_dump_bytes());
        let file = Method::Script {
            input: ScriptInput::File,
        };
        assert!(!file.counts_dump_bytes() && !parallel.counts_dump_bytes());
    }

    #[test]
    fn the_strategy_serializes_flat() {
        let s = Strategy {
            method: Method::Script {
                input: ScriptInput::Stream,
            },
            clean: true,
        };
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::json!({"method": "script", "input": "stream", "clean": true})
        );
    }

    #[test]
    fn a_missing_connection_is_reported_as_the_caller_found_it() {
        let opts = RestoreOptions {
            backup: "latest".into(),
            from_database: None,
            target: Err(Error::usage("DATABASE_URL is not set").hint("export it")),
            jobs: None,
            lock_timeout: None,
            terminate_sessions: false,
            force: false,
            confirmed: false,
            production_marker: None,
            keys: KeySource::default(),
            target_db: None,
            create: false,
            swap: None,
            safety_backup: None,
            validate: true,
            scratch_target: false,
        };
        let err = connection(&opts).unwrap_err();
        let typed = crate::error::find(&err).unwrap();
        assert_eq!(typed.kind, crate::error::Kind::Usage);
        assert_eq!(typed.message, "DATABASE_URL is not set");
        assert_eq!(typed.hint.as_deref(), Some("export it"));
    }

    #[test]
    fn ages_in_words() {
        let now = Utc::now();
        assert_eq!(
            crate::runtime::units::age_phrase(now - chrono::Duration::days(1), now),
            "1 day ago"
        );
        assert_eq!(
            crate::runtime::units::age_phrase(now + chrono::Duration::minutes(5), now),
            "5 minutes in the future"
        );
    }

    #[test]
    fn layers_are_named_in_order() {
        let b = Backup {
            path: PathBuf::from("b"),
            meta: None,
            description: String::new(),
            format: DumpFormat::Custom,
            layers: vec![Layer::Age, Layer::Zstd],
            checksum: Checksum::Verified,
        };
        assert_eq!(b.layers_note(), ", inside age+zstd");
    }
}
