//! The hooks around an operation that a front end runs, as rustic runs them: `before` first (its
//! failure cancels the operation), then `after` or `on-failure`, then `finally`. Each is told
//! the outcome in `AOS_BACKUP_*` variables. Only the `before` hook can change the outcome; the
//! others' failures are warnings. A front end calls [`Hooks::before`], runs the operation, then
//! [`Hooks::finish`].

use crate::cli::commands::Ctx;
use crate::config::HookSettings;
use crate::error::{Error, Kind};
use crate::runtime::context::OpContext;
use crate::runtime::hooks::{self, Failure, Hook};
use anyhow::Result;
use std::path::PathBuf;
use std::time::Instant;

/// The variables a hook is given (an inherited variable of the same name is dropped).
pub mod vars {
    /// The operation: `backup`.
    pub const OPERATION: &str = "AOS_BACKUP_OPERATION";
    /// Which hook this is: `before`, `after`, `on-failure` or `finally`.
    pub const HOOK: &str = "AOS_BACKUP_HOOK";
    /// The database, when `DATABASE_URL` names one.
    pub const DATABASE: &str = "AOS_BACKUP_DATABASE";
    /// `success` or `failure` (not given to `before`).
    pub const STATUS: &str = "AOS_BACKUP_STATUS";
    /// The exit code the run ends with (not given to `before`).
    pub const EXIT_CODE: &str = "AOS_BACKUP_EXIT_CODE";
    /// Whole seconds the operation took, hooks not counted (not given to `before`).
    pub const DURATION: &str = "AOS_BACKUP_DURATION";
    /// The new backup's path, when there is one.
    pub const FILE: &str = "AOS_BACKUP_FILE";
    /// The new backup's size in bytes, when there is one.
    pub const SIZE: &str = "AOS_BACKUP_SIZE";
    /// The error message (one line, secrets masked), on failure.
    pub const ERROR: &str = "AOS_BACKUP_ERROR";
    /// Every variable above.
    pub const ALL: &[&str] = &[
        OPERATION, HOOK, DATABASE, STATUS, EXIT_CODE, DURATION, FILE, SIZE, ERROR,
    ];
}

/// What the operation produced, for the hooks that follow it.
#[derive(Debug, Default, Clone)]
pub struct Produced {
    /// The new backup.
    pub file: Option<PathBuf>,
    /// Its size in bytes.
    pub size: Option<u64>,
}

/// The hooks of one run of an operation.
pub struct Hooks {
    settings: HookSettings,
    op: OpContext,
    /// Our own variables, for the hooks to inherit (what they must not see is dropped later).
    inherited: Vec<(String, String)>,
    /// The variables every hook of this run gets.
    common: Vec<(String, String)>,
    /// When the operation started (after the `before` hook).
    started: Instant,
}

impl Hooks {
    /// Runs the `before` hook of `operation` (when one is configured). When it fails, the
    /// `on-failure` and `finally` hooks run, and the error (exit code 1) says the operation was
    /// not started.
    pub async fn before(ctx: &Ctx, operation: &'static str) -> Result<Hooks> {
        let mut hooks = Hooks::new(ctx, operation);
        let Some(command) = hooks.settings.before.clone() else {
            return Ok(hooks);
        };
        match hooks.run("before", command, Vec::new()).await {
            Ok(()) => {
                hooks.started = Instant::now();
                Ok(hooks)
            }
            Err(Failure::Interrupted(sig)) => Err(hooks.op.interrupted_error(sig).into()),
            Err(failure) => {
                let err = before_failed(operation, &failure);
                hooks.finish(Some(&err), &Produced::default()).await;
                Err(err)
            }
        }
    }

    /// Runs the `after` hook (no `error`: the operation succeeded) or the `on-failure` hook,
    /// then the `finally` hook. A failing hook is a warning; the operation's outcome stands.
    pub async fn finish(self, error: Option<&anyhow::Error>, produced: &Produced) {
        if self.settings.is_empty() {
            return;
        }
        let outcome = self.outcome(error, produced);
        let (name, command) = match error {
            None => ("after", self.settings.after.clone()),
            Some(_) => ("on-failure", self.settings.on_failure.clone()),
        };
        for (name, command) in [(name, command), ("finally", self.settings.finally.clone())] {
            let Some(command) = command else { continue };
            match self.run(name, command, outcome.clone()).await {
                Ok(()) => {}
                Err(Failure::Interrupted(_)) => return,
                Err(f) => {
                    tracing::warn!("the {name} hook failed ({f}); the outcome of the run stands")
                }
            }
        }
    }

