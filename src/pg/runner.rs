//! The single place where a PostgreSQL client tool's command is built. A [`Runner`] turns a tool
//! and the connection's environment into a `Command`: the argv never holds a secret (the
//! connection goes through libpq's environment variables), and what the parent's environment
//! says about connections is cleared first. [`Local`] runs the tools on this machine; [`Docker`]
//! runs them inside a container with `docker exec` (or `docker compose exec`). Children are then
//! started by [`crate::runtime::process`], which makes them die with us.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the command that runs a client tool.
pub trait Runner: Send + Sync + std::fmt::Debug {
    /// The command running `program` with the connection's libpq environment `conn_env` (empty
    /// for a tool that does not connect). Arguments are added by the caller.
    fn command(&self, program: &Path, conn_env: &[(String, String)]) -> Command;

    /// Where the tools run, in words (`container "db"`), when not on this machine. The tools of
    /// such a runner see none of this machine's files: they read from stdin and write to stdout.
    fn container(&self) -> Option<String> {
        None
    }

    /// The command that stops what `cmd` (built by [`Runner::command`]) started, for a runner
    /// where stopping `cmd` itself does not: `docker exec` forwards no signal to the process it
    /// started in the container.
    fn stopper(&self, _cmd: &Command) -> Option<Vec<OsString>> {
        None
    }
}

/// Runs the tools on this machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Runner for Local {
    fn command(&self, program: &Path, conn_env: &[(String, String)]) -> Command {
        let mut cmd = Command::new(program);
        crate::pg::conninfo::apply_child_env(&mut cmd, conn_env);
        cmd
    }
}

/// The container the tools run in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerTarget {
    /// A container, by name or id: `docker exec -i NAME ...`.
    Container(String),
    /// A service of a Compose project: `docker compose [-f FILE] exec -T SERVICE ...`.
    Compose {
        /// The service's name.
        service: String,
        /// The Compose file; `None`: the one Compose finds from the current folder.
        file: Option<PathBuf>,
    },
}

/// The variable that tags every process we start in the container, so that the [stopper]
/// (Runner::stopper) finds exactly those. Its value is 32 random hex digits.
pub const RUN_TAG_VAR: &str = "AOS_BACKUP_RUN";

