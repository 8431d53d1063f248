//! Errors that decide an exit code; everything else is an `anyhow` chain with context.

use crate::exit::ExitCode;
use std::fmt;

/// What kind of failure this is; it decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Failure,
    Usage,
    Refused,
    Integrity,
    Locked,
    Tools,
    Connection,
    Interrupted,
    Terminated,
}

impl Kind {
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
            Kind::Interrupted => ExitCode::Interrupted,
            Kind::Terminated => ExitCode::Terminated,
        }
    }
}

/// A failure the user sees as one line plus an optional hint.
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    pub hint: Option<String>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Kind::Usage, message)
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(Kind::Refused, message)
    }

    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(Kind::Integrity, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

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
