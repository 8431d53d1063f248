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

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use tokio_postgres::config::{ChannelBinding, LoadBalanceHosts, SslMode, TargetSessionAttrs};

/// A `DATABASE_URL` that cannot be used. The message never contains the password.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnInfoError(pub String);

/// What replaces a password (or `sslpassword`) in everything meant to be read by people.
const MASK: &str = "********";

/// Query parameters libpq knows, each with the environment variable libpq reads for it (if any).
///
/// `host`, `port`, `user`, `password` and `dbname` are listed too but are stored in their own
/// fields, not among the kept parameters.
const KNOWN_PARAMS: &[(&str, Option<&str>)] = &[
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("dbname", Some("PGDATABASE")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("channel_binding", Some("PGCHANNELBINDING")),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("client_encoding", Some("PGCLIENTENCODING")),
    ("options", Some("PGOPTIONS")),
    ("application_name", Some("PGAPPNAME")),
    ("fallback_application_name", None),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("keepalives_interval", None),
    ("keepalives_count", None),
    ("tcp_user_timeout", None),
    ("sslmode", Some("PGSSLMODE")),
    ("sslcompression", Some("PGSSLCOMPRESSION")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("sslpassword", None),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcrl", Some("PGSSLCRL")),
    ("sslcrldir", Some("PGSSLCRLDIR")),
    ("sslsni", Some("PGSSLSNI")),
    ("requirepeer", Some("PGREQUIREPEER")),
    ("ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION")),
    ("ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION")),
    ("gssencmode", Some("PGGSSENCMODE")),
    ("krbsrvname", Some("PGKRBSRVNAME")),
    ("gsslib", Some("PGGSSLIB")),
    ("service", Some("PGSERVICE")),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("load_balance_hosts", Some("PGLOADBALANCEHOSTS")),
];

/// libpq environment variables that no kept URL parameter stands for, but that change what a
/// libpq child does (PostgreSQL 15 to 18). [`ConnInfo::resolve`] reads them from the same lookup
/// as everything else, and [`apply_child_env`] gives children exactly that.
const OTHER_LIBPQ_VARS: &[&str] = &[
    "PGSERVICEFILE",
    "PGSYSCONFDIR",
    "PGREQUIRESSL",
    "PGREQUIREAUTH",
    "PGSSLCERTMODE",
    "PGSSLNEGOTIATION",
    "PGGSSDELEGATION",
    "PGMINPROTOCOLVERSION",
    "PGMAXPROTOCOLVERSION",
    "PGDATESTYLE",
    "PGTZ",
    "PGGEQO",
];

/// Parameters whose value is a secret: masked in `Debug`/`redacted`, left out of
/// `conninfo_without_password`.
const SECRET_PARAMS: &[&str] = &["password", "sslpassword"];

/// Enumerated parameters checked at parse time, with the values libpq accepts.
const ENUM_PARAMS: &[(&str, &[&str])] = &[
    (
        "sslmode",
        &[
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ],
    ),
    ("gssencmode", &["disable", "prefer", "require"]),
    ("channel_binding", &["disable", "prefer", "require"]),
    (
        "target_session_attrs",
        &[
            "any",
            "read-write",
            "read-only",
            "primary",
            "standby",
            "prefer-standby",
        ],
    ),
    ("load_balance_hosts", &["disable", "random"]),
];

/// Integer parameters checked at parse time.
const INT_PARAMS: &[&str] = &[
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
];

/// Where a server's Unix socket usually lives when nothing says otherwise (Debian first).
const DEFAULT_SOCKET_DIRS: &[&str] = &["/var/run/postgresql", "/tmp"];

/// The application name tokio-postgres connections report when the URL and environment give none.
const DEFAULT_APPLICATION_NAME: &str = "aos-backup";

fn env_var_for(param: &str) -> Option<&'static str> {
    KNOWN_PARAMS
        .iter()
        .find(|(name, _)| *name == param)
        .and_then(|(_, var)| *var)
}

fn is_known_param(param: &str) -> bool {
    KNOWN_PARAMS.iter().any(|(name, _)| *name == param)
}

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

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: Vec<(&str, &str)> = self
            .params
            .iter()
            .map(|(k, v)| {
                let shown = if SECRET_PARAMS.contains(&k.as_str()) {
                    MASK
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("ConnInfo")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| MASK))
            .field("dbname", &self.dbname)
            .field("params", &params)
            .field("dropped", &self.dropped)
            .field("extra_env", &self.extra_env)
            .finish()
    }
}

impl ConnInfo {
    /// Parses and validates a `postgresql://` or `postgres://` URL.
    ///
    /// Accepted forms: `postgresql://user:pass@host:5432/db`, `postgresql://[::1]:5433/db`,
    /// `postgresql://%2Fvar%2Frun%2Fpostgresql/db` (socket folder as host), `postgresql:///db`
    /// (default socket), `postgresql://user:pass@/db?host=/cloudsql/x` (empty host, socket folder as
    /// query parameter). User, password, host, port, database name and query parameters are
    /// percent-decoded. Query parameters `host`, `port`, `user`, `password` and `dbname` override
    /// the URL's parts; an empty value unsets the part. `ssl=true` (JDBC style) means
    /// `sslmode=require`, as in libpq. Several hosts are refused.
    ///
    /// # Errors
    /// A wrong scheme, a malformed URL, a bad percent-encoding, a bad port, several hosts, or a bad
    /// value for `sslmode`, `hostaddr`, `connect_timeout` and the like. The message shows the URL
    /// with the password masked.
    pub fn parse(url: &str) -> Result<ConnInfo, ConnInfoError> {
        let input = url.trim();
        let Some(sep) = input.find("://") else {
            return Err(ConnInfoError(
                "DATABASE_URL is not a URL: it must start with postgresql:// or postgres://"
                    .to_string(),
            ));
        };
        let scheme = &input[..sep];
        if !scheme.eq_ignore_ascii_case("postgresql") && !scheme.eq_ignore_ascii_case("postgres") {
            let plausible = !scheme.is_empty()
                && scheme.len() <= 32
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            let msg = if plausible {
                format!(
                    "unsupported scheme \"{scheme}\" in DATABASE_URL: only postgresql:// and \
                     postgres:// are accepted"
                )
            } else {
                "DATABASE_URL is not a PostgreSQL URL: only postgresql:// and postgres:// are \
                 accepted"
                    .to_string()
            };
            return Err(ConnInfoError(msg));
        }
        let fail = |what: &str| {
            ConnInfoError(format!(
                "invalid DATABASE_URL {}: {what}",
                redact_raw(input)
            ))
        };
        let decode =
            |s: &str, what: &str| percent_decode(s).map_err(|e| fail(&format!("the {what} {e}")));

        let rest = &input[sep + 3..];
        if let Some(parts) = unencoded_password(rest) {
            // Registered before any message: whatever echoes the URL later masks them.
            for part in &parts {
                crate::runtime::redact::register(part);
            }
            return Err(ConnInfoError(UNENCODED_PASSWORD.to_string()));
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };

        let mut info = ConnInfo {
            host: None,
            port: None,
            user: None,
            password: None,
            dbname: None,
            params: Vec::new(),
            dropped: Vec::new(),
            extra_env: Vec::new(),
        };

        if let Some(userinfo) = userinfo {
            let (user, password) = match userinfo.find(':') {
                Some(colon) => (&userinfo[..colon], Some(&userinfo[colon + 1..])),
                None => (userinfo, None),
            };
            info.user = non_empty(decode(user, "user name")?);
            if let Some(password) = password {
                info.password = non_empty(decode(password, "password")?);
            }
        }

        if hostport.contains(',') {
            return Err(fail(MULTI_HOST));
        }
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let close = bracketed
                .find(']')
                .ok_or_else(|| fail("missing \"]\" after the IPv6 address"))?;
            if close == 0 {
                return Err(fail("empty IPv6 address \"[]\""));
            }
            let tail = &bracketed[close + 1..];
            let port = if tail.is_empty() {
                None
            } else if let Some(port) = tail.strip_prefix(':') {
                Some(port)
            } else {
                return Err(fail(
                    "unexpected characters after \"]\" (expected \":port\")",
                ));
            };
            (&bracketed[..close], port)
        } else {
            match hostport.find(':') {
                Some(colon) => (&hostport[..colon], Some(&hostport[colon + 1..])),
                None => (hostport, None),
            }
        };
        info.host = non_empty(decode(host, "host")?);
        if let Some(port) = port {
            info.port = parse_port(&decode(port, "port")?).map_err(|e| {
                if port.contains(':') {
                    fail(&format!(
                        "{e} (write IPv6 addresses in brackets: [::1]:5432)"
                    ))
                } else {
                    fail(&e)
                }
            })?;
        }