/// Run in the container by the stopper, with the tag as `$1`: sends SIGTERM to every process
/// whose environment holds `AOS_BACKUP_RUN=<tag>`. It needs only `sh`, `grep` and `/proc`,
/// which every image that holds PostgreSQL has (unlike `pkill`).
const STOP_SCRIPT: &str = r#"for e in /proc/[0-9]*/environ; do
  if grep -qF "AOS_BACKUP_RUN=$1" "$e" 2>/dev/null; then
    p=${e#/proc/}; kill -TERM "${p%/environ}" 2>/dev/null
  fi
done
exit 0"#;

/// Runs the tools inside a container: `docker exec -i [-e NAME ...] CONTAINER TOOL ...`.
///
/// - `-i` and never `-t`: a TTY would turn the binary dump's newlines into CRLF.
/// - The connection's variables are passed as `-e NAME`, the name only: docker takes each value
///   from its own environment, where we put it, so no password is in any argv.
/// - docker exec does not forward signals to the process in the container, and when the docker
///   client dies that process goes on. Each process started there carries a unique tag in its
///   environment ([`RUN_TAG_VAR`]), and its [stopper](Runner::stopper) is a second
///   `docker exec` that sends SIGTERM to the processes with that tag.
#[derive(Debug, Clone)]
pub struct Docker {
    target: DockerTarget,
    program: OsString,
}

impl Docker {
    /// Runs the tools in `target` with the `docker` found on `PATH`.
    #[must_use]
    pub fn new(target: DockerTarget) -> Docker {
        Docker {
            target,
            program: "docker".into(),
        }
    }

    /// `exec -i` or `compose [-f FILE] exec -T` (stdin stays attached: it is Compose's default).
    fn exec_prefix(&self, interactive: bool) -> Vec<OsString> {
        match &self.target {
            DockerTarget::Container(_) if interactive => vec!["exec".into(), "-i".into()],
            DockerTarget::Container(_) => vec!["exec".into()],
            DockerTarget::Compose { file, .. } => {
                let mut a: Vec<OsString> = vec!["compose".into()];
                if let Some(f) = file {
                    a.push("-f".into());
                    a.push(f.into());
                }
                a.push("exec".into());
                a.push("-T".into());
                a
            }
        }
    }

    fn name(&self) -> &str {
        match &self.target {
            DockerTarget::Container(name) => name,
            DockerTarget::Compose { service, .. } => service,
        }
    }
}

/// The connection's environment as the container needs it. A password file is a path on this
/// machine, which means nothing in the container: its password for this connection is looked up
/// here and passed as `PGPASSWORD` (by name, as every value), and `PGPASSFILE` is not passed.
fn container_env(conn_env: &[(String, String)]) -> Vec<(String, String)> {
    let get = |k: &str| {
        conn_env
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    let mut env: Vec<(String, String)> = conn_env
        .iter()
        .filter(|(name, _)| name != "PGPASSFILE")
        .cloned()
        .collect();
    if get("PGPASSWORD").is_some() {
        return env;
    }
    let Some(passfile) = get("PGPASSFILE") else {
        return env;
    };
    let (host, port, dbname, user) = (
        get("PGHOST").unwrap_or_else(|| "localhost".into()),
        get("PGPORT").and_then(|p| p.parse().ok()).unwrap_or(5432),
        get("PGDATABASE").unwrap_or_default(),
        get("PGUSER").unwrap_or_default(),
    );
    let target = crate::pg::pgpass::Target {
        host: &host,
        port,
        dbname: &dbname,
        user: &user,
    };
    let lookup = |k: &str| (k == "PGPASSFILE").then(|| passfile.clone());
    if let Some(password) = crate::pg::pgpass::find(&lookup, &target) {
        env.push(("PGPASSWORD".to_string(), password));
    }
    env
}

impl Runner for Docker {
    fn command(&self, program: &Path, conn_env: &[(String, String)]) -> Command {
        let conn_env = &container_env(conn_env);
        let mut cmd = Command::new(&self.program);
        crate::pg::conninfo::apply_child_env(&mut cmd, conn_env);
        cmd.env(RUN_TAG_VAR, run_tag());
        cmd.args(self.exec_prefix(true));
        for (name, _) in conn_env {
            cmd.arg("-e").arg(name);
        }
        cmd.args(["-e", RUN_TAG_VAR, self.name()]).arg(program);
        cmd
    }

    fn container(&self) -> Option<String> {
        Some(match &self.target {
            DockerTarget::Container(name) => format!("container {name:?}"),
            DockerTarget::Compose { service, .. } => format!("Compose service {service:?}"),
        })
    }

    fn stopper(&self, cmd: &Command) -> Option<Vec<OsString>> {
        let tag = cmd
            .get_envs()
            .find(|(k, _)| *k == RUN_TAG_VAR)
            .and_then(|(_, v)| v)?;
        let mut argv = vec![self.program.clone()];
        argv.extend(self.exec_prefix(false));
        argv.extend([self.name(), "sh", "-c", STOP_SCRIPT, "aos-backup-stop"].map(OsString::from));
        argv.push(tag.to_owned());
        Some(argv)
    }
}

/// 32 random hex digits (from the kernel; the time and pid if it cannot be read).
fn run_tag() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mixed = nanos ^ (u128::from(std::process::id()) << 96);
        bytes = mixed.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_is_read_here_and_never_named_to_the_container() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let passfile = dir.path().join("pgpass");
        std::fs::write(&passfile, "db.internal:5432:shop:app:Pw-from-file-9\n").unwrap();
        std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
        let conn = |db: &str| -> Vec<(String, String)> {
            [
                ("PGHOST", "db.internal"),
                ("PGPORT", "5432"),
                ("PGUSER", "app"),
                ("PGDATABASE", db),
                ("PGPASSFILE", passfile.to_str().unwrap()),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
        };
        let docker = Docker::new(DockerTarget::Container("db".into()));
        let cmd = docker.command(Path::new("pg_dump"), &conn("shop"));
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            !args
                .iter()
                .any(|a| a.contains("PGPASSFILE") || a.contains("Pw-from")),
            "{args:?}"
        );
        assert!(
            args.windows(2).any(|w| w == ["-e", "PGPASSWORD"]),
            "{args:?}"
        );
        let value = cmd
            .get_envs()
            .find(|(k, _)| *k == "PGPASSWORD")
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()));
        assert_eq!(value.as_deref(), Some("Pw-from-file-9"));
        // No matching line: no password, and still no host path in the container.
        let cmd = docker.command(Path::new("pg_dump"), &conn("other"));
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(!args.iter().any(|a| a.contains("PGPASS")), "{args:?}");
    }

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_connection_goes_through_the_environment_and_nothing_leaks_from_ours() {
        let env = vec![("PGPASSWORD".to_string(), "s3cret-pw".to_string())];
        let cmd = Local.command(Path::new("/usr/bin/env"), &env);
        assert_eq!(cmd.get_args().count(), 0, "no argument is added");
        let envs: Vec<_> = cmd.get_envs().collect();
        assert!(envs
            .iter()
            .any(|(k, v)| *k == "PGPASSWORD" && v.is_some_and(|v| v == "s3cret-pw")));
        assert!(
            envs.iter()
                .any(|(k, v)| *k == "DATABASE_URL" && v.is_none()),
            "DATABASE_URL is removed"
        );
        assert!(
            envs.iter().any(|(k, v)| *k == "PGHOST" && v.is_none()),
            "our own PGHOST does not reach the tool"
        );
    }

    #[test]
    fn docker_exec_passes_variable_names_only_and_never_a_tty() {
        let env = vec![
            ("PGHOST".to_string(), "localhost".to_string()),
            ("PGPASSWORD".to_string(), "s3cret-pw".to_string()),
        ];
        let docker = Docker::new(DockerTarget::Container("hyper-db".into()));
        let cmd = docker.command(Path::new("pg_dump"), &env);
        assert_eq!(cmd.get_program(), "docker");
        let a = args(&cmd);
        assert_eq!(
            a,
            [
                "exec",
                "-i",
                "-e",
                "PGHOST",
                "-e",
                "PGPASSWORD",
                "-e",
                RUN_TAG_VAR,
                "hyper-db",
                "pg_dump"
            ]
        );
        assert!(!a.iter().any(|x| x.contains("s3cret") || x == "-t"));
        assert!(cmd
            .get_envs()
            .any(|(k, v)| k == "PGPASSWORD" && v.is_some_and(|v| v == "s3cret-pw")));
        assert_eq!(
            docker.container().as_deref(),
            Some("container \"hyper-db\"")
        );
    }

    #[test]
    fn compose_uses_exec_without_a_tty_and_its_file() {
        let docker = Docker::new(DockerTarget::Compose {
            service: "db".into(),
            file: Some("/srv/app/compose.yml".into()),
        });
        let a = args(&docker.command(Path::new("psql"), &[]));
        assert_eq!(
            a,
            [
                "compose",
                "-f",
                "/srv/app/compose.yml",
                "exec",
                "-T",
                "-e",
                RUN_TAG_VAR,
                "db",
                "psql"
            ]
        );
    }

    #[test]
    fn each_command_gets_its_own_tag_and_the_stopper_names_it() {
        let docker = Docker::new(DockerTarget::Container("c".into()));
        let tag = |cmd: &Command| {
            cmd.get_envs()
                .find(|(k, _)| *k == RUN_TAG_VAR)
                .and_then(|(_, v)| v)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        let (a, b) = (
            docker.command(Path::new("psql"), &[]),
            docker.command(Path::new("psql"), &[]),
        );
        assert_eq!(tag(&a).len(), 32);
        assert_ne!(tag(&a), tag(&b));
        let stop = docker.stopper(&a).unwrap();
        let stop: Vec<String> = stop
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(stop[..4], ["docker", "exec", "c", "sh"]);
        assert_eq!(stop.last(), Some(&tag(&a)));
        assert!(Local.stopper(&a).is_none());
    }
}
