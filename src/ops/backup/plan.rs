//! The backup's plan: the options checked against each other (label, format, jobs, compression,
//! encryption) into one value that says what will run, before anything is touched.

use super::{BackupOptions, EncryptionRequest, Globals};
use crate::archive::crypto::{self, KeySource, Recipients, Sealer};
use crate::archive::format::{Algorithm, Compression, DumpFormat};
use crate::archive::naming;
use crate::catalog::retention::Policy;
use crate::error::Error;
use crate::pg::conninfo::ConnInfo;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// How backups get encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncryptionPlan {
    /// To these age recipients.
    Recipients(Recipients),
    /// With the passphrase in this file.
    Passphrase(PathBuf),
}

/// A validated backup request: what [`super::execute`] carries out.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    /// The backup folder.
    pub dir: PathBuf,
    /// The connection pg_dump is given.
    pub conn: ConnInfo,
    /// The label checked for the file name (see [`BackupOptions::label`]).
    pub label: Option<String>,
    /// pg_dump's output format.
    pub format: DumpFormat,
    /// The compression that runs (the format may have changed the one asked for).
    pub compression: Compression,
    /// pg_dump's jobs (directory format only).
    pub jobs: Option<u32>,
    /// How the backup is encrypted; `None`: it is not.
    pub encryption: Option<EncryptionPlan>,
    /// The retention policy to apply after a successful backup, if any.
    pub prune: Option<Policy>,
    /// See [`BackupOptions::suspect_ratio`].
    pub suspect_ratio: f64,
    /// The keys to read the finished backup with, when the stream check cannot judge it (None:
    /// it cannot be read back, being encrypted to recipients whose identity is not configured).
    pub second_read: Option<KeySource>,
    /// Whether the roles and tablespaces are stored too.
    pub globals: Globals,
    /// Whether the consistency checks run before the dump.
    pub validate: bool,
    /// Whether the rows are counted on the dump's snapshot.
    pub row_counts: bool,
    /// See [`BackupOptions::on_writing`].
    pub on_writing: Option<super::OnWriting>,
}

impl BackupPlan {
    /// Checks `options` for a backup into `dir`.
    pub(super) fn new(dir: &Path, options: &BackupOptions) -> Result<BackupPlan> {
        if let Some(l) = &options.label {
            naming::validate_label(l)
                .map_err(|m| Error::usage(m).hint("e.g. --name pre-deploy"))?;
        }
        let format = options.format;
        check_jobs(options.jobs, format)?;
        let compression = compression_for(format, options.compression)?;
        let encryption = encryption_for(&options.encryption)?;
        if encryption.is_some() && format == DumpFormat::Directory {
            return Err(Error::usage("a directory archive cannot be encrypted")
                .hint("use --format custom (the default) or plain to encrypt")
                .into());
        }
        let second_read = second_read_keys(encryption.as_ref(), &options.read_keys);
        Ok(BackupPlan {
            dir: dir.to_path_buf(),
            conn: options.conn.clone(),
            label: options.label.clone(),
            format,
            compression,
            jobs: options.jobs,
            encryption,
            prune: options.prune.clone().filter(|p| !p.is_empty()),
            suspect_ratio: options.suspect_ratio,
            second_read,
            globals: options.globals,
            validate: options.validate,
            row_counts: options.row_counts,
            on_writing: options.on_writing.clone(),
        })
    }

    /// Refuses what pg_dump cannot do in a container (`place`), which sees none of our files:
    /// writing a directory archive itself (every other format comes back on its stdout).
    pub(super) fn check_in_container(&self, place: &str) -> Result<()> {
        if self.format != DumpFormat::Directory {
            return Ok(());
        }
        Err(Error::usage(format!(
            "the directory format cannot be used when pg_dump runs in the {place}: pg_dump writes that archive's folder itself, and the container cannot see the backup folder"
        ))
        .hint("use --format custom (the default) or plain, which pg_dump streams out of the container")
        .into())
    }

    /// Loads the keys (before anything else, so a bad key fails early).
    pub fn sealer(&self) -> Result<Option<Sealer>> {
        Ok(match &self.encryption {
            None => None,
            Some(EncryptionPlan::Recipients(r)) => {
                Some(Sealer::Recipients(crypto::load_recipients(r)?))
            }
            Some(EncryptionPlan::Passphrase(p)) => {
                Some(Sealer::Passphrase(crypto::read_passphrase(p)?))
            }
        })
    }

