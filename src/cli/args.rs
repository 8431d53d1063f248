//! The command line as typed; `config` turns it into validated settings and plans.

use crate::archive::format::{Algorithm, DumpFormat};
use crate::catalog::retention::Policy;
use crate::config::Overrides;
use crate::runtime::logging::LogFormat;
use clap::{ArgAction, Args, Parser, Subcommand};
use std::path::PathBuf;

/// What `--help` says after the options: where the connection and the tools come from.
pub const ENVIRONMENT_NOTES: &str = "\
Connection: DATABASE_URL (environment, ./.env, the config file, or --database-url).
Tools: pg_dump/pg_restore/psql from PG_BIN when set, else the Debian folder matching the server, else PATH;
in docker-exec mode (BACKUP_DOCKER_CONTAINER, or a Compose service), the container's own.";

/// The text after the options in `aos-backup --help`: the notes, then the exit codes (from
/// [`ExitCode`](crate::exit::ExitCode), their one definition).
#[must_use]
pub fn after_help() -> String {
    format!(
        "{ENVIRONMENT_NOTES}\n\nExit codes:\n{}",
        crate::exit::ExitCode::help_table()
    )
}

/// Back up and restore PostgreSQL databases safely, with pg_dump and pg_restore.
#[derive(Debug, Parser)]
#[command(name = "aos-backup", version, after_help = after_help())]
#[command(next_help_heading = "Global options")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Print results on stdout as JSON.
    #[arg(long, global = true)]
    pub json: bool,

    /// Database URL [env: DATABASE_URL] (prefer the environment: a password on the command line
    /// is visible in `ps`).
    #[arg(long, value_name = "URL", global = true)]
    pub database_url: Option<String>,

    /// Backup folder [env: BACKUP_DIR] [default: ./backups].
    #[arg(long, value_name = "DIR", global = true)]
    pub backup_dir: Option<PathBuf>,

    /// Folder holding pg_dump, pg_restore and psql [env: PG_BIN].
    #[arg(long, value_name = "DIR", global = true)]
    pub pg_bin: Option<PathBuf>,

    /// TOML config file [env: AOS_BACKUP_CONFIG] [default: ./aos-backup.toml if present].
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Prometheus textfile to update after every backup, prune, verify, restore and drill
    /// [env: BACKUP_METRICS_FILE].
    #[arg(long, value_name = "FILE", global = true)]
    pub metrics_file: Option<PathBuf>,
    /// Run pg_dump, pg_restore and psql inside this container with `docker exec -i`
    /// [env: BACKUP_DOCKER_CONTAINER].
    #[arg(long, value_name = "NAME", global = true)]
    pub docker_container: Option<String>,
}

impl Cli {
    /// What this command line sets among the configuration keys, for
    /// [`Settings::resolve`](crate::config::Settings::resolve).
    #[must_use]
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            database_url: self.database_url.clone(),
            backup_dir: self.backup_dir.clone(),
            pg_bin: self.pg_bin.clone(),
            lock_timeout: match &self.command {
                Command::Restore(a) => a.lock_timeout.clone(),
                _ => None,
            },
            check_max_age: match &self.command {
                Command::Check(a) => a.max_age.clone(),
                _ => None,
            },
            check_min_size: match &self.command {
                Command::Check(a) => a.min_size.clone(),
                _ => None,
            },
            check_max_drill_age: match &self.command {
                Command::Check(a) => a.max_drill_age.clone(),
                _ => None,
            },
            metrics_file: self.metrics_file.clone(),
            docker_container: self.docker_container.clone(),
            globals: match &self.command {
                Command::Backup(a) => a.globals || a.globals_with_passwords,
                _ => false,
            },
            remote: match &self.command {
                Command::Backup(a) => a.remote.clone(),
                Command::Push(a) => a.remote.clone(),
                _ => Vec::new(),
            },
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dump the database into the backup folder; prints the new file's path.
    Backup(BackupArgs),
    /// Restore a backup (a path, an id, or `latest`) into the database.
    Restore(RestoreArgs),
    /// List the backups in the backup folder, newest first.
    List(ListArgs),
    /// Check backups against their checksums and read them through.
    Verify(VerifyArgs),
    /// Prove that a backup restores: restore it into a scratch database, check it, drop it;
    /// reports RTO and RPO (exit 10: it did not restore; 11: a check failed).
    Drill(DrillArgs),
    /// Check the live database for consistency problems (orphans, NOT VALID constraints,
    /// invalid indexes, sequences behind their data...); exit 9 when any is found.
    Validate(ValidateArgs),
    /// Delete old backups according to the retention policy.
    Prune(PruneArgs),
    /// Copy every backup that an off-site destination lacks there (BACKUP_REMOTE).
    Push(PushArgs),
    /// Stay running and back up on the configured schedule (BACKUP_SCHEDULE); SIGTERM stops it.
    Daemon,
    /// Answer the owners' /backup, /status and /list in Telegram (long polling); SIGTERM stops it.
    TelegramBot,
    /// Print a systemd service and timer, or a crontab line, for the configured schedule.
    Schedule(ScheduleArgs),
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Check that each database has a recent, big enough, trusted backup (a Nagios plugin).
    #[command(after_help = check_after_help())]
    Check(CheckArgs),
    /// Print a shell completion script on stdout (see README: Install).
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout: `aos-backup man | man -l -`.
    Man,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// What `schedule --print` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchedulerKind {
    /// A systemd service running `backup` and a timer (`Persistent=true`) for the schedule.
    Systemd,
    /// A crontab line running `backup`.
    Cron,
    /// A systemd service running `aos-backup daemon` (any schedule, seconds included).
    Daemon,
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The kind of recipe to print.
    #[arg(long, value_enum, value_name = "KIND")]
    pub print: SchedulerKind,
}