    fn new(ctx: &Ctx, operation: &'static str) -> Hooks {
        let settings = ctx.settings.hooks.clone();
        let mut common = vec![(vars::OPERATION.to_string(), operation.to_string())];
        let mut inherited = Vec::new();
        if !settings.is_empty() {
            register_passwords(ctx);
            if let Some(db) = ctx.target_database() {
                common.push((vars::DATABASE.to_string(), db));
            }
            let url_vars = configured_url_vars(ctx);
            inherited = ctx
                .settings
                .env
                .process_vars()
                .filter(|(k, _)| !url_vars.contains(k))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }
        Hooks {
            inherited,
            settings,
            op: ctx.op.clone(),
            common,
            started: Instant::now(),
        }
    }

    /// The variables that describe the outcome.
    fn outcome(&self, error: Option<&anyhow::Error>, produced: &Produced) -> Vec<(String, String)> {
        let seconds = (self.started.elapsed() + std::time::Duration::from_millis(500)).as_secs();
        let mut v = vec![(vars::DURATION, seconds.to_string())];
        match error {
            None => {
                v.push((vars::STATUS, "success".into()));
                v.push((vars::EXIT_CODE, "0".into()));
            }
            Some(e) => {
                v.push((vars::STATUS, "failure".into()));
                v.push((
                    vars::EXIT_CODE,
                    crate::error::exit_code_of(e).code().to_string(),
                ));
                let message = crate::error::one_line(e);
                v.push((vars::ERROR, self.op.secrets().scrub(&message)));
            }
        }
        if let Some(f) = &produced.file {
            v.push((vars::FILE, f.display().to_string()));
        }
        if let Some(s) = produced.size {
            v.push((vars::SIZE, s.to_string()));
        }
        v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Runs one hook on a thread that waits for it (and outlives it).
    async fn run(
        &self,
        name: &'static str,
        command: String,
        extra: Vec<(String, String)>,
    ) -> Result<(), Failure> {
        let mut given = self.common.clone();
        given.push((vars::HOOK.to_string(), name.to_string()));
        given.extend(extra);
        let env = hooks::environment(
            self.inherited
                .iter()
                .filter(|(k, _)| !vars::ALL.contains(&k.as_str()))
                .map(|(k, v)| (k.as_str(), v.as_str())),
            self.op.secrets(),
            &given,
        );
        let hook = Hook {
            name,
            command,
            timeout: self.settings.timeout,
        };
        let op = self.op.clone();
        tracing::info!("running the {name} hook");
        tokio::task::spawn_blocking(move || hooks::run(&op, &hook, &env))
            .await
            .unwrap_or_else(|e| Err(Failure::Start(format!("the hook's thread failed: {e}"))))
    }
}

/// The error of a `before` hook that failed or timed out: the operation was not started.
fn before_failed(operation: &str, failure: &Failure) -> anyhow::Error {
    let hint = match failure {
        Failure::TimedOut(_) => "raise BACKUP_HOOK_TIMEOUT ([hooks] timeout), or make the before hook faster",
        _ => "the before hook (BACKUP_HOOK_BEFORE, or [hooks] before in the config file) must exit 0 for the run to go on; its output is in the log",
    };
    Error::new(
        Kind::Failure,
        format!("the before hook failed ({failure}), so the {operation} was not started"),
    )
    .hint(hint)
    .into()
}

/// The variables that the config file's `[[databases]]` read their URLs from (`url_env`):
/// withheld from every hook by name, whatever they hold.
fn configured_url_vars(ctx: &Ctx) -> Vec<&str> {
    ctx.settings
        .databases
        .iter()
        .filter_map(|entry| match &entry.url {
            crate::config::UrlSource::Env(name) => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

/// Registers every password the run may connect with (DATABASE_URL's or `PGPASSWORD`, and each
/// configured database's) with the operation's secrets before any hook runs, so that no variable
/// holding one reaches a hook. A URL that cannot be read is reported by the run, not here.
fn register_passwords(ctx: &Ctx) {
    register_database_url_password(ctx);
    for entry in &ctx.settings.databases {
        if ctx.database_conninfo(entry).is_err() {
            tracing::debug!(
                "hooks: the URL of database {:?} cannot be read yet",
                entry.name
            );
        }
    }
}

/// Registers DATABASE_URL's password (the URL's, or `PGPASSWORD`).
fn register_database_url_password(ctx: &Ctx) {
    let Some(url) = &ctx.settings.database_url else {
        return;
    };
    let Ok(conn) = crate::pg::conninfo::ConnInfo::parse(&url.value) else {
        return;
    };
    if let Some(p) = conn.password() {
        ctx.op.secrets().register(p);
    }
    if let Ok(conn) = conn.resolve(&|k| ctx.settings.env.var(k)) {
        if let Some(p) = conn.password() {
            ctx.op.secrets().register(p);
        }
    }
}
