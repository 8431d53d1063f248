//! The password file (`~/.pgpass`, or `PGPASSFILE`), read the way libpq reads it, so aos-backup's
//! own connection finds the same password as the pg_dump it starts. Cron setups often keep the
//! password there rather than in `DATABASE_URL`.

use std::path::PathBuf;

/// What a connection is looked up by.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// A host name, an IP address, or a socket folder (starting with `/`).
    pub host: &'a str,
    pub port: u16,
    pub dbname: &'a str,
    pub user: &'a str,
}

/// The password for `target` from the password file, if the file exists, is private (libpq
/// ignores a file that group or others can read), and has a matching line.
#[must_use]
pub fn find(env: &dyn Fn(&str) -> Option<String>, target: &Target<'_>) -> Option<String> {
    let path = env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() {
        return None;
    }
    // The same rule as every other secret file (fsutil::check_secret_file); but here, as libpq
    // (and so pg_dump) does, a loose file is ignored with a warning rather than refused.
    if let Some(mode) = crate::runtime::fsutil::loose_secret_mode(&meta) {
        tracing::warn!(
            "password file {} has group or world access (mode {mode:04o}); ignoring it (chmod 600 it), as libpq does",
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let found = lookup(&text, target);
    if found.is_some() {
        tracing::debug!("password from {}", path.display());
    }
    found
}

/// The first line of a password file's `text` that matches `target`.
#[must_use]
pub fn lookup(text: &str, target: &Target<'_>) -> Option<String> {
    let port = target.port.to_string();
    // A socket connection matches `localhost` as well as its folder, as in libpq.
    let hosts: &[&str] = if target.host.starts_with('/') {
        &[target.host, "localhost"]
    } else {
        &[target.host]
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .filter_map(split_fields)
        .find(|f| {
            hosts.iter().any(|h| matches(&f[0], h))
                && matches(&f[1], &port)
                && matches(&f[2], target.dbname)
                && matches(&f[3], target.user)
        })
        .map(|f| f[4].clone())
}

fn matches(field: &str, value: &str) -> bool {
    field == "*" || field == value
}

/// Splits `host:port:db:user:password` on unescaped colons, undoing `\:` and `\\`.
fn split_fields(line: &str) -> Option<[String; 5]> {
    let mut fields: Vec<String> = vec![String::new()];
    let mut chars = line.trim_end_matches(['\r', '\n']).chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    fields.last_mut()?.push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    fields.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(host: &'a str, port: u16, dbname: &'a str, user: &'a str) -> Target<'a> {
        Target {
            host,
            port,
            dbname,
            user,
        }
    }

    #[test]
    fn first_matching_line_wins_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    db.example.com:5432:shop:app:first\n\
                    *:5432:*:app:p\\:w\\\\d\n\
                    localhost:*:*:*:local-any\n";
        assert_eq!(
            lookup(text, &t("db.example.com", 5432, "shop", "app")).as_deref(),
            Some("first")
        );
        assert_eq!(
            lookup(text, &t("other", 5432, "x", "app")).as_deref(),
            Some("p:w\\d")
        );
        assert_eq!(
            lookup(text, &t("/var/run/postgresql", 5433, "x", "bob")).as_deref(),
            Some("local-any")
        );
        assert_eq!(lookup(text, &t("other", 5433, "x", "bob")), None);
    }

    #[test]
    fn a_file_others_can_read_is_ignored_like_libpq_does() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "*:*:*:*:secret\n").unwrap();
        let path = file.display().to_string();
        let env = move |k: &str| (k == "PGPASSFILE").then(|| path.clone());
        let target = t("h", 5432, "d", "u");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find(&env, &target), None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(find(&env, &target).as_deref(), Some("secret"));
    }
}
