//! libpq's connection parameters: which ones exist, the environment variable that stands for
//! each, which ones are secret, and the values libpq would refuse.

use std::net::IpAddr;

use super::ConnInfo;

/// Query parameters libpq knows, each with the environment variable libpq reads for it (if any).
///
/// `host`, `port`, `user`, `password` and `dbname` are listed too but are stored in their own
/// fields, not among the kept parameters.
pub(super) const KNOWN_PARAMS: &[(&str, Option<&str>)] = &[
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
/// as everything else, and [`apply_child_env`](super::apply_child_env) gives children exactly that.
pub(super) const OTHER_LIBPQ_VARS: &[&str] = &[
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
pub(super) const SECRET_PARAMS: &[&str] = &["password", "sslpassword"];

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

/// The error for several hosts, ports or host addresses.
pub(super) const MULTI_HOST: &str =
    "several hosts are given; aos-backup connects to exactly one server \
                          (give the primary's host and port only)";

/// The environment variable libpq reads for `param`, if it has one.
pub(super) fn env_var_for(param: &str) -> Option<&'static str> {
    KNOWN_PARAMS
        .iter()
        .find(|(name, _)| *name == param)
        .and_then(|(_, var)| *var)
}

/// True when libpq knows the parameter `param`.
pub(super) fn is_known_param(param: &str) -> bool {
    KNOWN_PARAMS.iter().any(|(name, _)| *name == param)
}

/// A port number 1-65535; empty means "not given".
pub(super) fn parse_port(s: &str) -> Result<Option<u16>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<u16>() {
        Ok(port) if port > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(port)),
        _ => Err("invalid port number (expected a number from 1 to 65535)".to_string()),
    }
}

impl ConnInfo {
    /// Checks the values of the kept parameters that libpq (or our tokio mapping) would reject.
    pub(super) fn validate_params(&self) -> Result<(), String> {
        self.validate_enums()?;
        self.validate_ints()?;
        self.validate_hostaddr()
    }

    /// Each enumerated parameter holds one of the values libpq accepts.
    fn validate_enums(&self) -> Result<(), String> {
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
        Ok(())
    }

    /// Each integer parameter holds an integer.
    fn validate_ints(&self) -> Result<(), String> {
        for name in INT_PARAMS {
            if let Some(value) = self.param(name) {
                if value.trim().parse::<i32>().is_err() {
                    return Err(format!("invalid {name} \"{value}\" (expected an integer)"));
                }
            }
        }
        Ok(())
    }

    /// `hostaddr` is one numeric IP address.
    fn validate_hostaddr(&self) -> Result<(), String> {
        let Some(value) = self.param("hostaddr") else {
            return Ok(());
        };
        if value.contains(',') {
            return Err(MULTI_HOST.to_string());
        }
        if value.parse::<IpAddr>().is_err() {
            return Err(format!(
                "invalid hostaddr \"{value}\" (expected a numeric IPv4 or IPv6 address)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::percent_encode;
    use super::super::test_support::*;
    use super::*;

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
}
