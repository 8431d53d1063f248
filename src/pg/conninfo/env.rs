//! The `PG*` environment: filling in what the URL leaves out, once, and giving libpq children
//! exactly that resolved connection, so that they connect where our own checks did.

use std::path::Path;

use super::params::{env_var_for, parse_port, KNOWN_PARAMS, MULTI_HOST, OTHER_LIBPQ_VARS};
use super::parse::non_empty;
use super::{ConnInfo, ConnInfoError};

/// Where a server's Unix socket usually lives when nothing says otherwise (Debian first).
const DEFAULT_SOCKET_DIRS: &[&str] = &["/var/run/postgresql", "/tmp"];

impl ConnInfo {
    /// Environment for libpq children (pg_dump, pg_restore, psql): `PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGPASSWORD`, `PGDATABASE` and the `PG*` variables of the kept parameters (`PGSSLMODE`,
    /// `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGOPTIONS`, `PGHOSTADDR`, ...), plus the other libpq
    /// variables [`ConnInfo::resolve`] found.
    ///
    /// What this connection holds is set; on a [`ConnInfo::resolve`]d connection that is
    /// everything, and `apply_child_env` removes every other libpq variable, so that a child
    /// connects exactly where our own connection did. Parameters without an environment variable
    /// (`keepalives*`, `tcp_user_timeout`, `fallback_application_name`, `sslpassword`) are
    /// skipped with a debug log.
    #[must_use]
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        let mut set = |var: &str, value: &str| env.push((var.to_string(), value.to_string()));
        if let Some(host) = &self.host {
            set("PGHOST", host);
        }
        if let Some(port) = self.port {
            set("PGPORT", &port.to_string());
        }
        if let Some(user) = &self.user {
            set("PGUSER", user);
        }
        if let Some(password) = &self.password {
            set("PGPASSWORD", password);
        }
        if let Some(db) = &self.dbname {
            set("PGDATABASE", db);
        }
        for (key, value) in &self.params {
            match env_var_for(key) {
                Some(var) => set(var, value),
                None => tracing::debug!(
                    param = %key,
                    "DATABASE_URL parameter has no libpq environment variable; not passed to children"
                ),
            }
        }
        for (var, value) in &self.extra_env {
            set(var, value);
        }
        env
    }

    /// The same connection with every part the URL leaves out filled in from `env` (the process
    /// environment merged with `.env`), the way libpq would fill it: host (`PGHOST`, else the
    /// socket folder that holds the server's socket, as [`ConnInfo::tokio_config`] picks it),
    /// port (`PGPORT`, else 5432), user, database name, password (`PGPASSWORD`), the password
    /// file (`PGPASSFILE`, else `$HOME/.pgpass`), every parameter with a `PG*` variable
    /// (`PGSSLMODE`, `PGOPTIONS`, ...), and the other libpq variables.
    ///
    /// This is the one resolution of the connection target: our own connection
    /// ([`ConnInfo::tokio_config`]), the database name in messages and sidecars, and the
    /// children's environment ([`ConnInfo::child_env`], `apply_child_env`) all read it, so a
    /// `PGDATABASE` in `.env` cannot send pg_dump elsewhere than where the guards looked.
    ///
    /// # Errors
    /// `PGHOST`/`PGPORT` listing several hosts or ports, an invalid `PGPORT`, or an invalid value
    /// of a checked parameter (`PGSSLMODE`, `PGHOSTADDR`, ...). The message names the variable.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<ConnInfo, ConnInfoError> {
        self.resolve_with(env, &|p: &Path| p.exists())
    }

    /// [`ConnInfo::resolve`] with the file-system check injected (for tests).
    fn resolve_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        exists: &dyn Fn(&Path) -> bool,
    ) -> Result<ConnInfo, ConnInfoError> {
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        let mut info = self.clone();
        let port = info.port_from_env(&env)?;
        info.host_from_env(&env)?;
        info.params_from_env(&env);
        info.default_passfile(&env);
        info.validate_params().map_err(from_env)?;
        if info.param("service").is_some() {
            return Err(service_refused());
        }
        if info.host.is_none() && info.param("hostaddr").is_none() {
            info.host = Some(default_host(port, exists));
        }
        info.user = Some(self.effective_user(&env));
        info.dbname = Some(info.effective_dbname(&env));
        if info.password.is_none() {
            info.password = env("PGPASSWORD");
        }
        info.extra_env = other_libpq_vars(&env);
        Ok(info)
    }

    /// Sets the port: the URL's, else `PGPORT`, else 5432.
    fn port_from_env(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<u16, ConnInfoError> {
        if self.port.is_none() {
            if let Some(value) = env("PGPORT") {
                if value.contains(',') {
                    return Err(from_env(format!(
                        "PGPORT lists several ports; {MULTI_HOST}"
                    )));
                }
                self.port =
                    parse_port(value.trim()).map_err(|e| from_env(format!("PGPORT: {e}")))?;
            }
        }
        let port = self.port.unwrap_or(5432);
        self.port = Some(port);
        Ok(port)
    }

    /// Takes the host from `PGHOST` when the URL gives none.
    fn host_from_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConnInfoError> {
        if self.host.is_some() {
            return Ok(());
        }
        if let Some(value) = env("PGHOST") {
            if value.contains(',') {
                return Err(from_env(format!(
                    "PGHOST lists several hosts; {MULTI_HOST}"
                )));
            }
            self.host = non_empty(value.trim().to_string());
        }
        Ok(())
    }

    /// Takes each parameter the URL leaves out from its `PG*` variable (`PGSSLMODE`, ...).
    fn params_from_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        for (name, var) in KNOWN_PARAMS {
            let Some(var) = var else { continue };
            if matches!(*name, "host" | "port" | "user" | "password" | "dbname") {
                continue;
            }
            if self.param(name).is_none() {
                if let Some(value) = env(var) {
                    self.params.push(((*name).to_string(), value));
                }
            }
        }
    }

    /// Without a password file, libpq's default one: `$HOME/.pgpass`.
    fn default_passfile(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        if self.param("passfile").is_some() {
            return;
        }
        if let Some(home) = env("HOME") {
            let path = Path::new(&home).join(".pgpass");
            self.params
                .push(("passfile".to_string(), path.display().to_string()));
        }
    }

    /// A copy whose libpq `options` end with `extra` (such as `-c lock_timeout=30000`), after what
    /// the URL's `options` or else `PGOPTIONS` gave; a later `-c` wins on the server. Children
    /// get it through `PGOPTIONS` and the `--dbname` string alike.
    #[must_use]
    pub fn with_options(&self, extra: &str, env: &dyn Fn(&str) -> Option<String>) -> ConnInfo {
        let base = self
            .param("options")
            .map(str::to_string)
            .or_else(|| env("PGOPTIONS").filter(|v| !v.trim().is_empty()));
        let merged = match base {
            Some(b) => format!("{b} {extra}"),
            None => extra.to_string(),
        };
        let mut info = self.clone();
        info.params.retain(|(k, _)| k != "options");
        info.params.push(("options".to_string(), merged));
        info
    }

    /// The user name the server will see: the URL's, else `PGUSER`, else `$USER`/`$LOGNAME`,
    /// else `postgres`.
    #[must_use]
    pub fn effective_user(&self, env: &dyn Fn(&str) -> Option<String>) -> String {
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        self.user
            .clone()
            .or_else(|| env("PGUSER"))
            .or_else(|| env("USER"))
            .or_else(|| env("LOGNAME"))
            .unwrap_or_else(|| "postgres".to_string())
    }

    /// The database name as the server will see it (dbname, else `PGDATABASE`, else the user
    /// name), for messages.
    #[must_use]
    pub fn effective_dbname(&self, env: &dyn Fn(&str) -> Option<String>) -> String {
        self.dbname
            .clone()
            .or_else(|| env("PGDATABASE").filter(|v| !v.is_empty()))
            .unwrap_or_else(|| self.effective_user(env))
    }
}