        let after = &rest[authority_end..];
        let (path, query) = match after.find('?') {
            Some(q) => (&after[..q], Some(&after[q + 1..])),
            None => (after, None),
        };
        if let Some(db) = path.strip_prefix('/') {
            info.dbname = non_empty(decode(db, "database name")?);
        }

        for piece in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (raw_key, raw_value) = piece.split_once('=').ok_or_else(|| {
                fail("a query parameter has no \"=\" (expected name=value pairs joined by &)")
            })?;
            let mut key = decode(raw_key, "name of a query parameter")?;
            let mut value = decode(raw_value, &format!("value of query parameter \"{key}\""))?;
            if key == "ssl" && value == "true" {
                tracing::debug!("DATABASE_URL: reading ssl=true as sslmode=require, like libpq");
                key = "sslmode".to_string();
                value = "require".to_string();
            }
            match key.as_str() {
                "host" => {
                    if value.contains(',') {
                        return Err(fail(MULTI_HOST));
                    }
                    info.host = non_empty(value);
                }
                "port" => {
                    if value.contains(',') {
                        return Err(fail(MULTI_HOST));
                    }
                    info.port = parse_port(&value).map_err(|e| fail(&e))?;
                }
                "user" => info.user = non_empty(value),
                "password" => info.password = non_empty(value),
                "dbname" => info.dbname = non_empty(value),
                k if is_known_param(k) => {
                    info.params.retain(|(name, _)| *name != key);
                    if !value.is_empty() {
                        info.params.push((key, value));
                    }
                }
                _ => {
                    tracing::debug!(
                        param = %key,
                        "DATABASE_URL: dropping query parameter unknown to libpq"
                    );
                    if !info.dropped.contains(&key) {
                        info.dropped.push(key);
                    }
                }
            }
        }

        info.validate_params().map_err(|e| fail(&e))?;
        Ok(info)
    }

    /// Checks the values of the kept parameters that libpq (or our tokio mapping) would reject.
    fn validate_params(&self) -> Result<(), String> {
        for (name, allowed) in ENUM_PARAMS {
            if let Some(value) = self.param(name) {
                if !allowed.contains(&value) {
                    return Err(format!(
                        "invalid {name} \"{value}\" (expected one of: {})",
                        allowed.join(", ")
                    ));
                }
            }
        }
        for name in INT_PARAMS {
            if let Some(value) = self.param(name) {
                if value.trim().parse::<i32>().is_err() {
                    return Err(format!("invalid {name} \"{value}\" (expected an integer)"));
                }
            }
        }
        if let Some(value) = self.param("hostaddr") {
            if value.contains(',') {
                return Err(MULTI_HOST.to_string());
            }
            if value.parse::<IpAddr>().is_err() {
                return Err(format!(
                    "invalid hostaddr \"{value}\" (expected a numeric IPv4 or IPv6 address)"
                ));
            }
        }
        Ok(())
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

    #[must_use]
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    #[must_use]
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The decoded password, for registering with a redactor and for `PGPASSWORD`. Never print it.
    #[must_use]
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    #[must_use]
    pub fn dbname(&self) -> Option<&str> {
        self.dbname.as_deref()
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

    /// A `postgresql://` URL for messages and logs: the password (and any `sslpassword`) replaced
    /// by `********`, dropped parameters left out. Parsing it gives back this connection with the
    /// password `********`.
    #[must_use]
    pub fn redacted(&self) -> String {
        let mut out = String::from("postgresql://");
        if self.user.is_some() || self.password.is_some() {
            if let Some(user) = &self.user {
                out.push_str(&percent_encode(user, ""));
            }
            if self.password.is_some() {
                out.push(':');
                out.push_str(MASK);
            }
            out.push('@');
        }
        if let Some(host) = &self.host {
            if host.contains(':') && !host.starts_with('/') {
                out.push('[');
                out.push_str(&percent_encode(host, ":"));
                out.push(']');
            } else {
                out.push_str(&percent_encode(host, ""));
            }
        }
        if let Some(port) = self.port {
            out.push_str(&format!(":{port}"));
        }
        if let Some(db) = &self.dbname {
            out.push('/');
            out.push_str(&percent_encode(db, ""));
        }
        for (i, (key, value)) in self.params.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(&percent_encode(key, ""));
            out.push('=');
            if SECRET_PARAMS.contains(&key.as_str()) {
                out.push_str(MASK);
            } else {
                out.push_str(&percent_encode(value, "/"));
            }
        }
        out
    }

    /// Environment for libpq children (pg_dump, pg_restore, psql): `PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGPASSWORD`, `PGDATABASE` and the `PG*` variables of the kept parameters (`PGSSLMODE`,
    /// `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGOPTIONS`, `PGHOSTADDR`, ...), plus the other libpq
    /// variables [`ConnInfo::resolve`] found.
    ///
    /// What this connection holds is set; on a [`ConnInfo::resolve`]d connection that is
    /// everything, and [`apply_child_env`] removes every other libpq variable, so that a child
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
    /// children's environment ([`ConnInfo::child_env`], [`apply_child_env`]) all read it, so a
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
        let from_env = |e: String| {
            ConnInfoError(format!(
                "{e} (from the PG* variables of the environment or .env)"
            ))
        };
        let mut info = self.clone();
        if info.port.is_none() {
            if let Some(value) = env("PGPORT") {
                if value.contains(',') {
                    return Err(from_env(format!(
                        "PGPORT lists several ports; {MULTI_HOST}"
                    )));
                }
                info.port =
                    parse_port(value.trim()).map_err(|e| from_env(format!("PGPORT: {e}")))?;
            }
        }
        let port = info.port.unwrap_or(5432);
        info.port = Some(port);
        if info.host.is_none() {
            if let Some(value) = env("PGHOST") {
                if value.contains(',') {
                    return Err(from_env(format!(
                        "PGHOST lists several hosts; {MULTI_HOST}"
                    )));
                }
                info.host = non_empty(value.trim().to_string());
            }
        }
        for (name, var) in KNOWN_PARAMS {
            let Some(var) = var else { continue };
            if matches!(*name, "host" | "port" | "user" | "password" | "dbname") {
                continue;
            }
            if info.param(name).is_none() {
                if let Some(value) = env(var) {
                    info.params.push(((*name).to_string(), value));
                }
            }
        }
        if info.param("passfile").is_none() {
            if let Some(home) = env("HOME") {
                let path = Path::new(&home).join(".pgpass");
                info.params
                    .push(("passfile".to_string(), path.display().to_string()));
            }
        }
        info.validate_params().map_err(from_env)?;
        if info.param("service").is_some() {
            // libpq would take host, port, user and dbname from pg_service.conf, and our own
            // connection cannot: the guards could then look at another server than pg_dump.
            return Err(ConnInfoError(
                "a connection service (`service=` in DATABASE_URL, or PGSERVICE) is not supported: \
                 aos-backup's own checks could not follow pg_service.conf the way pg_dump does; \
                 give host, port, user and dbname in DATABASE_URL instead"
                    .to_string(),
            ));
        }
        if info.host.is_none() && info.param("hostaddr").is_none() {
            info.host = Some(default_host(port, exists));
        }
        info.user = Some(self.effective_user(&env));
        info.dbname = Some(info.effective_dbname(&env));
        if info.password.is_none() {
            info.password = env("PGPASSWORD");
        }
        info.extra_env = OTHER_LIBPQ_VARS
            .iter()
            .filter_map(|var| Some(((*var).to_string(), env(var)?)))
            .collect();
        Ok(info)
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

    /// The same connection as a libpq `keyword='value'` string *without* the password (nor
    /// `sslpassword`), for a `--dbname=` argument if ever needed: argv is visible to every user
    /// of the machine. Values are always single-quoted with `\` and `'` escaped. Empty when the
    /// URL gives nothing at all.
    #[must_use]
    pub fn conninfo_without_password(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut push = |key: &str, value: &str| parts.push(format!("{key}={}", quote(value)));
        if let Some(host) = &self.host {
            push("host", host);
        }
        if let Some(port) = self.port {
            push("port", &port.to_string());
        }
        if let Some(user) = &self.user {
            push("user", user);
        }
        if let Some(db) = &self.dbname {
            push("dbname", db);
        }
        for (key, value) in &self.params {
            if SECRET_PARAMS.contains(&key.as_str()) {
                tracing::debug!(param = %key, "secret parameter left out of the conninfo string");
            } else {
                push(key, value);
            }
        }
        parts.join(" ")
    }

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
    ) -> tokio_postgres::Config {
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        let param_or_env = |name: &str, var: &str| -> Option<String> {
            self.param(name).map(str::to_string).or_else(|| env(var))
        };
        let mut config = tokio_postgres::Config::new();

        // Ports first: the default socket directory depends on the port.
        let ports: Vec<u16> = match self.port {
            Some(port) => vec![port],
            None => match env("PGPORT") {
                Some(list) => {
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
                None => vec![5432],
            },
        };

        let hostaddr = match self.hostaddr() {
            Some(addr) => Some(addr),
            None => env("PGHOSTADDR").and_then(|a| match a.trim().parse::<IpAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    tracing::warn!("ignoring PGHOSTADDR \"{a}\": not a single numeric IP address");
                    None
                }
            }),
        };

        let mut hosts: Vec<String> = match &self.host {
            Some(host) => vec![host.clone()],
            None => env("PGHOST")
                .map(|list| {
                    list.split(',')
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        };
        if hosts.is_empty() && hostaddr.is_none() {
            hosts.push(default_host(ports[0], exists));
        }
        let ports = if ports.len() == 1 || ports.len() == hosts.len().max(1) {
            ports
        } else {
            tracing::warn!(
                "PGPORT lists {} ports for {} hosts; using the first",
                ports.len(),
                hosts.len()
            );
            vec![ports[0]]
        };
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

        let user = self.effective_user(&env);
        if let Some(password) = self.password.clone().or_else(|| env("PGPASSWORD")) {
            config.password(password);
        }
        config.dbname(self.effective_dbname(&env));
        config.user(user);

        let ssl_mode = match param_or_env("sslmode", "PGSSLMODE").as_deref() {
            None | Some("prefer" | "allow") => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            Some("require" | "verify-ca" | "verify-full") => SslMode::Require,
            Some(other) => {
                tracing::warn!("ignoring PGSSLMODE \"{other}\"; using prefer");
                SslMode::Prefer
            }
        };
        config.ssl_mode(ssl_mode);

        if let Some(secs) = param_or_env("connect_timeout", "PGCONNECT_TIMEOUT") {
            match secs.trim().parse::<i64>() {
                Ok(s) if s <= 0 => {}
                // libpq's minimum is 2 seconds.
                Ok(s) => {
                    config.connect_timeout(Duration::from_secs(s.max(2).unsigned_abs()));
                }
                Err(_) => tracing::warn!("ignoring PGCONNECT_TIMEOUT \"{secs}\": not an integer"),
            }
        }

        let application_name = param_or_env("application_name", "PGAPPNAME")
            .or_else(|| self.param("fallback_application_name").map(str::to_string))
            .unwrap_or_else(|| DEFAULT_APPLICATION_NAME.to_string());
        config.application_name(application_name);

        if let Some(options) = param_or_env("options", "PGOPTIONS") {
            config.options(options);
        }

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

        match param_or_env("target_session_attrs", "PGTARGETSESSIONATTRS").as_deref() {
            None | Some("any" | "prefer-standby") => {}
            Some("read-write" | "primary") => {
                config.target_session_attrs(TargetSessionAttrs::ReadWrite);
            }
            Some("read-only" | "standby") => {
                config.target_session_attrs(TargetSessionAttrs::ReadOnly);
            }
            Some(other) => tracing::warn!("ignoring PGTARGETSESSIONATTRS \"{other}\""),
        }

        match param_or_env("channel_binding", "PGCHANNELBINDING").as_deref() {
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

        if self.param("load_balance_hosts") == Some("random") {
            config.load_balance_hosts(LoadBalanceHosts::Random);
        }
        for name in ["passfile", "service"] {
            if self.param(name).is_some() {
                tracing::debug!(
                    param = name,
                    "tokio-postgres does not read this parameter; only libpq children use it"
                );
            }
        }
        config
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

/// True when `url` holds a password (or an `sslpassword`), or looks like it holds one that is not
/// percent-encoded (see [`ConnInfo::parse`]): a file holding it is a secret file.
#[must_use]
pub fn holds_password(url: &str) -> bool {
    let input = url.trim();
    let rest = input.find("://").map_or(input, |sep| &input[sep + 3..]);
    if unencoded_password(rest).is_some() {
        return true;
    }
    ConnInfo::parse(url).is_ok_and(|c| c.password().is_some() || c.param("sslpassword").is_some())
}

const UNENCODED_PASSWORD: &str = "DATABASE_URL has an \"@\" after the host part, where the \
     database name goes: it looks like a password holding an unencoded \"/\" (the URL is not \
     shown, to keep that password out of messages)";

/// `rest` (a URL after `://`) with an `@` in its path: a password holding a raw `/`
/// (`user:pa/ss@host/db`) ends the host part early, and its tail plus the real host would become
/// the database name. Returns the parts that may be that password (the path before its last `@`,
/// and that joined to what follows the user name's `:`), to be masked.
fn unencoded_password(rest: &str) -> Option<Vec<String>> {
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let after = &rest[authority_end..];
    let path = after.strip_prefix('/')?;
    let path = &path[..path.find('?').unwrap_or(path.len())];
    let at = path.rfind('@')?;
    let tail = &path[..at];
    let mut parts = vec![tail.to_string()];
    if let Some(colon) = rest[..authority_end].find(':') {
        parts.push(format!("{}/{tail}", &rest[colon + 1..authority_end]));
    }
    for part in parts.clone() {
        if let Ok(decoded) = percent_decode(&part) {
            parts.push(decoded);
        }
    }
    Some(parts)
}

const MULTI_HOST: &str = "several hosts are given; aos-backup connects to exactly one server \
                          (give the primary's host and port only)";

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

/// A port number 1-65535; empty means "not given".
fn parse_port(s: &str) -> Result<Option<u16>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<u16>() {
        Ok(port) if port > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(port)),
        _ => Err("invalid port number (expected a number from 1 to 65535)".to_string()),
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

/// The socket directory (or `localhost`) used when no host is given anywhere.
fn default_host(port: u16, exists: &dyn Fn(&Path) -> bool) -> String {
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

/// libpq's percent-decoding: `%XX` only (`+` stays `+`), `%00` refused, result must be UTF-8.
/// The error never contains the input.
fn percent_decode(s: &str) -> Result<String, &'static str> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| char::from(b).to_digit(16);
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err("has an invalid percent-encoding (write a literal % as %25)");
            };
            let byte = u8::try_from(hi * 16 + lo).unwrap_or(0);
            if byte == 0 {
                return Err("contains %00, which is not allowed");
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is not valid UTF-8 once percent-decoded")
}

/// Percent-encodes everything but RFC 3986 unreserved characters and those in `keep`.
fn percent_encode(s: &str, keep: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        let c = char::from(b);
        if b.is_ascii_alphanumeric()
            || matches!(c, '-' | '.' | '_' | '~')
            || (b.is_ascii() && keep.contains(c))
        {
            out.push(c);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Quotes a libpq conninfo value: `'...'` with `\` and `'` escaped by a backslash.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A copy of a raw (possibly unparsable) URL that is safe to show: the user-info password and
/// the values of `*password` query parameters are masked. Deliberately over-eager: anything
/// between the first `:` and the last `@` after `://` is masked, since a password may contain
/// unencoded `/`, `?`, `&` or `@`. Input without `://` is not shown at all.
fn redact_raw(input: &str) -> String {
    let Some(sep) = input.find("://") else {
        return "(not shown)".to_string();
    };
    let start = sep + 3;
    let rest = &input[start..];
    let mut masked = vec![false; rest.len()];

    // User-info password: from the first ':' to the last '@'.
    if let Some(at) = rest.rfind('@') {
        if let Some(colon) = rest[..at].find(':') {
            masked[colon + 1..at].iter_mut().for_each(|m| *m = true);
        }
    } else {
        // No '@': in "postgresql://user:password" the password sits where the port goes. Mask
        // anything there that is not a valid port.
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let port_start = if authority.starts_with('[') {
            authority
                .find(']')
                .and_then(|close| authority[close..].find(':').map(|c| close + c + 1))
        } else {
            authority.find(':').map(|c| c + 1)
        };
        if let Some(start) = port_start {
            if parse_port(&authority[start..]).is_err() {
                masked[start..authority_end]
                    .iter_mut()
                    .for_each(|m| *m = true);
            }
        }
    }
    // Query-style segments: mask the value of any key that looks like a password, and any
    // segment without '=' (it may be the tail of a password holding a raw '&').
    let mut seg_start = 0;
    for (i, c) in rest
        .char_indices()
        .chain(std::iter::once((rest.len(), '&')))
    {
        if c != '?' && c != '&' {
            continue;
        }
        let segment = &rest[seg_start..i];
        if seg_start > 0 {
            match segment.find('=') {
                Some(eq) => {
                    let key = &segment[..eq];
                    let key = percent_decode(key).unwrap_or_else(|_| key.to_string());
                    if key.to_ascii_lowercase().contains("password") {
                        masked[seg_start + eq + 1..i]
                            .iter_mut()
                            .for_each(|m| *m = true);
                    }
                }
                None if rest[..seg_start].contains('?') => {
                    masked[seg_start..i].iter_mut().for_each(|m| *m = true);
                }
                None => {}
            }
        }
        seg_start = i + 1;
    }

    let mut out = String::from(&input[..start]);
    let mut in_mask = false;
    for (i, c) in rest.char_indices() {
        if masked[i] {
            if !in_mask {
                out.push_str(MASK);
                in_mask = true;
            }
        } else {
            in_mask = false;
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
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

    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;
    use tokio_postgres::config::Host;

    const SECRET: &str = "S3cr3t-p@ss";
    const SECRET_ENC: &str = "S3cr3t-p%40ss";

    fn parse(url: &str) -> ConnInfo {
        ConnInfo::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn parse_err(url: &str) -> String {
        match ConnInfo::parse(url) {
            Ok(info) => panic!("{url} should fail, got {info:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_map(info: &ConnInfo) -> HashMap<String, String> {
        info.child_env().into_iter().collect()
    }

    fn tcp(h: &str) -> Host {
        Host::Tcp(h.to_string())
    }

    fn unix(p: &str) -> Host {
        Host::Unix(PathBuf::from(p))
    }

    #[test]
    fn parses_parts_of_many_urls() {
        // url, host, port, user, password, dbname
        type Row = (
            &'static str,
            Option<&'static str>,
            Option<u16>,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: &[Row] = &[
            (
                "postgresql://u:p@db.example.com:5432/app",
                Some("db.example.com"),
                Some(5432),
                Some("u"),
                Some("p"),
                Some("app"),
            ),
            (
                "postgres://u:p@db.example.com:5432/app",
                Some("db.example.com"),
                Some(5432),
                Some("u"),
                Some("p"),
                Some("app"),
            ),
            (
                "PostgreSQL://u@h/app",
                Some("h"),
                None,
                Some("u"),
                None,
                Some("app"),
            ),
            (
                "postgresql://localhost",
                Some("localhost"),
                None,
                None,
                None,
                None,
            ),
            (
                "postgresql://localhost/",
                Some("localhost"),
                None,
                None,
                None,
                None,
            ),
            (
                "postgresql://localhost:5433",
                Some("localhost"),
                Some(5433),
                None,
                None,
                None,
            ),
            (
                "postgresql://localhost:/db",
                Some("localhost"),
                None,
                None,
                None,
                Some("db"),
            ),
            ("postgresql://", None, None, None, None, None),
            ("postgresql:///db", None, None, None, None, Some("db")),
            ("postgres:///db", None, None, None, None, Some("db")),
            (
                "postgresql://:5433/db",
                None,
                Some(5433),
                None,
                None,
                Some("db"),
            ),
            (
                "postgresql://[::1]:5433/db",
                Some("::1"),
                Some(5433),
                None,
                None,
                Some("db"),
            ),
            (
                "postgresql://[::1]/db",
                Some("::1"),
                None,
                None,
                None,
                Some("db"),
            ),
            (
                "postgresql://[2001:db8::7]",
                Some("2001:db8::7"),
                None,
                None,
                None,
                None,
            ),
            (
                "postgresql://u:pw@[fe80::1%25eth0]:5432/db",
                Some("fe80::1%eth0"),
                Some(5432),
                Some("u"),
                Some("pw"),
                Some("db"),
            ),
            (
                "postgresql://%2Fvar%2Frun%2Fpostgresql/db",
                Some("/var/run/postgresql"),
                None,
                None,
                None,
                Some("db"),
            ),
            (
                "postgresql://%2fvar%2frun%2fpostgresql:5433/db",
                Some("/var/run/postgresql"),
                Some(5433),
                None,
                None,
                Some("db"),
            ),
            (
                "postgresql:///db?host=/var/run/postgresql",
                Some("/var/run/postgresql"),
                None,
                None,
                None,
                Some("db"),
            ),
            (
                "postgresql://u:pw@/db?host=/cloudsql/proj:eu:inst",
                Some("/cloudsql/proj:eu:inst"),
                None,
                Some("u"),
                Some("pw"),
                Some("db"),
            ),
            (
                "postgresql://h1/db?host=h2&port=6000&user=q&password=z&dbname=other",
                Some("h2"),
                Some(6000),
                Some("q"),
                Some("z"),
                Some("other"),
            ),
            (
                "postgresql://u:pw@h:1/db?host=&port=&user=&password=&dbname=",
                None,
                None,
                None,
                None,
                None,
            ),
            (
                "postgresql://u:p%40ss%3Aw%2Frd%25@h/d%C3%A9j%C3%A0%20vu",
                Some("h"),
                None,
                Some("u"),
                Some("p@ss:w/rd%"),
                Some("déjà vu"),
            ),
            (
                "postgresql://%C3%BCser:p%C3%A4ss%E2%82%AC@h/db",
                Some("h"),
                None,
                Some("üser"),
                Some("päss€"),
                Some("db"),
            ),
            (
                "postgresql://u:a+b@h/db",
                Some("h"),
                None,
                Some("u"),
                Some("a+b"),
                Some("db"),
            ),
            (
                "postgresql://u:@h/db",
                Some("h"),
                None,
                Some("u"),
                None,
                Some("db"),
            ),
            (
                "postgresql://:pw@h/db",
                Some("h"),
                None,
                None,
                Some("pw"),
                Some("db"),
            ),
            // an unencoded '@' in the password: the last '@' before the host ends the user info
            (
                "postgresql://u:S3cr3t-p@ss@h:5432/db",
                Some("h"),
                Some(5432),
                Some("u"),
                Some(SECRET),
                Some("db"),
            ),
            (
                "postgresql://u:a:b@h/db",
                Some("h"),
                None,
                Some("u"),
                Some("a:b"),
                Some("db"),
            ),
            (
                "  postgresql://h/db\n",
                Some("h"),
                None,
                None,
                None,
                Some("db"),
            ),
            (
                "postgresql://h?sslmode=require",
                Some("h"),
                None,
                None,
                None,
                None,
            ),
        ];
        for &(url, host, port, user, password, dbname) in cases {
            let info = parse(url);
            assert_eq!(info.host(), host, "host of {url}");
            assert_eq!(info.port(), port, "port of {url}");
            assert_eq!(info.user(), user, "user of {url}");
            assert_eq!(info.password(), password, "password of {url}");
            assert_eq!(info.dbname(), dbname, "dbname of {url}");
        }
    }

    #[test]
    fn rejects_other_schemes_and_non_urls() {
        let cases: &[(&str, &str)] = &[
            ("mysql://u:S3cr3t-p@ss@h/db", "unsupported scheme \"mysql\""),
            ("http://h/db", "unsupported scheme \"http\""),
            ("postgresq://h/db", "unsupported scheme \"postgresq\""),
            ("jdbc:postgresql://h/db", "not a PostgreSQL URL"),
            ("u:S3cr3t-p@ss@h://db", "not a PostgreSQL URL"),
            ("host=localhost dbname=x", "not a URL"),
            ("", "not a URL"),
            ("S3cr3t-p@ss", "not a URL"),
        ];
        for &(url, expected) in cases {
            let msg = parse_err(url);
            assert!(msg.contains(expected), "{url}: {msg}");
            assert!(!msg.contains(SECRET), "{url}: {msg}");
            if msg.contains("scheme") || msg.contains("URL") {
                assert!(
                    msg.contains("postgresql://") && msg.contains("postgres://"),
                    "{msg}"
                );
            }
        }
    }

    #[test]
    fn an_at_sign_in_the_path_is_an_unencoded_password_never_shown() {
        for (url, parts) in [
            // an unencoded '/' in the password ends the host part early
            (
                "postgresql://u:S3cr3t/p@ss@h/db",
                &["S3cr3t/p@ss", "p@ss"][..],
            ),
            (
                "postgresql://postgres:/Pw9secret@localhost/shop",
                &["/Pw9secret", "Pw9secret"],
            ),
            (
                "postgres://postgres:5432/Pw9secret@localhost/shop",
                &["5432/Pw9secret", "Pw9secret"],
            ),
            ("postgresql://h/my@db?sslmode=require", &["my"]),
        ] {
            let msg = parse_err(url);
            assert!(msg.contains("unencoded \"/\""), "{url}: {msg}");
            assert!(msg.contains("not shown"), "{url}: {msg}");
            for part in parts {
                assert!(!msg.contains(part), "{url}: {msg}");
                if part.len() >= 3 {
                    assert_eq!(
                        crate::runtime::redact::scrub(part),
                        MASK,
                        "{url}: {part} not registered"
                    );
                }
            }
            assert!(!msg.contains("localhost") && !msg.contains("shop"), "{msg}");
            assert!(holds_password(url), "{url}");
        }
        // Encoded, it is fine; an '@' in the query is not in the path.
        assert_eq!(
            parse("postgresql://u:%2FPw9x%40@h/my%40db").password(),
            Some("/Pw9x@")
        );
        assert_eq!(
            parse("postgresql://u:%2FPw9x%40@h/my%40db").dbname(),
            Some("my@db")
        );
        assert_eq!(
            parse("postgresql://h/db?application_name=a@b").dbname(),
            Some("db")
        );
        assert!(holds_password("postgresql://u:pw@h/db"));
        assert!(holds_password("postgresql://h/db?sslpassword=k"));
        assert!(!holds_password("postgresql://u@h/db"));
        assert!(!holds_password("not a url"));
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
    fn rejects_malformed_urls_without_showing_the_password() {
        let cases: &[(&str, &str)] = &[
            ("postgresql://u:S3cr3t-p%40ss@h:99999/db", "invalid port"),
            ("postgresql://u:S3cr3t-p%40ss@h:0/db", "invalid port"),
            ("postgresql://u:S3cr3t-p%40ss@h:54a/db", "invalid port"),
            ("postgresql://u:S3cr3t-p%40ss@h:-1/db", "invalid port"),
            ("postgresql://u:S3cr3t-p%40ss@h:+5432/db", "invalid port"),
            ("postgresql://u:S3cr3t-p%40ss@h/db?port=abc", "invalid port"),
            ("postgresql://u:S3cr3t-p%40ss@::1/db", "brackets"),
            (
                "postgresql://u:S3cr3t-p%ZZss@h/db",
                "password has an invalid percent-encoding",
            ),
            (
                "postgresql://u:S3cr3t-p%4@h",
                "password has an invalid percent-encoding",
            ),
            // no '@': the password lands where the port goes
            (
                "postgresql://u:S3cr3t-p%4",
                "port has an invalid percent-encoding",
            ),
            ("postgresql://u:S3cr3t-p%40ss", "invalid port"),
            ("postgresql://u:S3cr3t-p%40ss/db", "invalid port"),
            ("postgresql://[::1]:S3cr3t-p%40ss/db", "invalid port"),
            ("postgresql://u:S3cr3t-p%00ss@h/db", "%00"),
            ("postgresql://u:S3cr3t-p%FFss@h/db", "not valid UTF-8"),
            (
                "postgresql://u%ZZ:S3cr3t-p%40ss@h/db",
                "user name has an invalid",
            ),
            (
                "postgresql://u:S3cr3t-p%40ss@h/d%ZZb",
                "database name has an invalid",
            ),
            ("postgresql://u:S3cr3t-p%40ss@[::1/db", "missing \"]\""),
            ("postgresql://u:S3cr3t-p%40ss@[]/db", "empty IPv6"),
            ("postgresql://u:S3cr3t-p%40ss@[::1]x/db", "after \"]\""),
            (
                "postgresql://u:S3cr3t-p%40ss@h1:5432,h2:5433/db",
                "several hosts",
            ),
            ("postgresql://u:S3cr3t-p%40ss@h1,h2/db", "several hosts"),
            (
                "postgresql://u:S3cr3t-p%40ss@h/db?host=h1,h2",
                "several hosts",
            ),
            (
                "postgresql://u:S3cr3t-p%40ss@h/db?port=1,2",
                "several hosts",
            ),
            (
                "postgresql://u:S3cr3t-p%40ss@h/db?hostaddr=1.2.3.4,5.6.7.8",
                "several hosts",
            ),
            (
                "postgresql://u:S3cr3t-p%40ss@h/db?hostaddr=db.example.com",
                "invalid hostaddr",
            ),
            (
                "postgresql://u:S3cr3t-p%40ss@h/db?sslmode=no-verify",
                "invalid sslmode \"no-verify\"",
            ),
            (
                "postgresql://u:S3cr3t-p%40ss@h/db?gssencmode=maybe",
                "invalid gssencmode",
            ),
            (
                "postgresql://u:S3cr3t-p%40ss@h/db?target_session_attrs=rw",
                "invalid target_session_attrs",
            ),
            (
                "postgresql://u:S3cr3t-p%40ss@h/db?channel_binding=yes",
                "invalid channel_binding",
            ),
            (
                "postgresql://u:S3cr3t-p%40ss@h/db?load_balance_hosts=yes",
                "invalid load_balance_hosts",
            ),
            (
                "postgresql://u:S3cr3t-p%40ss@h/db?connect_timeout=10s",
                "invalid connect_timeout",
            ),
            (
                "postgresql://u:S3cr3t-p%40ss@h/db?keepalives_idle=x",
                "invalid keepalives_idle",
            ),
            ("postgresql://u:S3cr3t-p%40ss@h/db?sslmode", "no \"=\""),
            (
                "postgresql://u:S3cr3t-p%40ss@h/db?a=%ZZ",
                "invalid percent-encoding",
            ),
            (
                "postgresql://h/db?password=S3cr3t-p%40ss&port=x",
                "invalid port",
            ),
            (
                "postgresql://h/db?password=S3cr3t-p@ss&port=x",
                "invalid port",
            ),
            (
                "postgresql://h:5432/db?sslmode=bad&password=S3cr3t-p@ss",
                "invalid sslmode",
            ),
            (
                "postgresql://h/db?pass%77ord=S3cr3t-p@ss&port=x",
                "invalid port",
            ),
            (
                "postgresql://h/db?sslpassword=S3cr3t-p@ss&port=x",
                "invalid port",
            ),
            ("postgresql://h/db?password=S3cr3t-p&ss&port=x", "no \"=\""),
        ];
        for &(url, expected) in cases {
            let msg = parse_err(url);
            assert!(
                msg.contains(expected),
                "{url}: expected {expected:?} in {msg:?}"
            );
            for secret in [SECRET, SECRET_ENC, "S3cr3t", "p@ss", "ss@h"] {
                assert!(
                    !msg.contains(secret),
                    "{url}: message leaks {secret:?}: {msg}"
                );
            }
            assert!(
                msg.starts_with("invalid DATABASE_URL postgresql://"),
                "{msg}"
            );
        }
    }

    #[test]
    fn error_message_shows_the_rest_of_the_url() {
        let msg = parse_err("postgresql://aos:S3cr3t-p%40ss@db.example.com:99999/app");
        assert_eq!(
            msg,
            "invalid DATABASE_URL postgresql://aos:********@db.example.com:99999/app: \
             invalid port number (expected a number from 1 to 65535)"
        );
    }

    #[test]
    fn redact_raw_masks_every_password_position() {
        let cases: &[(&str, &str)] = &[
            ("postgresql://u:pw@h/db", "postgresql://u:********@h/db"),
            ("postgresql://u@h/db", "postgresql://u@h/db"),
            (
                "postgresql://h/db?sslmode=require",
                "postgresql://h/db?sslmode=require",
            ),
            (
                "postgresql://h/db?password=x&sslmode=require",
                "postgresql://h/db?password=********&sslmode=require",
            ),
            (
                "postgresql://h/db?a=1&sslpassword=x",
                "postgresql://h/db?a=1&sslpassword=********",
            ),
            ("postgresql://u:p/w@h/db", "postgresql://u:********@h/db"),
            ("postgresql://u:pw", "postgresql://u:********"),
            // without "@", even an out-of-range number might be a password
            ("postgresql://h:99999/db", "postgresql://h:********/db"),
            ("postgresql://h:5432/db", "postgresql://h:5432/db"),
            ("postgresql://[::1]:pw/db", "postgresql://[::1]:********/db"),
            ("nothing here", "(not shown)"),
        ];
        for &(raw, expected) in cases {
            assert_eq!(redact_raw(raw), expected, "{raw}");
        }
    }

    #[test]
    fn prisma_url_keeps_only_libpq_parts() {
        let info = parse(
            "postgresql://aos:aos@localhost:5434/aosdb_staging?schema=public&connection_limit=5&pgbouncer=true",
        );
        assert_eq!(info.host(), Some("localhost"));
        assert_eq!(info.port(), Some(5434));
        assert_eq!(info.user(), Some("aos"));
        assert_eq!(info.password(), Some("aos"));
        assert_eq!(info.dbname(), Some("aosdb_staging"));
        assert!(info.params().is_empty(), "{:?}", info.params());
        assert_eq!(
            info.dropped_params(),
            ["schema", "connection_limit", "pgbouncer"]
        );
        assert_eq!(
            info.redacted(),
            "postgresql://aos:********@localhost:5434/aosdb_staging"
        );
        let env = env_map(&info);
        assert!(!env
            .keys()
            .any(|k| k.contains("SCHEMA") || k.contains("BOUNCER")));
        assert_eq!(env.len(), 5, "{env:?}");
    }

    #[test]
    fn drops_every_unknown_parameter_once() {
        let info = parse(
            "postgresql://h/db?pool_timeout=10&socket_timeout=5&statement_cache_size=0&sslmode=require\
             &frobnicate=1&schema=a&schema=b&SSLMODE=disable&ssl=false",
        );
        assert_eq!(
            info.dropped_params(),
            [
                "pool_timeout",
                "socket_timeout",
                "statement_cache_size",
                "frobnicate",
                "schema",
                "SSLMODE",
                "ssl"
            ]
        );
        assert_eq!(
            info.params(),
            [("sslmode".to_string(), "require".to_string())]
        );
    }

    #[test]
    fn keeps_every_known_libpq_parameter() {
        for (name, _) in KNOWN_PARAMS {
            if ["host", "port", "user", "password", "dbname"].contains(name) {
                continue;
            }
            let value = match *name {
                "sslmode" => "verify-full",
                "gssencmode" | "channel_binding" => "prefer",
                "target_session_attrs" => "read-write",
                "load_balance_hosts" => "random",
                "hostaddr" => "10.1.2.3",
                n if INT_PARAMS.contains(&n) => "7",
                _ => "some value",
            };
            let url = format!("postgresql://h/db?{name}={}", percent_encode(value, ""));
            let info = parse(&url);
            assert_eq!(info.param(name), Some(value), "{url}");
            assert!(info.dropped_params().is_empty(), "{url}");
        }
    }

    #[test]
    fn query_parameters_decode_and_last_one_wins() {
        let info = parse(
            "postgresql://h/db?application_name=a%26b%3Dc&options=-c%20search_path%3Dx&sslmode=disable&sslmode=require&sslcert=",
        );
        assert_eq!(info.param("application_name"), Some("a&b=c"));
        assert_eq!(info.param("options"), Some("-c search_path=x"));
        assert_eq!(info.param("sslmode"), Some("require"));
        assert_eq!(
            info.param("sslcert"),
            None,
            "empty values unset the parameter"
        );
        // lenient: a raw '=' inside a value is kept, like libpq's keyword=value form
        assert_eq!(
            parse("postgresql://h/db?options=-csearch_path=x").param("options"),
            Some("-csearch_path=x")
        );
        // JDBC style, as libpq does
        assert_eq!(
            parse("postgresql://h/db?ssl=true").param("sslmode"),
            Some("require")
        );
        // empty pieces are skipped
        assert_eq!(
            parse("postgresql://h/db?&&sslmode=prefer&").param("sslmode"),
            Some("prefer")
        );
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
    fn every_env_var_is_a_real_libpq_variable() {
        let libpq_vars = [
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGDATABASE",
            "PGUSER",
            "PGPASSWORD",
            "PGPASSFILE",
            "PGCHANNELBINDING",
            "PGCONNECT_TIMEOUT",
            "PGCLIENTENCODING",
            "PGOPTIONS",
            "PGAPPNAME",
            "PGSSLMODE",
            "PGSSLCOMPRESSION",
            "PGSSLCERT",
            "PGSSLKEY",
            "PGSSLROOTCERT",
            "PGSSLCRL",
            "PGSSLCRLDIR",
            "PGSSLSNI",
            "PGREQUIREPEER",
            "PGSSLMINPROTOCOLVERSION",
            "PGSSLMAXPROTOCOLVERSION",
            "PGGSSENCMODE",
            "PGKRBSRVNAME",
            "PGGSSLIB",
            "PGSERVICE",
            "PGTARGETSESSIONATTRS",
            "PGLOADBALANCEHOSTS",
        ];
        for (name, var) in KNOWN_PARAMS {
            if let Some(var) = var {
                assert!(libpq_vars.contains(var), "{name} -> {var}");
            }
        }
        for name in [
            "keepalives",
            "tcp_user_timeout",
            "sslpassword",
            "fallback_application_name",
        ] {
            assert!(is_known_param(name));
            assert_eq!(env_var_for(name), None, "{name}");
        }
    }

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
    fn password_never_shows_in_debug_redacted_or_conninfo() {
        let urls = [
            "postgresql://aos:S3cr3t-p%40ss@db.example.com:5432/app?sslmode=require",
            "postgresql://aos:S3cr3t-p@ss@db.example.com/app",
            "postgresql://aos@db.example.com/app?password=S3cr3t-p%40ss",
            "postgresql:///app?user=aos&password=S3cr3t-p%40ss&host=/tmp",
            "postgresql://aos:x@h/app?sslpassword=S3cr3t-p%40ss",
        ];
        for url in urls {
            let info = parse(url);
            let debug = format!("{info:?}");
            let pretty = format!("{info:#?}");
            let redacted = info.redacted();
            let conninfo = info.conninfo_without_password();
            for shown in [&debug, &pretty, &redacted, &conninfo] {
                assert!(!shown.contains(SECRET), "{url}: {shown}");
                assert!(!shown.contains(SECRET_ENC), "{url}: {shown}");
                assert!(!shown.contains("S3cr3t"), "{url}: {shown}");
            }
            assert!(debug.contains(MASK), "{debug}");
            assert!(redacted.contains(MASK), "{redacted}");
            assert!(!conninfo.contains("password"), "{conninfo}");
        }
        let info = parse(urls[0]);
        assert_eq!(info.password(), Some(SECRET));
        assert_eq!(
            env_map(&info).get("PGPASSWORD").map(String::as_str),
            Some(SECRET)
        );
        let debug = format!("{info:?}");
        assert!(
            debug.contains("db.example.com") && debug.contains("\"aos\""),
            "{debug}"
        );
    }

    #[test]
    fn redacted_url_is_a_valid_url_for_the_same_connection() {
        let cases: &[(&str, &str)] = &[
            (
                "postgres://aos:S3cr3t-p%40ss@db.example.com:5432/app?sslmode=require&schema=public",
                "postgresql://aos:********@db.example.com:5432/app?sslmode=require",
            ),
            ("postgresql://%2Fvar%2Frun%2Fpostgresql/db", "postgresql://%2Fvar%2Frun%2Fpostgresql/db"),
            ("postgresql:///db?host=/tmp&port=5433", "postgresql://%2Ftmp:5433/db"),
            ("postgresql://[::1]:5433/db", "postgresql://[::1]:5433/db"),
            (
                "postgres://u:pw@/db?host=/cloudsql/proj:eu:inst",
                "postgresql://u:********@%2Fcloudsql%2Fproj%3Aeu%3Ainst/db",
            ),
            ("postgresql://", "postgresql://"),
            ("postgresql://u@/d%C3%A9j%C3%A0", "postgresql://u@/d%C3%A9j%C3%A0"),
            ("postgresql://h/db?application_name=a%20b&sslrootcert=/x/y", "postgresql://h/db?application_name=a%20b&sslrootcert=/x/y"),
            ("postgresql://:pw@h/db", "postgresql://:********@h/db"),
            ("postgresql://h/db?sslpassword=k", "postgresql://h/db?sslpassword=********"),
        ];
        for &(url, expected) in cases {
            let info = parse(url);
            let redacted = info.redacted();
            assert_eq!(redacted, expected, "{url}");
            let again = parse(&redacted);
            assert_eq!(again.host(), info.host(), "{url}");
            assert_eq!(again.port(), info.port(), "{url}");
            assert_eq!(again.user(), info.user(), "{url}");
            assert_eq!(again.dbname(), info.dbname(), "{url}");
            assert_eq!(again.password(), info.password().map(|_| MASK), "{url}");
            assert!(again.dropped_params().is_empty(), "{url}");
        }
    }

    #[test]
    fn conninfo_without_password_quotes_values() {
        let info = parse(
            "postgresql://o%27brien:S3cr3t-p%40ss@%2Fvar%2Frun%2Fpostgresql:5433/my%5Cdb?sslmode=require&application_name=it%27s&sslpassword=zz",
        );
        assert_eq!(
            info.conninfo_without_password(),
            r"host='/var/run/postgresql' port='5433' user='o\'brien' dbname='my\\db' sslmode='require' application_name='it\'s'"
        );
        assert_eq!(parse("postgresql://").conninfo_without_password(), "");
        assert_eq!(
            parse("postgresql://[::1]/db").conninfo_without_password(),
            "host='::1' dbname='db'"
        );
    }

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

    #[test]
    fn percent_helpers_round_trip() {
        for s in ["p@ss:w/rd%", "déjà vu", "a+b c&d=e", "o'brien\\", "€"] {
            assert_eq!(percent_decode(&percent_encode(s, "")).unwrap(), s);
        }
        assert_eq!(percent_decode("p%40ss%3Aw%2Frd%25").unwrap(), "p@ss:w/rd%");
        assert_eq!(percent_decode("a+b").unwrap(), "a+b");
        assert!(percent_decode("%").is_err());
        assert!(percent_decode("%G0").is_err());
        assert!(percent_decode("%00").is_err());
        assert!(percent_decode("%C3").is_err());
        assert_eq!(quote(r"a'b\c"), r"'a\'b\\c'");
        assert_eq!(percent_encode("/var/run", ""), "%2Fvar%2Frun");
    }

    #[test]
    fn clone_and_equality() {
        let info = parse("postgresql://u:pw@h:1/db?sslmode=require&schema=x");
        let copy = info.clone();
        assert_eq!(copy, info);
        assert_ne!(parse("postgresql://u:pw@h:2/db"), info);
    }
}
