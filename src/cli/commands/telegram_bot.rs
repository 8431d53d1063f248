//! `aos-backup telegram-bot`: a long-polling Telegram bot for its owners (`BACKUP_TELEGRAM_OWNERS`).
//! `/backup` makes a backup through the same run as `aos-backup backup` (hooks, folder lock, one
//! at a time) and sends the file back with its summary, or says why not; `/status` tells the last
//! backup's age, size and result (and the last drill's, when one left a `.drill.json`); `/list`
//! the recent backups. Anyone else is refused, and logged with their user id. Network errors back
//! off and never end the loop; SIGTERM or SIGINT stops it after the current reply.

use super::Ctx;
use crate::cli::args::BackupArgs;
use crate::cli::runs::{self, Made};
use crate::cli::Signals;
use crate::error::{Error, Kind};
use crate::notify::telegram::{Bot, Incoming};
use crate::notify::{decimal_size, Event, Target};
use crate::runtime::context::OpContext;
use anyhow::Result;
use std::time::Duration;

/// How long one poll waits for messages.
const POLL: Duration = Duration::from_secs(25);
/// The longest wait after network errors.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a cancelled backup gets to stop its children and remove its temp files.
const UNWIND: Duration = Duration::from_secs(10);
/// How many backups `/list` shows.
const LIST: usize = 10;

