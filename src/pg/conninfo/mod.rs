//! DATABASE_URL parsing: one validated connection description for libpq children and tokio-postgres.
//!
//! [`ConnInfo::parse`] reads a `postgresql://` (or `postgres://`) URL the way libpq reads a
//! connection URI, with three deliberate differences:
//!
//! * query parameters libpq does not know (Prisma's `schema`, `connection_limit`, `pgbouncer`, ...)
//!   are dropped instead of failing the whole URL; their names are kept in
//!   [`ConnInfo::dropped_params`] and logged at debug level;
//! * several hosts (`h1:5432,h2:5433`, or `?host=h1,h2`) are refused with a clear error: a backup
//!   must talk to exactly one server;
//! * the user-info part ends at the *last* `@` before the host, so a password with an unencoded
//!   `@` still works (libpq stops at the first one).
//!
//! The password is never part of any message or `Debug` output: errors are built from a redacted
//! copy of the input, and [`ConnInfo::redacted`] / [`ConnInfo::conninfo_without_password`] leave it
//! out. Children get it through [`ConnInfo::child_env`] (`PGPASSWORD`), never through argv.
//!
//! This file holds the [`ConnInfo`] type and its accessors; the rest is split by concern:
//! `parse` reads the URL, `params` holds libpq's parameter tables and checks their values, `env`
//! resolves the `PG*` environment and builds the children's, `tokio` maps the connection to a
//! `tokio_postgres::Config`, and `redact` keeps the password out of everything shown.

use std::net::IpAddr;

mod env;
mod params;
mod parse;
mod redact;
mod tokio;

pub use env::apply_child_env;
pub use parse::holds_password;

/// A `DATABASE_URL` that cannot be used. The message never contains the password.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnInfoError(pub String);

/// One PostgreSQL connection, as given by a `DATABASE_URL`.
///
/// Every part is optional: a missing part falls back to libpq's defaults and the `PG*`
/// environment, exactly as `psql` would do with the same URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// TCP host name / IP address (without brackets), or a socket directory (starts with `/`).
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    /// Kept libpq parameters other than host/port/user/password/dbname, in URL order, non-empty.
    params: Vec<(String, String)>,
    /// Names of query parameters that were dropped, in URL order, each once.
    dropped: Vec<String>,
    /// libpq variables without a URL parameter (`PGTZ`, `PGSERVICEFILE`, ...), as
    /// [`ConnInfo::resolve`] found them; children get them as they are.
    extra_env: Vec<(String, String)>,
}

impl ConnInfo {
    /// A connection that gives nothing: every part falls back to libpq's defaults.
    fn empty() -> ConnInfo {
        ConnInfo {
            host: None,
            port: None,
            user: None,
            password: None,
            dbname: None,
            params: Vec::new(),
            dropped: Vec::new(),
            extra_env: Vec::new(),
        }
    }

    /// The TCP host name or IP address (IPv6 without brackets), or the socket directory;
    /// `None` means libpq's default (`PGHOST`, else the default socket directory).
    #[must_use]
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The `hostaddr` parameter (a numeric IP libpq connects to instead of resolving `host`).
    #[must_use]
    pub fn hostaddr(&self) -> Option<IpAddr> {
        self.param("hostaddr").and_then(|a| a.parse().ok())
    }

    /// The port the URL gives; `None` means `PGPORT`, else 5432.
    #[must_use]
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The user name the URL gives; see [`ConnInfo::effective_user`] for the one the server sees.
    #[must_use]
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The decoded password, for registering with a redactor and for `PGPASSWORD`. Never print it.
    #[must_use]
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The database name the URL gives; see [`ConnInfo::effective_dbname`] for the one the
    /// server sees.
    #[must_use]
    pub fn dbname(&self) -> Option<&str> {
        self.dbname.as_deref()
    }

    /// The same connection to database `name` on the same server (as the same user).
    #[must_use]
    pub fn with_dbname(&self, name: &str) -> ConnInfo {
        ConnInfo {
            dbname: Some(name.to_string()),
            ..self.clone()
        }
    }

    /// The value of a kept libpq query parameter (`sslmode`, `application_name`, ...). `host`,
    /// `port`, `user`, `password` and `dbname` have their own accessors and are not found here.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The kept libpq query parameters (other than host/port/user/password/dbname), in URL order.
    /// May contain `sslpassword`, a secret.
    #[must_use]
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// Names of the query parameters that were dropped because libpq does not know them.
    #[must_use]
    pub fn dropped_params(&self) -> &[String] {
        &self.dropped
    }

    /// True when libpq will use a Unix socket: a socket directory is given, or neither a host nor
    /// a `hostaddr` is (libpq's default; a `PGHOST` in the environment may still say otherwise).
    #[must_use]
    pub fn is_socket(&self) -> bool {
        match &self.host {
            Some(host) => host.starts_with('/'),
            None => self.param("hostaddr").is_none(),
        }
    }

