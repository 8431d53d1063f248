//! Configuration, merged in one place: flags over the environment over `./.env` over the TOML
//! config file over defaults. Nothing else reads the environment.

pub use crate::archive::crypto::Recipients;
use crate::archive::format::{Algorithm, Compression, DumpFormat};
use crate::catalog::retention::Policy;
use crate::error::Error;
pub use crate::pg::runner::DockerTarget;
use crate::runtime::schedule::parse_timezone;
pub use crate::runtime::schedule::Schedule;
use crate::storage::destination::{parse_list, Destination};
use anyhow::{Context, Result};
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub mod databases;
pub mod envfile;
pub mod keys;
mod notify;
pub use databases::{DatabaseEntry, UrlSource};
pub use notify::TelegramSettings;
mod preset;
pub use keys::{Key, KEYS, KEY_COUNT};
pub use preset::Preset;

/// Where a setting came from, shown by `aos-backup config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    DotEnv,
    File,
    /// Set by the preset (`BACKUP_PRESET`), no other layer setting it.
    Preset(Preset),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Env => "environment",
            Source::DotEnv => ".env",
            Source::File => "config file",
            Source::Preset(p) => return write!(f, "preset {p}"),
            Source::Default => "default",
        })
    }
}

/// The process environment with `./.env` underneath it (the process wins).
#[derive(Debug, Default, Clone)]
pub struct Env {
    process: HashMap<String, String>,
    dotenv: HashMap<String, String>,
}

impl Env {
    /// Reads the process environment and `.env` in `cwd` (if present).
    pub fn load(cwd: &Path) -> Result<Env> {
        let process = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let path = cwd.join(".env");
        // Parse errors name the line and the problem, never the line's text (envfile).
        let dotenv = if path.is_file() {
            crate::config::envfile::load(&path)?
        } else {
            HashMap::new()
        };
        Ok(Env { process, dotenv })
    }

    /// An environment made of exactly these variables (for tests).
    #[cfg(test)]
    #[must_use]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Env {
        Env {
            process: pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            dotenv: HashMap::new(),
        }
    }

    /// A variable and where it came from; empty values count as unset.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<(&str, Source)> {
        if let Some(v) = self.process.get(key).filter(|v| !v.is_empty()) {
            return Some((v, Source::Env));
        }
        self.dotenv
            .get(key)
            .filter(|v| !v.is_empty())
            .map(|v| (v.as_str(), Source::DotEnv))
    }

    /// The variables of the process environment (not those of `.env`), for the children that
    /// inherit them.
    pub fn process_vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.process.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Just the value.
    #[must_use]
    pub fn var(&self, key: &str) -> Option<String> {
        self.get(key).map(|(v, _)| v.to_string())
    }

    /// The variable that says this is production, if any: `NODE_ENV`, `APP_ENV`, `RAILS_ENV` or
    /// `ENVIRONMENT` set to `production` (or `prod`), any case.
    #[must_use]
    pub fn production_marker(&self) -> Option<(String, String)> {
        ["NODE_ENV", "APP_ENV", "RAILS_ENV", "ENVIRONMENT"]
            .iter()
            .find_map(|k| {
                let (v, _) = self.get(k)?;
                let lower = v.trim().to_ascii_lowercase();
                (lower == "production" || lower == "prod")
                    .then(|| ((*k).to_string(), v.to_string()))
            })
    }
}

/// The TOML config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    backup_dir: Option<PathBuf>,
    pg_bin: Option<PathBuf>,
    #[serde(default)]
    backup: FileBackup,
    #[serde(default)]
    encryption: FileEncryption,
    #[serde(default)]
    retention: Policy,
    #[serde(default)]
    restore: FileRestore,
    #[serde(default)]
    schedule: FileSchedule,
    #[serde(default)]
    databases: Vec<databases::FileDatabase>,
    preset: Option<String>,
    verify_every: Option<String>,
    drill_every: Option<String>,
    #[serde(default)]
    hooks: FileHooks,
    #[serde(default)]
    check: FileCheck,
    metrics_file: Option<PathBuf>,
    #[serde(default)]
    docker: FileDocker,
    #[serde(default)]
    notify: notify::FileNotify,
    #[serde(default)]
    telegram: notify::FileTelegram,
    #[serde(default)]
    remote: Vec<FileRemote>,
    remote_timeout: Option<String>,
    remote_require_encryption: Option<bool>,
    remote_only: Option<bool>,
}

/// One `[[remote]]` table: a destination and its options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRemote {
    url: String,
    endpoint: Option<String>,
    region: Option<String>,
    path_style: Option<bool>,
    storage_class: Option<String>,
    credentials_file: Option<PathBuf>,
}