/// Runs the bot until SIGTERM or SIGINT.
pub async fn run(ctx: &Ctx, signals: &mut Signals) -> Result<()> {
    let bot = bot(ctx)?;
    let owners = &ctx.settings.telegram.owners;
    if owners.is_empty() {
        return Err(
            Error::usage("BACKUP_TELEGRAM_OWNERS is not set: the bot would obey no one")
                .hint("set BACKUP_TELEGRAM_OWNERS to your Telegram user id(s), comma separated")
                .into(),
        );
    }
    tracing::info!("telegram-bot started: {} owner(s)", owners.len());
    let mut offset = 0;
    let mut backoff = Duration::from_secs(1);
    loop {
        let polled = tokio::select! {
            r = bot.updates(offset, POLL) => r,
            sig = signals.next() => return stopped(sig),
        };
        match polled {
            Ok(messages) => {
                backoff = Duration::from_secs(1);
                for m in messages {
                    offset = m.update_id + 1;
                    answer(ctx, &bot, &m, signals).await;
                }
            }
            Err(f) => {
                tracing::warn!(
                    "telegram-bot: polling failed ({}); retrying in {}s",
                    f.message,
                    backoff.as_secs()
                );
                tokio::select! {
                    () = tokio::time::sleep(f.retry_after.unwrap_or(backoff)) => {}
                    sig = signals.next() => return stopped(sig),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        if let Some(sig) = crate::runtime::signal::received() {
            return stopped(sig);
        }
    }
}

fn stopped(sig: i32) -> Result<()> {
    tracing::info!("signal {sig}: the telegram-bot stops");
    Ok(())
}

/// The bot: `BACKUP_TELEGRAM_TOKEN`, else the `telegram://` destination's token.
fn bot(ctx: &Ctx) -> Result<Bot> {
    let notify = &ctx.settings.notify;
    let token = ctx.settings.telegram.token.clone().or_else(|| {
        notify.destinations.iter().find_map(|d| match &d.target {
            Target::Telegram { token, .. } => Some(token.clone()),
            _ => None,
        })
    });
    let Some(token) = token else {
        return Err(Error::usage("no Telegram bot token: set BACKUP_TELEGRAM_TOKEN or a telegram:// destination in BACKUP_NOTIFY")
            .hint("create a bot with @BotFather and put its token in BACKUP_TELEGRAM_TOKEN (in the environment or ./.env, never on the command line)")
            .into());
    };
    ctx.op.secrets().register(&token);
    let client = reqwest::Client::builder()
        .timeout(notify.timeout + POLL)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {}", e.without_url()))?;
    Ok(Bot::new(client, &notify.telegram_api, &token))
}

/// Answers one message: a refusal for strangers, else the command's reply. A reply that cannot
/// be sent is logged.
async fn answer(ctx: &Ctx, bot: &Bot, m: &Incoming, signals: &mut Signals) {
    let chat = m.chat.to_string();
    let command = m.text.split_whitespace().next().unwrap_or_default();
    let command = command.split('@').next().unwrap_or_default();
    if !ctx.settings.telegram.owners.contains(&m.user) {
        tracing::warn!(
            "telegram-bot: refused {command:?} from user id {} (not in BACKUP_TELEGRAM_OWNERS)",
            m.user
        );
        reply(bot, &chat, "Sorry, only the owners of this bot can use it.").await;
        return;
    }
    match command {
        "/backup" => backup(ctx, bot, &chat, signals).await,
        "/status" => reply(bot, &chat, &status(ctx)).await,
        "/list" => reply(bot, &chat, &list(ctx)).await,
        _ => reply(bot, &chat, "Commands: /backup, /status, /list").await,
    }
}

async fn reply(bot: &Bot, chat: &str, text: &str) {
    let policy = crate::notify::retry::Policy::new(3);
    if let Err((why, _)) = crate::notify::retry::run(policy, || bot.send_message(chat, text)).await
    {
        tracing::warn!("telegram-bot: cannot answer: {why}");
    }
}

/// `/backup`: a backup through the usual run, sent back, or why not.
async fn backup(ctx: &Ctx, bot: &Bot, chat: &str, signals: &mut Signals) {
    let report = match watched_backup(ctx, signals).await {
        Ok(Made::One(report)) => report,
        Ok(Made::Many(_)) => {
            return reply(
                bot,
                chat,
                "Done: several databases were backed up; see /list.",
            )
            .await;
        }
        Err(e) => return reply(bot, chat, &why_not(&Error::from_anyhow(e))).await,
    };
    let event = Event::backup_succeeded(&report.meta, &report.path);
    let limit = ctx.settings.notify.telegram_max_size;
    let size = report.meta.size_bytes;
    if !report.path.is_file() || size > limit {
        let text = format!(
            "{}\nNot sent: the backup is {}, over the limit of {}; it is at {}",
            event.text(),
            decimal_size(size),
            decimal_size(limit),
            event
                .path
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string())
        );
        return reply(bot, chat, &text).await;
    }
    if !report.meta.is_encrypted() {
        tracing::warn!(
            "telegram-bot: sending the unencrypted backup {}; prefer BACKUP_ENCRYPTION=age",
            report.path.display()
        );
    }
    let policy = crate::notify::retry::Policy::new(ctx.settings.notify.retries);
    let timeout = ctx.settings.notify.timeout;
    let caption = event.text();
    let sent = crate::notify::retry::run(policy, || {
        bot.send_document(chat, &report.path, &caption, timeout)
    })
    .await;
    if let Err((why, _)) = sent {
        tracing::warn!("telegram-bot: cannot send the backup: {why}");
        reply(
            bot,
            chat,
            &format!(
                "{}\nThe backup was made but could not be sent: {why}",
                event.text()
            ),
        )
        .await;
    }
}

/// The backup run in its own operation; a signal cancels it (its children stopped, nothing
/// partial left) and the bot stops after the reply.
async fn watched_backup(ctx: &Ctx, signals: &mut Signals) -> Result<Made> {
    let op = OpContext::new(std::sync::Arc::new(crate::runtime::progress::Silent));
    let run_ctx = ctx.for_run(op, chrono::Utc::now());
    let args = BackupArgs::default();
    let work = runs::backup(&run_ctx, &args, &|_| {});
    tokio::pin!(work);
    let sig = tokio::select! {
        made = &mut work => return made,
        sig = signals.next() => sig,
    };
    tracing::warn!("signal {sig}: cancelling the backup in progress, then stopping");
    run_ctx.op.cancel(sig);
    let made = tokio::time::timeout(UNWIND, work).await;
    run_ctx.op.cleanup_temps();
    made.unwrap_or_else(|_| Err(run_ctx.op.interrupted_error(sig).into()))
}

/// Why `/backup` made nothing, in a reply.
fn why_not(e: &Error) -> String {
    let what = if e.kind == Kind::Locked {
        "Another backup is running (the folder is locked); try again in a moment."
    } else {
        "The backup failed."
    };
    let mut text = format!(
        "{what}\nError: {}",
        crate::runtime::redact::scrub(&e.message)
    );
    if let Some(h) = &e.hint {
        text.push_str(&format!("\nHint: {}", crate::runtime::redact::scrub(h)));
    }
    text
}

/// The folder's backups of the configured database, newest first.
fn backups(ctx: &Ctx) -> Vec<crate::archive::meta::Meta> {
    let dir = ctx.backup_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut metas: Vec<crate::archive::meta::Meta> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(crate::archive::naming::META_SUFFIX)
        })
        .filter_map(|e| crate::archive::meta::Meta::read(&e.path()).ok())
        .collect();
    metas.sort_by_key(|m| std::cmp::Reverse(m.started_at));
    metas
}

