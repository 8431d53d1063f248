//! The configuration keys, defined once: each key's name, environment variable, TOML keys, flags,
//! default and help. Settings resolution reads the environment variables and defaults from here,
//! `aos-backup config` lists these keys, and tests hold the clap help and the README's
//! Configuration table to this table.

/// A configuration key. The order is the order of [`KEYS`] and of `aos-backup config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    ConfigFile,
    DatabaseUrl,
    BackupDir,
    PgBin,
    Format,
    Compression,
    CompressionLevel,
    Jobs,
    Encryption,
    AgeRecipients,
    AgeIdentity,
    PassphraseFile,
    SuspectRatio,
    LockTimeout,
    KeepLast,
    KeepDaily,
    KeepWeekly,
    KeepMonthly,
    KeepYearly,
    MaxAgeDays,
    DockerContainer,
    DockerComposeService,
    DockerComposeFile,
    Globals,
}

/// One configuration key's facts.
#[derive(Debug)]
pub struct KeyDef {
    pub key: Key,
    /// The name `aos-backup config` shows.
    pub name: &'static str,
    /// The environment (or `.env`) variable.
    pub env: &'static str,
    /// The TOML config file keys (`section.key`); empty when the file cannot set it.
    pub toml: &'static [&'static str],
    /// The flags that set it, as `subcommand --flag` (or `--flag` when global).
    pub flags: &'static [&'static str],
    /// The default as users read and write it; `None` when unset by default (or when it depends
    /// on another key). Resolution parses this text like a value from the environment.
    pub default: Option<&'static str>,
    /// One line of help.
    pub help: &'static str,
}

impl Key {
    /// This key's row in [`KEYS`].
    #[must_use]
    pub fn def(self) -> &'static KeyDef {
        &KEYS[self as usize]
    }

    /// This key's environment variable.
    #[must_use]
    pub fn env(self) -> &'static str {
        self.def().env
    }

    /// This key's default text (see [`KeyDef::default`]).
    #[must_use]
    pub fn default_text(self) -> Option<&'static str> {
        self.def().default
    }
}

