//! Finding pg_dump, pg_restore and psql: `PG_BIN` alone when set, else the Debian folder that
//! matches the server, else `PATH` (in docker-exec mode: the container's `PATH`, or `PG_BIN` inside
//! it); and checking that they are new enough for the server.

use super::runner::{Local, Runner};
use crate::error::{Error, Kind};
use crate::runtime::context::OpContext;
use crate::runtime::process::{self, Running};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A PostgreSQL client program that was found and asked for its version.
#[derive(Debug, Clone)]
pub struct Tool {
    /// The program's name: `pg_dump`, `pg_restore` or `psql`.
    pub name: &'static str,
    /// Where it was found.
    pub path: PathBuf,
    /// The version line, e.g. `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`.
    pub version_line: String,
    /// e.g. `15.18`.
    pub version: String,
    /// The major version, e.g. 15, which decides whether it can handle the server.
    pub major: u32,
    /// How its commands are built and where they run.
    pub runner: Arc<dyn Runner>,
}

impl Tool {
    /// The command that runs this tool with the connection's libpq environment `conn_env`.
    #[must_use]
    pub fn command(&self, conn_env: &[(String, String)]) -> Command {
        self.runner.command(&self.path, conn_env)
    }

    /// Starts `cmd` (made by [`Tool::command`]) as a child of the operation `op`; what it starts
    /// in a container is stopped with it.
    pub fn spawn(&self, op: &OpContext, cmd: &mut Command) -> Result<Running> {
        let stop = self.runner.stopper(cmd);
        process::spawn_stoppable(op, self.name, cmd, stop)
    }
}

/// Where to look for the tools.
#[derive(Debug, Clone)]
pub struct Locator {
    /// `PG_BIN`: when set, the only place looked in.
    pub pg_bin: Option<PathBuf>,
    /// The root of Debian's per-major folders (`/usr/lib/postgresql`); injectable for tests.
    pub debian_root: PathBuf,
    /// The `PATH` to search.
    pub path_var: Option<std::ffi::OsString>,
    /// How the tools are run.
    pub runner: Arc<dyn Runner>,
}

impl Locator {
    #[must_use]
    pub fn new(pg_bin: Option<PathBuf>) -> Locator {
        Locator {
            pg_bin,
            debian_root: PathBuf::from("/usr/lib/postgresql"),
            path_var: std::env::var_os("PATH"),
            runner: Arc::new(Local),
        }
    }

    /// The same, with the tools run by `runner` (e.g. inside a container).
    #[must_use]
    pub fn with_runner(self, runner: Arc<dyn Runner>) -> Locator {
        Locator { runner, ..self }
    }

    /// Where the tools run, in words, when in a container (see [`Runner::container`]): they then
    /// see none of this machine's files.
    #[must_use]
    pub fn container(&self) -> Option<String> {
        self.runner.container()
    }

    /// Finds `name`, preferring the Debian folder of `server_major` when `PG_BIN` is unset.
    pub fn find(&self, name: &'static str, server_major: Option<u32>) -> Result<Tool> {
        let path = self.locate(name, server_major)?;
        let version_line = match self.container() {
            Some(place) => version_line_in(self.runner.as_ref(), name, &path, &place)?,
            None => version_line(self.runner.as_ref(), name, &path)?,
        };
        let (version, major) = parse_version(&version_line).ok_or_else(|| {
            Error::new(
                Kind::Tools,
                format!(
                    "cannot read the version of {} (it printed {version_line:?})",
                    path.display()
                ),
            )
            .hint("set PG_BIN to the bin folder of a PostgreSQL client installation")
        })?;
        tracing::debug!(tool = name, path = %path.display(), %version, "found");
        Ok(Tool {
            name,
            path,
            version_line,
            version,
            major,
            runner: self.runner.clone(),
        })
    }