impl FileRemote {
    fn destination(&self) -> Destination {
        Destination {
            url: self.url.trim().to_string(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            path_style: self.path_style,
            storage_class: self.storage_class.clone(),
            credentials_file: self.credentials_file.clone(),
        }
    }
}

/// The off-site destinations and how uploads behave.
#[derive(Debug, Clone, Default)]
pub struct RemoteSettings {
    /// Every destination, in order; empty: no off-site copies.
    pub destinations: Vec<Destination>,
    /// How long a request or transfer step may move nothing.
    pub timeout: std::time::Duration,
    /// Refuse unencrypted backups while destinations are set.
    pub require_encryption: bool,
    /// Keep no local copy of a new backup once every destination holds it.
    pub only: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchedule {
    backup: Option<String>,
    hour: Option<u32>,
    timezone: Option<String>,
    drill: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHooks {
    before: Option<String>,
    after: Option<String>,
    on_failure: Option<String>,
    finally: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCheck {
    max_age: Option<String>,
    min_size: Option<FileSize>,
    max_drill_age: Option<String>,
}

/// A size in the config file: a number of bytes, or text such as `"1MB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum FileSize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDocker {
    container: Option<String>,
    compose_service: Option<String>,
    compose_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRestore {
    lock_timeout: Option<String>,
    safety_backup: Option<bool>,
    safety_backup_keep: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackup {
    format: Option<DumpFormat>,
    compression: Option<String>,
    compression_level: Option<i32>,
    jobs: Option<u32>,
    suspect_ratio: Option<f64>,
    globals: Option<bool>,
    validate: Option<bool>,
    row_counts: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEncryption {
    enabled: Option<bool>,
    recipients: Option<Vec<String>>,
    recipients_file: Option<PathBuf>,
    identity_file: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
}

/// A value and its source.
#[derive(Debug, Clone)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Sourced<T> {
    fn new(value: T, source: Source) -> Self {
        Sourced { value, source }
    }
}

/// Encryption settings, before any key is read.
#[derive(Debug, Clone, Default)]
pub struct EncryptionSettings {
    pub enabled: bool,
    pub recipients: Option<Recipients>,
    pub identity_file: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
}

/// The hook commands, each a command line for `/bin/sh -c`, and their time limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSettings {
    /// Runs before the operation; its failure cancels it.
    pub before: Option<String>,
    /// Runs after an operation that succeeded.
    pub after: Option<String>,
    /// Runs after an operation that failed (or that a failed `before` cancelled).
    pub on_failure: Option<String>,
    /// Runs last, whatever the outcome.
    pub finally: Option<String>,
    /// How long each hook may run before it is killed; `None`: no limit.
    pub timeout: Option<std::time::Duration>,
}

impl HookSettings {
    /// Whether no hook is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        [&self.before, &self.after, &self.on_failure, &self.finally]
            .iter()
            .all(|c| c.is_none())
    }
}

/// What the command line gave for the keys that resolution takes from it (`None`: not given),
/// filled by the cli layer from its parsed arguments. Each wins over every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--backup-dir`.
    pub backup_dir: Option<PathBuf>,
    /// `--pg-bin`.
    pub pg_bin: Option<PathBuf>,
    /// `restore --lock-timeout`, as typed (parsed during resolution).
    pub lock_timeout: Option<String>,
    /// `check --max-age`, as typed (parsed during resolution).
    pub check_max_age: Option<String>,
    /// `check --min-size`, as typed (parsed during resolution).
    pub check_min_size: Option<String>,
    /// `check --max-drill-age`, as typed (parsed during resolution).
    pub check_max_drill_age: Option<String>,
    /// `--metrics-file`.
    pub metrics_file: Option<PathBuf>,
    /// `--docker-container`.
    pub docker_container: Option<String>,
    /// `backup --globals` (`false`: not given).
    pub globals: bool,
    /// `--remote` destinations (empty: not given).
    pub remote: Vec<String>,
}

/// Every setting, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: Option<Sourced<String>>,
    pub backup_dir: Sourced<PathBuf>,
    pub pg_bin: Option<Sourced<PathBuf>>,
    pub format: Sourced<DumpFormat>,
    pub compression: Sourced<Compression>,
    pub jobs: Option<u32>,
    pub encryption: EncryptionSettings,
    pub retention: Policy,
    /// A new backup smaller than this fraction of the previous one (size or tables) is suspect;
    /// 0 turns the comparison off.
    pub suspect_ratio: Sourced<f64>,
    pub config_file: Option<PathBuf>,
    pub env: Env,
    /// How long a restore waits for another session's lock; zero waits forever.
    pub lock_timeout: Sourced<std::time::Duration>,
    /// Whether a restore backs up a target that holds tables first.
    pub safety_backup: bool,
    /// When `daemon` runs what.
    pub schedule: ScheduleSettings,
    /// The preset whose defaults apply, if any.
    pub preset: Option<Sourced<Preset>>,
    /// How often a scheduler should verify the newest backup; unset or zero: never.
    pub verify_every: Option<Sourced<std::time::Duration>>,
    /// How often a scheduler should run a restore drill; unset or zero: never.
    pub drill_every: Option<Sourced<std::time::Duration>>,
    /// The commands run around a backup.
    pub hooks: HookSettings,
    /// `check`'s thresholds.
    pub check: CheckSettings,
    /// The Prometheus textfile that runs update; `None`: none is written.
    pub metrics_file: Option<Sourced<PathBuf>>,
    /// The container the tools run in (docker-exec mode); `None`: on this machine.
    pub docker: Option<DockerTarget>,
    /// Store the roles and tablespaces with each backup.
    pub globals: bool,
    /// Run the consistency checks before each backup (`BACKUP_VALIDATE`).
    pub validate_before_backup: bool,
    /// Count the rows of every table at backup time (`BACKUP_ROW_COUNTS`).
    pub row_counts: bool,
    /// Where each key's value came from.
    pub sources: Sources,
    /// The config file's `[[databases]]` list, in its order.
    pub databases: Vec<DatabaseEntry>,
    /// Where notifications go, which events, and the backup's delivery.
    pub notify: crate::notify::Config,
    /// The Telegram bot's token and owners.
    pub telegram: TelegramSettings,
    /// The off-site destinations.
    pub remote: RemoteSettings,
}

/// The daemon's schedules, parsed (a bad one stops resolution with a usage error).
#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// When to back up: `BACKUP_SCHEDULE`, else `BACKUP_SCHEDULE_HOUR` as a daily expression;
    /// `None` when neither is set.
    pub backup: Option<Schedule>,
    /// `BACKUP_SCHEDULE_HOUR`, when set.
    pub hour: Option<u32>,
    /// The time zone the expressions are read in.
    pub timezone: Tz,
    /// When to run a restore drill (`BACKUP_DRILL_SCHEDULE`).
    pub drill: Option<Schedule>,
}

/// The defaults of `aos-backup check`.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    /// A database whose last complete backup is older than this is a warning (twice this:
    /// critical).
    pub max_age: Sourced<std::time::Duration>,
    /// A database whose last backup is smaller than this many bytes is critical; 0 is off.
    pub min_size: Sourced<u64>,
    /// A database whose most recent drill is this old or older, or that has none, is a
    /// warning; 0 is off.
    pub max_drill_age: Sourced<std::time::Duration>,
}

/// The default of [`Settings::suspect_ratio`]: a drop of more than half.
pub const DEFAULT_SUSPECT_RATIO: f64 = 0.5;

fn suspect_ratio(env: &Env, file: Option<f64>) -> Result<Sourced<f64>> {
    let var = Key::SuspectRatio.env();
    let (v, source) = match env.get(var) {
        Some((v, src)) => match v.trim().parse::<f64>() {
            Ok(r) => (r, src),
            Err(_) => (f64::NAN, src),
        },
        None => match file {
            Some(r) => (r, Source::File),
            None => (
                default_of(Key::SuspectRatio)
                    .parse()
                    .context("the default suspect ratio in KEYS does not parse")?,
                Source::Default,
            ),
        },
    };
    if !(0.0..=1.0).contains(&v) {
        let shown = env.var(var).unwrap_or_else(|| v.to_string());
        return Err(Error::usage(format!(
            "invalid suspect ratio {shown:?} (from {source})"
        ))
        .hint("set BACKUP_SUSPECT_RATIO (or [backup] suspect_ratio) to a fraction from 0 to 1, e.g. 0.5; 0 turns the check off")
        .into());
    }
    Ok(Sourced::new(v, source))
}

fn parse_env<T: std::str::FromStr>(env: &Env, key: &str) -> Result<Option<T>> {
    match env.get(key) {
        None => Ok(None),
        Some((v, src)) => v.trim().parse().map(Some).map_err(|_| {
            Error::usage(format!("invalid {key}={v:?} (from {src})"))
                .hint(format!("set {key} to a whole number, or unset it"))
                .into()
        }),
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "age" => Ok(true),
        "0" | "false" | "no" | "off" | "none" | "" => Ok(false),
        _ => Err(Error::usage(format!("invalid {key}={v:?}"))
            .hint(format!("set {key} to `age` to encrypt, or `none`"))
            .into()),
    }
}

