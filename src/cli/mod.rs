//! The command-line front end: parse, run the subcommand while watching for signals, render the
//! outcome and map it to an exit code.

pub mod args;
pub mod commands;
pub mod hooks;
pub mod metrics;
pub mod notify;
pub mod runs;

use crate::error;
use crate::exit::ExitCode;
use crate::ops::check::CheckStatus;
use crate::runtime::context::OpContext;
use crate::runtime::{logging, progress};
use clap::Parser;

/// Runs the command line and returns the process exit status.
#[must_use]
pub fn run() -> i32 {
    let cli = match args::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return refused_command_line(&e),
    };
    if let Some(code) = commands::generate::standalone(&cli.command) {
        return code;
    }
    let verbosity = if cli.quiet {
        -1
    } else {
        i8::try_from(cli.verbose).unwrap_or(i8::MAX)
    };
    logging::init(verbosity, cli.log_format);
    let json = cli.json;
    let log_format = cli.log_format;
    // `check` ends with its own codes, an error included (UNKNOWN).
    let own_codes = matches!(cli.command, args::Command::Check(_));

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::Failure.code();
        }
    };
    crate::runtime::signal::install_flag();
    let progress: std::sync::Arc<dyn crate::runtime::progress::Progress> =
        if logging::stderr_is_terminal() && !cli.quiet && cli.log_format == logging::LogFormat::Text
        {
            std::sync::Arc::new(crate::runtime::progress::Terminal)
        } else {
            std::sync::Arc::new(crate::runtime::progress::Silent)
        };
    let op = OpContext::new(progress);
    let stdout_used = commands::StdoutUsed::default();
    let reports = commands::ReportsWhenCancelled::default();
    let (op2, used2, reports2) = (op.clone(), stdout_used.clone(), reports.clone());
    let (result, metrics) = runtime.block_on(async move {
        let op = op2;
        let ctx = match build_ctx(&cli, op.clone(), used2, reports2) {
            Ok(ctx) => ctx,
            Err(e) => return (Err(e), None),
        };
        if matches!(cli.command, args::Command::Daemon) {
            // The daemon watches the signals itself: each of its runs has its own operation.
            let r = commands::daemon::run(&ctx, &mut Signals::new()).await;
            return (r.map(|()| commands::Finish::Success), None);
        }
        if matches!(cli.command, args::Command::TelegramBot) {
            // The bot too: each /backup is its own operation.
            let r = commands::telegram_bot::run(&ctx, &mut Signals::new()).await;
            return (r.map(|()| commands::Finish::Success), None);
        }
        let metrics = metrics::Pending::start(&cli.command, &ctx);
        let followers = std::sync::Arc::clone(&ctx.followers);
        let result = supervise(commands::dispatch(cli, ctx), &op, &reports).await;
        // Uploads started while a backup was written that nothing completed (a signal cut the
        // run short): abort them before the process ends, rather than leave their parts.
        followers.clear();
        (result, metrics)
    });
    op.cleanup_temps();
    // Blocking threads (a pipeline that was interrupted) must not hold up the exit.
    runtime.shutdown_background();
    if let Some(m) = metrics {
        m.finish(result.is_ok());
    }
    match result {
        Ok(finish) => finish.code(),
        Err(e) if own_codes => {
            let err = error::Error::from_anyhow(e);
            commands::check::print_unknown(&err.message, err.hint.as_deref(), json);
            report_error(err, false, log_format);
            CheckStatus::Unknown.code()
        }
        Err(e) => report(e, json && !stdout_used.get(), log_format).code(),
    }
}

/// Prints what clap says about a command line it did not run (an error, or `--help` and
/// `--version`) and returns the exit status: 0 for help, else a usage error (UNKNOWN for `check`,
/// with its status line on stdout).
fn refused_command_line(e: &clap::Error) -> i32 {
    let _ = e.print();
    if !e.use_stderr() {
        ExitCode::Success.code()
    } else if names_check() {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or_default();
        let message = format!("bad command line: {}", first.trim_start_matches("error: "));
        commands::check::print_unknown(&message, None, false);
        CheckStatus::Unknown.code()
    } else {
        ExitCode::Usage.code()
    }
}

/// Whether a command line that clap refused was meant for `check` (whose usage errors are
/// UNKNOWN, not exit 2, which a monitoring system would read as CRITICAL).
fn names_check() -> bool {
    use clap::CommandFactory;
    args::Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(std::env::args_os())
        .is_ok_and(|m| m.subcommand_name() == Some("check"))
}

