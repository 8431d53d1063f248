//! The mapping to `tokio_postgres::Config`: our own connection goes where libpq would go with the
//! same URL and environment, with the same settings.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use tokio_postgres::config::{ChannelBinding, LoadBalanceHosts, SslMode, TargetSessionAttrs};
use tokio_postgres::Config;

use super::env::default_host;
use super::params::parse_port;
use super::ConnInfo;

/// The application name tokio-postgres connections report when the URL and environment give none.
const DEFAULT_APPLICATION_NAME: &str = "aos-backup";

impl ConnInfo {
    /// A tokio-postgres config for the same connection, never parsed from the raw URL.
    ///
    /// `env` looks up `PG*` variables as fallbacks for what the URL lacks, as libpq would:
    /// `PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`,
    /// `PGCONNECT_TIMEOUT`, `PGAPPNAME`, `PGOPTIONS`, `PGTARGETSESSIONATTRS`, `PGCHANNELBINDING`
    /// (production passes `|k| std::env::var(k).ok()`; empty values count as unset).
    ///
    /// * No host anywhere (and no `hostaddr`): the first of `/var/run/postgresql`, `/tmp` that
    ///   holds the server's socket file (`.s.PGSQL.<port>`), else the first that exists, else
    ///   `localhost`.
    /// * Port: URL, `PGPORT`, else 5432 (always set explicitly).
    /// * No user: `PGUSER`, `$USER`, `$LOGNAME`, else `postgres`. No dbname: `PGDATABASE`, else the
    ///   user name.
    /// * sslmode `disable` → `Disable`; `allow`/`prefer` → `Prefer`; `require`, `verify-ca`,
    ///   `verify-full` → `Require`. tokio-postgres itself verifies nothing: certificate checks for
    ///   `verify-*` are up to the TLS connector the caller passes to `connect`.
    /// * `connect_timeout` in seconds with libpq's rules (≤ 0: none, 1 counts as 2);
    ///   `tcp_user_timeout` in milliseconds; keepalive settings; `options`;
    ///   `target_session_attrs` (`primary` → read-write, `standby` → read-only,
    ///   `prefer-standby` → any); `channel_binding`; `application_name`, else
    ///   `fallback_application_name`, else `aos-backup`.
    /// * Invalid environment values are ignored with a warning. `passfile` and `service` are not
    ///   read (libpq children do read them).
    #[must_use]
    pub fn tokio_config(&self, env: &dyn Fn(&str) -> Option<String>) -> tokio_postgres::Config {
        self.tokio_config_with(env, &|p: &Path| p.exists())
    }