    fn locate(&self, name: &'static str, server_major: Option<u32>) -> Result<PathBuf> {
        // In a container, the tools are its own: nothing on this machine is looked at.
        if self.container().is_some() {
            return Ok(self
                .pg_bin
                .as_ref()
                .map_or_else(|| PathBuf::from(name), |dir| dir.join(name)));
        }
        if let Some(dir) = &self.pg_bin {
            let p = dir.join(name);
            if is_executable(&p) {
                return Ok(p);
            }
            return Err(Error::new(
                Kind::Tools,
                format!("{name} not found in PG_BIN={}", dir.display()),
            )
            .hint(format!(
                "point PG_BIN at the folder that holds {name} (e.g. /usr/lib/postgresql/16/bin), or unset it to search PATH"
            ))
            .into());
        }
        if let Some(major) = server_major {
            let p = self
                .debian_root
                .join(major.to_string())
                .join("bin")
                .join(name);
            if is_executable(&p) {
                return Ok(p);
            }
        }
        if let Some(p) = self
            .path_var
            .as_ref()
            .and_then(|pv| which::which_in(name, Some(pv), std::env::current_dir().ok()?).ok())
        {
            return Ok(p);
        }
        // Debian installs the real binaries outside PATH when only the server package is there.
        if let Some(p) = self.newest_debian(name) {
            return Ok(p);
        }
        Err(Error::new(
            Kind::Tools,
            format!(
                "{name} not found (looked in PATH and {}/<version>/bin)",
                self.debian_root.display()
            ),
        )
        .hint(
            "install the PostgreSQL client tools (Debian/Ubuntu: apt-get install postgresql-client; \
             macOS: brew install libpq), or set PG_BIN to the folder that holds them",
        )
        .into())
    }

