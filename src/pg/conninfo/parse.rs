//! Reading a `postgresql://` URL into a [`ConnInfo`] the way libpq reads a connection URI (with
//! the differences the folder's documentation lists), and the percent-encoding it uses.

use super::params::{is_known_param, parse_port, MULTI_HOST};
use super::redact::redact_raw;
use super::{ConnInfo, ConnInfoError};

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
        let rest = strip_scheme(input)?;
        refuse_unencoded_password(rest)?;
        let url = Input(input);
        let (authority, after) = rest.split_at(authority_end(rest));
        let (userinfo, hostport) = split_userinfo(authority);
        let mut info = ConnInfo::empty();
        if let Some(userinfo) = userinfo {
            info.read_userinfo(userinfo, &url)?;
        }
        info.read_hostport(hostport, &url)?;
        let (path, query) = split_query(after);
        if let Some(db) = path.strip_prefix('/') {
            info.dbname = non_empty(url.decode(db, "database name")?);
        }
        info.read_query(query.unwrap_or(""), &url)?;
        info.validate_params().map_err(|e| url.fail(&e))?;
        Ok(info)
    }

    /// User name and password (`user:password`, each part optional), percent-decoded.
    fn read_userinfo(&mut self, userinfo: &str, url: &Input<'_>) -> Result<(), ConnInfoError> {
        let (user, password) = match userinfo.find(':') {
            Some(colon) => (&userinfo[..colon], Some(&userinfo[colon + 1..])),
            None => (userinfo, None),
        };
        self.user = non_empty(url.decode(user, "user name")?);
        if let Some(password) = password {
            self.password = non_empty(url.decode(password, "password")?);
        }
        Ok(())
    }

    /// Host and port (`host:port`, `[v6]:port`, each part optional), percent-decoded.
    fn read_hostport(&mut self, hostport: &str, url: &Input<'_>) -> Result<(), ConnInfoError> {
        if hostport.contains(',') {
            return Err(url.fail(MULTI_HOST));
        }
        let (host, port) = split_hostport(hostport, url)?;
        self.host = non_empty(url.decode(host, "host")?);
        if let Some(port) = port {
            self.port = parse_port(&url.decode(port, "port")?).map_err(|e| {
                if port.contains(':') {
                    url.fail(&format!(
                        "{e} (write IPv6 addresses in brackets: [::1]:5432)"
                    ))
                } else {
                    url.fail(&e)
                }
            })?;
        }
        Ok(())
    }

    /// The `name=value` pairs after `?`, in order: a later one overrides an earlier one.
    fn read_query(&mut self, query: &str, url: &Input<'_>) -> Result<(), ConnInfoError> {
        for piece in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = decode_pair(piece, url)?;
            self.apply_query_param(key, value, url)?;
        }
        Ok(())
    }

    /// One decoded query parameter: `host`, `port`, `user`, `password` and `dbname` override the
    /// URL's parts (empty unsets them), other libpq parameters are kept, the rest dropped.
    fn apply_query_param(
        &mut self,
        key: String,
        value: String,
        url: &Input<'_>,
    ) -> Result<(), ConnInfoError> {
        match key.as_str() {
            "host" => {
                if value.contains(',') {
                    return Err(url.fail(MULTI_HOST));
                }
                self.host = non_empty(value);
            }
            "port" => {
                if value.contains(',') {
                    return Err(url.fail(MULTI_HOST));
                }
                self.port = parse_port(&value).map_err(|e| url.fail(&e))?;
            }
            "user" => self.user = non_empty(value),
            "password" => self.password = non_empty(value),
            "dbname" => self.dbname = non_empty(value),
            k if is_known_param(k) => self.keep_param(key, value),
            _ => self.drop_param(key),
        }
        Ok(())
    }

    /// Keeps a libpq parameter in place of any earlier value; an empty value unsets it.
    fn keep_param(&mut self, key: String, value: String) {
        self.params.retain(|(name, _)| *name != key);
        if !value.is_empty() {
            self.params.push((key, value));
        }
    }

    /// Notes a parameter libpq does not know, once.
    fn drop_param(&mut self, key: String) {
        tracing::debug!(
            param = %key,
            "DATABASE_URL: dropping query parameter unknown to libpq"
        );
        if !self.dropped.contains(&key) {
            self.dropped.push(key);
        }
    }
}

/// The URL being parsed, for error messages: always shown redacted.
struct Input<'a>(&'a str);

impl Input<'_> {
    /// An error saying what is wrong, with the URL (password masked).
    fn fail(&self, what: &str) -> ConnInfoError {
        ConnInfoError(format!(
            "invalid DATABASE_URL {}: {what}",
            redact_raw(self.0)
        ))
    }

    /// Percent-decodes the part `what` of the URL.
    fn decode(&self, s: &str, what: &str) -> Result<String, ConnInfoError> {
        percent_decode(s).map_err(|e| self.fail(&format!("the {what} {e}")))
    }
}