/// An error found in the `PG*` variables, saying where it comes from.
fn from_env(e: String) -> ConnInfoError {
    ConnInfoError(format!(
        "{e} (from the PG* variables of the environment or .env)"
    ))
}

/// The refusal of a connection service: libpq would take host, port, user and dbname from
/// pg_service.conf, and our own connection cannot, so the guards could look at another server
/// than pg_dump.
fn service_refused() -> ConnInfoError {
    ConnInfoError(
        "a connection service (`service=` in DATABASE_URL, or PGSERVICE) is not supported: \
         aos-backup's own checks could not follow pg_service.conf the way pg_dump does; \
         give host, port, user and dbname in DATABASE_URL instead"
            .to_string(),
    )
}

/// The libpq variables without a URL parameter that `env` sets.
fn other_libpq_vars(env: &dyn Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    OTHER_LIBPQ_VARS
        .iter()
        .filter_map(|var| Some(((*var).to_string(), env(var)?)))
        .collect()
}

/// Gives a libpq child (`cmd`) the environment of a [`ConnInfo::resolve`]d connection: every
/// libpq variable we know is removed from what the child would inherit, then `env` (from
/// [`ConnInfo::child_env`]) is set. A variable of the real environment that `.env` or the URL
/// overrode, or that we counted as unset (empty), cannot reach the child.
pub fn apply_child_env(cmd: &mut std::process::Command, env: &[(String, String)]) {
    let known = KNOWN_PARAMS.iter().filter_map(|(_, var)| *var);
    for var in known.chain(OTHER_LIBPQ_VARS.iter().copied()) {
        cmd.env_remove(var);
    }
    // The tools never read it, and it may hold the password a second time.
    cmd.env_remove("DATABASE_URL");
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
}