impl Settings {
    /// Resolves the settings from the command line's overrides, the environment and the config
    /// file. Each key's variable and default come from [`KEYS`].
    pub fn resolve(over: &Overrides, env: Env, cwd: &Path) -> Result<Settings> {
        let mut sources = Sources::default();
        let (file, config_file) = load_file(over, &env, cwd)?;
        sources.set(Key::ConfigFile, config_file_source(over, &env));
        let preset = preset::resolve(&env, file.preset.as_deref())?;
        sources.set_from(Key::Preset, preset.as_ref());
        let preset = preset.map(|p| p.value);
        let database_url = database_url(over, &env, &file);
        sources.set_from(Key::DatabaseUrl, database_url.as_ref());
        let backup_dir = pick_path(
            over.backup_dir.clone(),
            &env,
            Key::BackupDir.env(),
            file.backup_dir.clone(),
        )
        .unwrap_or_else(|| Sourced::new(default_backup_dir(), Source::Default));
        sources.set(Key::BackupDir, backup_dir.source);
        let pg_bin = pick_path(
            over.pg_bin.clone(),
            &env,
            Key::PgBin.env(),
            file.pg_bin.clone(),
        );
        sources.set_from(Key::PgBin, pg_bin.as_ref());
        let format = format(&env, &file)?;
        sources.set(Key::Format, format.source);
        let compression = compression(&env, &file, &mut sources)?;
        let jobs = parse_env::<u32>(&env, Key::Jobs.env())?.or(file.backup.jobs);
        sources.set(
            Key::Jobs,
            layered(&env, Key::Jobs, file.backup.jobs.is_some()),
        );
        let encryption = encryption(&env, &file, preset, &mut sources)?;
        let retention = retention(&env, &file, preset, &mut sources)?;
        let suspect_ratio = suspect_ratio(&env, file.backup.suspect_ratio)?;
        sources.set(Key::SuspectRatio, suspect_ratio.source);
        let lock_timeout = resolve_lock_timeout(over, &env, &file)?;
        sources.set(Key::LockTimeout, lock_timeout.source);
        let safety_backup = switch(
            &env,
            Key::SafetyBackup,
            file.restore.safety_backup,
            &mut sources,
        )?;
        let mut retention = retention;
        retention.safety_backup_keep = Some(safety_backup_keep(&env, &file, &mut sources)?);
        let schedule = schedule(&env, &file.schedule, &mut sources)?;
        let databases = databases::entries(&file.databases)?;
        let verify_every = cadence(
            &env,
            Key::VerifyEvery,
            file.verify_every.as_deref(),
            preset.and_then(|p| p.verify_every().map(|d| (d, p))),
        )?;
        sources.set_from(Key::VerifyEvery, verify_every.as_ref());
        let drill_every = cadence(
            &env,
            Key::DrillEvery,
            file.drill_every.as_deref(),
            preset.and_then(|p| p.drill_every().map(|d| (d, p))),
        )?;
        sources.set_from(Key::DrillEvery, drill_every.as_ref());
        let hooks = hooks(&env, &file.hooks, &mut sources)?;
        let check = check_settings(over, &env, &file)?;
        sources.set(Key::CheckMaxAge, check.max_age.source);
        sources.set(Key::CheckMinSize, check.min_size.source);
        sources.set(Key::CheckMaxDrillAge, check.max_drill_age.source);
        let metrics_file = pick_path(
            over.metrics_file.clone(),
            &env,
            Key::MetricsFile.env(),
            file.metrics_file.clone(),
        );
        sources.set_from(Key::MetricsFile, metrics_file.as_ref());
        let docker = docker(over, &env, &file.docker, &mut sources)?;
        let globals = globals(over, &env, file.backup.globals, &mut sources)?;
        let validate_before_backup =
            switch(&env, Key::Validate, file.backup.validate, &mut sources)?;
        let row_counts = switch(&env, Key::RowCounts, file.backup.row_counts, &mut sources)?;
        let (notify, telegram) = notify::resolve(&env, &file.notify, &file.telegram, &mut sources)?;
        let remote = remote(over, &env, &file, &mut sources)?;
        Ok(Settings {
            remote,
            validate_before_backup,
            row_counts,
            notify,
            telegram,
            schedule,
            databases,
            check,
            metrics_file,
            docker,
            globals,
            lock_timeout,
            safety_backup,
            preset: preset.map(|p| Sourced::new(p, sources.get(Key::Preset))),
            verify_every,
            drill_every,
            hooks,
            database_url,
            backup_dir,
            pg_bin,
            format,
            compression,
            jobs,
            encryption,
            retention,
            suspect_ratio,
            config_file,
            env,
            sources,
        })
    }

    /// Where `key`'s effective value came from ([`Source::Default`] when it is unset).
    #[must_use]
    pub fn source(&self, key: Key) -> Source {
        self.sources.get(key)
    }
}

/// `--database-url`, else `DATABASE_URL`, else the config file's `database_url`.
/// Docker-exec mode: a container (`--docker-container`, `BACKUP_DOCKER_CONTAINER`, `[docker]
/// container`) or a Compose service (with its file), never both.
fn docker(
    over: &Overrides,
    env: &Env,
    file: &FileDocker,
    sources: &mut Sources,
) -> Result<Option<DockerTarget>> {
    let container = match &over.docker_container {
        Some(c) => Some(Sourced::new(c.clone(), Source::Flag)),
        None => pick_text(env, Key::DockerContainer, file.container.as_ref()),
    };
    let service = pick_text(
        env,
        Key::DockerComposeService,
        file.compose_service.as_ref(),
    );
    let compose_file = pick_path(
        None,
        env,
        Key::DockerComposeFile.env(),
        file.compose_file.clone(),
    );
    sources.set_from(Key::DockerContainer, container.as_ref());
    sources.set_from(Key::DockerComposeService, service.as_ref());
    sources.set_from(Key::DockerComposeFile, compose_file.as_ref());
    match (container, service, compose_file) {
        (Some(c), Some(s), _) => Err(Error::usage(format!(
            "both a container ({} {:?}, from {}) and a Compose service ({} {:?}, from {}) are set for docker-exec mode",
            Key::DockerContainer.env(), c.value, c.source,
            Key::DockerComposeService.env(), s.value, s.source
        ))
        .hint("keep one: BACKUP_DOCKER_CONTAINER (or --docker-container) names a container, BACKUP_DOCKER_COMPOSE_SERVICE a service of a Compose project")
        .into()),
        (_, None, Some(f)) => Err(Error::usage(format!(
            "{} is set (from {}), but no Compose service is",
            Key::DockerComposeFile.env(),
            f.source
        ))
        .hint("set BACKUP_DOCKER_COMPOSE_SERVICE to the database's service, or unset BACKUP_DOCKER_COMPOSE_FILE")
        .into()),
        (Some(c), None, None) => Ok(Some(DockerTarget::Container(docker_name(
            Key::DockerContainer,
            c.value,
        )?))),
        (None, Some(s), f) => Ok(Some(DockerTarget::Compose {
            service: docker_name(Key::DockerComposeService, s.value)?,
            file: f.map(|f| f.value),
        })),
        (None, None, None) => Ok(None),
    }
}

/// A container or service name as docker takes it (never an option: no leading `-`).
fn docker_name(key: Key, name: String) -> Result<String> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        return Ok(name);
    }
    Err(Error::usage(format!("invalid {}={name:?}", key.env()))
        .hint("give the container's (or service's) name or id: letters, digits, '_', '.' and '-', starting with a letter or digit")
        .into())
}

/// `backup --globals`, else `BACKUP_GLOBALS`, else `[backup] globals`, else the default (off).
fn globals(over: &Overrides, env: &Env, file: Option<bool>, sources: &mut Sources) -> Result<bool> {
    let var = Key::Globals.env();
    let (value, source) = if over.globals {
        (true, Source::Flag)
    } else if let Some((v, src)) = env.get(var) {
        (parse_switch(var, v)?, src)
    } else if let Some(b) = file {
        (b, Source::File)
    } else {
        (
            parse_switch(var, default_of(Key::Globals))?,
            Source::Default,
        )
    };
    sources.set(Key::Globals, source);
    Ok(value)
}

/// A yes/no setting without a flag: the environment, else the config file, else the default.
fn switch(env: &Env, key: Key, file: Option<bool>, sources: &mut Sources) -> Result<bool> {
    let var = key.env();
    let (value, source) = if let Some((v, src)) = env.get(var) {
        (parse_switch(var, v)?, src)
    } else if let Some(b) = file {
        (b, Source::File)
    } else {
        (parse_switch(var, default_of(key))?, Source::Default)
    };
    sources.set(key, source);
    Ok(value)
}

/// The destinations (`--remote`, else `BACKUP_REMOTE`, else the `[[remote]]` tables; a URL
/// that has a table takes its options), the upload timeout and the encryption rule.
fn remote(
    over: &Overrides,
    env: &Env,
    file: &FileConfig,
    sources: &mut Sources,
) -> Result<RemoteSettings> {
    let tables: Vec<Destination> = file.remote.iter().map(FileRemote::destination).collect();
    let with_options = |d: Destination| {
        tables
            .iter()
            .find(|t| t.url.trim_end_matches('/') == d.url.trim_end_matches('/'))
            .cloned()
            .unwrap_or(d)
    };
    let (destinations, source) = if !over.remote.is_empty() {
        let list = over
            .remote
            .iter()
            .flat_map(|u| parse_list(u))
            .map(with_options);
        (list.collect(), Source::Flag)
    } else if let Some((v, src)) = env.get(Key::Remote.env()) {
        (parse_list(v).into_iter().map(with_options).collect(), src)
    } else {
        let src = if tables.is_empty() {
            Source::Default
        } else {
            Source::File
        };
        (tables.clone(), src)
    };
    for d in &destinations {
        d.place()?;
    }
    sources.set(Key::Remote, source);
    let (text, source, name) = layered_text(
        None,
        "",
        env,
        Key::RemoteTimeout,
        file.remote_timeout.clone(),
    );
    let timeout = crate::runtime::units::parse_duration(&text).map_err(|e| {
        Error::usage(format!("invalid {name}: {e}")).hint("give a duration like 60s or 2m")
    })?;
    if timeout.is_zero() {
        return Err(Error::usage(format!("invalid {name}: 0"))
            .hint("an upload needs a timeout: give a duration like 60s")
            .into());
    }
    sources.set(Key::RemoteTimeout, source);
    let var = Key::RemoteRequireEncryption.env();
    let (require_encryption, source) = match env.get(var) {
        Some((v, src)) => (parse_switch(var, v)?, src),
        None => match file.remote_require_encryption {
            Some(b) => (b, Source::File),
            None => (false, Source::Default),
        },
    };
    sources.set(Key::RemoteRequireEncryption, source);
    let var = Key::RemoteOnly.env();
    let (only, source) = match env.get(var) {
        Some((v, src)) => (parse_switch(var, v)?, src),
        None => match file.remote_only {
            Some(b) => (b, Source::File),
            None => (false, Source::Default),
        },
    };
    sources.set(Key::RemoteOnly, source);
    Ok(RemoteSettings {
        destinations,
        timeout,
        require_encryption,
        only,
    })
}

