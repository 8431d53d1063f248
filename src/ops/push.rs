//! Off-site copies: every complete local backup missing at a destination is copied there (data
//! first, read back and checked, sidecar last). Run after each backup and by `aos-backup push`;
//! running it again copies only what is still missing.

use super::Context;
use crate::archive::naming::META_SUFFIX;
use crate::catalog::{self, Status};
use crate::error::{Error, Kind};
use crate::storage::destination::Destination;
use crate::storage::follow::Following;
use crate::storage::{transfer, LocalFolder, Storage};
use anyhow::Result;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a push is asked to do.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The destinations, in order.
    pub destinations: Vec<Destination>,
    /// How long a request or a transfer step may move nothing before it fails.
    pub timeout: Duration,
    /// Refuse to copy an unencrypted backup off-site.
    pub require_encryption: bool,
    /// Uploads started while a backup was being written ([`follow`]): the push completes them
    /// instead of copying those backups again.
    pub followers: Option<Arc<Followers>>,
}

/// The uploads started during a run's backups, by destination, folder and file name.
#[derive(Debug, Default)]
pub struct Followers {
    started: Mutex<Vec<(String, Option<String>, Following)>>,
}

impl Followers {
    /// The upload of `name` in `folder` to the destination `url`, if one was started.
    fn take(&self, url: &str, folder: Option<&str>, name: &str) -> Option<Following> {
        let mut started = self.started.lock().expect("followers");
        let at = started
            .iter()
            .position(|(u, f, s)| u == url && f.as_deref() == folder && s.name() == name)?;
        Some(started.swap_remove(at).2)
    }

    /// Gives up every upload not completed (a failed backup's, or one no push took).
    pub fn clear(&self) {
        let all = std::mem::take(&mut *self.started.lock().expect("followers"));
        drop(all);
    }
}

/// Starts uploading the backup file being written at `partial` (a `.partial` in the backup
/// folder or one of its database subfolders) to every destination, as pg_dump writes it: the
/// push after the backup then only completes these uploads. A destination that cannot be
/// opened is left to that push, which reports it.
pub fn follow(ctx: &Context, options: &PushOptions, partial: &Path) {
    let Some(followers) = &options.followers else {
        return;
    };
    let Some(name) = partial
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".partial"))
    else {
        return;
    };
    let folder = match partial.parent() {
        Some(p) if p == ctx.dir => None,
        Some(p) if p.parent() == Some(&*ctx.dir) => match p.file_name().and_then(|n| n.to_str()) {
            Some(f) => Some(f.to_string()),
            None => return,
        },
        _ => return,
    };
    for dest in &options.destinations {
        let started = open(ctx, dest, folder.as_deref(), options.timeout).and_then(|remote| {
            let file = std::fs::File::open(partial)?;
            let op = ctx.op.clone();
            let cancelled = Box::new(move || op.cancelled().is_some());
            Ok(Following::start(Arc::from(remote), file, name, cancelled)?)
        });
        match started {
            Ok(following) => {
                tracing::debug!("{}: uploading {name} while it is written", dest.shown());
                let mut all = followers.started.lock().expect("followers");
                // A dump started again (without its snapshot) rewrites the file: the newest
                // upload of the name replaces the older one.
                all.retain(|(u, f, s)| !(u == &dest.url && *f == folder && s.name() == name));
                all.push((dest.url.clone(), folder.clone(), following));
            }
            Err(e) => tracing::debug!(
                "{}: not uploading {name} during the dump ({}); it is copied after",
                dest.shown(),
                ctx.op.secrets().scrub(&format!("{e:#}"))
            ),
        }
    }
}

/// What became of one destination.
#[derive(Debug, Default)]
pub struct DestinationResult {
    /// Its URL.
    pub url: String,
    /// The backups copied there now (their file names, with their folder).
    pub uploaded: Vec<String>,
    /// How many were there already.
    pub present: usize,
    /// Bytes moved.
    pub bytes: u64,
    /// Why the destination still misses a backup.
    pub error: Option<String>,
}

/// What a push did, per destination.
#[derive(Debug, Default)]
pub struct PushReport {
    /// One result per destination, in their order.
    pub results: Vec<DestinationResult>,
}

impl PushReport {
    /// Ok when every destination has every backup; else an [`Kind::Offsite`] error naming the
    /// first destination that misses one, and why.
    ///
    /// # Errors
    /// That error.
    pub fn verdict(&self) -> Result<()> {
        let failed: Vec<&DestinationResult> =
            self.results.iter().filter(|r| r.error.is_some()).collect();
        let Some(first) = failed.first() else {
            return Ok(());
        };
        let mut message = format!(
            "off-site copy missing at {}: {}",
            first.url,
            first.error.as_deref().unwrap_or_default()
        );
        if failed.len() > 1 {
            message.push_str(&format!(" (and {} more destinations)", failed.len() - 1));
        }
        Err(Error::new(Kind::Offsite, message)
            .hint("the backups are kept locally; `aos-backup push` (or the next backup) copies what is missing")
            .into())
    }
}

/// Copies every complete backup of the backup folder (and of its database subfolders) that a
/// destination lacks. A destination that fails is reported, the others are still served.
pub async fn execute(ctx: &Context, options: PushOptions) -> PushReport {
    let ctx = ctx.clone();
    let joined = tokio::task::spawn_blocking(move || push_all(&ctx, &options)).await;
    joined.unwrap_or_else(|e| PushReport {
        results: vec![DestinationResult {
            url: "(all)".into(),
            error: Some(format!("the upload stopped: {e}")),
            ..DestinationResult::default()
        }],
    })
}