    /// True when the server is on this machine: a Unix socket, `localhost`, a 127.x.x.x address or
    /// `::1`. When `hostaddr` is given, it decides (that is where libpq connects).
    #[must_use]
    pub fn is_local(&self) -> bool {
        if let Some(addr) = self.hostaddr() {
            return is_loopback(addr);
        }
        if self.is_socket() {
            return true;
        }
        let Some(host) = self.host.as_deref() else {
            return false;
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        // An IPv6 zone ("fe80::1%eth0") is not part of the address.
        let addr = host.split('%').next().unwrap_or(host);
        addr.parse::<IpAddr>().map(is_loopback).unwrap_or(false)
    }

    /// Where the server is, for messages: `localhost:5432`, `[::1]:5433`,
    /// `/var/run/postgresql (socket)`, `default socket`. The port is shown only when the URL
    /// gives one (otherwise `PGPORT` or 5432 applies).
    #[must_use]
    pub fn host_display(&self) -> String {
        let tcp = |host: &str| {
            let is_v6 = host.contains(':');
            match (self.port, is_v6) {
                (Some(port), true) => format!("[{host}]:{port}"),
                (Some(port), false) => format!("{host}:{port}"),
                (None, _) => host.to_string(),
            }
        };
        let socket_suffix = match self.port {
            Some(port) => format!(", port {port}"),
            None => String::new(),
        };
        let hostaddr = self.param("hostaddr");
        match (self.host.as_deref(), hostaddr) {
            (Some(dir), _) if dir.starts_with('/') => format!("{dir} (socket{socket_suffix})"),
            (Some(host), Some(addr)) => format!("{} ({addr})", tcp(host)),
            (Some(host), None) => tcp(host),
            (None, Some(addr)) => tcp(addr),
            (None, None) => format!("default socket{socket_suffix}"),
        }
    }
}

fn is_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Helpers shared by the tests of every file of this folder.
#[cfg(test)]
mod test_support {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use tokio_postgres::config::Host;

    use super::ConnInfo;

    pub(super) const SECRET: &str = "S3cr3t-p@ss";
    pub(super) const SECRET_ENC: &str = "S3cr3t-p%40ss";

    pub(super) fn parse(url: &str) -> ConnInfo {
        ConnInfo::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    pub(super) fn parse_err(url: &str) -> String {
        match ConnInfo::parse(url) {
            Ok(info) => panic!("{url} should fail, got {info:?}"),
            Err(e) => e.to_string(),
        }
    }

    pub(super) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    pub(super) fn no_env(_: &str) -> Option<String> {
        None
    }

    pub(super) fn env_map(info: &ConnInfo) -> HashMap<String, String> {
        info.child_env().into_iter().collect()
    }

    pub(super) fn tcp(h: &str) -> Host {
        Host::Tcp(h.to_string())
    }

    pub(super) fn unix(p: &str) -> Host {
        Host::Unix(PathBuf::from(p))
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;

    #[test]
    fn socket_and_tcp_kinds() {
        // url, is_socket, is_local, host_display
        let cases: &[(&str, bool, bool, &str)] = &[
            (
                "postgresql:///db?host=/var/run/postgresql",
                true,
                true,
                "/var/run/postgresql (socket)",
            ),
            (
                "postgresql://%2Fvar%2Frun%2Fpostgresql/db",
                true,
                true,
                "/var/run/postgresql (socket)",
            ),
            (
                "postgresql://%2Ftmp:5433/db",
                true,
                true,
                "/tmp (socket, port 5433)",
            ),
            ("postgres:///db", true, true, "default socket"),
            (
                "postgres://:5433/db",
                true,
                true,
                "default socket, port 5433",
            ),
            (
                "postgresql://localhost:5432/db",
                false,
                true,
                "localhost:5432",
            ),
            ("postgresql://LOCALHOST/db", false, true, "LOCALHOST"),
            (
                "postgresql://127.0.0.1:5432/db",
                false,
                true,
                "127.0.0.1:5432",
            ),
            ("postgresql://127.8.9.10/db", false, true, "127.8.9.10"),
            ("postgresql://[::1]:5433/db", false, true, "[::1]:5433"),
            (
                "postgresql://[::ffff:127.0.0.1]:5433/db",
                false,
                true,
                "[::ffff:127.0.0.1]:5433",
            ),
            ("postgresql://[::1]/db", false, true, "::1"),
            (
                "postgresql://db.example.com:5432/db",
                false,
                false,
                "db.example.com:5432",
            ),
            ("postgresql://10.0.0.5/db", false, false, "10.0.0.5"),
            (
                "postgresql://[2001:db8::1]:5432/db",
                false,
                false,
                "[2001:db8::1]:5432",
            ),
            (
                "postgresql://localhost.example.com/db",
                false,
                false,
                "localhost.example.com",
            ),
            ("postgresql://128.0.0.1/db", false, false, "128.0.0.1"),
            (
                "postgresql:///db?hostaddr=10.0.0.5&port=6432",
                false,
                false,
                "10.0.0.5:6432",
            ),
            (
                "postgresql:///db?hostaddr=127.0.0.1",
                false,
                true,
                "127.0.0.1",
            ),
            (
                "postgresql://localhost/db?hostaddr=10.0.0.5",
                false,
                false,
                "localhost (10.0.0.5)",
            ),
        ];
        for &(url, socket, local, display) in cases {
            let info = parse(url);
            assert_eq!(info.is_socket(), socket, "is_socket {url}");
            assert_eq!(info.is_local(), local, "is_local {url}");
            assert_eq!(info.host_display(), display, "host_display {url}");
        }
    }

    #[test]
    fn clone_and_equality() {
        let info = parse("postgresql://u:pw@h:1/db?sslmode=require&schema=x");
        let copy = info.clone();
        assert_eq!(copy, info);
        assert_ne!(parse("postgresql://u:pw@h:2/db"), info);
    }
}
