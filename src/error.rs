//! The one error type: a kind (which decides the exit code, in one place), a one-line message, a
//! hint, and the chain of causes. Inside the crate, typed errors travel in `anyhow` chains with
//! context; [`Error::from_chain`] turns such a chain into what a caller sees.

use crate::exit::ExitCode;
use std::fmt;

/// What kind of failure this is; it decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything else (a tool failed, the disk is full).
    Failure,
    /// Bad input: a flag, a setting, a name.
    Usage,
    /// A guard refused to go on (production, another database's backup, no confirmation).
    Refused,
    /// A backup failed its checksum or is damaged.
    Integrity,
    /// Another aos-backup holds the folder's lock.
    Locked,
    /// A PostgreSQL client tool is missing or too old.
    Tools,
    /// The server could not be reached or refused us.
    Connection,
    /// The backup was made and kept locally, but a destination did not get a verified copy.
    Offsite,
    /// `validate` found consistency problems.
    Findings,
    /// A drill could not restore the backup into its scratch database.
    DrillRestore,
    /// A drill restored the backup, but a check failed.
    DrillCheck,
    /// Ctrl-C.
    Interrupted,
    /// SIGTERM.
    Terminated,
}

impl Kind {
    /// The process exit code for this kind: the one mapping.
    #[must_use]
    pub fn exit_code(self) -> ExitCode {
        match self {
            Kind::Failure => ExitCode::Failure,
            Kind::Usage => ExitCode::Usage,
            Kind::Refused => ExitCode::Refused,
            Kind::Integrity => ExitCode::Integrity,
            Kind::Locked => ExitCode::Locked,
            Kind::Tools => ExitCode::Tools,
            Kind::Connection => ExitCode::Connection,
            Kind::Offsite => ExitCode::Offsite,
            Kind::Findings => ExitCode::Findings,
            Kind::DrillRestore => ExitCode::DrillRestore,
            Kind::DrillCheck => ExitCode::DrillCheck,
            Kind::Interrupted => ExitCode::Interrupted,
            Kind::Terminated => ExitCode::Terminated,
        }
    }
}

/// A failure the user sees as one line plus an optional hint.
#[derive(Debug)]
pub struct Error {
    /// Decides the exit code.
    pub kind: Kind,
    /// One line: what failed and why.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// The chain of causes, when this error sums one up (see [`Error::from_chain`]).
    source: Option<anyhow::Error>,
}

impl Error {
    /// An error of `kind` saying `message`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    /// Sums up a chain of causes as one error: the kind and hint of the typed error in it (else
    /// [`Kind::Failure`] and the hint `fallback_hint` finds for the whole chain), and the message
    /// of the whole chain on one line, with every known secret masked and control characters
    /// replaced. The chain stays available as [`std::error::Error::source`].
    #[must_use]
    pub fn from_chain(
        err: anyhow::Error,
        fallback_hint: impl FnOnce(&anyhow::Error, &str) -> Option<String>,
    ) -> Error {
        use crate::runtime::redact::scrub;
        let message = one_line(&err);
        let (kind, hint) = match find(&err) {
            Some(t) => (t.kind, t.hint.clone()),
            None => (Kind::Failure, None),
        };
        let hint = hint
            .or_else(|| fallback_hint(&err, &message))
            .map(|h| scrub(&h));
        Error {
            kind,
            message,
            hint,
            source: Some(err),
        }
    }

    /// [`Error::from_chain`] with the usual hints: an I/O error on our own files (a full disk, a
    /// folder we may not write) is about the disk or the path, and that is said before guessing
    /// from the text (where "permission denied" would otherwise read as the database's).
    #[must_use]
    pub fn from_anyhow(err: anyhow::Error) -> Error {
        Error::from_chain(err, |err, message| {
            err.chain()
                .find_map(|e| e.downcast_ref::<std::io::Error>())
                .and_then(|e| crate::runtime::fsutil::local_io_hint(e, None))
                .or_else(|| crate::runtime::process::classify(message).1)
        })
    }

    /// The process exit code for this error.
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        self.kind.exit_code()
    }

    /// Adds what to do about it.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Bad input.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Kind::Usage, message)
    }

    /// A guard refused.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(Kind::Refused, message)
    }

    /// A damaged backup.
    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(Kind::Integrity, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| -> &(dyn std::error::Error + 'static) { e.as_ref() })
    }
}

/// The message of a whole chain of causes on one line, as [`Error::from_chain`] gives it: every
/// known secret masked, control characters replaced.
#[must_use]
pub fn one_line(err: &anyhow::Error) -> String {
    use crate::runtime::redact::{sanitize, scrub};
    sanitize(&scrub(&format!("{err:#}")).replace('\n', " "))
}

/// The exit code a chain of causes ends the run with (that of its typed error, else failure).
#[must_use]
pub fn exit_code_of(err: &anyhow::Error) -> ExitCode {
    find(err).map_or(Kind::Failure, |e| e.kind).exit_code()
}

/// Finds the typed error in an `anyhow` chain, if any.
#[must_use]
pub fn find(err: &anyhow::Error) -> Option<&Error> {
    err.chain().find_map(|e| e.downcast_ref::<Error>())
}

/// Shorthand for returning a typed error from an `anyhow` function.
#[macro_export]
macro_rules! bail_kind {
    ($kind:expr, $($arg:tt)*) => {
        return Err(::anyhow::Error::new($crate::error::Error::new($kind, format!($($arg)*))))
    };
}
