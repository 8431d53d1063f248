//! The config file's `[[databases]]` list: several databases, each backed up into its own
//! subfolder, with its own retention. A database's URL comes from a variable or a private file;
//! a password is never written in the config file itself.

use super::Env;
use crate::catalog::retention::Policy;
use crate::error::Error;
use anyhow::Result;
use serde::Deserialize;
use std::path::PathBuf;

/// One `[[databases]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDatabase {
    name: String,
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<PathBuf>,
    retention: Option<Policy>,
    /// Reserved for per-database off-site destinations; refused until they exist.
    destinations: Option<toml::Value>,
}

/// One database of the config file's list, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseEntry {
    /// Its name in the summary, and (escaped by
    /// [`database_folder`](crate::archive::naming::database_folder)) its subfolder's.
    pub name: String,
    /// Where its URL comes from.
    pub url: UrlSource,
    /// Its own retention policy, which replaces the global one for it; `None`: the global one.
    pub retention: Option<Policy>,
}

/// Where a configured database's URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// Written in the config file (`url`), without a password.
    Inline(String),
    /// The variable named by `url_env` (environment or `./.env`).
    Env(String),
    /// The first line of the private file named by `url_file`.
    File(PathBuf),
}

impl DatabaseEntry {
    /// This database's URL, read now: the variable must be set, the file private and readable.
    pub fn url(&self, env: &Env) -> Result<String> {
        match &self.url {
            UrlSource::Inline(u) => Ok(u.clone()),
            UrlSource::Env(var) => env.var(var).ok_or_else(|| {
                Error::usage(format!(
                    "the variable {var} (url_env of database {:?} in the config file) is not set",
                    self.name
                ))
                .hint(format!(
                    "export {var}=postgresql://..., or put it in ./.env"
                ))
                .into()
            }),
            UrlSource::File(path) => self.read_url_file(path),
        }
    }

    /// Says where the URL comes from, for `config` and messages (never the URL itself).
    #[must_use]
    pub fn url_origin(&self) -> String {
        match &self.url {
            UrlSource::Inline(_) => "config file".to_string(),
            UrlSource::Env(var) => format!("${var}"),
            UrlSource::File(p) => format!("file {}", p.display()),
        }
    }

    fn read_url_file(&self, path: &std::path::Path) -> Result<String> {
        let what = format!("URL file of database {:?}", self.name);
        crate::runtime::fsutil::check_secret_file(path, &what)?;
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::usage(format!("cannot read the {what} {}: {e}", path.display()))
                .hint("check url_file in the config file's [[databases]] list")
        })?;
        match text.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(url) => Ok(url.to_string()),
            None => Err(
                Error::usage(format!("the {what} {} is empty", path.display()))
                    .hint("write the database's postgresql:// URL on its first line")
                    .into(),
            ),
        }
    }
}

/// Checks the `[[databases]]` tables: names that make folders, each once; one URL source each;
/// no password in the file; nothing reserved.
pub(super) fn entries(tables: &[FileDatabase]) -> Result<Vec<DatabaseEntry>> {
    let mut out: Vec<DatabaseEntry> = Vec::with_capacity(tables.len());
    for t in tables {
        let entry = entry(t)?;
        if out.iter().any(|e| e.name == entry.name) {
            return Err(Error::usage(format!(
                "database {:?} is listed twice in the config file's [[databases]]",
                entry.name
            ))
            .hint("give each [[databases]] entry its own name: it is also its folder")
            .into());
        }
        out.push(entry);
    }
    Ok(out)
}

fn entry(t: &FileDatabase) -> Result<DatabaseEntry> {
    let name = t.name.clone();
    let bad = |message: String, hint: &str| Error::usage(message).hint(hint.to_string());
    if crate::archive::naming::database_folder(&name).is_none() {
        return Err(bad(
            format!("invalid database name {name:?} in the config file's [[databases]]"),
            "give a name of 1 to 63 bytes (it names the database's backup subfolder)",
        )
        .into());
    }
    if t.destinations.is_some() {
        return Err(bad(
            format!("database {name:?}: `destinations` is reserved for per-database off-site copies, which this version does not make"),
            "remove `destinations` from the [[databases]] entry",
        )
        .into());
    }
    let url = url_source(&name, t)?;
    Ok(DatabaseEntry {
        name,
        url,
        retention: t.retention.clone(),
    })
}