/// The socket directory (or `localhost`) used when no host is given anywhere.
pub(super) fn default_host(port: u16, exists: &dyn Fn(&Path) -> bool) -> String {
    let socket_file = format!(".s.PGSQL.{port}");
    DEFAULT_SOCKET_DIRS
        .iter()
        .find(|dir| exists(&Path::new(dir).join(&socket_file)))
        .or_else(|| {
            DEFAULT_SOCKET_DIRS
                .iter()
                .find(|dir| exists(Path::new(dir)))
        })
        .map_or_else(|| "localhost".to_string(), |dir| (*dir).to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::test_support::*;
    use super::*;

    #[test]
    fn a_connection_service_is_refused_not_silently_ignored() {
        let none = |_: &str| None;
        let url = ConnInfo::parse("postgresql:///db?service=mysvc").unwrap();
        let err = url.resolve_with(&none, &|_| false).unwrap_err();
        assert!(err.to_string().contains("service"), "{err}");
        let plain = ConnInfo::parse("postgresql:///db").unwrap();
        let env = |k: &str| (k == "PGSERVICE").then(|| "mysvc".to_string());
        assert!(plain.resolve_with(&env, &|_| false).is_err());
        assert!(plain.resolve_with(&none, &|_| false).is_ok());
    }

    #[test]
    fn children_do_not_inherit_database_url() {
        let mut cmd = std::process::Command::new("true");
        cmd.env("DATABASE_URL", "postgresql://u:secret@h/db");
        apply_child_env(&mut cmd, &[("PGHOST".into(), "h".into())]);
        let removed = cmd
            .get_envs()
            .any(|(k, v)| k == "DATABASE_URL" && v.is_none());
        assert!(removed);
    }

    #[test]
    fn resolve_fills_every_part_from_the_environment_once() {
        let env = env_of(&[
            ("PGHOST", "/sock"),
            ("PGPORT", "5611"),
            ("PGDATABASE", "rt2"),
            ("PGUSER", "app"),
            ("PGPASSWORD", "envpw"),
            ("PGSSLMODE", "disable"),
            ("PGAPPNAME", "nightly"),
            ("PGTZ", "UTC"),
            ("HOME", "/home/x"),
        ]);
        let info = parse("postgresql://?connect_timeout=5")
            .resolve_with(&env, &|_: &Path| false)
            .unwrap();
        assert_eq!(info.host(), Some("/sock"));
        assert_eq!(info.port(), Some(5611));
        assert_eq!(info.user(), Some("app"));
        assert_eq!(info.dbname(), Some("rt2"));
        assert_eq!(info.password(), Some("envpw"));
        assert_eq!(info.param("sslmode"), Some("disable"));
        assert_eq!(info.param("passfile"), Some("/home/x/.pgpass"));
        let child = env_map(&info);
        for (var, value) in [
            ("PGHOST", "/sock"),
            ("PGPORT", "5611"),
            ("PGUSER", "app"),
            ("PGDATABASE", "rt2"),
            ("PGPASSWORD", "envpw"),
            ("PGSSLMODE", "disable"),
            ("PGAPPNAME", "nightly"),
            ("PGCONNECT_TIMEOUT", "5"),
            ("PGPASSFILE", "/home/x/.pgpass"),
            ("PGTZ", "UTC"),
        ] {
            assert_eq!(child.get(var).map(String::as_str), Some(value), "{var}");
        }
        // Our own connection reads the same resolution.
        let config = info.tokio_config(&no_env);
        assert_eq!(config.get_hosts(), [unix("/sock")]);
        assert_eq!(config.get_ports(), [5611]);
        assert_eq!(config.get_dbname(), Some("rt2"));
        assert_eq!(config.get_user(), Some("app"));

        // The URL's parts win; no host anywhere: the socket folder that holds the socket.
        let info = parse("postgresql://u@:5433/db?sslmode=require")
            .resolve_with(&env, &|p: &Path| p == Path::new("/tmp/.s.PGSQL.5433"))
            .unwrap();
        assert_eq!(info.host(), Some("/sock"));
        let info = parse("postgresql://u@:5433/db?sslmode=require")
            .resolve_with(&no_env, &|p: &Path| p == Path::new("/tmp/.s.PGSQL.5433"))
            .unwrap();
        assert_eq!(info.host(), Some("/tmp"));
        assert_eq!(
            (info.port(), info.user(), info.dbname()),
            (Some(5433), Some("u"), Some("db"))
        );
        assert_eq!(info.param("sslmode"), Some("require"));
        assert_eq!(info.password(), None);
        // hostaddr alone: no socket folder is made up.
        let info = parse("postgresql:///db?hostaddr=10.0.0.5")
            .resolve_with(&no_env, &|_: &Path| true)
            .unwrap();
        assert_eq!(info.host(), None);

        for (pairs, expected) in [
            (&[("PGHOST", "a,b")][..], "PGHOST lists several hosts"),
            (&[("PGPORT", "1,2")], "PGPORT lists several ports"),
            (&[("PGPORT", "nope")], "PGPORT: invalid port"),
            (&[("PGSSLMODE", "bogus")], "invalid sslmode \"bogus\""),
            (&[("PGHOSTADDR", "db.example.com")], "invalid hostaddr"),
        ] {
            let err = parse("postgresql://")
                .resolve_with(&env_of(pairs), &|_: &Path| false)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{pairs:?}: {err}");
            assert!(err.contains("environment or .env"), "{err}");
        }
    }

    #[test]
    fn a_child_loses_every_libpq_variable_it_was_not_given() {
        let mut cmd = std::process::Command::new("env");
        apply_child_env(&mut cmd, &[("PGHOST".to_string(), "/sock".to_string())]);
        let envs: HashMap<String, Option<String>> = cmd
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert_eq!(envs.get("PGHOST"), Some(&Some("/sock".to_string())));
        for var in [
            "PGDATABASE",
            "PGPORT",
            "PGUSER",
            "PGPASSWORD",
            "PGSSLMODE",
            "PGTZ",
            "PGSERVICEFILE",
        ] {
            assert_eq!(envs.get(var), Some(&None), "{var} is not removed");
        }
    }

    #[test]
    fn ssl_and_app_name_reach_child_env() {
        let info = parse(
            "postgresql://aos:S3cr3t-p%40ss@db.example.com:5432/app?sslmode=verify-full&application_name=nightly\
             &connect_timeout=10&sslrootcert=/etc/ssl/root.crt&options=-c%20statement_timeout%3D0\
             &target_session_attrs=read-write&keepalives_idle=30&sslpassword=keypw&hostaddr=10.0.0.5&schema=public",
        );
        let env = env_map(&info);
        let expected: &[(&str, &str)] = &[
            ("PGHOST", "db.example.com"),
            ("PGPORT", "5432"),
            ("PGUSER", "aos"),
            ("PGPASSWORD", SECRET),
            ("PGDATABASE", "app"),
            ("PGSSLMODE", "verify-full"),
            ("PGAPPNAME", "nightly"),
            ("PGCONNECT_TIMEOUT", "10"),
            ("PGSSLROOTCERT", "/etc/ssl/root.crt"),
            ("PGOPTIONS", "-c statement_timeout=0"),
            ("PGTARGETSESSIONATTRS", "read-write"),
            ("PGHOSTADDR", "10.0.0.5"),
        ];
        for (k, v) in expected {
            assert_eq!(env.get(*k).map(String::as_str), Some(*v), "{k}");
        }
        assert_eq!(
            env.len(),
            expected.len(),
            "no env var for keepalives_idle/sslpassword: {env:?}"
        );
        assert!(!env.values().any(|v| v == "keypw"));
    }

    #[test]
    fn child_env_sets_only_what_the_url_gives() {
        let info = parse("postgres:///db");
        assert_eq!(
            info.child_env(),
            vec![("PGDATABASE".to_string(), "db".to_string())]
        );
        assert!(parse("postgresql://").child_env().is_empty());
        let env = env_map(&parse(
            "postgresql:///db?host=/var/run/postgresql&port=5433",
        ));
        assert_eq!(
            env.get("PGHOST").map(String::as_str),
            Some("/var/run/postgresql")
        );
        assert_eq!(env.get("PGPORT").map(String::as_str), Some("5433"));
        assert!(!env.contains_key("PGUSER") && !env.contains_key("PGPASSWORD"));
    }

    #[test]
    fn effective_dbname_order() {
        let env = env_of(&[
            ("PGDATABASE", "envdb"),
            ("PGUSER", "envuser"),
            ("USER", "os"),
        ]);
        assert_eq!(parse("postgresql://h/app").effective_dbname(&env), "app");
        assert_eq!(parse("postgresql://h").effective_dbname(&env), "envdb");
        assert_eq!(
            parse("postgresql://u@h").effective_dbname(&env_of(&[("PGUSER", "x")])),
            "u"
        );
        assert_eq!(
            parse("postgresql://h").effective_dbname(&env_of(&[("PGUSER", "x")])),
            "x"
        );
        assert_eq!(
            parse("postgresql://h").effective_dbname(&env_of(&[("USER", "os")])),
            "os"
        );
        assert_eq!(
            parse("postgresql://h").effective_dbname(&no_env),
            "postgres"
        );
        assert_eq!(parse("postgresql://h").effective_user(&env), "envuser");
    }
}