/// `BACKUP_SAFETY_BACKUP_KEEP`, else `[restore] safety_backup_keep`, else 7 days.
fn safety_backup_keep(
    env: &Env,
    file: &FileConfig,
    sources: &mut Sources,
) -> Result<std::time::Duration> {
    let (text, source, name) = if let Some((v, src)) = env.get(Key::SafetyBackupKeep.env()) {
        (v.to_string(), src, Key::SafetyBackupKeep.env())
    } else if let Some(v) = &file.restore.safety_backup_keep {
        (v.clone(), Source::File, "restore.safety_backup_keep")
    } else {
        (
            default_of(Key::SafetyBackupKeep).to_string(),
            Source::Default,
            "the default safety backup keep",
        )
    };
    sources.set(Key::SafetyBackupKeep, source);
    crate::runtime::units::parse_duration(&text).map_err(|e| {
        Error::usage(format!("invalid {name}: {e}"))
            .hint("give a duration like 7d, 36h or 0 (safety backups are then spared no longer than any other)")
            .into()
    })
}

/// A yes/no setting.
fn parse_switch(key: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::usage(format!("invalid {key}={v:?}"))
            .hint(format!("set {key} to true or false"))
            .into()),
    }
}

/// A text setting from the environment, else the config file.
fn pick_text(env: &Env, key: Key, file: Option<&String>) -> Option<Sourced<String>> {
    match env.get(key.env()) {
        Some((v, src)) => Some(Sourced::new(v.trim().to_string(), src)),
        None => file
            .filter(|v| !v.is_empty())
            .map(|v| Sourced::new(v.clone(), Source::File)),
    }
}

fn database_url(over: &Overrides, env: &Env, file: &FileConfig) -> Option<Sourced<String>> {
    if let Some(u) = &over.database_url {
        Some(Sourced::new(u.clone(), Source::Flag))
    } else if let Some((u, src)) = env.get(Key::DatabaseUrl.env()) {
        Some(Sourced::new(u.to_string(), src))
    } else {
        file.database_url
            .clone()
            .map(|u| Sourced::new(u, Source::File))
    }
}

/// `BACKUP_FORMAT`, else `[backup] format`, else the default.
fn format(env: &Env, file: &FileConfig) -> Result<Sourced<DumpFormat>> {
    Ok(if let Some((v, src)) = env.get(Key::Format.env()) {
        Sourced::new(parse_format(v)?, src)
    } else if let Some(f) = file.backup.format {
        Sourced::new(f, Source::File)
    } else {
        Sourced::new(parse_format(default_of(Key::Format))?, Source::Default)
    })
}

/// The algorithm and its level; records the sources of both keys. The level defaults to the
/// algorithm's own.
fn compression(
    env: &Env,
    file: &FileConfig,
    sources: &mut Sources,
) -> Result<Sourced<Compression>> {
    let (algorithm, alg_src) = algorithm(env, file)?;
    sources.set(Key::Compression, alg_src);
    let level_env = parse_env::<i32>(env, Key::CompressionLevel.env())?;
    sources.set(
        Key::CompressionLevel,
        layered(
            env,
            Key::CompressionLevel,
            file.backup.compression_level.is_some(),
        ),
    );
    let level = level_env
        .or(file.backup.compression_level)
        .unwrap_or_else(|| algorithm.default_level());
    Ok(Sourced::new(Compression { algorithm, level }, alg_src))
}

/// `BACKUP_COMPRESSION`, else `[backup] compression`, else the default.
fn algorithm(env: &Env, file: &FileConfig) -> Result<(Algorithm, Source)> {
    if let Some((v, src)) = env.get(Key::Compression.env()) {
        let a = Algorithm::parse_loose(v).ok_or_else(|| {
            Error::usage(format!("invalid {}={v:?}", Key::Compression.env()))
                .hint("use zstd, gzip, pg_dump or none")
        })?;
        Ok((a, src))
    } else if let Some(v) = &file.backup.compression {
        let a = Algorithm::parse_loose(v).ok_or_else(|| {
            Error::usage(format!("invalid compression {v:?} in the config file"))
                .hint("use zstd, gzip, pg_dump or none")
        })?;
        Ok((a, Source::File))
    } else {
        let a = Algorithm::parse_loose(default_of(Key::Compression))
            .context("the default compression in KEYS does not parse")?;
        Ok((a, Source::Default))
    }
}

/// Whether to encrypt, to whom, and the key files; records the sources of the four keys.
fn encryption(
    env: &Env,
    file: &FileConfig,
    preset: Option<Preset>,
    sources: &mut Sources,
) -> Result<EncryptionSettings> {
    let enc = &file.encryption;
    let required = preset.filter(|p| p.requires_encryption());
    let enabled = match env.get(Key::Encryption.env()) {
        Some((v, _)) => parse_bool(Key::Encryption.env(), v)?,
        None => match (enc.enabled, required) {
            (Some(b), _) => b,
            (None, Some(_)) => true,
            (None, None) => parse_bool(Key::Encryption.env(), default_of(Key::Encryption))?,
        },
    };
    let recipients = recipients(env, enc);
    for (key, in_file) in [
        (Key::Encryption, enc.enabled.is_some()),
        (Key::AgeRecipients, recipients.is_some()),
        (Key::AgeIdentity, enc.identity_file.is_some()),
        (Key::PassphraseFile, enc.passphrase_file.is_some()),
    ] {
        sources.set(key, layered(env, key, in_file));
    }
    if let Some(p) = required {
        sources.set_preset(Key::Encryption, p);
    }
    let path = |key: Key, in_file: &Option<PathBuf>| {
        env.var(key.env()).map(PathBuf::from).or(in_file.clone())
    };
    Ok(EncryptionSettings {
        enabled,
        recipients,
        identity_file: path(Key::AgeIdentity, &enc.identity_file),
        passphrase_file: path(Key::PassphraseFile, &enc.passphrase_file),
    })
}

/// `BACKUP_AGE_RECIPIENTS`, else `[encryption] recipients`, else `recipients_file`.
fn recipients(env: &Env, enc: &FileEncryption) -> Option<Recipients> {
    match env.get(Key::AgeRecipients.env()) {
        Some((v, _)) => Some(parse_recipients(v)),
        None => enc
            .recipients
            .clone()
            .map(Recipients::Keys)
            .or_else(|| enc.recipients_file.clone().map(Recipients::File)),
    }
}

