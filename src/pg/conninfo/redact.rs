//! Keeping the password out of everything people read: `Debug`, the redacted URL, the conninfo
//! string for argv, and the raw URL quoted in parse errors.

use std::fmt;
use std::ops::Range;

use super::params::{parse_port, SECRET_PARAMS};
use super::parse::{authority_end, percent_decode, percent_encode};
use super::ConnInfo;

/// What replaces a password (or `sslpassword`) in everything meant to be read by people.
pub(super) const MASK: &str = "********";

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
    /// A `postgresql://` URL for messages and logs: the password (and any `sslpassword`) replaced
    /// by `********`, dropped parameters left out. Parsing it gives back this connection with the
    /// password `********`.
    #[must_use]
    pub fn redacted(&self) -> String {
        let mut out = String::from("postgresql://");
        self.push_userinfo(&mut out);
        self.push_host_port(&mut out);
        if let Some(db) = &self.dbname {
            out.push('/');
            out.push_str(&percent_encode(db, ""));
        }
        self.push_query(&mut out);
        out
    }

    /// `user:********@`, or as much of it as there is.
    fn push_userinfo(&self, out: &mut String) {
        if self.user.is_none() && self.password.is_none() {
            return;
        }
        if let Some(user) = &self.user {
            out.push_str(&percent_encode(user, ""));
        }
        if self.password.is_some() {
            out.push(':');
            out.push_str(MASK);
        }
        out.push('@');
    }

    /// The host (an IPv6 address in brackets, a socket folder encoded) and `:port`.
    fn push_host_port(&self, out: &mut String) {
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
    }

    /// The kept parameters as `?k=v&...`, secret values masked.
    fn push_query(&self, out: &mut String) {
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
}

/// Quotes a libpq conninfo value: `'...'` with `\` and `'` escaped by a backslash.
pub(super) fn quote(value: &str) -> String {
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
pub(super) fn redact_raw(input: &str) -> String {
    let Some(sep) = input.find("://") else {
        return "(not shown)".to_string();
    };
    let start = sep + 3;
    let rest = &input[start..];
    let mut masked = vec![false; rest.len()];
    mask_userinfo_password(rest, &mut masked);
    mask_query_secrets(rest, &mut masked);
    format!("{}{}", &input[..start], apply_mask(rest, &masked))
}

/// Masks the user-info password: from the first `:` to the last `@`.
fn mask_userinfo_password(rest: &str, masked: &mut [bool]) {
    match rest.rfind('@') {
        Some(at) => {
            if let Some(colon) = rest[..at].find(':') {
                mask(masked, colon + 1..at);
            }
        }
        None => mask_invalid_port(rest, masked),
    }
}

/// Without an `@`, in `postgresql://user:password` the password sits where the port goes: masks
/// anything there that is not a valid port.
fn mask_invalid_port(rest: &str, masked: &mut [bool]) {
    let authority_end = authority_end(rest);
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
            mask(masked, start..authority_end);
        }
    }
}

/// Query-style segments: masks the value of any key that looks like a password, and any segment
/// without `=` (it may be the tail of a password holding a raw `&`).
fn mask_query_secrets(rest: &str, masked: &mut [bool]) {
    let mut seg_start = 0;
    for (i, c) in rest
        .char_indices()
        .chain(std::iter::once((rest.len(), '&')))
    {
        if c != '?' && c != '&' {
            continue;
        }
        if seg_start > 0 {
            mask_segment(rest, seg_start..i, masked);
        }
        seg_start = i + 1;
    }
}

/// One segment after a `?` or `&`: a password value, or a piece without `=` after the `?`.
fn mask_segment(rest: &str, segment: Range<usize>, masked: &mut [bool]) {
    match rest[segment.clone()].find('=') {
        Some(eq) => {
            let key = &rest[segment.start..segment.start + eq];
            let key = percent_decode(key).unwrap_or_else(|_| key.to_string());
            if key.to_ascii_lowercase().contains("password") {
                mask(masked, segment.start + eq + 1..segment.end);
            }
        }
        None if rest[..segment.start].contains('?') => mask(masked, segment),
        None => {}
    }
}

fn mask(masked: &mut [bool], range: Range<usize>) {
    masked[range].iter_mut().for_each(|m| *m = true);
}

/// `rest` with each run of masked characters replaced by one [`MASK`].
fn apply_mask(rest: &str, masked: &[bool]) -> String {
    let mut out = String::new();
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
    use super::super::test_support::*;
    use super::*;

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
}