#[derive(Debug, Args, Default)]
pub struct BackupArgs {
    /// Label appended to the file name: aos-backup-YYYYMMDD-HHMMSS-LABEL.
    #[arg(long, value_name = "LABEL")]
    pub name: Option<String>,

    /// Dump format [env: BACKUP_FORMAT] [default: custom].
    #[arg(long, value_enum)]
    pub format: Option<DumpFormat>,

    /// Parallel pg_dump jobs (directory format only) [env: BACKUP_JOBS].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<u32>,

    /// Compression [env: BACKUP_COMPRESSION] [default: zstd].
    #[arg(long, value_enum)]
    pub compression: Option<Algorithm>,

    /// Compression level (zstd 1-19, gzip 0-9) [env: BACKUP_COMPRESSION_LEVEL].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub compression_level: Option<i32>,

    /// Encrypt with age [env: BACKUP_ENCRYPTION=age].
    #[arg(long, overrides_with = "no_encrypt")]
    pub encrypt: bool,

    /// Do not encrypt, whatever the configuration says.
    #[arg(long)]
    pub no_encrypt: bool,

    /// File of age recipients, one `age1...` key per line [env: BACKUP_AGE_RECIPIENTS].
    #[arg(long, value_name = "FILE")]
    pub recipients_file: Option<PathBuf>,

    /// Encrypt with the passphrase in this file instead of recipients [env: BACKUP_PASSPHRASE_FILE].
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// Do not prune after the backup, even when a retention policy is configured.
    #[arg(long)]
    pub no_prune: bool,

    /// Back up every database on DATABASE_URL's server that the user may connect to (templates
    /// left out), each into its subfolder BACKUP_DIR/NAME/.
    #[arg(long, conflicts_with = "all_configured")]
    pub all_databases: bool,

    /// Back up each database of the config file's [[databases]] list into BACKUP_DIR/NAME/ (what
    /// `backup` does when that list exists and DATABASE_URL is unset).
    #[arg(long)]
    pub all_configured: bool,
    /// Also store the roles and tablespaces (pg_dumpall --globals-only, without role passwords)
    /// next to the backup [env: BACKUP_GLOBALS].
    #[arg(long)]
    pub globals: bool,

    /// Like --globals, with the roles' password hashes (needs a superuser).
    #[arg(long)]
    pub globals_with_passwords: bool,
    /// Keep no local copy: once every destination holds the new backup, checked, the local one
    /// is removed (it is kept when a destination fails: exit 8) [env: BACKUP_REMOTE_ONLY].
    #[arg(long)]
    pub remote_only: bool,
    /// Copy the backup to this off-site destination (s3://bucket/prefix or file:///path) instead
    /// of the configured ones; may be repeated [env: BACKUP_REMOTE].
    #[arg(long, value_name = "URL")]
    pub remote: Vec<String>,
}

