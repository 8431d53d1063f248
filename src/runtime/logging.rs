//! Logging on stderr through tracing: text or JSON, no colour off a terminal, secrets scrubbed.

use std::io::{self, IsTerminal, Write};
use tracing_subscriber::{fmt::MakeWriter, EnvFilter};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for cron and log shippers.
    Json,
}

/// Sets up the global subscriber. `verbosity`: -1 quiet (errors only), 0 info, 1 debug, 2+ trace.
pub fn init(verbosity: i8, format: LogFormat) {
    let level = match verbosity {
        i8::MIN..=-1 => "error",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("AOS_BACKUP_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,aos_backup={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbingStderr)
        .with_target(false);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(color_enabled())
            .without_time()
            .fmt_fields(text_fields())
            .try_init(),
    };
    // A second init (tests calling run twice) keeps the first subscriber.
    drop(result);
}

/// Fields that JSON log lines carry for machines, and that text lines leave out because their
/// message already says it in words (`file`, `bytes`, `database`, `duration_ms`, ...).
pub const STRUCTURED_ONLY: &[&str] = &[
    "file",
    "bytes",
    "size_bytes",
    "database",
    "duration_ms",
    "id",
    "tables",
    "deleted",
    "kept",
    "verified",
    "job",
    "slot",
    "outcome",
    "next_run",
];

/// Text lines: the message, then any other field as `name=value`, except [`STRUCTURED_ONLY`].
fn text_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| match field.name() {
        "message" => write!(w, "{value:?}"),
        name if STRUCTURED_ONLY.contains(&name) => Ok(()),
        name => write!(w, " {name}={value:?}"),
    })
    .display_messages()
}

/// Colour only on a terminal, and never when `NO_COLOR` is set.
#[must_use]
pub fn color_enabled() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Whether stderr is a terminal a person watches (progress bars, prompts).
#[must_use]
pub fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal()
}

/// stderr, with registered secrets masked in every line.
struct ScrubbingStderr;

struct ScrubbingWriter {
    buf: Vec<u8>,
}

impl<'a> MakeWriter<'a> for ScrubbingStderr {
    type Writer = ScrubbingWriter;
    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingWriter { buf: Vec::new() }
    }
}

impl Write for ScrubbingWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbingWriter {
    fn drop(&mut self) {
        let text = crate::runtime::redact::scrub(&String::from_utf8_lossy(&self.buf));
        let _ = crate::runtime::progress::suspend(|| io::stderr().write_all(text.as_bytes()));
    }
}
