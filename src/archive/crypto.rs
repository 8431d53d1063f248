//! Encryption at rest with age: public-key recipients for backups (the backup host holds no
//! secret), an identity file or a passphrase file to read them. Keys never come from argv.

use crate::archive::format::EncryptionKind;
use crate::error::{Error, Kind};
use age::secrecy::SecretString;
use anyhow::{Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where age recipients come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// `age1...` keys given inline.
    Keys(Vec<String>),
    /// A file of recipients, one per line.
    File(PathBuf),
}

/// How new backups are encrypted.
pub enum Sealer {
    Recipients(Vec<age::x25519::Recipient>),
    Passphrase(SecretString),
}

impl Sealer {
    /// An age encryptor ready to wrap the output.
    pub fn encryptor(&self) -> Result<age::Encryptor> {
        match self {
            Sealer::Recipients(rs) => {
                { age::Encryptor::with_recipients(rs.iter().map(|r| r as &dyn age::Recipient)) }
                    .map_err(|e| anyhow::anyhow!("setting up age encryption: {e}"))
            }
            Sealer::Passphrase(p) => Ok(age::Encryptor::with_user_passphrase(p.clone())),
        }
    }

    /// The short fingerprints of the recipients (none for a passphrase), for the sidecar.
    #[must_use]
    pub fn fingerprints(&self) -> Vec<String> {
        match self {
            Sealer::Recipients(rs) => rs.iter().map(|r| fingerprint(&r.to_string())).collect(),
            Sealer::Passphrase(_) => Vec::new(),
        }
    }

    #[must_use]
    pub fn kind(&self) -> crate::archive::format::EncryptionKind {
        match self {
            Sealer::Recipients(_) => crate::archive::format::EncryptionKind::AgeRecipients,
            Sealer::Passphrase(_) => crate::archive::format::EncryptionKind::AgePassphrase,
        }
    }
}

/// Loads the recipients (inline `age1...` keys or a recipients file).
pub fn load_recipients(source: &Recipients) -> Result<Vec<age::x25519::Recipient>> {
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
    let mut out: Vec<age::x25519::Recipient> = Vec::new();
    for line in lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let r = age::x25519::Recipient::from_str(line).map_err(|e| {
            Error::usage(format!("invalid age recipient {line:?} in {origin}: {e}"))
                .hint("recipients are public keys starting with age1 (make one with age-keygen)")
        })?;
        out.push(r);
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
    crate::runtime::fsutil::check_secret_file(path, "passphrase file")?;
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
    crate::runtime::redact::register(&first);
    Ok(SecretString::from(first))
}

/// A recipient's short fingerprint: the start and the end of its public key
/// (`age1ql3z7hjy...p8ks5qxr`), enough to tell which identity file opens a backup (its
/// `# public key:` line, or `age-keygen -y FILE`), and no use for encrypting.
#[must_use]
pub fn fingerprint(public_key: &str) -> String {
    let k = public_key.trim();
    match (k.get(..12), k.len().checked_sub(8).and_then(|i| k.get(i..))) {
        (Some(head), Some(tail)) if k.len() > 24 => format!("{head}...{tail}"),
        _ => k.to_string(),
    }
}

/// What a backup needs to be opened, from its sidecar: `", which needs ..."`, or nothing when
/// the sidecar does not say (no sidecar, or one from before recipients were recorded).
#[must_use]
pub fn needs_note(encryption: Option<EncryptionKind>, recipients: &[String]) -> String {
    match encryption {
        Some(EncryptionKind::AgePassphrase) => {
            "; it needs the passphrase it was made with".to_string()
        }
        Some(EncryptionKind::AgeRecipients) if !recipients.is_empty() => format!(
            "; it needs the age identity for recipient{} {}",
            if recipients.len() == 1 { "" } else { "s" },
            recipients.join(", ")
        ),
        Some(EncryptionKind::AgeRecipients) => {
            "; it needs the age identity (private key) of one of its recipients".to_string()
        }
        _ => String::new(),
    }
}

/// What can open encrypted backups.
#[derive(Debug, Clone, Default)]
pub struct KeySource {
    /// An age identity file (private keys), for backups encrypted to recipients; `None`: not given.
    pub identity_file: Option<PathBuf>,
    /// A file holding the passphrase, for passphrase-encrypted backups; `None`: not given.
    pub passphrase_file: Option<PathBuf>,
}