    fn newest_debian(&self, name: &str) -> Option<PathBuf> {
        let mut majors: Vec<u32> = std::fs::read_dir(&self.debian_root)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        majors.sort_unstable();
        majors
            .into_iter()
            .rev()
            .map(|m| self.debian_root.join(m.to_string()).join("bin").join(name))
            .find(|p| is_executable(p))
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn version_line(runner: &dyn Runner, name: &str, path: &Path) -> Result<String> {
    let out = runner
        .command(path, &[])
        .arg("--version")
        .output()
        .map_err(|e| {
            Error::new(Kind::Tools, format!("cannot run {}: {e}", path.display())).hint(format!(
                "check that {name} is an executable PostgreSQL client program"
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or("").trim().to_string();
    if !out.status.success() || line.is_empty() {
        return Err(Error::new(
            Kind::Tools,
            format!("{} --version failed ({})", path.display(), out.status),
        )
        .hint("set PG_BIN to the bin folder of a working PostgreSQL client installation")
        .into());
    }
    Ok(line)
}

/// [`version_line`] in a container: docker's own failures (no such container, not running, no
/// daemon, no such program) become one line with their hint.
fn version_line_in(runner: &dyn Runner, name: &str, path: &Path, place: &str) -> Result<String> {
    let mut cmd = runner.command(path, &[]);
    let out = cmd.arg("--version").output().map_err(|e| {
        let program = cmd.get_program().to_string_lossy().into_owned();
        Error::new(Kind::Tools, format!("cannot run {program} to reach the {place}: {e}"))
            .hint("install the docker command-line client, or unset BACKUP_DOCKER_CONTAINER and BACKUP_DOCKER_COMPOSE_SERVICE to run the tools on this machine")
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or("").trim().to_string();
    if out.status.success() && !line.is_empty() {
        return Ok(line);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map_or_else(
            || process::describe_status(&out.status),
            crate::runtime::redact::sanitize,
        );
    let (kind, hint) = match process::classify(&stderr) {
        (Kind::Failure, _) => (Kind::Tools, format!("check that the {place} has {name} on its PATH (or set PG_BIN to its folder inside the container)")),
        (kind, hint) => (kind, hint.unwrap_or_default()),
    };
    Err(
        Error::new(kind, format!("cannot run {name} in the {place}: {said}"))
            .hint(hint)
            .into(),
    )
}

/// Parses `pg_dump (PostgreSQL) 15.18 (Debian ...)` into (`15.18`, 15). Old `9.6.3` gives major 9.
#[must_use]
pub fn parse_version(line: &str) -> Option<(String, u32)> {
    let after = line.split_once(')').map_or(line, |(_, rest)| rest).trim();
    let version: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let major = version.split('.').next()?.parse().ok()?;
    Some((version, major))
}

/// Fails when `tool` (pg_dump) is older than the server: pg_dump refuses newer servers.
pub fn check_not_older(tool: &Tool, server_version: &str, server_major: u32) -> Result<()> {
    if tool.major >= server_major {
        return Ok(());
    }
    Err(Error::new(
        Kind::Tools,
        format!(
            "{} {} ({}) is older than the server (PostgreSQL {server_version}); it cannot dump a newer server",
            tool.name,
            tool.version,
            tool.path.display()
        ),
    )
    .hint(format!(
        "install the client tools for PostgreSQL {server_major} (Debian/Ubuntu: apt-get install postgresql-client-{server_major}) \
         and set PG_BIN=/usr/lib/postgresql/{server_major}/bin, or put them first on PATH"
    ))
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(("15.18".into(), 15))
        );
        assert_eq!(
            parse_version("pg_restore (PostgreSQL) 9.6.3"),
            Some(("9.6.3".into(), 9))
        );
        assert_eq!(
            parse_version("psql (PostgreSQL) 17devel"),
            Some(("17".into(), 17))
        );
        assert_eq!(parse_version("garbage"), None);
    }

    fn fake_tool(dir: &Path, name: &str, version: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho '{name} (PostgreSQL) {version}'\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn pg_bin_is_the_only_place_looked_in() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Locator {
            pg_bin: Some(dir.path().to_path_buf()),
            debian_root: dir.path().join("none"),
            path_var: std::env::var_os("PATH"),
            runner: Arc::new(Local),
        };
        let err = loc.find("pg_dump", None).unwrap_err();
        let e = crate::error::find(&err).unwrap();
        assert_eq!(e.kind, Kind::Tools);
        assert!(e.message.contains("PG_BIN"), "{}", e.message);
        fake_tool(dir.path(), "pg_dump", "16.2");
        let t = loc.find("pg_dump", None).unwrap();
        assert_eq!(t.major, 16);
    }

    #[test]
    fn debian_folder_matching_the_server_wins_over_path() {
        let root = tempfile::tempdir().unwrap();
        let path_dir = tempfile::tempdir().unwrap();
        for m in ["14", "16"] {
            let bin = root.path().join(m).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            fake_tool(&bin, "pg_dump", &format!("{m}.1"));
        }
        fake_tool(path_dir.path(), "pg_dump", "13.0");
        let loc = Locator {
            pg_bin: None,
            debian_root: root.path().to_path_buf(),
            path_var: Some(path_dir.path().as_os_str().to_owned()),
            runner: Arc::new(Local),
        };
        assert_eq!(loc.find("pg_dump", Some(14)).unwrap().major, 14);
        assert_eq!(loc.find("pg_dump", Some(15)).unwrap().major, 13);
        let nowhere = Locator {
            path_var: Some("/nonexistent".into()),
            ..loc
        };
        assert_eq!(nowhere.find("pg_dump", None).unwrap().major, 16);
    }

    #[test]
    fn older_pg_dump_is_refused_with_both_versions() {
        let t = Tool {
            name: "pg_dump",
            path: "/x/pg_dump".into(),
            version_line: String::new(),
            version: "14.2".into(),
            major: 14,
            runner: Arc::new(Local),
        };
        let err = check_not_older(&t, "16.1", 16).unwrap_err();
        let e = crate::error::find(&err).unwrap();
        assert!(
            e.message.contains("14.2") && e.message.contains("16.1"),
            "{}",
            e.message
        );
        assert!(e.hint.as_deref().unwrap().contains("postgresql-client-16"));
        assert!(check_not_older(&t, "14.9", 14).is_ok());
    }
}