fn push_all(ctx: &Context, options: &PushOptions) -> PushReport {
    let folders = folders(ctx);
    let results = options
        .destinations
        .iter()
        .map(|dest| {
            let mut result = DestinationResult {
                url: dest.url.clone(),
                ..DestinationResult::default()
            };
            for folder in &folders {
                if let Err(e) = push_folder(ctx, options, dest, folder.as_deref(), &mut result) {
                    result.error = Some(ctx.op.secrets().scrub(&format!("{e:#}")));
                    break;
                }
            }
            result
        })
        .collect();
    PushReport { results }
}

/// The backup folder (`None`) and its database subfolders.
fn folders(ctx: &Context) -> Vec<Option<String>> {
    let mut all = vec![None];
    all.extend(
        catalog::database_folders(&ctx.dir)
            .unwrap_or_default()
            .into_iter()
            .map(Some),
    );
    all
}

/// Opens `dest` (or its subfolder `folder`), its credentials registered as secrets.
///
/// # Errors
/// Unusable options or credentials.
pub fn open(
    ctx: &Context,
    dest: &Destination,
    folder: Option<&str>,
    timeout: Duration,
) -> Result<Box<dyn Storage>> {
    if dest.overlaps_folder(&ctx.dir) {
        return Err(overlap_error(dest));
    }
    let var = |k: &str| ctx.var(k);
    let creds = dest.credentials(&var)?;
    for s in creds.secrets() {
        ctx.op.secrets().register(s);
    }
    let dest = folder.map_or_else(|| dest.clone(), |f| dest.child(f));
    dest.open(&creds, &var, timeout)
}

fn push_folder(
    ctx: &Context,
    options: &PushOptions,
    dest: &Destination,
    folder: Option<&str>,
    result: &mut DestinationResult,
) -> Result<()> {
    let local = LocalFolder::new(folder.map_or_else(|| ctx.dir.clone(), |f| ctx.dir.join(f)));
    let entries = catalog::scan_in(&local)?;
    let complete: Vec<_> = entries
        .iter()
        .filter(|e| e.status == Status::Complete && e.meta.is_some())
        .collect();
    if complete.is_empty() {
        return Ok(());
    }
    let remote = open(ctx, dest, folder, options.timeout)?;
    let there: BTreeSet<String> = remote
        .list()
        .map_err(|e| io_cause(&*remote, e))?
        .into_iter()
        .map(|l| l.name)
        .collect();
    let stop = || ctx.op.cancelled().is_some();
    for entry in complete.iter().rev() {
        let meta = entry.meta.as_ref().expect("complete entries have metadata");
        if there.contains(&format!("{}{META_SUFFIX}", entry.name)) {
            result.present += 1;
            continue;
        }
        refuse_unencrypted(options, dest, &entry.name, meta.is_encrypted())?;
        let followed = options
            .followers
            .as_ref()
            .and_then(|f| f.take(&dest.url, folder, &entry.name))
            .and_then(|following| match following.complete(&local, meta, &stop) {
                Ok(moved) => {
                    tracing::debug!("{}: uploaded while it was written", entry.name);
                    Some(moved)
                }
                Err(e) => {
                    tracing::debug!(
                        "the upload of {} made during the dump was given up ({}); copying it again",
                        entry.name,
                        ctx.op.secrets().scrub(&e.to_string())
                    );
                    None
                }
            });
        let moved = match followed {
            Some(moved) => moved,
            None => transfer::copy_backup(&local, &*remote, &entry.name, meta, &stop)
                .map_err(|e| io_cause(&*remote, e))?,
        };
        result.bytes += moved;
        result.uploaded.push(match folder {
            Some(f) => format!("{f}/{}", entry.name),
            None => entry.name.clone(),
        });
        tracing::info!("copied {} to {}", entry.name, remote.root_location());
    }
    Ok(())
}

/// Refuses an unencrypted backup when encryption is required off-site; otherwise warns.
fn refuse_unencrypted(
    options: &PushOptions,
    dest: &Destination,
    name: &str,
    encrypted: bool,
) -> Result<()> {
    if encrypted {
        return Ok(());
    }
    if options.require_encryption {
        return Err(Error::usage(format!(
            "{name} is not encrypted, and remote_require_encryption forbids copying it off-site"
        ))
        .into());
    }
    tracing::warn!(
        "copying the unencrypted backup {name} off-site to {}: anyone who can read the bucket can read the data (set BACKUP_ENCRYPTION=age)",
        dest.url
    );
    Ok(())
}

/// An I/O failure at a destination, said plainly.
fn io_cause(remote: &dyn Storage, e: std::io::Error) -> anyhow::Error {
    let why = match e.kind() {
        std::io::ErrorKind::Interrupted => "interrupted by a signal".to_string(),
        std::io::ErrorKind::TimedOut => format!("no progress within the timeout ({e})"),
        _ => e.to_string(),
    };
    anyhow::anyhow!("{}: {why}", remote.root_location())
}

/// The refusal of a `file://` destination that is, holds or lies in the backup folder.
#[must_use]
pub fn overlap_error(dest: &Destination) -> anyhow::Error {
    Error::usage(format!(
        "the off-site destination {} is the backup folder, or inside it, or holds it",
        dest.shown()
    ))
    .hint("an off-site copy must live apart from the backups it copies: give another folder or an s3:// bucket")
    .into()
}