impl KeySource {
    /// Whether neither key file was given (no encrypted backup can be opened).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.identity_file.is_none() && self.passphrase_file.is_none()
    }

    /// Refuses a key file that group or others can read (`runtime::fsutil::check_secret_file`),
    /// before any backup is opened with it.
    pub fn check_private(&self) -> Result<()> {
        if let Some(p) = &self.identity_file {
            crate::runtime::fsutil::check_secret_file(p, "age identity file")?;
        }
        if let Some(p) = &self.passphrase_file {
            crate::runtime::fsutil::check_secret_file(p, "passphrase file")?;
        }
        Ok(())
    }

    /// Wraps `input` (an age file) in a decrypting reader, or fails before anything is read
    /// past the header: no key, wrong key, damaged header. A missing or non-matching key is a
    /// usage error (exit 2: bad input, nothing was done), never an integrity failure; it names
    /// the key the backup needs when its sidecar says (`expected`).
    pub fn open<R: Read + Send + 'static>(
        &self,
        input: R,
        what: &str,
        expected: &Expected,
    ) -> Result<Box<dyn Read + Send>> {
        let decryptor = age::Decryptor::new(input).map_err(|e| {
            Error::integrity(format!("{what}: damaged age header: {e}"))
                .hint("the file is not a readable age file; use another backup")
        })?;
        let mut own_keys: Vec<String> = Vec::new();
        let identities: Vec<Box<dyn age::Identity>> = if decryptor.is_scrypt() {
            let Some(p) = &self.passphrase_file else {
                let given = if self.identity_file.is_some() {
                    " (an age identity was given, but this backup was made with a passphrase, not for recipients)"
                } else {
                    ""
                };
                return Err(key_error(format!(
                    "{what} is encrypted with a passphrase, and none was given{given}; it needs the passphrase it was made with"
                ))
                .hint("set BACKUP_PASSPHRASE_FILE (or --passphrase-file) to the file holding it")
                .into());
            };
            vec![Box::new(age::scrypt::Identity::new(read_passphrase(p)?))]
        } else {
            let Some(path) = &self.identity_file else {
                let given = if self.passphrase_file.is_some() {
                    " (a passphrase was given, but this backup was made for age recipients, not with a passphrase)"
                } else {
                    ""
                };
                let needs = needs_note(Some(EncryptionKind::AgeRecipients), &expected.recipients);
                return Err(key_error(format!(
                    "{what} is encrypted, and no age identity was given{given}{needs}"
                ))
                .hint("set BACKUP_AGE_IDENTITY (or --identity) to the age identity file that matches the backup's recipient")
                .into());
            };
            crate::runtime::fsutil::check_secret_file(path, "age identity file")?;
            let file =
                age::IdentityFile::from_file(path.to_string_lossy().into_owned()).map_err(|e| {
                    key_error(format!(
                        "cannot read the age identity file {}: {e}",
                        path.display()
                    ))
                    .hint("BACKUP_AGE_IDENTITY must name a file made by age-keygen")
                })?;
            let mut public = Vec::new();
            if file.write_recipients_file(&mut public).is_ok() {
                own_keys = String::from_utf8_lossy(&public)
                    .lines()
                    .map(fingerprint)
                    .collect();
            }
            file.into_identities()
                .with_context(|| format!("reading identities from {}", path.display()))?
        };
        let reader = decryptor
            .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| match e {
                // The sidecar lists this identity among the recipients, yet its stanza does not
                // open: the header was altered.
                age::DecryptError::NoMatchingKeys
                    if own_keys.iter().any(|k| expected.recipients.contains(k)) =>
                {
                    Error::integrity(format!(
                        "{what}: the age header does not open with the identity it was made for"
                    ))
                    .hint("the file is damaged; use another backup")
                }
                age::DecryptError::NoMatchingKeys => {
                    let ours = if own_keys.is_empty() {
                        String::new()
                    } else {
                        format!(" (the identity is for {})", own_keys.join(", "))
                    };
                    let needs = needs_note(Some(EncryptionKind::AgeRecipients), &expected.recipients);
                    key_error(format!(
                        "{what}: the given age identity does not match any recipient of this backup{ours}{needs}"
                    ))
                    .hint("use the identity (private key) whose public key the backup was encrypted to")
                }
                age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => {
                    key_error(format!("{what}: wrong passphrase or damaged file ({e})"))
                        .hint("check the passphrase file")
                }
                other => Error::integrity(format!("{what}: cannot decrypt: {other}"))
                    .hint("the file is damaged; use another backup"),
            })?;
        Ok(Box::new(reader))
    }
}

/// What a backup's sidecar says about the key that opens it (empty without a sidecar).
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// The encryption the sidecar records, when it records one this version knows.
    pub encryption: Option<EncryptionKind>,
    /// Fingerprints of the recipients ([`fingerprint`]).
    pub recipients: Vec<String>,
}

/// A key problem: the key is missing, of the wrong kind, or does not match. Exit 2 (usage: bad
/// input, nothing was done): the backup itself is not known to be damaged.
#[must_use]
pub fn key_error(message: impl Into<String>) -> Error {
    Error::new(Kind::Usage, message)
}