    /// pg_dump's arguments (no connection details: they go through the environment).
    #[must_use]
    pub fn pg_dump_args(&self, target: Option<&Path>) -> Vec<String> {
        let mut a = vec![
            format!("--format={}", self.format),
            "--no-owner".into(),
            "--no-acl".into(),
            "--no-password".into(),
        ];
        match self.format {
            DumpFormat::Plain => {
                a.push("--clean".into());
                a.push("--if-exists".into());
            }
            DumpFormat::Custom | DumpFormat::Directory | DumpFormat::Tar => {
                match self.compression.algorithm {
                    Algorithm::PgDump if self.compression.level >= 0 => {
                        a.push(format!("--compress={}", self.compression.level));
                    }
                    Algorithm::PgDump => {}
                    _ => a.push("--compress=0".into()),
                }
            }
        }
        if let Some(j) = self.jobs.filter(|_| self.format == DumpFormat::Directory) {
            a.push(format!("--jobs={j}"));
        }
        if let Some(t) = target {
            a.push(format!("--file={}", t.display()));
        }
        a
    }
}

/// Parallel dumps need at least one job, and the directory format.
fn check_jobs(jobs: Option<u32>, format: DumpFormat) -> Result<()> {
    if jobs == Some(0) {
        return Err(Error::usage("--jobs must be at least 1").into());
    }
    if jobs.is_some_and(|j| j > 1) && format != DumpFormat::Directory {
        return Err(Error::usage(format!(
            "--jobs needs --format directory (the {format} format is written by one process)"
        ))
        .hint("pg_dump can only dump in parallel into a directory: add --format directory")
        .into());
    }
    Ok(())
}

/// The compression that runs for `format` when `asked` is asked for, its level checked.
fn compression_for(format: DumpFormat, asked: Compression) -> Result<Compression> {
    let mut compression = asked;
    match format {
        // pg_dump compresses each file of a directory archive itself (gzip, on its jobs).
        DumpFormat::Directory => {
            if matches!(asked.algorithm, Algorithm::Zstd | Algorithm::Gzip) {
                compression = Compression {
                    algorithm: Algorithm::PgDump,
                    level: -1,
                };
            }
        }
        DumpFormat::Plain if asked.algorithm == Algorithm::PgDump => {
            compression = Compression {
                algorithm: Algorithm::Gzip,
                level: Algorithm::Gzip.default_level(),
            };
        }
        _ => {}
    }
    let levels = compression.algorithm.levels();
    if compression.level != -1
        && !levels.contains(&compression.level)
        && compression.algorithm != Algorithm::None
    {
        return Err(Error::usage(format!(
            "compression level {} is out of range for {} ({}-{})",
            compression.level,
            compression.algorithm,
            levels.start(),
            levels.end()
        ))
        .into());
    }
    if compression.algorithm == Algorithm::None {
        compression.level = 0;
    }
    Ok(compression)
}

/// The encryption `request` asks for, or why it cannot be had.
fn encryption_for(request: &EncryptionRequest) -> Result<Option<EncryptionPlan>> {
    if !request.wanted {
        return Ok(None);
    }
    Ok(Some(match (&request.recipients, &request.passphrase_file) {
        // age cannot seal one file to a passphrase and to recipients: taking one would
        // silently drop the other.
        (Some(_), Some(_)) => {
            return Err(Error::usage("both age recipients (BACKUP_AGE_RECIPIENTS, --recipients-file or the config file's recipients) and a passphrase file (BACKUP_PASSPHRASE_FILE, --passphrase-file or the config file's passphrase_file) are set; age cannot encrypt a backup to both, so nothing was written")
                .hint("keep one of them: unset BACKUP_PASSPHRASE_FILE to encrypt to the recipients (recommended: the backup host then holds no secret), or unset BACKUP_AGE_RECIPIENTS to use the passphrase")
                .into())
        }
        (Some(r), _) => EncryptionPlan::Recipients(r.clone()),
        (None, Some(p)) => EncryptionPlan::Passphrase(p.clone()),
        (None, None) => {
            return Err(Error::usage("encryption is on, but no age recipients or passphrase file are configured")
                .hint("set BACKUP_AGE_RECIPIENTS to age1... public keys (or a recipients file), or BACKUP_PASSPHRASE_FILE")
                .into())
        }
    }))
}

/// The keys that can read a new backup back, or None when none can (encrypted to recipients,
/// with no identity configured).
fn second_read_keys(encryption: Option<&EncryptionPlan>, keys: &KeySource) -> Option<KeySource> {
    match encryption {
        Some(EncryptionPlan::Recipients(_)) if keys.identity_file.is_none() => None,
        _ => Some(keys.clone()),
    }
}
