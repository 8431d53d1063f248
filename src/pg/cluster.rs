//! An ephemeral PostgreSQL cluster that aos-backup starts itself (`initdb`, then `postgres`) in a
//! private folder, reachable only through a Unix socket in that folder, and removes afterwards.
//! Its postmaster is our child in its own process group, killed with us however we end; a folder
//! left by a killed run is removed by the next start.

use crate::error::{Error, Kind};
use crate::pg::conninfo::ConnInfo;
use crate::pg::tools::Locator;
use crate::runtime::context::OpContext;
use crate::runtime::owner;
use crate::runtime::process::{self, Finished};
use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The folders' name prefix in the temp folder, which finds the ones killed runs left.
const DIR_PREFIX: &str = "aos-backup-drill.";
/// The file in the folder that names its owner.
/// The port number in the socket's name (no TCP port is opened).
const PORT: u16 = 5432;
/// The superuser initdb makes.
const SUPERUSER: &str = "postgres";
/// How long the server may take to accept connections, and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// `initdb` and `postgres` of one major version.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `initdb` program.
    pub initdb: PathBuf,
    /// The `postgres` program.
    pub postgres: PathBuf,
    /// Their major version.
    pub major: u32,
}

/// Finds `initdb` and `postgres` of major version `major` (in `PG_BIN` when set, else in the
/// Debian folder of that version, else on `PATH`).
pub fn find_binaries(locator: &Locator, major: u32) -> Result<Binaries> {
    let initdb = locator
        .find("initdb", Some(major))
        .map_err(|e| missing(major, &e))?;
    let postgres = locator
        .find("postgres", Some(major))
        .map_err(|e| missing(major, &e))?;
    for tool in [&initdb, &postgres] {
        if tool.major != major {
            return Err(Error::new(
                Kind::Tools,
                format!(
                    "an ephemeral cluster for this backup needs PostgreSQL {major}, but {} is {}",
                    tool.path.display(),
                    tool.version
                ),
            )
            .hint(server_hint(major))
            .into());
        }
    }
    Ok(Binaries {
        initdb: initdb.path,
        postgres: postgres.path,
        major,
    })
}

fn missing(major: u32, e: &anyhow::Error) -> anyhow::Error {
    Error::new(
        Kind::Tools,
        format!("an ephemeral cluster needs the PostgreSQL {major} server programs (initdb, postgres): {e:#}"),
    )
    .hint(server_hint(major))
    .into()
}

fn server_hint(major: u32) -> String {
    format!("install the server of that version (Debian/Ubuntu: apt-get install postgresql-{major}) or set PG_BIN to its bin folder (e.g. /usr/lib/postgresql/{major}/bin); or drill on a server with --scratch-url")
}

/// The OS user the cluster runs as: ourselves, or `postgres` when we are root (initdb refuses
/// root).
#[derive(Debug, Clone, Copy)]
struct RunAs {
    ids: Option<(u32, u32)>,
}

impl RunAs {
    fn choose() -> Result<RunAs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(RunAs { ids: None });
        }
        let ids = user_ids(SUPERUSER).ok_or_else(|| {
            Error::new(
                Kind::Tools,
                "an ephemeral cluster cannot run as root (initdb refuses it), and there is no OS user \"postgres\" to run it as",
            )
            .hint("create that user (useradd --system --home-dir /var/lib/postgresql postgres), run aos-backup as another user, or drill on a server with --scratch-url")
        })?;
        Ok(RunAs { ids: Some(ids) })
    }

    fn apply(self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
    }

    fn chown(self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("handing {} to the postgres user", path.display()))?;
        }
        Ok(())
    }
}

