//! Off-site destinations as URLs (`s3://bucket/prefix`, `azblob://container/prefix`,
//! `file:///mnt/nas/backups`) with their options, and opening one as a [`Storage`]: the S3
//! credentials come from a secret file, the `AWS_*` variables, or `AWS_PROFILE` and the shared
//! files; Azure's from a secret file or the `AZURE_STORAGE_*` variables. None is ever shown.

use super::object::{Bridge, ObjectStore};
use super::{LocalFolder, Storage};
use crate::error::Error;
use crate::runtime::fsutil;
use anyhow::Result;
use opendal::layers::{RetryLayer, TimeoutLayer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One off-site destination and its options, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Destination {
    /// `s3://bucket/prefix` or `file:///path`.
    pub url: String,
    /// The S3 endpoint (`http://127.0.0.1:9000`); `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`,
    /// else AWS's own, when unset.
    pub endpoint: Option<String>,
    /// The S3 region; `AWS_REGION`, else `us-east-1`, when unset.
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`); by default on with an endpoint, off for AWS.
    pub path_style: Option<bool>,
    /// The storage class of new objects (`STANDARD_IA`, `GLACIER_IR`...).
    pub storage_class: Option<String>,
    /// A file with `aws_access_key_id` and `aws_secret_access_key` lines (the shared
    /// credentials file's form), readable by its owner only.
    pub credentials_file: Option<PathBuf>,
}

/// Where a destination's URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A bucket and a prefix inside it (without slashes at either end; empty for the bucket's top).
    S3 { bucket: String, prefix: String },
    /// An Azure Blob Storage container and a prefix inside it (the `azblob` feature).
    Azblob { container: String, prefix: String },
    /// A folder on a mounted file system.
    Folder(PathBuf),
}

/// The credentials found for a destination: for S3 the access key, secret and session token;
/// for Azure the account name, account key and SAS token, in the same places.
#[derive(Clone, Default)]
pub struct Credentials {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

impl Credentials {
    /// The values to mask wherever text is shown.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        [
            &self.access_key_id,
            &self.secret_access_key,
            &self.session_token,
        ]
        .into_iter()
        .filter_map(|v| v.as_deref())
    }
}

impl Destination {
    /// A destination with default options.
    #[must_use]
    pub fn from_url(url: &str) -> Destination {
        Destination {
            url: url.trim().to_string(),
            ..Destination::default()
        }
    }

    /// The same destination, one folder further down (a database's subfolder).
    #[must_use]
    pub fn child(&self, folder: &str) -> Destination {
        Destination {
            url: format!("{}/{folder}", self.url.trim_end_matches('/')),
            ..self.clone()
        }
    }

    /// The URL as messages show it: anything before an `@` in its authority (credentials
    /// someone put there by mistake) is masked.
    #[must_use]
    pub fn shown(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => format!("{scheme}://***{}", &rest[at..]),
            None => self.url.clone(),
        }
    }

    /// Whether this is a `file://` destination that is the backup folder `dir`, lies inside
    /// it, or holds it (links followed): copying there would copy the folder onto itself,
    /// and `--remote-only` or a remote prune would delete the only copy.
    #[must_use]
    pub fn overlaps_folder(&self, dir: &Path) -> bool {
        let Ok(Place::Folder(dest)) = self.place() else {
            return false;
        };
        let (dest, dir) = (resolved(&dest), resolved(dir));
        dest.starts_with(&dir) || dir.starts_with(&dest)
    }

    /// Where the URL points.
    ///
    /// # Errors
    /// A URL that is not `s3://bucket[/prefix]` or `file:///absolute/path`.
    pub fn place(&self) -> Result<Place> {
        let bad = |why: &str| -> anyhow::Error {
            Error::usage(format!(
                "invalid remote destination {:?}: {why}",
                self.shown()
            ))
            .hint("use s3://bucket/prefix, azblob://container/prefix or file:///absolute/path")
            .into()
        };
        if self.url.contains(['?', '#']) || self.url.split('/').any(|part| part == "..") {
            return Err(bad(
                "a query, a fragment or a `..` is not allowed in a destination",
            ));
        }
        if let Some(rest) = self.url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() || bucket.contains(['@', ':', '?', '#']) {
                return Err(bad("no bucket name (credentials never go into the URL)"));
            }
            return Ok(Place::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some(rest) = self.url.strip_prefix("azblob://") {
            let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if container.is_empty() || container.contains(['@', ':', '?', '#']) {
                return Err(bad("no container name (credentials never go into the URL)"));
            }
            return Ok(Place::Azblob {
                container: container.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some(path) = self.url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("a file:// URL needs an absolute path"));
            }
            return Ok(Place::Folder(PathBuf::from(path)));
        }
        Err(bad("unknown scheme"))
    }

    /// The S3 credentials: the credentials file if set, else `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` looked up with `var`; empty when neither (the profile is then
    /// read from the shared files).
    ///
    /// # Errors
    /// An unsafe or unreadable credentials file, or one without both keys.
    pub fn credentials(&self, var: &dyn Fn(&str) -> Option<String>) -> Result<Credentials> {
        let azure = self.url.starts_with("azblob://");
        if let Some(path) = &self.credentials_file {
            return read_credentials_file(path, azure);
        }
        if azure {
            return Ok(Credentials {
                access_key_id: var("AZURE_STORAGE_ACCOUNT").filter(|v| !v.is_empty()),
                secret_access_key: var("AZURE_STORAGE_KEY").filter(|v| !v.is_empty()),
                session_token: var("AZURE_STORAGE_SAS_TOKEN").filter(|v| !v.is_empty()),
            });
        }
        Ok(Credentials {
            access_key_id: var("AWS_ACCESS_KEY_ID").filter(|v| !v.is_empty()),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY").filter(|v| !v.is_empty()),
            session_token: var("AWS_SESSION_TOKEN").filter(|v| !v.is_empty()),
        })
    }

    /// Opens the destination. `timeout` bounds every request and every transfer step (a
    /// transfer that moves no bytes for that long fails); transient errors are retried with
    /// exponential backoff.
    ///
    /// # Errors
    /// A bad URL or unusable options; nothing is contacted yet.
    pub fn open(
        &self,
        credentials: &Credentials,
        var: &dyn Fn(&str) -> Option<String>,
        timeout: Duration,
    ) -> Result<Box<dyn Storage>> {
        match self.place()? {
            Place::Folder(dir) => Ok(Box::new(LocalFolder::new(dir))),
            Place::S3 { bucket, prefix } => {
                let op = self.s3_operator(&bucket, &prefix, credentials, var)?;
                Ok(Box::new(self.object_store(op, timeout, true)?))
            }
            Place::Azblob { container, prefix } => {
                let op = self.azblob_operator(&container, &prefix, credentials, var)?;
                // Azure's ETags are not MD5s: each copy is read back.
                Ok(Box::new(self.object_store(op, timeout, false)?))
            }
        }
    }

    /// `op` with the timeout on every step and the retries with backoff.
    fn object_store(
        &self,
        op: opendal::Operator,
        timeout: Duration,
        md5_etags: bool,
    ) -> Result<ObjectStore> {
        let op = op
            .layer(
                TimeoutLayer::new()
                    .with_timeout(timeout)
                    .with_io_timeout(timeout),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(4)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_jitter(),
            );
        let bridge = Arc::new(Bridge::new()?);
        Ok(ObjectStore::new(op, self.url.clone(), bridge).with_md5_etags(md5_etags))
    }

    #[cfg(feature = "azblob")]
    fn azblob_operator(
        &self,
        container: &str,
        prefix: &str,
        creds: &Credentials,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<opendal::Operator> {
        let Some(account) = &creds.access_key_id else {
            return Err(Error::usage(format!(
                "remote destination {}: no Azure storage account",
                self.shown()
            ))
            .hint("set AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY (or AZURE_STORAGE_SAS_TOKEN), or a credentials_file with azure_storage_account and azure_storage_key")
            .into());
        };
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| var("AZURE_STORAGE_ENDPOINT"))
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
        let mut b = opendal::services::Azblob::default()
            .container(container)
            .root(&format!("/{prefix}"))
            .endpoint(&endpoint)
            .account_name(account);
        if let Some(key) = &creds.secret_access_key {
            b = b.account_key(key);
        }
        if let Some(sas) = &creds.session_token {
            b = b.sas_token(sas);
        }
        self.finish_operator(b)
    }

    #[cfg(not(feature = "azblob"))]
    fn azblob_operator(
        &self,
        _container: &str,
        _prefix: &str,
        _creds: &Credentials,
        _var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<opendal::Operator> {
        Err(Error::usage(format!(
            "remote destination {}: this aos-backup was built without Azure support",
            self.shown()
        ))
        .hint("build it with the azblob feature (on by default): cargo install --features azblob")
        .into())
    }

    /// The operator of the service `b` configures, or a usage error naming the destination.
    fn finish_operator(&self, b: impl opendal::Builder) -> Result<opendal::Operator> {
        Ok(opendal::Operator::new(b)
            .map_err(|e| {
                Error::usage(format!(
                    "remote destination {}: {}",
                    self.url,
                    super::object::io_error(e)
                ))
            })?
            .finish())
    }

    fn s3_operator(
        &self,
        bucket: &str,
        prefix: &str,
        creds: &Credentials,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<opendal::Operator> {
        let region = self
            .region
            .clone()
            .or_else(|| var("AWS_REGION"))
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_string());
        let mut b = opendal::services::S3::default()
            .bucket(bucket)
            .root(&format!("/{prefix}"))
            .region(&region)
            .disable_ec2_metadata();
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| var("AWS_ENDPOINT_URL_S3"))
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .filter(|e| !e.is_empty());
        if let Some(endpoint) = &endpoint {
            b = b.endpoint(endpoint);
        }
        if !self.path_style.unwrap_or(endpoint.is_some()) {
            b = b.enable_virtual_host_style();
        }
        if let Some(class) = &self.storage_class {
            b = b.default_storage_class(class);
        }
        if let (Some(id), Some(key)) = (&creds.access_key_id, &creds.secret_access_key) {
            b = b.access_key_id(id).secret_access_key(key);
            if let Some(token) = &creds.session_token {
                b = b.session_token(token);
            }
        }
        self.finish_operator(b)
    }
}

/// Reads a credentials file: `aws_access_key_id = ...`, `aws_secret_access_key = ...`
/// (optionally `aws_session_token`), or for Azure `azure_storage_account = ...`,
/// `azure_storage_key = ...` (or `azure_storage_sas_token`); `#` comments and `[profile]`
/// headers ignored.
fn read_credentials_file(path: &std::path::Path, azure: bool) -> Result<Credentials> {
    fsutil::check_secret_file(path, "credentials file")?;
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(format!(
            "cannot read the credentials file {}: {e}",
            path.display()
        ))
    })?;
    let mut creds = Credentials::default();
    for line in text.lines().map(str::trim) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = Some(value.trim().to_string()).filter(|v| !v.is_empty());
        match key.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" if !azure => creds.access_key_id = value,
            "aws_secret_access_key" if !azure => creds.secret_access_key = value,
            "aws_session_token" if !azure => creds.session_token = value,
            "azure_storage_account" if azure => creds.access_key_id = value,
            "azure_storage_key" if azure => creds.secret_access_key = value,
            "azure_storage_sas_token" if azure => creds.session_token = value,
            _ => {}
        }
    }
    if azure
        && (creds.access_key_id.is_none()
            || (creds.secret_access_key.is_none() && creds.session_token.is_none()))
    {
        return Err(Error::usage(format!(
            "the credentials file {} lacks azure_storage_account, or both azure_storage_key and azure_storage_sas_token",
            path.display()
        ))
        .into());
    }
    if !azure && (creds.access_key_id.is_none() || creds.secret_access_key.is_none()) {
        return Err(Error::usage(format!(
            "the S3 credentials file {} lacks aws_access_key_id or aws_secret_access_key",
            path.display()
        ))
        .into());
    }
    Ok(creds)
}