/// Every configuration key, in [`Key`] order.
pub const KEYS: &[KeyDef] = &[
    KeyDef {
        key: Key::ConfigFile,
        name: "config_file",
        env: "AOS_BACKUP_CONFIG",
        toml: &[],
        flags: &["--config"],
        default: Some("./aos-backup.toml if present"),
        help: "TOML config file",
    },
    KeyDef {
        key: Key::DatabaseUrl,
        name: "database_url",
        env: "DATABASE_URL",
        toml: &["database_url"],
        flags: &["--database-url"],
        default: None,
        help: "postgres:// or postgresql:// URL of the database (password redacted here)",
    },
    KeyDef {
        key: Key::BackupDir,
        name: "backup_dir",
        env: "BACKUP_DIR",
        toml: &["backup_dir"],
        flags: &["--backup-dir"],
        default: Some("./backups"),
        help: "backup folder",
    },
    KeyDef {
        key: Key::PgBin,
        name: "pg_bin",
        env: "PG_BIN",
        toml: &["pg_bin"],
        flags: &["--pg-bin"],
        default: None,
        help: "folder holding pg_dump, pg_restore and psql (unset: Debian's folder, then PATH)",
    },
    KeyDef {
        key: Key::Format,
        name: "format",
        env: "BACKUP_FORMAT",
        toml: &["backup.format"],
        flags: &["backup --format"],
        default: Some("custom"),
        help: "dump format: custom, plain or directory",
    },
    KeyDef {
        key: Key::Compression,
        name: "compression",
        env: "BACKUP_COMPRESSION",
        toml: &["backup.compression"],
        flags: &["backup --compression"],
        default: Some("zstd"),
        help: "compression: zstd, gzip, pg_dump or none",
    },
    KeyDef {
        key: Key::CompressionLevel,
        name: "compression_level",
        env: "BACKUP_COMPRESSION_LEVEL",
        toml: &["backup.compression_level"],
        flags: &["backup --compression-level"],
        default: None,
        help: "compression level (zstd 1-19, default 1; gzip 0-9, default 6)",
    },
    KeyDef {
        key: Key::Jobs,
        name: "jobs",
        env: "BACKUP_JOBS",
        toml: &["backup.jobs"],
        flags: &["backup --jobs"],
        default: None,
        help: "parallel pg_dump jobs (directory format)",
    },
    KeyDef {
        key: Key::Encryption,
        name: "encryption",
        env: "BACKUP_ENCRYPTION",
        toml: &["encryption.enabled"],
        flags: &["backup --encrypt"],
        default: Some("none"),
        help: "age to encrypt new backups, none not to",
    },
    KeyDef {
        key: Key::AgeRecipients,
        name: "age_recipients",
        env: "BACKUP_AGE_RECIPIENTS",
        toml: &["encryption.recipients", "encryption.recipients_file"],
        flags: &["backup --recipients-file"],
        default: None,
        help: "age public keys, or the path of a file of them",
    },
    KeyDef {
        key: Key::AgeIdentity,
        name: "age_identity",
        env: "BACKUP_AGE_IDENTITY",
        toml: &["encryption.identity_file"],
        flags: &["restore --identity", "verify --identity"],
        default: None,
        help: "age identity file, to read encrypted backups",
    },
    KeyDef {
        key: Key::PassphraseFile,
        name: "passphrase_file",
        env: "BACKUP_PASSPHRASE_FILE",
        toml: &["encryption.passphrase_file"],
        flags: &[
            "backup --passphrase-file",
            "restore --passphrase-file",
            "verify --passphrase-file",
        ],
        default: None,
        help: "file whose first line is the encryption passphrase",
    },
    KeyDef {
        key: Key::SuspectRatio,
        name: "suspect_ratio",
        env: "BACKUP_SUSPECT_RATIO",
        toml: &["backup.suspect_ratio"],
        flags: &[],
        default: Some("0.5"),
        help: "a new backup below this fraction of the previous one is suspect; 0 is off",
    },
    KeyDef {
        key: Key::LockTimeout,
        name: "restore.lock_timeout",
        env: "BACKUP_LOCK_TIMEOUT",
        toml: &["restore.lock_timeout"],
        flags: &["restore --lock-timeout"],
        default: Some("30s"),
        help: "how long a restore waits for another session's lock; 0 waits forever",
    },
    KeyDef {
        key: Key::KeepLast,
        name: "retention.keep_last",
        env: "BACKUP_KEEP_LAST",
        toml: &["retention.keep_last"],
        flags: &["prune --keep-last"],
        default: None,
        help: "keep the N newest backups; 0 is off",
    },
    KeyDef {
        key: Key::KeepDaily,
        name: "retention.keep_daily",
        env: "BACKUP_KEEP_DAILY",
        toml: &["retention.keep_daily"],
        flags: &["prune --keep-daily"],
        default: None,
        help: "keep the newest backup of each of the last N days; 0 is off",
    },
    KeyDef {
        key: Key::KeepWeekly,
        name: "retention.keep_weekly",
        env: "BACKUP_KEEP_WEEKLY",
        toml: &["retention.keep_weekly"],
        flags: &["prune --keep-weekly"],
        default: None,
        help: "keep the newest backup of each of the last N ISO weeks; 0 is off",
    },
    KeyDef {
        key: Key::KeepMonthly,
        name: "retention.keep_monthly",
        env: "BACKUP_KEEP_MONTHLY",
        toml: &["retention.keep_monthly"],
        flags: &["prune --keep-monthly"],
        default: None,
        help: "keep the newest backup of each of the last N months; 0 is off",
    },
    KeyDef {
        key: Key::KeepYearly,
        name: "retention.keep_yearly",
        env: "BACKUP_KEEP_YEARLY",
        toml: &["retention.keep_yearly"],
        flags: &["prune --keep-yearly"],
        default: None,
        help: "keep the newest backup of each of the last N years; 0 is off",
    },
    KeyDef {
        key: Key::MaxAgeDays,
        name: "retention.max_age_days",
        env: "BACKUP_RETENTION_DAYS",
        toml: &["retention.max_age_days"],
        flags: &["prune --max-age-days"],
        default: None,
        help: "keep backups younger than N days; 0 is off",
    },
    KeyDef {
        key: Key::DockerContainer,
        name: "docker.container",
        env: "BACKUP_DOCKER_CONTAINER",
        toml: &["docker.container"],
        flags: &["--docker-container"],
        default: None,
        help: "run pg_dump, pg_restore and psql inside this container (docker exec -i)",
    },
    KeyDef {
        key: Key::DockerComposeService,
        name: "docker.compose_service",
        env: "BACKUP_DOCKER_COMPOSE_SERVICE",
        toml: &["docker.compose_service"],
        flags: &[],
        default: None,
        help: "run the tools inside this Compose service (docker compose exec -T)",
    },
    KeyDef {
        key: Key::DockerComposeFile,
        name: "docker.compose_file",
        env: "BACKUP_DOCKER_COMPOSE_FILE",
        toml: &["docker.compose_file"],
        flags: &[],
        default: None,
        help: "the Compose file of that service (unset: Compose looks from the current folder)",
    },
    KeyDef {
        key: Key::Globals,
        name: "globals",
        env: "BACKUP_GLOBALS",
        toml: &["backup.globals"],
        flags: &["backup --globals"],
        default: Some("false"),
        help: "also store roles and tablespaces (pg_dumpall --globals-only) with each backup",
    },
];

/// The number of keys.
pub const KEY_COUNT: usize = KEYS.len();