/// `aos-backup push`.
#[derive(Debug, Args, Default)]
pub struct PushArgs {
    /// Push to this destination instead of the configured ones; may be repeated.
    #[arg(long, value_name = "URL")]
    pub remote: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Restore a backup from an off-site destination (the first configured one when DEST is
    /// left out): it is downloaded into a private temporary folder, checked, then restored.
    #[arg(long, value_name = "DEST", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub remote: Option<String>,
    /// A backup file or directory, a backup id (or a unique prefix of one), or `latest`.
    #[arg(value_name = "FILE|ID|latest")]
    pub target: String,

    /// Answer yes to the confirmation (required without a terminal when the target has tables).
    #[arg(short, long)]
    pub yes: bool,

    /// Restore even when the environment says production, or with --jobs into a non-empty database.
    #[arg(long)]
    pub force: bool,

    /// Parallel pg_restore jobs (not one transaction: see README).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<u32>,

    /// Restore a backup of database NAME (not the target's): `latest` and id prefixes look among
    /// NAME's backups, and this is the consent needed to restore one into another database.
    #[arg(long, value_name = "NAME")]
    pub from_database: Option<String>,

    /// Give up when another session's lock blocks the restore this long (e.g. 30s, 2m; 0 waits
    /// forever) [env: BACKUP_LOCK_TIMEOUT] [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub lock_timeout: Option<String>,

    /// End the other sessions connected to the target database before restoring (asks first,
    /// like the restore itself; --yes confirms).
    #[arg(long)]
    pub terminate_sessions: bool,

    /// Show what the restore would do (the backup, the target, the guards, each table) and
    /// change nothing; takes no lock.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not back up the target before replacing it [env: BACKUP_SAFETY_BACKUP=false].
    #[arg(long)]
    pub no_safety_backup: bool,

    /// Restore into database NAME on the same server (instead of DATABASE_URL's database).
    #[arg(long, value_name = "NAME")]
    pub target_db: Option<String>,

    /// Create the --target-db database when it does not exist.
    #[arg(long, requires = "target_db")]
    pub create: bool,

    /// Restore into a new database next to the target, check it, then swap it in by renaming
    /// (the old one is kept under a dated name).
    #[arg(long)]
    pub swap: bool,

    /// With --swap: drop the old database once the new one is in place.
    #[arg(long, requires = "swap")]
    pub drop_old: bool,

    /// Do not run validate's consistency checks on the restored database (they run by default;
    /// their findings are warnings and do not change the exit code).
    #[arg(long)]
    pub no_validate: bool,

    #[command(flatten)]
    pub keys: KeyArgs,
}

/// What `check --help` says after the options: its own exit codes (the Nagios plugin
/// convention), from [`CheckStatus`](crate::ops::check::CheckStatus), their one definition.
#[must_use]
pub fn check_after_help() -> String {
    format!(
        "Exit codes (check's own, as Nagios plugins use them):\n{}",
        crate::ops::check::CheckStatus::help_table()
    )
}

#[derive(Debug, Args, Default)]
pub struct CheckArgs {
    /// Check only database NAME [default: DATABASE_URL's database, else every database in the
    /// folder].
    #[arg(long, value_name = "NAME", conflicts_with = "all_databases")]
    pub database: Option<String>,

    /// Check every database with backups in the folder, even when DATABASE_URL names one.
    #[arg(long)]
    pub all_databases: bool,

    /// WARNING when a database's last complete backup is this old or older (26h, 90m, 2d)
    /// [env: BACKUP_CHECK_MAX_AGE] [default: 26h].
    #[arg(long, value_name = "AGE")]
    pub max_age: Option<String>,

    /// CRITICAL when it is this old or older [default: twice --max-age].
    #[arg(long, value_name = "AGE")]
    pub crit_age: Option<String>,

    /// CRITICAL when a database's last backup is smaller than this (1MB, 500KiB; 0 is off)
    /// [env: BACKUP_CHECK_MIN_SIZE] [default: 0].
    #[arg(long, value_name = "SIZE")]
    pub min_size: Option<String>,