    /// [`ConnInfo::tokio_config`] with the file-system check injected (for tests).
    fn tokio_config_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        exists: &dyn Fn(&Path) -> bool,
    ) -> Config {
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        let mut config = Config::new();
        self.set_target(&mut config, &env, exists);
        self.set_identity(&mut config, &env);
        config.ssl_mode(self.ssl_mode(&env));
        self.set_connect_timeout(&mut config, &env);
        config.application_name(self.application_name(&env));
        if let Some(options) = self.param_or_env("options", "PGOPTIONS", &env) {
            config.options(options);
        }
        self.set_tcp_settings(&mut config);
        self.set_target_session_attrs(&mut config, &env);
        self.set_channel_binding(&mut config, &env);
        if self.param("load_balance_hosts") == Some("random") {
            config.load_balance_hosts(LoadBalanceHosts::Random);
        }
        self.log_params_left_to_libpq();
        config
    }

    /// The URL's parameter `name`, else the environment variable `var`.
    fn param_or_env(
        &self,
        name: &str,
        var: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        self.param(name).map(str::to_string).or_else(|| env(var))
    }

    /// Hosts, `hostaddr` and ports. The ports come first: the default socket directory depends on
    /// the port.
    fn set_target(
        &self,
        config: &mut Config,
        env: &dyn Fn(&str) -> Option<String>,
        exists: &dyn Fn(&Path) -> bool,
    ) {
        let ports = self.ports(env);
        let hostaddr = self.hostaddr_or_env(env);
        let mut hosts = self.hosts(env);
        if hosts.is_empty() && hostaddr.is_none() {
            hosts.push(default_host(ports[0], exists));
        }
        let ports = ports_for_hosts(ports, hosts.len());
        for host in &hosts {
            config.host(host);
        }
        match hostaddr {
            Some(addr) if hosts.len() <= 1 => {
                config.hostaddr(addr);
            }
            Some(_) => tracing::warn!("ignoring hostaddr: it cannot go with several hosts"),
            None => {}
        }
        for port in ports {
            config.port(port);
        }
    }

    /// The URL's port, else the ports `PGPORT` lists, else 5432.
    fn ports(&self, env: &dyn Fn(&str) -> Option<String>) -> Vec<u16> {
        match self.port {
            Some(port) => vec![port],
            None => env("PGPORT").map_or_else(|| vec![5432], |list| port_list(&list)),
        }
    }

    /// The URL's `hostaddr`, else a valid `PGHOSTADDR`.
    fn hostaddr_or_env(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<IpAddr> {
        match self.hostaddr() {
            Some(addr) => Some(addr),
            None => env("PGHOSTADDR").and_then(|a| match a.trim().parse::<IpAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    tracing::warn!("ignoring PGHOSTADDR \"{a}\": not a single numeric IP address");
                    None
                }
            }),
        }
    }

    /// The URL's host, else the hosts `PGHOST` lists (possibly none).
    fn hosts(&self, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        match &self.host {
            Some(host) => vec![host.clone()],
            None => env("PGHOST")
                .map(|list| {
                    list.split(',')
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// User, password and database name: the URL's, else the environment's.
    fn set_identity(&self, config: &mut Config, env: &dyn Fn(&str) -> Option<String>) {
        let user = self.effective_user(env);
        if let Some(password) = self.password.clone().or_else(|| env("PGPASSWORD")) {
            config.password(password);
        }
        config.dbname(self.effective_dbname(env));
        config.user(user);
    }

    /// libpq's sslmode as far as tokio-postgres has one; certificate checks are the connector's.
    fn ssl_mode(&self, env: &dyn Fn(&str) -> Option<String>) -> SslMode {
        match self.param_or_env("sslmode", "PGSSLMODE", env).as_deref() {
            None | Some("prefer" | "allow") => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            Some("require" | "verify-ca" | "verify-full") => SslMode::Require,
            Some(other) => {
                tracing::warn!("ignoring PGSSLMODE \"{other}\"; using prefer");
                SslMode::Prefer
            }
        }
    }

    /// `connect_timeout` in seconds, with libpq's rules: 0 or less means none.
    fn set_connect_timeout(&self, config: &mut Config, env: &dyn Fn(&str) -> Option<String>) {
        let Some(secs) = self.param_or_env("connect_timeout", "PGCONNECT_TIMEOUT", env) else {
            return;
        };
        match secs.trim().parse::<i64>() {
            Ok(s) if s <= 0 => {}
            // libpq's minimum is 2 seconds.
            Ok(s) => {
                config.connect_timeout(Duration::from_secs(s.max(2).unsigned_abs()));
            }
            Err(_) => tracing::warn!("ignoring PGCONNECT_TIMEOUT \"{secs}\": not an integer"),
        }
    }

    /// `application_name`, else `fallback_application_name`, else `aos-backup`.
    fn application_name(&self, env: &dyn Fn(&str) -> Option<String>) -> String {
        self.param_or_env("application_name", "PGAPPNAME", env)
            .or_else(|| self.param("fallback_application_name").map(str::to_string))
            .unwrap_or_else(|| DEFAULT_APPLICATION_NAME.to_string())
    }

    /// The keepalive settings and `tcp_user_timeout` (these have no environment variable).
    fn set_tcp_settings(&self, config: &mut Config) {
        let int_param = |name: &str| self.param(name).and_then(|v| v.trim().parse::<i64>().ok());
        if let Some(v) = int_param("keepalives") {
            config.keepalives(v != 0);
        }
        if let Some(v) = int_param("keepalives_idle").filter(|v| *v > 0) {
            config.keepalives_idle(Duration::from_secs(v.unsigned_abs()));
        }
        if let Some(v) = int_param("keepalives_interval").filter(|v| *v > 0) {
            config.keepalives_interval(Duration::from_secs(v.unsigned_abs()));
        }
        if let Some(v) = int_param("keepalives_count").filter(|v| *v > 0) {
            config.keepalives_retries(u32::try_from(v).unwrap_or(u32::MAX));
        }
        if let Some(v) = int_param("tcp_user_timeout").filter(|v| *v > 0) {
            // libpq's unit is milliseconds.
            config.tcp_user_timeout(Duration::from_millis(v.unsigned_abs()));
        }
    }

    /// `target_session_attrs`: `primary` is read-write, `standby` read-only, `prefer-standby` any.
    fn set_target_session_attrs(&self, config: &mut Config, env: &dyn Fn(&str) -> Option<String>) {
        match self
            .param_or_env("target_session_attrs", "PGTARGETSESSIONATTRS", env)
            .as_deref()
        {
            None | Some("any" | "prefer-standby") => {}
            Some("read-write" | "primary") => {
                config.target_session_attrs(TargetSessionAttrs::ReadWrite);
            }
            Some("read-only" | "standby") => {
                config.target_session_attrs(TargetSessionAttrs::ReadOnly);
            }
            Some(other) => tracing::warn!("ignoring PGTARGETSESSIONATTRS \"{other}\""),
        }
    }

    fn set_channel_binding(&self, config: &mut Config, env: &dyn Fn(&str) -> Option<String>) {
        match self
            .param_or_env("channel_binding", "PGCHANNELBINDING", env)
            .as_deref()
        {
            None => {}
            Some("disable") => {
                config.channel_binding(ChannelBinding::Disable);
            }
            Some("prefer") => {
                config.channel_binding(ChannelBinding::Prefer);
            }
            Some("require") => {
                config.channel_binding(ChannelBinding::Require);
            }
            Some(other) => tracing::warn!("ignoring PGCHANNELBINDING \"{other}\""),
        }
    }

    /// Notes the parameters only libpq children read.
    fn log_params_left_to_libpq(&self) {
        for name in ["passfile", "service"] {
            if self.param(name).is_some() {
                tracing::debug!(
                    param = name,
                    "tokio-postgres does not read this parameter; only libpq children use it"
                );
            }
        }
    }
}

/// The ports of a `PGPORT` list (an empty entry is 5432); all of it is ignored if one is invalid.
fn port_list(list: &str) -> Vec<u16> {
    let parsed: Result<Vec<u16>, String> = list
        .split(',')
        .map(|p| parse_port(p.trim()).map(|p| p.unwrap_or(5432)))
        .collect();
    match parsed {
        Ok(ports) => ports,
        Err(e) => {
            tracing::warn!("ignoring PGPORT: {e}");
            vec![5432]
        }
    }
}

/// `ports` when there is one, or one per host; else only the first.
fn ports_for_hosts(ports: Vec<u16>, hosts: usize) -> Vec<u16> {
    if ports.len() == 1 || ports.len() == hosts.max(1) {
        ports
    } else {
        tracing::warn!(
            "PGPORT lists {} ports for {} hosts; using the first",
            ports.len(),
            hosts
        );
        vec![ports[0]]
    }
}

#[cfg(test)]
mod tests {
    use tokio_postgres::config::Host;

    use super::super::test_support::*;
    use super::*;

    #[test]
    fn tokio_config_uses_the_url_first() {
        let info = parse(
            "postgresql://aos:S3cr3t-p%40ss@db.example.com:6543/app?sslmode=verify-full&application_name=nightly\
             &connect_timeout=1&options=-c%20x%3D1&target_session_attrs=primary&keepalives=0&tcp_user_timeout=1500\
             &channel_binding=require",
        );
        let env = env_of(&[
            ("PGHOST", "other"),
            ("PGPORT", "1111"),
            ("PGUSER", "someone"),
            ("PGPASSWORD", "envpw"),
            ("PGDATABASE", "otherdb"),
            ("PGSSLMODE", "disable"),
            ("PGAPPNAME", "envapp"),
        ]);
        let config = info.tokio_config(&env);
        assert_eq!(config.get_hosts(), [tcp("db.example.com")]);
        assert_eq!(config.get_ports(), [6543]);
        assert_eq!(config.get_user(), Some("aos"));
        assert_eq!(config.get_password(), Some(SECRET.as_bytes()));
        assert_eq!(config.get_dbname(), Some("app"));
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert_eq!(config.get_application_name(), Some("nightly"));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(config.get_options(), Some("-c x=1"));
        assert_eq!(
            config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        assert!(!config.get_keepalives());
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_millis(1500))
        );
        assert_eq!(config.get_channel_binding(), ChannelBinding::Require);
        assert!(!format!("{config:?}").contains("S3cr3t"));
    }

    #[test]
    fn tokio_config_falls_back_to_the_environment() {
        let info = parse("postgresql://");
        let env = env_of(&[
            ("PGHOST", "envhost"),
            ("PGPORT", "5444"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGDATABASE", "envdb"),
            ("PGSSLMODE", "require"),
            ("PGCONNECT_TIMEOUT", "15"),
            ("PGAPPNAME", "envapp"),
            ("PGOPTIONS", "-c y=2"),
        ]);
        let config = info.tokio_config(&env);
        assert_eq!(config.get_hosts(), [tcp("envhost")]);
        assert_eq!(config.get_ports(), [5444]);
        assert_eq!(config.get_user(), Some("envuser"));
        assert_eq!(config.get_password(), Some(&b"envpw"[..]));
        assert_eq!(config.get_dbname(), Some("envdb"));
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(15)));
        assert_eq!(config.get_application_name(), Some("envapp"));
        assert_eq!(config.get_options(), Some("-c y=2"));
        assert_eq!(info.effective_dbname(&env), "envdb");
    }

    #[test]
    fn tokio_config_defaults_without_url_or_environment() {
        let info = parse("postgres:///");
        let env = env_of(&[("USER", "alice"), ("PGHOST", ""), ("PGPORT", "")]);
        let config = info.tokio_config_with(&env, &|p: &Path| p == Path::new("/tmp"));
        assert_eq!(config.get_hosts(), [unix("/tmp")]);
        assert_eq!(config.get_ports(), [5432]);
        assert_eq!(config.get_user(), Some("alice"));
        assert_eq!(config.get_dbname(), Some("alice"));
        assert_eq!(config.get_password(), None);
        assert_eq!(config.get_ssl_mode(), SslMode::Prefer);
        assert_eq!(
            config.get_application_name(),
            Some(DEFAULT_APPLICATION_NAME)
        );
        assert_eq!(config.get_connect_timeout(), None);

        // the socket folder that holds the server's socket wins over the first existing one
        let config = parse("postgresql://:5433").tokio_config_with(&env, &|p: &Path| {
            p == Path::new("/var/run/postgresql")
                || p == Path::new("/tmp")
                || p == Path::new("/tmp/.s.PGSQL.5433")
        });
        assert_eq!(config.get_hosts(), [unix("/tmp")]);
        let config =
            info.tokio_config_with(&no_env, &|p: &Path| p.starts_with("/var/run/postgresql"));
        assert_eq!(config.get_hosts(), [unix("/var/run/postgresql")]);
        let config = info.tokio_config_with(&no_env, &|_: &Path| false);
        assert_eq!(config.get_hosts(), [tcp("localhost")]);
        assert_eq!(config.get_user(), Some("postgres"));
        assert_eq!(config.get_dbname(), Some("postgres"));

        let config = info.tokio_config(&no_env);
        let host = &config.get_hosts()[0];
        assert!(
            [unix("/var/run/postgresql"), unix("/tmp"), tcp("localhost")].contains(host),
            "{host:?}"
        );
        let config = info.tokio_config(&env_of(&[("LOGNAME", "bob")]));
        assert_eq!(config.get_user(), Some("bob"));
    }

    #[test]
    fn tokio_config_socket_forms() {
        let cases: &[(&str, Host, u16)] = &[
            (
                "postgresql:///db?host=/var/run/postgresql",
                unix("/var/run/postgresql"),
                5432,
            ),
            (
                "postgresql://%2Fvar%2Frun%2Fpostgresql:5433/db",
                unix("/var/run/postgresql"),
                5433,
            ),
            ("postgresql://[::1]:5433/db", tcp("::1"), 5433),
            ("postgresql://127.0.0.1/db", tcp("127.0.0.1"), 5432),
        ];
        for (url, host, port) in cases {
            let config = parse(url).tokio_config(&no_env);
            assert_eq!(config.get_hosts(), std::slice::from_ref(host), "{url}");
            assert_eq!(config.get_ports(), [*port], "{url}");
            assert_eq!(config.get_dbname(), Some("db"));
        }
    }

    #[test]
    fn tokio_config_hostaddr_and_multi_host_environment() {
        let config = parse("postgresql:///db?hostaddr=10.0.0.5").tokio_config(&no_env);
        assert!(config.get_hosts().is_empty());
        assert_eq!(
            config.get_hostaddrs(),
            ["10.0.0.5".parse::<IpAddr>().unwrap()]
        );

        let config =
            parse("postgresql://db.example.com/db?hostaddr=10.0.0.5").tokio_config(&no_env);
        assert_eq!(config.get_hosts(), [tcp("db.example.com")]);
        assert_eq!(config.get_hostaddrs().len(), 1);

        let env = env_of(&[("PGHOST", "a,b"), ("PGPORT", "1,2,3")]);
        let config = parse("postgresql:///db").tokio_config(&env);
        assert_eq!(config.get_hosts(), [tcp("a"), tcp("b")]);
        assert_eq!(config.get_ports(), [1]);

        let env = env_of(&[
            ("PGPORT", "nope"),
            ("PGSSLMODE", "bogus"),
            ("PGCONNECT_TIMEOUT", "x"),
        ]);
        let config = parse("postgresql://h/db").tokio_config(&env);
        assert_eq!(config.get_ports(), [5432]);
        assert_eq!(config.get_ssl_mode(), SslMode::Prefer);
        assert_eq!(config.get_connect_timeout(), None);
    }

    #[test]
    fn sslmode_maps_to_tokio_postgres() {
        let cases: &[(&str, SslMode)] = &[
            ("disable", SslMode::Disable),
            ("allow", SslMode::Prefer),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::Require),
            ("verify-full", SslMode::Require),
        ];
        for (mode, expected) in cases {
            let info = parse(&format!("postgresql://h/db?sslmode={mode}"));
            assert_eq!(
                info.tokio_config(&no_env).get_ssl_mode(),
                *expected,
                "{mode}"
            );
            assert_eq!(
                env_map(&info).get("PGSSLMODE").map(String::as_str),
                Some(*mode)
            );
            let from_env = parse("postgresql://h/db").tokio_config(&env_of(&[("PGSSLMODE", mode)]));
            assert_eq!(from_env.get_ssl_mode(), *expected, "PGSSLMODE={mode}");
        }
    }
}