/// Splits `BACKUP_REMOTE`'s text (URLs separated by spaces or commas) into destinations.
#[must_use]
pub fn parse_list(text: &str) -> Vec<Destination> {
    text.split([' ', ',', '\t', '\n'])
        .filter(|s| !s.trim().is_empty())
        .map(Destination::from_url)
        .collect()
}

/// `path` with its links resolved, as far as it exists (the rest appended as given).
fn resolved(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (
            existing.file_name().map(ToOwned::to_owned),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_prefix_or_a_folder() {
        let d = Destination::from_url("s3://bkt/a/b/");
        assert_eq!(
            d.place().unwrap(),
            Place::S3 {
                bucket: "bkt".into(),
                prefix: "a/b".into()
            }
        );
        let d = Destination::from_url("azblob://backups/prod/");
        assert_eq!(
            d.place().unwrap(),
            Place::Azblob {
                container: "backups".into(),
                prefix: "prod".into()
            }
        );
        let d = Destination::from_url("file:///mnt/nas");
        assert_eq!(d.place().unwrap(), Place::Folder("/mnt/nas".into()));
        for bad in [
            "s3://",
            "s3://key:secret@bkt/x",
            "azblob://",
            "azblob://acct:key@c/x",
            "file://rel",
            "ftp://x",
        ] {
            assert!(Destination::from_url(bad).place().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_list_splits_on_spaces_and_commas() {
        let list = parse_list("s3://a/x, file:///b  s3://c");
        let urls: Vec<&str> = list.iter().map(|d| d.url.as_str()).collect();
        assert_eq!(urls, ["s3://a/x", "file:///b", "s3://c"]);
    }
}