    /// WARNING when a database's most recent drill is this old or older, or it has none
    /// (35d, 1w; 0 is off) [env: BACKUP_CHECK_MAX_DRILL_AGE] [default: 0].
    #[arg(long, value_name = "AGE")]
    pub max_drill_age: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct ListArgs {
    /// List an off-site destination instead, from its own listing and sidecars: a configured
    /// URL (the first one when DEST is left out) or another URL.
    #[arg(long, value_name = "DEST", num_args = 0..=1, require_equals = true, default_missing_value = "", conflicts_with = "all_databases")]
    pub remote: Option<String>,
    /// Only the backups of database NAME (default: every database in the folder).
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,

    /// Also list the database subfolders (BACKUP_DIR/NAME/) that `backup --all-databases` and
    /// `--all-configured` fill.
    #[arg(long)]
    pub all_databases: bool,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// age identity file for encrypted backups [env: BACKUP_AGE_IDENTITY].
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,

    /// File holding the passphrase of passphrase-encrypted backups [env: BACKUP_PASSPHRASE_FILE].
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify every backup at an off-site destination (the first configured one when DEST is
    /// left out): each is read back and checked as a local one.
    #[arg(long, value_name = "DEST", num_args = 0..=1, require_equals = true, default_missing_value = "", conflicts_with = "target")]
    pub remote: Option<String>,
    /// A backup id, `latest`, or a path; default: the newest backup.
    #[arg(value_name = "ID|FILE", conflicts_with = "all")]
    pub target: Option<String>,

    /// Verify every backup in the folder.
    #[arg(long)]
    pub all: bool,

    /// Look among the backups of database NAME for `latest` and id prefixes (with --all: verify
    /// only NAME's backups) [default: DATABASE_URL's database, else the whole folder].
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,

    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Drill a backup of an off-site destination (the first configured one when DEST is left
    /// out): it is downloaded into a private temporary folder and checked first.
    #[arg(long, value_name = "DEST", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub remote: Option<String>,

    /// A backup id (or a unique prefix of one), `latest`, or a path.
    #[arg(value_name = "ID|latest", default_value = "latest")]
    pub target: String,

    /// Look among the backups of database NAME for `latest` and id prefixes [default:
    /// DATABASE_URL's database].
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,

    /// Create the scratch database on this server instead of DATABASE_URL's (its database is
    /// only connected to; prefer a URL without a password, which `ps` shows).
    #[arg(long, value_name = "URL", conflicts_with = "ephemeral")]
    pub scratch_url: Option<String>,

    /// Restore into a throwaway PostgreSQL cluster of the backup's version, started from PG_BIN's
    /// initdb and postgres on a private socket and removed afterwards (the default when
    /// DATABASE_URL's role may not create databases).
    #[arg(long)]
    pub ephemeral: bool,

    /// A file of SQL queries, each of which must return `true` or at least one row.
    #[arg(long, value_name = "FILE")]
    pub check_sql: Option<PathBuf>,

    /// Also run pg_amcheck in the restored database (validate --deep).
    #[arg(long)]
    pub deep: bool,

    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Also run pg_amcheck over the heaps and B-tree indexes (needs pg_amcheck and the amcheck
    /// extension in the database; says so when either is missing).
    #[arg(long)]
    pub deep: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Apply the policy at an off-site destination instead (the first configured one when DEST
    /// is left out), to what it holds: nothing is deleted there because it is gone locally.
    #[arg(long, value_name = "DEST", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub remote: Option<String>,
    /// Print the plan (each backup, keep or delete, and why) without deleting anything.
    #[arg(long, short = 'n')]
    pub dry_run: bool,

    /// Apply the policy to the backups of database NAME [default: DATABASE_URL's database].
    #[arg(long, value_name = "NAME", conflicts_with = "all_databases")]
    pub database: Option<String>,

    /// Apply the policy to each database's backups in the folder, separately.
    #[arg(long)]
    pub all_databases: bool,

    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// Retention rules given on the command line; each overrides its environment/config value.
/// 0 turns a rule off.
#[derive(Debug, Args, Default)]
pub struct PolicyArgs {
    /// Keep the N newest backups; 0: off [env: BACKUP_KEEP_LAST].
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N days [env: BACKUP_KEEP_DAILY].
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks [env: BACKUP_KEEP_WEEKLY].
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months [env: BACKUP_KEEP_MONTHLY].
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the last N years [env: BACKUP_KEEP_YEARLY].
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep backups younger than N days; 0: off [env: BACKUP_RETENTION_DAYS].
    #[arg(long, value_name = "DAYS", alias = "retention-days")]
    pub max_age_days: Option<u32>,
}

impl PolicyArgs {
    /// The rules given, as a policy to lay over the configured one
    /// ([`overlay_policy`](crate::config::overlay_policy)).
    #[must_use]
    pub fn policy(&self) -> Policy {
        Policy {
            keep_last: self.keep_last,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            max_age_days: self.max_age_days,
            safety_backup_keep: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KEYS, KEY_COUNT};
    use clap::CommandFactory;

    #[test]
    fn keys_are_in_enum_order_with_unique_names_and_variables() {
        for (i, d) in KEYS.iter().enumerate() {
            assert_eq!(d.key as usize, i, "{} is out of order", d.name);
            assert_eq!(d.key.def().name, d.name);
        }
        let mut names: Vec<_> = KEYS.iter().map(|d| d.name).collect();
        let mut envs: Vec<_> = KEYS.iter().map(|d| d.env).collect();
        names.sort_unstable();
        names.dedup();
        envs.sort_unstable();
        envs.dedup();
        assert_eq!(names.len(), KEY_COUNT);
        assert_eq!(envs.len(), KEY_COUNT);
    }

    /// The `[env: VAR]` (or `[env: VAR=value]`) names in a help text.
    fn env_names(help: &str) -> Vec<&str> {
        help.split("[env: ")
            .skip(1)
            .filter_map(|rest| rest.split([']', '=']).next())
            .collect()
    }

    fn find_arg<'a>(cmd: &'a clap::Command, flag: &str) -> &'a clap::Arg {
        let (sub, long) = match flag.split_once(' ') {
            Some((sub, long)) => (Some(sub), long),
            None => (None, flag),
        };
        let cmd = match sub {
            Some(s) => cmd
                .find_subcommand(s)
                .unwrap_or_else(|| panic!("no subcommand {s}")),
            None => cmd,
        };
        let long = long.trim_start_matches("--");
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .unwrap_or_else(|| panic!("no flag {flag}"))
    }

    #[test]
    fn each_flag_help_names_its_variable_and_default_from_the_table() {
        let cmd = Cli::command();
        for d in KEYS {
            for flag in d.flags {
                let arg = find_arg(&cmd, flag);
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                assert_eq!(
                    env_names(&help),
                    vec![d.env],
                    "{flag}'s help must say [env: {}]: {help:?}",
                    d.env
                );
                // A switch (`--encrypt`) has no default of its own to show.
                if let Some(default) = d.default.filter(|_| arg.get_action().takes_values()) {
                    assert!(
                        help.contains(&format!("[default: {default}]")),
                        "{flag}'s help must say [default: {default}]: {help:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_variable_in_the_help_is_a_key() {
        let cmd = Cli::command();
        let mut helps = Vec::new();
        for c in std::iter::once(&cmd).chain(cmd.get_subcommands()) {
            for a in c.get_arguments() {
                helps.push(a.get_help().map(ToString::to_string).unwrap_or_default());
            }
        }
        for help in &helps {
            for var in env_names(help) {
                assert!(
                    KEYS.iter().any(|d| d.env == var),
                    "[env: {var}] in {help:?} is not in KEYS"
                );
            }
        }
    }

    #[test]
    fn the_command_line_becomes_plain_overrides() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "aos-backup",
            "--config",
            "/c.toml",
            "--database-url",
            "postgresql:///d",
            "--backup-dir",
            "/b",
            "--pg-bin",
            "/pg",
            "restore",
            "latest",
            "--lock-timeout",
            "5s",
        ])
        .unwrap();
        let o = cli.overrides();
        assert_eq!(o.config_file, Some(PathBuf::from("/c.toml")));
        assert_eq!(o.database_url.as_deref(), Some("postgresql:///d"));
        assert_eq!(o.backup_dir, Some(PathBuf::from("/b")));
        assert_eq!(o.pg_bin, Some(PathBuf::from("/pg")));
        assert_eq!(o.lock_timeout.as_deref(), Some("5s"));
        let o = Cli::try_parse_from(["aos-backup", "list"])
            .unwrap()
            .overrides();
        assert!(o.config_file.is_none() && o.database_url.is_none() && o.lock_timeout.is_none());
        let cli = Cli::try_parse_from([
            "aos-backup",
            "prune",
            "--keep-last",
            "3",
            "--max-age-days",
            "0",
        ])
        .unwrap();
        let Command::Prune(p) = &cli.command else {
            unreachable!()
        };
        let want = Policy {
            keep_last: Some(3),
            max_age_days: Some(0),
            ..Policy::default()
        };
        assert_eq!(p.policy.policy(), want);
    }
}