/// The preset's rules, the config file's `[retention]` over them and each rule's variable over
/// that; records their sources.
fn retention(
    env: &Env,
    file: &FileConfig,
    preset: Option<Preset>,
    sources: &mut Sources,
) -> Result<Policy> {
    let preset_policy = preset.map(Preset::retention).unwrap_or_default();
    let mut retention = preset_policy.clone();
    overlay_policy(&mut retention, &file.retention);
    let env_policy = Policy {
        keep_last: parse_env(env, Key::KeepLast.env())?,
        keep_daily: parse_env(env, Key::KeepDaily.env())?,
        keep_weekly: parse_env(env, Key::KeepWeekly.env())?,
        keep_monthly: parse_env(env, Key::KeepMonthly.env())?,
        keep_yearly: parse_env(env, Key::KeepYearly.env())?,
        max_age_days: parse_env(env, Key::MaxAgeDays.env())?,
        safety_backup_keep: None,
    };
    let in_file = &file.retention;
    for (key, in_file, in_preset) in [
        (Key::KeepLast, in_file.keep_last, preset_policy.keep_last),
        (Key::KeepDaily, in_file.keep_daily, preset_policy.keep_daily),
        (
            Key::KeepWeekly,
            in_file.keep_weekly,
            preset_policy.keep_weekly,
        ),
        (
            Key::KeepMonthly,
            in_file.keep_monthly,
            preset_policy.keep_monthly,
        ),
        (
            Key::KeepYearly,
            in_file.keep_yearly,
            preset_policy.keep_yearly,
        ),
        (
            Key::MaxAgeDays,
            in_file.max_age_days,
            preset_policy.max_age_days,
        ),
    ] {
        sources.set(key, layered(env, key, in_file.is_some()));
        if let (Some(p), Some(_)) = (preset, in_preset) {
            sources.set_preset(key, p);
        }
    }
    overlay_policy(&mut retention, &env_policy);
    Ok(retention)
}

/// A text setting: its variable (environment or `.env`), else the config file's value.
fn text_setting(env: &Env, key: Key, file: Option<&String>) -> Option<Sourced<String>> {
    match env.get(key.env()) {
        Some((v, src)) => Some(Sourced::new(v.to_string(), src)),
        None => file.map(|v| Sourced::new(v.clone(), Source::File)),
    }
}

/// The schedules and their time zone; records the sources of the four keys.
fn schedule(env: &Env, file: &FileSchedule, sources: &mut Sources) -> Result<ScheduleSettings> {
    let tz_text = text_setting(env, Key::ScheduleTz, file.timezone.as_ref())
        .unwrap_or_else(|| Sourced::new(default_of(Key::ScheduleTz).to_string(), Source::Default));
    let timezone = parse_timezone(&tz_text.value).map_err(|e| {
        Error::usage(format!("invalid {} (from {}): {e}", Key::ScheduleTz.env(), tz_text.source))
            .hint("use UTC or an IANA time zone name such as Europe/Berlin (see `timedatectl list-timezones`)")
    })?;
    let hour = parse_env::<u32>(env, Key::ScheduleHour.env())?.or(file.hour);
    let expression = text_setting(env, Key::Schedule, file.backup.as_ref());
    let drill = text_setting(env, Key::DrillSchedule, file.drill.as_ref());
    for (key, in_file) in [
        (Key::Schedule, file.backup.is_some()),
        (Key::ScheduleHour, file.hour.is_some()),
        (Key::ScheduleTz, file.timezone.is_some()),
        (Key::DrillSchedule, file.drill.is_some()),
    ] {
        sources.set(key, layered(env, key, in_file));
    }
    let backup = match (expression, hour) {
        (Some(e), Some(_)) => {
            return Err(Error::usage(format!(
                "both {} (from {}) and {} (from {}) are set",
                Key::Schedule.env(),
                e.source,
                Key::ScheduleHour.env(),
                sources.get(Key::ScheduleHour)
            ))
            .hint("set one of them: BACKUP_SCHEDULE_HOUR=3 is BACKUP_SCHEDULE=\"0 3 * * *\"")
            .into())
        }
        (Some(e), None) => Some(cron(Key::Schedule, &e, timezone)?),
        (None, Some(h)) => Some(Schedule::daily_at(h, timezone).map_err(|why| {
            Error::usage(format!("invalid {}: {why}", Key::ScheduleHour.env()))
                .hint("give the hour of the daily backup, 0 to 23")
        })?),
        (None, None) => None,
    };
    let drill = drill
        .map(|d| cron(Key::DrillSchedule, &d, timezone))
        .transpose()?;
    Ok(ScheduleSettings {
        backup,
        hour,
        timezone,
        drill,
    })
}

/// `key`'s cron expression, read in `tz`.
fn cron(key: Key, text: &Sourced<String>, tz: Tz) -> Result<Schedule> {
    Schedule::parse(&text.value, tz).map_err(|why| {
        Error::usage(format!(
            "invalid {}={:?} (from {}): {why}",
            key.env(),
            text.value,
            text.source
        ))
        .hint("give a cron expression: 5 fields (minute hour day-of-month month day-of-week, e.g. \"15 2 * * *\") or 6 with seconds first (\"*/30 * * * * *\")")
        .into()
    })
}

/// Where each key's value came from, indexed by [`Key`].
#[derive(Debug, Clone)]
pub struct Sources([Source; KEY_COUNT]);

impl Default for Sources {
    fn default() -> Self {
        Sources([Source::Default; KEY_COUNT])
    }
}

impl Sources {
    /// The source of `key`.
    #[must_use]
    pub fn get(&self, key: Key) -> Source {
        self.0[key as usize]
    }

    fn set(&mut self, key: Key, source: Source) {
        self.0[key as usize] = source;
    }

    fn set_from<T>(&mut self, key: Key, value: Option<&Sourced<T>>) {
        self.set(key, value.map_or(Source::Default, |v| v.source));
    }

    /// Records that the preset `p` gives `key`'s value, unless another layer set it.
    fn set_preset(&mut self, key: Key, p: Preset) {
        if self.get(key) == Source::Default {
            self.set(key, Source::Preset(p));
        }
    }
}

/// A cadence key: its variable, else the config file's value, else the preset's (`preset`, with
/// the preset that gives it).
fn cadence(
    env: &Env,
    key: Key,
    file: Option<&str>,
    preset: Option<(std::time::Duration, Preset)>,
) -> Result<Option<Sourced<std::time::Duration>>> {
    let (text, source) = match (env.get(key.env()), file) {
        (Some((v, src)), _) => (v, src),
        (None, Some(v)) => (v, Source::File),
        (None, None) => return Ok(preset.map(|(d, p)| Sourced::new(d, Source::Preset(p)))),
    };
    let d = preset::parse_cadence(text).map_err(|e| {
        Error::usage(format!("invalid {} (from {source}): {e}", key.env()))
            .hint("give a cadence like 1d, 12h or 2w (0 is off)")
    })?;
    Ok(Some(Sourced::new(d, source)))
}

/// The hook commands (each variable over the config file's `[hooks]`) and their timeout;
/// records their sources.
fn hooks(env: &Env, file: &FileHooks, sources: &mut Sources) -> Result<HookSettings> {
    let mut command = |key: Key, in_file: &Option<String>| {
        let in_file = in_file.clone().filter(|c| !c.trim().is_empty());
        sources.set(key, layered(env, key, in_file.is_some()));
        env.var(key.env()).or(in_file)
    };
    let before = command(Key::HookBefore, &file.before);
    let after = command(Key::HookAfter, &file.after);
    let on_failure = command(Key::HookOnFailure, &file.on_failure);
    let finally = command(Key::HookFinally, &file.finally);
    sources.set(
        Key::HookTimeout,
        layered(env, Key::HookTimeout, file.timeout.is_some()),
    );
    let text = env
        .var(Key::HookTimeout.env())
        .or_else(|| file.timeout.clone())
        .unwrap_or_else(|| default_of(Key::HookTimeout).to_string());
    let timeout = crate::runtime::units::parse_duration(&text).map_err(|e| {
        Error::usage(format!(
            "invalid {} (from {}): {e}",
            Key::HookTimeout.env(),
            sources.get(Key::HookTimeout)
        ))
        .hint("give a duration like 30s, 5m or 1h (0 is no limit)")
    })?;
    Ok(HookSettings {
        before,
        after,
        on_failure,
        finally,
        timeout: (!timeout.is_zero()).then_some(timeout),
    })
}

/// The source of a key that no global flag sets: its variable (environment or `.env`) when set,
/// else the config file when it sets it, else the default. Values that do not parse never get
/// here: resolution stops first.
fn layered(env: &Env, key: Key, in_file: bool) -> Source {
    match env.get(key.env()) {
        Some((_, src)) => src,
        None if in_file => Source::File,
        None => Source::Default,
    }
}

