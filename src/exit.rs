//! Exit codes: one documented number per way a run can end, so scripts and cron can branch on them.

/// How a run ended. The numbers are part of the public interface (README, `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything asked for was done.
    Success = 0,
    /// The operation failed (pg_dump/pg_restore error, disk full, I/O error, ...).
    Failure = 1,
    /// The command line or the configuration is wrong, or the key does not open the backup;
    /// nothing was done.
    Usage = 2,
    /// A safety guard refused a destructive operation; nothing was done.
    Refused = 3,
    /// A backup failed verification (checksum mismatch, damaged or truncated archive, missing metadata).
    Integrity = 4,
    /// Another aos-backup run holds the lock on the backup folder.
    Locked = 5,
    /// pg_dump, pg_restore or psql is missing or too old for the server.
    Tools = 6,
    /// The database could not be reached (refused, authentication, missing database).
    Connection = 7,
    /// Interrupted by SIGINT (Ctrl-C).
    Interrupted = 130,
    /// Terminated by SIGTERM.
    Terminated = 143,
}

impl ExitCode {
    /// The process exit status.
    #[must_use]
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Every exit code with its meaning, for `--help` and the README.
    pub const TABLE: &'static [(i32, &'static str)] = &[
        (0, "success"),
        (
            1,
            "failure: the operation failed (pg_dump/pg_restore error, I/O error, disk full)",
        ),
        (
            2,
            "usage: bad command line, configuration or input file, or a missing or wrong key; nothing was done",
        ),
        (
            3,
            "refused by a safety guard (production, no confirmation); nothing was done",
        ),
        (
            4,
            "integrity: a backup failed verification (checksum, damage, missing metadata)",
        ),
        (5, "locked: another aos-backup run holds the backup folder"),
        (
            6,
            "tools: pg_dump/pg_restore/psql missing or older than the server",
        ),
        (
            7,
            "connection: the database could not be reached or refused the login",
        ),
        (130, "interrupted by Ctrl-C (SIGINT)"),
        (143, "terminated by SIGTERM"),
    ];
}