/// Exactly one of `url`, `url_env` and `url_file`; an inline URL without a password.
fn url_source(name: &str, t: &FileDatabase) -> Result<UrlSource> {
    let source = match (&t.url, &t.url_env, &t.url_file) {
        (Some(u), None, None) => UrlSource::Inline(u.clone()),
        (None, Some(v), None) => UrlSource::Env(v.clone()),
        (None, None, Some(p)) => UrlSource::File(p.clone()),
        _ => {
            return Err(Error::usage(format!(
                "database {name:?} in the config file needs exactly one of url_env, url_file and url"
            ))
            .hint("url_env = \"SHOP_DATABASE_URL\" names a variable holding the URL; url_file = \"/etc/aos/shop.url\" a private file")
            .into())
        }
    };
    match &source {
        UrlSource::Inline(u) if crate::pg::conninfo::holds_password(u) => {
            Err(Error::usage(format!(
                "database {name:?}: the url in the config file holds a password; a password is never written in the config file"
            ))
            .hint("put the URL in a variable named by url_env, or in a private file (chmod 600) named by url_file; or leave the password out and let ~/.pgpass supply it")
            .into())
        }
        UrlSource::Env(v) if !is_variable_name(v) => Err(Error::usage(format!(
            "database {name:?}: url_env {v:?} is not a variable name"
        ))
        .hint("url_env names the variable that holds the URL, e.g. url_env = \"SHOP_DATABASE_URL\"")
        .into()),
        _ => Ok(source),
    }
}

fn is_variable_name(v: &str) -> bool {
    let mut chars = v.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<DatabaseEntry>> {
        #[derive(Deserialize)]
        struct File {
            databases: Vec<FileDatabase>,
        }
        let f: File = toml::from_str(text)?;
        entries(&f.databases)
    }

    fn usage(text: &str) -> String {
        let err = parse(text).unwrap_err();
        let e = crate::error::find(&err).expect("typed");
        assert_eq!(e.kind, crate::error::Kind::Usage, "{text}");
        e.message.clone()
    }

    #[test]
    fn each_entry_gets_one_url_source_and_its_retention() {
        let list = parse(
            "[[databases]]\nname = \"shop\"\nurl_env = \"SHOP_URL\"\nretention = { keep_daily = 7 }\n\
             [[databases]]\nname = \"blog\"\nurl_file = \"/etc/aos/blog.url\"\n\
             [[databases]]\nname = \"wiki\"\nurl = \"postgresql://app@db/wiki\"\n",
        )
        .unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].url, UrlSource::Env("SHOP_URL".into()));
        assert_eq!(list[0].retention.as_ref().unwrap().keep_daily, Some(7));
        assert_eq!(list[1].url, UrlSource::File("/etc/aos/blog.url".into()));
        assert!(list[1].retention.is_none());
        assert_eq!(list[2].url_origin(), "config file");
        let env = Env::from_pairs(&[("SHOP_URL", "postgresql://x@h/shop")]);
        assert_eq!(list[0].url(&env).unwrap(), "postgresql://x@h/shop");
        assert!(usage_of(list[0].url(&Env::from_pairs(&[]))).contains("SHOP_URL"));
    }

    fn usage_of(r: Result<String>) -> String {
        let err = r.unwrap_err();
        let e = crate::error::find(&err).expect("typed");
        assert_eq!(e.kind, crate::error::Kind::Usage);
        e.message.clone()
    }

    #[test]
    fn bad_entries_are_usage_errors_that_never_show_a_password() {
        let m = usage("[[databases]]\nname = \"a\"\nurl = \"postgresql://u:hunter22@h/a\"\n");
        assert!(m.contains("password") && !m.contains("hunter22"), "{m}");
        assert!(usage("[[databases]]\nname = \"a\"\n").contains("exactly one"));
        assert!(
            usage("[[databases]]\nname = \"a\"\nurl_env = \"A\"\nurl_file = \"/f\"\n")
                .contains("exactly one")
        );
        assert!(usage("[[databases]]\nname = \"\"\nurl_env = \"A\"\n").contains("invalid"));
        assert!(usage("[[databases]]\nname = \"a\"\nurl_env = \"$A\"\n").contains("variable"));
        assert!(usage(
            "[[databases]]\nname = \"a\"\nurl_env = \"A\"\n[[databases]]\nname = \"a\"\nurl_env = \"B\"\n"
        )
        .contains("twice"));
        assert!(usage(
            "[[databases]]\nname = \"a\"\nurl_env = \"A\"\ndestinations = [\"s3://b\"]\n"
        )
        .contains("reserved"));
        assert!(parse("[[databases]]\nname = \"a\"\nurl_env = \"A\"\npassword = \"x\"\n").is_err());
    }

    #[test]
    fn a_url_file_must_be_private_and_not_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.url");
        std::fs::write(&f, "\n  postgresql://u:pw@h/a  \n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let entry = DatabaseEntry {
            name: "a".into(),
            url: UrlSource::File(f.clone()),
            retention: None,
        };
        let env = Env::from_pairs(&[]);
        assert_eq!(entry.url(&env).unwrap(), "postgresql://u:pw@h/a");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(usage_of(entry.url(&env)).contains("0644"));
        std::fs::write(&f, "\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(usage_of(entry.url(&env)).contains("empty"));
    }
}