fn config_file_source(over: &Overrides, env: &Env) -> Source {
    if over.config_file.is_some() {
        Source::Flag
    } else {
        env.get(Key::ConfigFile.env())
            .map_or(Source::Default, |(_, src)| src)
    }
}

/// The default text of `key` from [`KEYS`]; only called for keys that have one.
fn default_of(key: Key) -> &'static str {
    key.default_text().unwrap_or_default()
}

/// The default backup folder, `./backups` in [`KEYS`], kept relative as `backups`.
fn default_backup_dir() -> PathBuf {
    let d = default_of(Key::BackupDir);
    PathBuf::from(d.strip_prefix("./").unwrap_or(d))
}

fn parse_format(v: &str) -> Result<DumpFormat> {
    Ok(match v.trim().to_ascii_lowercase().as_str() {
        "custom" | "c" => DumpFormat::Custom,
        "plain" | "p" | "sql" => DumpFormat::Plain,
        "directory" | "d" | "dir" => DumpFormat::Directory,
        _ => {
            return Err(Error::usage(format!("invalid {}={v:?}", Key::Format.env()))
                .hint("use custom, plain or directory")
                .into())
        }
    })
}

/// `restore --lock-timeout`, else `BACKUP_LOCK_TIMEOUT`, else `[restore] lock_timeout`, else 30s.
fn resolve_lock_timeout(
    over: &Overrides,
    env: &Env,
    file: &FileConfig,
) -> Result<Sourced<std::time::Duration>> {
    let (text, source, name) = if let Some(v) = over.lock_timeout.clone() {
        (v, Source::Flag, "--lock-timeout")
    } else if let Some((v, src)) = env.get(Key::LockTimeout.env()) {
        (v.to_string(), src, Key::LockTimeout.env())
    } else if let Some(v) = &file.restore.lock_timeout {
        (v.clone(), Source::File, "restore.lock_timeout")
    } else {
        (
            default_of(Key::LockTimeout).to_string(),
            Source::Default,
            "the default lock timeout",
        )
    };
    let d = crate::runtime::units::parse_duration(&text).map_err(|e| {
        Error::usage(format!("invalid {name}: {e}"))
            .hint("give a duration like 30s, 500ms or 2m (0 waits forever)")
    })?;
    Ok(Sourced::new(d, source))
}

/// `check --max-age`, `--min-size` and `--max-drill-age`, else their variables, else `[check]`,
/// else the defaults.
fn check_settings(over: &Overrides, env: &Env, file: &FileConfig) -> Result<CheckSettings> {
    let (text, source, name) = layered_text(
        over.check_max_age.as_deref(),
        "--max-age",
        env,
        Key::CheckMaxAge,
        file.check.max_age.clone(),
    );
    let max_age = crate::runtime::units::parse_span(&text)
        .and_then(|d| {
            if d.is_zero() {
                Err("the age must be more than 0".into())
            } else {
                Ok(d)
            }
        })
        .map_err(|e| {
            Error::usage(format!("invalid {name}: {e}")).hint("give an age like 26h, 90m or 2d")
        })?;
    let file_size = file.check.min_size.clone().map(|s| match s {
        FileSize::Bytes(n) => n.to_string(),
        FileSize::Text(t) => t,
    });
    let (text, min_source, name) = layered_text(
        over.check_min_size.as_deref(),
        "--min-size",
        env,
        Key::CheckMinSize,
        file_size,
    );
    let min_size = crate::runtime::units::parse_size(&text).map_err(|e| {
        Error::usage(format!("invalid {name}: {e}"))
            .hint("give a size like 1MB, 500KiB or 4096 (bytes); 0 turns the check off")
    })?;
    let (text, drill_source, name) = layered_text(
        over.check_max_drill_age.as_deref(),
        "--max-drill-age",
        env,
        Key::CheckMaxDrillAge,
        file.check.max_drill_age.clone(),
    );
    let max_drill_age = crate::runtime::units::parse_span(&text).map_err(|e| {
        Error::usage(format!("invalid {name}: {e}"))
            .hint("give an age like 35d or 1w; 0 turns the check off")
    })?;
    Ok(CheckSettings {
        max_age: Sourced::new(max_age, source),
        min_size: Sourced::new(min_size, min_source),
        max_drill_age: Sourced::new(max_drill_age, drill_source),
    })
}

/// A key's text from its flag, else its variable, else the config file, else its default, with
/// its source and the name an error gives it.
fn layered_text(
    flag: Option<&str>,
    flag_name: &'static str,
    env: &Env,
    key: Key,
    in_file: Option<String>,
) -> (String, Source, &'static str) {
    if let Some(v) = flag {
        (v.to_string(), Source::Flag, flag_name)
    } else if let Some((v, src)) = env.get(key.env()) {
        (v.to_string(), src, key.env())
    } else if let Some(v) = in_file {
        (v, Source::File, key.def().toml[0])
    } else {
        (default_of(key).to_string(), Source::Default, key.def().name)
    }
}

/// Applies the rules that `over` sets (its `Some` values, 0 included) over `policy`.
pub fn overlay_policy(policy: &mut Policy, over: &Policy) {
    let pairs = [
        (&mut policy.keep_last, over.keep_last),
        (&mut policy.keep_daily, over.keep_daily),
        (&mut policy.keep_weekly, over.keep_weekly),
        (&mut policy.keep_monthly, over.keep_monthly),
        (&mut policy.keep_yearly, over.keep_yearly),
        (&mut policy.max_age_days, over.max_age_days),
    ];
    for (slot, value) in pairs {
        if value.is_some() {
            *slot = value;
        }
    }
}

/// `BACKUP_AGE_RECIPIENTS`: comma-separated `age1...` keys, or the path of a recipients file.
fn parse_recipients(v: &str) -> Recipients {
    let parts: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if !parts.is_empty() && parts.iter().all(|p| p.starts_with("age1")) {
        Recipients::Keys(parts)
    } else {
        Recipients::File(PathBuf::from(v.trim()))
    }
}

fn pick_path(
    flag: Option<PathBuf>,
    env: &Env,
    key: &str,
    file: Option<PathBuf>,
) -> Option<Sourced<PathBuf>> {
    if let Some(p) = flag {
        return Some(Sourced::new(p, Source::Flag));
    }
    if let Some((v, src)) = env.get(key) {
        return Some(Sourced::new(PathBuf::from(v), src));
    }
    file.map(|p| Sourced::new(p, Source::File))
}