/// The uid and gid of the OS user `name`.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam gets a valid C string; the record is read at once, before any other call
    // that could reuse its static storage.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return None;
        }
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// A running ephemeral cluster; dropping it stops the server and removes its folder.
pub struct Cluster {
    folder: Option<tempfile::TempDir>,
    pid: u32,
    keeper: Option<JoinHandle<Result<Finished>>>,
    /// A superuser connection to its `postgres` database over the private socket.
    pub conn: ConnInfo,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("pid", &self.pid)
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Removes the folders of clusters whose owner is gone, then makes a private folder, runs
    /// initdb and starts the server; returns once it accepts connections.
    pub async fn start(
        op: &OpContext,
        bins: &Binaries,
        lookup: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Cluster> {
        sweep();
        let run_as = RunAs::choose()?;
        let folder = make_folder(run_as)?;
        let root = folder.path().to_path_buf();
        initdb(op, bins, run_as, &root).await?;
        let (pid, keeper) = launch(op, bins, run_as, &root)?;
        let conn = connection(&root)?;
        let mut cluster = Cluster {
            folder: Some(folder),
            pid,
            keeper: Some(keeper),
            conn,
        };
        cluster.wait_ready(op, lookup).await?;
        tracing::info!(
            "started an ephemeral PostgreSQL {} cluster in {} (socket only)",
            bins.major,
            root.display()
        );
        Ok(cluster)
    }

    /// Polls until the server accepts connections, or says why it did not.
    async fn wait_ready(
        &mut self,
        op: &OpContext,
        lookup: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(sig) = op.cancelled() {
                return Err(op.interrupted_error(sig).into());
            }
            if self.keeper.as_ref().is_some_and(JoinHandle::is_finished) {
                return Err(self.died_early());
            }
            let socket = self.socket_dir().join(format!(".s.PGSQL.{PORT}"));
            if socket.exists() && crate::pg::db::Db::connect(&self.conn, lookup).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the ephemeral cluster did not accept connections within {}s",
                    START_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The error for a server that ended before it was ready, with its last words.
    fn died_early(&mut self) -> anyhow::Error {
        let said = match self.keeper.take().map(JoinHandle::join) {
            Some(Ok(Ok(f))) => format!(
                "{}: {}",
                process::describe_status(&f.status),
                f.stderr.join(" / ")
            ),
            Some(Ok(Err(e))) => format!("{e:#}"),
            _ => "no word from it".into(),
        };
        Error::new(
            Kind::Failure,
            format!("the ephemeral cluster's server stopped while starting: {said}"),
        )
        .into()
    }

    fn socket_dir(&self) -> PathBuf {
        self.folder
            .as_ref()
            .map(|f| f.path().to_path_buf())
            .unwrap_or_default()
    }

    /// Stops the server (fast shutdown, then SIGKILL to its process group) and removes the folder.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(keeper) = self.keeper.take() {
            signal(self.pid, libc::SIGINT);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while !keeper.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !keeper.is_finished() {
                tracing::warn!("the ephemeral cluster did not stop in time: killing it");
                signal_group(self.pid, libc::SIGKILL);
            }
            let _ = keeper.join();
        }
        if let Some(folder) = self.folder.take() {
            let path = folder.path().to_path_buf();
            if let Err(e) = folder.close() {
                tracing::warn!(
                    "cannot remove the ephemeral cluster's folder {}: {e}",
                    path.display()
                );
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn signal_group(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}

/// A private (0700) folder in the temp folder, naming its owner, handed to the cluster's user.
fn make_folder(run_as: RunAs) -> Result<tempfile::TempDir> {
    let folder =
        owner::owned_temp_dir(DIR_PREFIX).context("creating the ephemeral cluster's folder")?;
    run_as.chown(folder.path())?;
    Ok(folder)
}

/// Removes the folders of ephemeral clusters whose owner is gone (a drill that was killed).
pub fn sweep() {
    owner::sweep_temp(DIR_PREFIX, "the folder of an ephemeral cluster");
}

/// `initdb` into `root/data`: trust authentication (the socket is private), no fsync.
async fn initdb(op: &OpContext, bins: &Binaries, run_as: RunAs, root: &Path) -> Result<()> {
    let mut cmd = Command::new(&bins.initdb);
    cmd.arg("-D")
        .arg(root.join("data"))
        .args([
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--no-locale",
            "-N",
        ])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    run_as.apply(&mut cmd);
    let op = op.clone();
    tokio::task::spawn_blocking(move || process::spawn(&op, "initdb", &mut cmd)?.wait()?.check())
        .await
        .context("the initdb thread failed")?
}

/// Starts `postgres` on a keeper thread, which spawns it (so the kernel kills it when that
/// thread ends, see `process::die_with_us`) and waits for it. Returns its pid.
fn launch(
    op: &OpContext,
    bins: &Binaries,
    run_as: RunAs,
    root: &Path,
) -> Result<(u32, JoinHandle<Result<Finished>>)> {
    let mut cmd = Command::new(&bins.postgres);
    cmd.arg("-D")
        .arg(root.join("data"))
        .arg("-k")
        .arg(root)
        .args(["-p", &PORT.to_string()])
        .args(["-c", "listen_addresses="])
        .args(["-c", "unix_socket_permissions=0700"])
        .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
        .args(["-c", "synchronous_commit=off"])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    run_as.apply(&mut cmd);
    let (tx, rx) = std::sync::mpsc::channel();
    let op = op.clone();
    let keeper = std::thread::spawn(move || -> Result<Finished> {
        let (running, watch) = match process::spawn_group(&op, "postgres", &mut cmd) {
            Ok(started) => started,
            Err(e) => {
                let _ = tx.send(None);
                return Err(e);
            }
        };
        let _ = tx.send(Some(running.child.id()));
        let finished = running.wait();
        drop(watch);
        finished
    });
    match rx.recv().ok().flatten() {
        Some(pid) => Ok((pid, keeper)),
        None => Err(keeper.join().map_or_else(
            |_| anyhow::anyhow!("the postgres keeper thread failed"),
            |r| {
                r.err()
                    .unwrap_or_else(|| anyhow::anyhow!("postgres did not start"))
            },
        )),
    }
}

/// The superuser's connection to the cluster's `postgres` database over its socket.
fn connection(root: &Path) -> Result<ConnInfo> {
    let url = format!(
        "postgresql://{SUPERUSER}@/postgres?host={}&port={PORT}&sslmode=disable",
        percent_encode(&root.to_string_lossy())
    );
    ConnInfo::parse(&url).map_err(|e| anyhow::anyhow!("the ephemeral cluster's URL: {e}"))
}

fn percent_encode(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_folder_is_the_host_of_the_url() {
        let conn = connection(Path::new("/tmp/aos-backup-drill.a b")).unwrap();
        assert_eq!(conn.host(), Some("/tmp/aos-backup-drill.a b"));
        assert_eq!(conn.port(), Some(PORT));
        assert_eq!(conn.user(), Some(SUPERUSER));
    }
}
