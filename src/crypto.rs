//! Encryption at rest with age: public-key recipients for backups (the backup host holds no
//! secret), an identity file or a passphrase file to read them. Keys never come from argv.

use crate::config::Recipients;
use crate::error::{Error, Kind};
use age::secrecy::SecretString;
use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// How new backups are encrypted.
pub enum Sealer {
    Recipients(Vec<Box<dyn age::Recipient + Send>>),
    Passphrase(SecretString),
}

impl Sealer {
    /// An age encryptor ready to wrap the output.
    pub fn encryptor(&self) -> Result<age::Encryptor> {
        match self {
            Sealer::Recipients(rs) => age::Encryptor::with_recipients(
                rs.iter().map(|r| r.as_ref() as &dyn age::Recipient),
            )
            .map_err(|e| anyhow::anyhow!("setting up age encryption: {e}")),
            Sealer::Passphrase(p) => Ok(age::Encryptor::with_user_passphrase(p.clone())),
        }
    }

    #[must_use]
    pub fn kind(&self) -> crate::format::EncryptionKind {
        match self {
            Sealer::Recipients(_) => crate::format::EncryptionKind::AgeRecipients,
            Sealer::Passphrase(_) => crate::format::EncryptionKind::AgePassphrase,
        }
    }
}

/// Loads the recipients (inline `age1...` keys or a recipients file).
pub fn load_recipients(source: &Recipients) -> Result<Vec<Box<dyn age::Recipient + Send>>> {
    let (lines, origin): (Vec<String>, String) = match source {
        Recipients::Keys(keys) => (keys.clone(), "BACKUP_AGE_RECIPIENTS".to_string()),
        Recipients::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::usage(format!("cannot read the age recipients file {}: {e}", path.display()))
                    .hint("set BACKUP_AGE_RECIPIENTS to age1... keys (comma-separated) or to a readable file of them")
            })?;
            (
                text.lines().map(str::to_string).collect(),
                path.display().to_string(),
            )
        }
    };
    let mut out: Vec<Box<dyn age::Recipient + Send>> = Vec::new();
    for line in lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let r = age::x25519::Recipient::from_str(line).map_err(|e| {
            Error::usage(format!("invalid age recipient {line:?} in {origin}: {e}"))
                .hint("recipients are public keys starting with age1 (make one with age-keygen)")
        })?;
        out.push(Box::new(r));
    }
    if out.is_empty() {
        return Err(Error::usage(format!("no age recipients in {origin}"))
            .hint("add at least one age1... public key")
            .into());
    }
    Ok(out)
}

/// Reads a passphrase from the first line of a file (never from argv).
pub fn read_passphrase(path: &Path) -> Result<SecretString> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(format!(
            "cannot read the passphrase file {}: {e}",
            path.display()
        ))
        .hint("BACKUP_PASSPHRASE_FILE must name a readable file whose first line is the passphrase")
    })?;
    let first = text.lines().next().unwrap_or("").to_string();
    if first.is_empty() {
        return Err(
            Error::usage(format!("the passphrase file {} is empty", path.display()))
                .hint("put the passphrase on its first line")
                .into(),
        );
    }
    crate::redact::register(&first);
    Ok(SecretString::from(first))
}

/// What can open encrypted backups.
#[derive(Debug, Clone, Default)]
pub struct KeySource {
    pub identity_file: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
}

impl KeySource {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.identity_file.is_none() && self.passphrase_file.is_none()
    }

    /// Wraps `input` (an age file) in a decrypting reader, or fails before anything is read
    /// past the header: no key, wrong key, damaged header.
    pub fn open<R: Read + Send + 'static>(
        &self,
        input: R,
        what: &str,
    ) -> Result<Box<dyn Read + Send>> {
        let decryptor = age::Decryptor::new(input).map_err(|e| {
            Error::integrity(format!("{what}: damaged age header: {e}"))
                .hint("the file is not a readable age file; use another backup")
        })?;
        let identities: Vec<Box<dyn age::Identity>> = if decryptor.is_scrypt() {
            let Some(p) = &self.passphrase_file else {
                return Err(Error::usage(format!(
                    "{what} is encrypted with a passphrase, and none was given"
                ))
                .hint("set BACKUP_PASSPHRASE_FILE (or --passphrase-file) to the file holding it")
                .into());
            };
            vec![Box::new(age::scrypt::Identity::new(read_passphrase(p)?))]
        } else {
            let Some(path) = &self.identity_file else {
                return Err(Error::usage(format!("{what} is encrypted, and no age identity was given"))
                    .hint("set BACKUP_AGE_IDENTITY (or --identity) to the age identity file that matches the backup's recipient")
                    .into());
            };
            let file =
                age::IdentityFile::from_file(path.to_string_lossy().into_owned()).map_err(|e| {
                    Error::usage(format!(
                        "cannot read the age identity file {}: {e}",
                        path.display()
                    ))
                    .hint("BACKUP_AGE_IDENTITY must name a file made by age-keygen")
                })?;
            file.into_identities()
                .with_context(|| format!("reading identities from {}", path.display()))?
        };
        let reader = decryptor
            .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => Error::new(
                    Kind::Usage,
                    format!("{what}: the given age identity does not match any recipient of this backup"),
                )
                .hint("use the identity (private key) whose public key the backup was encrypted to"),
                age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => {
                    Error::new(Kind::Usage, format!("{what}: wrong passphrase or damaged file ({e})"))
                        .hint("check the passphrase file")
                }
                other => Error::integrity(format!("{what}: cannot decrypt: {other}"))
                    .hint("the file is damaged; use another backup"),
            })?;
        Ok(Box::new(reader))
    }
}