/// `/status`: the last backup's age, size and result, and the last drill's.
fn status(ctx: &Ctx) -> String {
    let metas = backups(ctx);
    let Some(last) = metas.first() else {
        return "No backup yet.".into();
    };
    let now = chrono::Utc::now();
    let mut lines = vec![
        "Last backup".to_string(),
        format!("App: {}", crate::runtime::redact::sanitize(&last.database)),
        format!("Age: {}", super::human_age(last.finished_at, now)),
        format!("Size: {}", decimal_size(last.size_bytes)),
        format!("Tables: {}", last.tables),
        format!(
            "Result: {}",
            if last.suspect.is_some() {
                "suspect"
            } else {
                "complete"
            }
        ),
    ];
    if let Some(drill) = last_drill(ctx, &metas) {
        lines.push(format!(
            "Last drill: {} (backup {})",
            drill.summary.outcome.as_str(),
            crate::runtime::redact::sanitize(&drill.backup)
        ));
    }
    lines.join("\n")
}

/// The most recent drill: of the drill records next to the backups (`<backup>.drill.json`) and
/// of each database's most recent drill kept in the folder (there also once prune has deleted
/// the drilled backup).
fn last_drill(
    ctx: &Ctx,
    metas: &[crate::archive::meta::Meta],
) -> Option<crate::archive::drill::LastDrill> {
    let dir = ctx.backup_dir();
    let next_to_backups = metas.iter().filter_map(|m| {
        let summary = crate::archive::drill::read_summary(&dir.join(&m.file))?;
        Some(crate::archive::drill::LastDrill {
            backup: m.id.clone(),
            summary,
        })
    });
    let mut databases: Vec<&str> = metas.iter().map(|m| m.database.as_str()).collect();
    databases.sort_unstable();
    databases.dedup();
    let kept = databases
        .into_iter()
        .filter_map(|db| crate::archive::drill::read_last(&dir, db));
    next_to_backups
        .chain(kept)
        .max_by_key(|d| d.summary.drilled_at)
}

/// `/list`: the recent backups.
fn list(ctx: &Ctx) -> String {
    let metas = backups(ctx);
    if metas.is_empty() {
        return "No backup yet.".into();
    }
    let mut lines = vec![format!("Recent backups ({} in all)", metas.len())];
    for m in metas.iter().take(LIST) {
        lines.push(format!(
            "{}  {}  {}",
            crate::runtime::redact::sanitize(&m.id),
            crate::runtime::redact::sanitize(&m.database),
            decimal_size(m.size_bytes)
        ));
    }
    lines.join("\n")
}