fn load_file(over: &Overrides, env: &Env, cwd: &Path) -> Result<(FileConfig, Option<PathBuf>)> {
    let explicit = over
        .config_file
        .clone()
        .or_else(|| env.var(Key::ConfigFile.env()).map(PathBuf::from));
    let path = match explicit {
        Some(p) => {
            if !p.is_file() {
                return Err(
                    Error::usage(format!("config file {} not found", p.display()))
                        .hint("check --config / AOS_BACKUP_CONFIG")
                        .into(),
                );
            }
            p
        }
        None => {
            let p = cwd.join("aos-backup.toml");
            if !p.is_file() {
                return Ok((FileConfig::default(), None));
            }
            p
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let file: FileConfig = toml::from_str(&text).map_err(|e| {
        let first = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_string();
        Error::usage(format!("invalid config file {}: {first}", path.display()))
            .hint("see the README's Configuration section for the keys")
    })?;
    // A config file that holds a password is a secret file: private, as .pgpass must be.
    let holds_password = file
        .database_url
        .as_deref()
        .is_some_and(crate::pg::conninfo::holds_password);
    if holds_password {
        crate::runtime::fsutil::check_secret_file(&path, "config file").map_err(|mut e| {
            e.message = format!("{} (its database_url holds a password)", e.message);
            e
        })?;
    } else if file.notify.holds_secrets(&file.telegram) {
        crate::runtime::fsutil::check_secret_file(&path, "config file").map_err(|mut e| {
            e.message = format!("{} (its notification destinations hold tokens)", e.message);
            e
        })?;
    }
    Ok((file, Some(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(over: &Overrides, env: &[(&str, &str)]) -> Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        Settings::resolve(over, Env::from_pairs(env), dir.path())
    }

    fn none() -> Overrides {
        Overrides::default()
    }

    #[test]
    fn defaults() {
        let s = settings(&none(), &[]).unwrap();
        assert_eq!(s.backup_dir.value, PathBuf::from("backups"));
        assert_eq!(s.backup_dir.source, Source::Default);
        assert_eq!(s.format.value, DumpFormat::Custom);
        assert_eq!(s.compression.value.algorithm, Algorithm::Zstd);
        assert!(s.retention.is_empty());
        assert!(!s.encryption.enabled);
    }

    #[test]
    fn flags_beat_environment() {
        let over = Overrides {
            backup_dir: Some(PathBuf::from("/flag")),
            ..Overrides::default()
        };
        let s = settings(
            &over,
            &[("BACKUP_DIR", "/env"), ("BACKUP_RETENTION_DAYS", "30")],
        )
        .unwrap();
        assert_eq!(s.backup_dir.value, PathBuf::from("/flag"));
        assert_eq!(s.backup_dir.source, Source::Flag);
        assert_eq!(s.retention.max_age_days, Some(30));
    }

    #[test]
    fn seed_style_values_are_understood() {
        let s = settings(
            &none(),
            &[
                ("BACKUP_COMPRESSION", "true"),
                ("BACKUP_ENCRYPTION", "false"),
            ],
        )
        .unwrap();
        assert_eq!(s.compression.value.algorithm, Algorithm::Zstd);
        assert!(!s.encryption.enabled);
        let s = settings(&none(), &[("BACKUP_COMPRESSION", "false")]).unwrap();
        assert_eq!(s.compression.value.algorithm, Algorithm::None);
    }

    #[test]
    fn bad_values_are_usage_errors_naming_the_variable() {
        for (k, v) in [
            ("BACKUP_RETENTION_DAYS", "thirty"),
            ("BACKUP_COMPRESSION", "lzma"),
            ("BACKUP_ENCRYPTION", "maybe"),
            ("BACKUP_FORMAT", "xml"),
        ] {
            let err = settings(&none(), &[(k, v)]).unwrap_err();
            let e = crate::error::find(&err).expect("typed error");
            assert_eq!(e.kind, crate::error::Kind::Usage);
            assert!(e.message.contains(k), "{}", e.message);
        }
    }

    #[test]
    fn every_duration_key_reads_the_same_durations() {
        let day = std::time::Duration::from_secs(86_400);
        let keys = [
            "BACKUP_HOOK_TIMEOUT",
            "BACKUP_LOCK_TIMEOUT",
            "BACKUP_CHECK_MAX_AGE",
            "BACKUP_CHECK_MAX_DRILL_AGE",
            "BACKUP_VERIFY_EVERY",
        ];
        for k in keys {
            let s = settings(&none(), &[(k, "1d12h")]).unwrap_or_else(|e| panic!("{k}: {e}"));
            let got = match k {
                "BACKUP_HOOK_TIMEOUT" => s.hooks.timeout,
                "BACKUP_LOCK_TIMEOUT" => Some(s.lock_timeout.value),
                "BACKUP_CHECK_MAX_AGE" => Some(s.check.max_age.value),
                "BACKUP_CHECK_MAX_DRILL_AGE" => Some(s.check.max_drill_age.value),
                _ => s.verify_every.map(|v| v.value),
            };
            assert_eq!(got, Some(day * 3 / 2), "{k}");
            assert!(settings(&none(), &[(k, "1d")]).is_ok(), "{k}");
            assert!(settings(&none(), &[(k, "1h1")]).is_err(), "{k}");
        }
    }

    #[test]
    fn defaults_come_from_the_key_table() {
        let s = settings(&none(), &[]).unwrap();
        assert_eq!(
            Path::new(".").join(&s.backup_dir.value),
            Path::new(Key::BackupDir.default_text().unwrap())
        );
        assert_eq!(
            Some(s.format.value.to_string().as_str()),
            Key::Format.default_text()
        );
        assert_eq!(
            Some(s.compression.value.algorithm.to_string().as_str()),
            Key::Compression.default_text()
        );
        assert_eq!(s.suspect_ratio.value, DEFAULT_SUSPECT_RATIO);
        assert_eq!(s.lock_timeout.value, std::time::Duration::from_secs(30));
        assert!(!s.encryption.enabled);
        for d in KEYS {
            assert_eq!(s.source(d.key), Source::Default, "{}", d.name);
        }
    }

    #[test]
    fn every_key_records_its_source() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("aos-backup.toml"),
            "[backup]\njobs = 2\ncompression_level = 5\n[retention]\nkeep_daily = 3\n\
             [encryption]\nenabled = true\nidentity_file = \"/k\"\n",
        )
        .unwrap();
        // A Compose service excludes a container: those two keys are checked below.
        let compose = [Key::DockerComposeService, Key::DockerComposeFile];
        let all: Vec<(&str, &str)> = KEYS
            .iter()
            // BACKUP_SCHEDULE_HOUR and BACKUP_SCHEDULE exclude each other.
            .filter(|d| {
                !matches!(
                    d.key,
                    Key::ConfigFile | Key::DatabaseUrl | Key::ScheduleHour
                )
            })
            .filter(|d| !compose.contains(&d.key))
            .map(|d| {
                let v = match d.key {
                    Key::Schedule | Key::DrillSchedule => "0 3 * * *",
                    Key::ScheduleTz => "Europe/Berlin",
                    Key::Format => "plain",
                    Key::Preset => "dev",
                    Key::Compression => "gzip",
                    Key::Encryption => "age",
                    Key::SuspectRatio => "0.25",
                    Key::LockTimeout => "5s",
                    Key::CheckMaxAge => "2d",
                    Key::CheckMinSize => "1MB",
                    Key::CheckMaxDrillAge => "35d",
                    Key::AgeRecipients => "age1abc",
                    Key::BackupDir
                    | Key::PgBin
                    | Key::AgeIdentity
                    | Key::PassphraseFile
                    | Key::MetricsFile => "/x",
                    Key::DockerContainer => "db",
                    Key::Globals | Key::Validate | Key::SafetyBackup => "true",
                    Key::RowCounts => "false",
                    Key::Notify => "generic+https://hooks.example.com/h",
                    Key::NotifyOn => "always",
                    Key::Deliver => "telegram",
                    Key::NotifyTimeout => "4s",
                    Key::TelegramApiUrl => "http://127.0.0.1:4",
                    Key::TelegramToken => "123:abc",
                    Key::Remote => "s3://bucket/prefix",
                    Key::RemoteTimeout => "30s",
                    Key::RemoteRequireEncryption | Key::RemoteOnly => "true",
                    _ => "4",
                };
                (d.env, v)
            })
            .collect();
        let s = Settings::resolve(&none(), Env::from_pairs(&all), dir.path()).unwrap();
        for d in KEYS {
            let want = match d.key {
                Key::ConfigFile => Source::Default,
                Key::DatabaseUrl => Source::Default,
                Key::ScheduleHour => Source::Default,
                k if compose.contains(&k) => Source::Default,
                _ => Source::Env,
            };
            assert_eq!(s.source(d.key), want, "{}", d.name);
        }
        let env = [
            ("BACKUP_DOCKER_COMPOSE_SERVICE", "db"),
            ("BACKUP_DOCKER_COMPOSE_FILE", "/srv/compose.yml"),
        ];
        let s = Settings::resolve(&none(), Env::from_pairs(&env), dir.path()).unwrap();
        for k in compose {
            assert_eq!(s.source(k), Source::Env, "{k:?}");
        }
        let s = Settings::resolve(&none(), Env::from_pairs(&[]), dir.path()).unwrap();
        for (k, want) in [
            (Key::Jobs, Source::File),
            (Key::CompressionLevel, Source::File),
            (Key::KeepDaily, Source::File),
            (Key::KeepLast, Source::Default),
            (Key::Encryption, Source::File),
            (Key::AgeIdentity, Source::File),
            (Key::PassphraseFile, Source::Default),
        ] {
            assert_eq!(s.source(k), want, "{k:?}");
        }
        let over = Overrides {
            config_file: Some(dir.path().join("aos-backup.toml")),
            pg_bin: Some(PathBuf::from("/pg")),
            ..Overrides::default()
        };
        let s = Settings::resolve(&over, Env::from_pairs(&[]), dir.path()).unwrap();
        assert_eq!(s.source(Key::ConfigFile), Source::Flag);
        assert_eq!(s.source(Key::PgBin), Source::Flag);
    }

    #[test]
    fn schedules_are_parsed_in_their_zone_and_checked() {
        let s = settings(&none(), &[]).unwrap();
        assert!(s.schedule.backup.is_none() && s.schedule.drill.is_none());
        assert_eq!(s.schedule.timezone, Tz::UTC);
        let s = settings(
            &none(),
            &[
                ("BACKUP_SCHEDULE_HOUR", "3"),
                ("BACKUP_SCHEDULE_TZ", "Europe/Berlin"),
            ],
        )
        .unwrap();
        let backup = s.schedule.backup.as_ref().unwrap();
        assert_eq!(backup.expression(), "0 3 * * *");
        assert_eq!(backup.timezone().name(), "Europe/Berlin");
        assert_eq!(s.source(Key::ScheduleHour), Source::Env);
        for env in [
            &[("BACKUP_SCHEDULE", "every day")][..],
            &[("BACKUP_SCHEDULE_HOUR", "24")],
            &[("BACKUP_SCHEDULE_HOUR", "three")],
            &[("BACKUP_SCHEDULE_TZ", "Mars/Olympus")],
            &[("BACKUP_DRILL_SCHEDULE", "0 0 0 * *")],
            &[
                ("BACKUP_SCHEDULE", "0 3 * * *"),
                ("BACKUP_SCHEDULE_HOUR", "3"),
            ],
        ] {
            let err = settings(&none(), env).unwrap_err();
            let e = crate::error::find(&err).expect("typed error");
            assert_eq!(e.kind, crate::error::Kind::Usage, "{env:?}");
            assert!(e.message.contains(env[0].0), "{}", e.message);
        }
    }

    #[test]
    fn docker_exec_mode_is_a_container_or_a_compose_service() {
        let s = settings(&none(), &[("BACKUP_DOCKER_CONTAINER", "hyper-db")]).unwrap();
        assert_eq!(s.docker, Some(DockerTarget::Container("hyper-db".into())));
        let over = Overrides {
            docker_container: Some("other".into()),
            ..Overrides::default()
        };
        let s = settings(&over, &[("BACKUP_DOCKER_CONTAINER", "hyper-db")]).unwrap();
        assert_eq!(s.docker, Some(DockerTarget::Container("other".into())));
        assert_eq!(s.source(Key::DockerContainer), Source::Flag);
        let s = settings(&none(), &[("BACKUP_DOCKER_COMPOSE_SERVICE", "db")]).unwrap();
        assert_eq!(
            s.docker,
            Some(DockerTarget::Compose {
                service: "db".into(),
                file: None
            })
        );
        assert!(settings(&none(), &[]).unwrap().docker.is_none());
        for env in [
            &[
                ("BACKUP_DOCKER_CONTAINER", "a"),
                ("BACKUP_DOCKER_COMPOSE_SERVICE", "b"),
            ][..],
            &[("BACKUP_DOCKER_COMPOSE_FILE", "/c.yml")],
            &[("BACKUP_DOCKER_CONTAINER", "-it")],
            &[("BACKUP_GLOBALS", "maybe")],
        ] {
            let err = settings(&none(), env).unwrap_err();
            let e = crate::error::find(&err).expect("typed error");
            assert_eq!(e.kind, crate::error::Kind::Usage, "{env:?}");
            assert!(e.message.contains(env[0].0), "{}", e.message);
        }
    }

    #[test]
    fn check_thresholds_come_from_each_layer() {
        use std::time::Duration;
        let s = settings(&none(), &[]).unwrap();
        assert_eq!(s.check.max_age.value, Duration::from_secs(26 * 3600));
        assert_eq!(s.check.min_size.value, 0);
        assert!(s.metrics_file.is_none());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("aos-backup.toml"),
            "metrics_file = \"/m.prom\"\n[check]\nmax_age = \"2d\"\nmin_size = 4096\n",
        )
        .unwrap();
        let s = Settings::resolve(&none(), Env::from_pairs(&[]), dir.path()).unwrap();
        assert_eq!(s.check.max_age.value, Duration::from_secs(2 * 86400));
        assert_eq!(s.check.min_size.value, 4096);
        assert_eq!(s.check.min_size.source, Source::File);
        assert_eq!(s.metrics_file.unwrap().value, PathBuf::from("/m.prom"));
        let env = Env::from_pairs(&[
            ("BACKUP_CHECK_MAX_AGE", "90m"),
            ("BACKUP_CHECK_MIN_SIZE", "1MB"),
        ]);
        let s = Settings::resolve(&none(), env.clone(), dir.path()).unwrap();
        assert_eq!(s.check.max_age.value, Duration::from_secs(5400));
        assert_eq!(s.check.min_size.value, 1_000_000);
        let over = Overrides {
            check_max_age: Some("1w".into()),
            check_min_size: Some("1KiB".into()),
            ..Overrides::default()
        };
        let s = Settings::resolve(&over, env, dir.path()).unwrap();
        assert_eq!(s.check.max_age.value, Duration::from_secs(7 * 86400));
        assert_eq!(s.check.min_size.value, 1024);
        assert_eq!(s.source(Key::CheckMaxAge), Source::Flag);
        for (k, v) in [
            ("BACKUP_CHECK_MAX_AGE", "0"),
            ("BACKUP_CHECK_MAX_AGE", "soon"),
            ("BACKUP_CHECK_MIN_SIZE", "big"),
        ] {
            let err = settings(&none(), &[(k, v)]).unwrap_err();
            let e = crate::error::find(&err).expect("typed error");
            assert_eq!(e.kind, crate::error::Kind::Usage);
            assert!(e.message.contains(k), "{}", e.message);
        }
    }

    #[test]
    fn recipients_inline_or_file() {
        assert_eq!(
            parse_recipients("age1abc, age1def"),
            Recipients::Keys(vec!["age1abc".into(), "age1def".into()])
        );
        assert_eq!(
            parse_recipients("/etc/keys.txt"),
            Recipients::File(PathBuf::from("/etc/keys.txt"))
        );
    }

    #[test]
    fn production_marker() {
        assert!(Env::from_pairs(&[("NODE_ENV", "production")])
            .production_marker()
            .is_some());
        assert!(Env::from_pairs(&[("RAILS_ENV", "PRODUCTION")])
            .production_marker()
            .is_some());
        assert!(Env::from_pairs(&[("APP_ENV", "staging")])
            .production_marker()
            .is_none());
        assert!(Env::from_pairs(&[]).production_marker().is_none());
    }

    #[test]
    fn config_file_is_read_and_unknown_keys_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("aos-backup.toml"),
            "backup_dir = \"/srv/b\"\n[retention]\nkeep_last = 3\n[backup]\ncompression = \"gzip\"\n",
        )
        .unwrap();
        let s = Settings::resolve(&none(), Env::from_pairs(&[]), dir.path()).unwrap();
        assert_eq!(s.backup_dir.value, PathBuf::from("/srv/b"));
        assert_eq!(s.retention.keep_last, Some(3));
        assert_eq!(s.compression.value.algorithm, Algorithm::Gzip);
        for text in ["bakup_dir = 1\n", "[retention]\nkeep_lats = 3\n"] {
            std::fs::write(dir.path().join("aos-backup.toml"), text).unwrap();
            let err = Settings::resolve(&none(), Env::from_pairs(&[]), dir.path()).unwrap_err();
            assert_eq!(
                crate::error::find(&err).unwrap().kind,
                crate::error::Kind::Usage,
                "{text}"
            );
        }
    }
}