/// What follows `postgresql://` or `postgres://` (any case).
fn strip_scheme(input: &str) -> Result<&str, ConnInfoError> {
    let Some(sep) = input.find("://") else {
        return Err(ConnInfoError(
            "DATABASE_URL is not a URL: it must start with postgresql:// or postgres://"
                .to_string(),
        ));
    };
    let scheme = &input[..sep];
    if scheme.eq_ignore_ascii_case("postgresql") || scheme.eq_ignore_ascii_case("postgres") {
        Ok(&input[sep + 3..])
    } else {
        Err(scheme_error(scheme))
    }
}

/// The error for another scheme, named only when it looks like one (it might be a password).
fn scheme_error(scheme: &str) -> ConnInfoError {
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
    ConnInfoError(msg)
}

/// Refuses a URL with an `@` in its path (see [`unencoded_password`]). The parts that may be the
/// password are registered with the redactor before any message, so that whatever echoes the URL
/// later masks them.
fn refuse_unencoded_password(rest: &str) -> Result<(), ConnInfoError> {
    let Some(parts) = unencoded_password(rest) else {
        return Ok(());
    };
    for part in &parts {
        crate::runtime::redact::register(part);
    }
    Err(ConnInfoError(UNENCODED_PASSWORD.to_string()))
}

/// Where the authority (user info, host and port) of `rest`, a URL after `://`, ends.
pub(super) fn authority_end(rest: &str) -> usize {
    rest.find(['/', '?']).unwrap_or(rest.len())
}

/// User info and host part of an authority: the user info ends at the *last* `@`.
fn split_userinfo(authority: &str) -> (Option<&str>, &str) {
    match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    }
}

/// Host and port, still encoded: `[v6]:port`, `host:port`, or either part alone.
fn split_hostport<'a>(
    hostport: &'a str,
    url: &Input<'_>,
) -> Result<(&'a str, Option<&'a str>), ConnInfoError> {
    let Some(bracketed) = hostport.strip_prefix('[') else {
        return Ok(match hostport.find(':') {
            Some(colon) => (&hostport[..colon], Some(&hostport[colon + 1..])),
            None => (hostport, None),
        });
    };
    let close = bracketed
        .find(']')
        .ok_or_else(|| url.fail("missing \"]\" after the IPv6 address"))?;
    if close == 0 {
        return Err(url.fail("empty IPv6 address \"[]\""));
    }
    let tail = &bracketed[close + 1..];
    let port = if tail.is_empty() {
        None
    } else if let Some(port) = tail.strip_prefix(':') {
        Some(port)
    } else {
        return Err(url.fail("unexpected characters after \"]\" (expected \":port\")"));
    };
    Ok((&bracketed[..close], port))
}

/// Path and query (without its `?`) of what follows the authority.
fn split_query(after: &str) -> (&str, Option<&str>) {
    match after.find('?') {
        Some(q) => (&after[..q], Some(&after[q + 1..])),
        None => (after, None),
    }
}

/// One `name=value` query piece, decoded; `ssl=true` (JDBC style) becomes `sslmode=require`, as
/// in libpq.
fn decode_pair(piece: &str, url: &Input<'_>) -> Result<(String, String), ConnInfoError> {
    let (raw_key, raw_value) = piece.split_once('=').ok_or_else(|| {
        url.fail("a query parameter has no \"=\" (expected name=value pairs joined by &)")
    })?;
    let key = url.decode(raw_key, "name of a query parameter")?;
    let value = url.decode(raw_value, &format!("value of query parameter \"{key}\""))?;
    if key == "ssl" && value == "true" {
        tracing::debug!("DATABASE_URL: reading ssl=true as sslmode=require, like libpq");
        return Ok(("sslmode".to_string(), "require".to_string()));
    }
    Ok((key, value))
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

/// The error for an `@` in the path; the URL is not shown at all.
const UNENCODED_PASSWORD: &str = "DATABASE_URL has an \"@\" after the host part, where the \
     database name goes: it looks like a password holding an unencoded \"/\" (the URL is not \
     shown, to keep that password out of messages)";

/// `rest` (a URL after `://`) with an `@` in its path: a password holding a raw `/`
/// (`user:pa/ss@host/db`) ends the host part early, and its tail plus the real host would become
/// the database name. Returns the parts that may be that password (the path before its last `@`,
/// and that joined to what follows the user name's `:`), to be masked.
fn unencoded_password(rest: &str) -> Option<Vec<String>> {
    let end = authority_end(rest);
    let after = &rest[end..];
    let path = after.strip_prefix('/')?;
    let path = &path[..path.find('?').unwrap_or(path.len())];
    let at = path.rfind('@')?;
    let tail = &path[..at];
    let mut parts = vec![tail.to_string()];
    if let Some(colon) = rest[..end].find(':') {
        parts.push(format!("{}/{tail}", &rest[colon + 1..end]));
    }
    for part in parts.clone() {
        if let Ok(decoded) = percent_decode(&part) {
            parts.push(decoded);
        }
    }
    Some(parts)
}

/// `None` for an empty string.
pub(super) fn non_empty(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

/// libpq's percent-decoding: `%XX` only (`+` stays `+`), `%00` refused, result must be UTF-8.
/// The error never contains the input.
pub(super) fn percent_decode(s: &str) -> Result<String, &'static str> {
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
pub(super) fn percent_encode(s: &str, keep: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::super::redact::{quote, MASK};
    use super::super::test_support::*;
    use super::*;

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
}