/// Runs the command while watching for SIGINT and SIGTERM: a signal cancels `op` and ends the
/// run, except while a restore's COMMIT waits for the server's answer.
async fn supervise(
    work: impl std::future::Future<Output = anyhow::Result<commands::Finish>>,
    op: &OpContext,
    reports: &commands::ReportsWhenCancelled,
) -> anyhow::Result<commands::Finish> {
    tokio::pin!(work);
    let mut signals = Signals::new();
    // A signal that arrived while a restore's COMMIT waited for the server's answer.
    let mut waited: Option<i32> = None;
    loop {
        tokio::select! {
            r = &mut work => {
                return match (waited, r) {
                    // The answer came: the message says what it was.
                    (Some(sig), Ok(_)) => Err(op.interrupted_error(sig).into()),
                    (_, r) => r,
                };
            }
            sig = signals.next() => {
                // psql may have printed that it sends COMMIT a moment ago: give the thread
                // that reads its stderr a moment to catch up (bounded: 3 s, enough on a loaded
                // 2-core machine) before deciding.
                for _ in 0..300 {
                    if waited.is_some() || !op.restore().commit_handed_over() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                if waited.is_none() && op.restore().commit_pending() {
                    // Abandoning now would leave the outcome unknown: wait for the answer.
                    waited = Some(sig);
                    tracing::warn!(
                        "{} received while the server commits the restore: waiting for its answer (send the signal again to stop waiting; the outcome is then unknown)",
                        if sig == libc::SIGTERM { "SIGTERM" } else { "Ctrl-C" }
                    );
                    continue;
                }
                op.cancel(sig);
                if reports.get() {
                    return finish_cancelled(&mut work, &mut signals, op, sig).await;
                }
                return Err(op.interrupted_error(sig).into());
            }
        }
    }
}

/// How long a cancelled command that reports what it finished may take to end.
const REPORT_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// Lets a cancelled command that reports what it finished end by itself (its children are
/// stopped); a second signal, or [`REPORT_GRACE`], stops the wait. The run ends as interrupted
/// whatever the command returns.
async fn finish_cancelled(
    work: &mut (impl std::future::Future<Output = anyhow::Result<commands::Finish>> + Unpin),
    signals: &mut Signals,
    op: &OpContext,
    sig: i32,
) -> anyhow::Result<commands::Finish> {
    tokio::select! {
        r = work => r.and(Err(op.interrupted_error(sig).into())),
        _ = signals.next() => Err(op.interrupted_error(sig).into()),
        () = tokio::time::sleep(REPORT_GRACE) => Err(op.interrupted_error(sig).into()),
    }
}

fn build_ctx(
    cli: &args::Cli,
    op: OpContext,
    stdout_used: commands::StdoutUsed,
    reports_when_cancelled: commands::ReportsWhenCancelled,
) -> anyhow::Result<commands::Ctx> {
    let cwd = std::env::current_dir()
        .map_err(|e| anyhow::anyhow!("cannot read the current folder: {e}"))?;
    let env = crate::config::Env::load(&cwd)?;
    let now = match env.var("AOS_BACKUP_NOW") {
        Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .map_err(|e| error::Error::usage(format!("invalid AOS_BACKUP_NOW={s:?}: {e}")))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let settings = crate::config::Settings::resolve(&cli.overrides(), env, &cwd)?;
    Ok(commands::Ctx {
        settings,
        json: cli.json,
        op,
        stdout_used,
        reports_when_cancelled,
        now,
        record: metrics::RunRecord::default(),
        followers: std::sync::Arc::default(),
        made: std::sync::Arc::default(),
    })
}

/// SIGINT and SIGTERM, watched from start to end (no signal is missed between two waits).
pub struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Starts watching.
    #[must_use]
    pub fn new() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Resolves when SIGINT or SIGTERM arrives, with the signal number.
    pub async fn next(&mut self) -> i32 {
        let (Some(int), Some(term)) = (self.int.as_mut(), self.term.as_mut()) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
        }
    }
}

/// Prints the error as one line (plus a hint) and returns its exit code.
fn report(err: anyhow::Error, json: bool, format: logging::LogFormat) -> ExitCode {
    report_error(error::Error::from_anyhow(err), json, format)
}

/// [`report`], for an error already summed up.
fn report_error(err: error::Error, json: bool, format: logging::LogFormat) -> ExitCode {
    let (message, hint, code) = (err.message, err.hint, err.kind.exit_code());
    if json {
        let v = serde_json::json!({ "ok": false, "error": message, "hint": hint, "exit_code": code.code() });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    match format {
        logging::LogFormat::Json => {
            tracing::error!(
                exit_code = code.code(),
                hint = hint.as_deref().unwrap_or(""),
                "{message}"
            );
        }
        logging::LogFormat::Text => progress::suspend(|| {
            eprintln!("error: {message}");
            if let Some(h) = hint {
                eprintln!("hint: {h}");
            }
        }),
    }
    code
}
