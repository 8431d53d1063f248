//! `aos-backup config`: the effective configuration and where each value came from, secrets redacted.
//!
//! The keys, their variables and TOML keys come from [`crate::config::KEYS`]. The text output has
//! two parts: the `key = value` lines of earlier versions (scripts read them), then a table of
//! every key's source, variable and config file key. `--json` gives each key's value with its
//! JSON type at the top level (as before) and the same details under `keys`.

use super::Ctx;
use crate::config::{DatabaseEntry, DockerTarget, Key, Recipients, Settings, UrlSource, KEYS};
use anyhow::Result;
use serde_json::{json, Value};

/// Runs config.
pub fn run(ctx: &Ctx) -> Result<()> {
    let s = &ctx.settings;
    let mut lines = Vec::new();
    let mut table = vec![[
        "key".to_string(),
        "source".to_string(),
        "variable".to_string(),
        "config file key".to_string(),
    ]];
    let mut top = serde_json::Map::new();
    let mut keys = Vec::new();
    for d in KEYS {
        let source = s.source(d.key);
        let (text, shown_source) = text_value(s, d.key);
        lines.push(match shown_source {
            true => format!("{} = {text}  ({source})", d.name),
            false => format!("{} = {text}", d.name),
        });
        let toml = if d.toml.is_empty() {
            "-".to_string()
        } else {
            d.toml.join(", ")
        };
        table.push([
            d.name.to_string(),
            source.to_string(),
            d.env.to_string(),
            toml,
        ]);
        let value = json_value(s, d.key);
        top.insert(d.name.to_string(), value.clone());
        keys.push(json!({
            "key": d.name,
            "value": value,
            "source": source.to_string(),
            "env": d.env,
            "toml": d.toml,
            "flags": d.flags,
            "default": d.default,
            "help": d.help,
        }));
    }
    let marker = s.env.production_marker();
    lines.push(format!(
        "production = {}",
        marker
            .as_ref()
            .map_or_else(|| "no".into(), |(k, v)| format!("yes ({k}={v})"))
    ));
    top.insert("production".into(), Value::Bool(marker.is_some()));
    top.insert(
        "production_marker".into(),
        marker.map_or(Value::Null, |(k, v)| Value::String(format!("{k}={v}"))),
    );
    top.insert("keys".into(), Value::Array(keys));
    if !s.databases.is_empty() {
        lines.push(format!("databases = {}", databases_text(s)));
    }
    top.insert(
        "databases".into(),
        Value::Array(s.databases.iter().map(database_json).collect()),
    );

    let mut text = lines.join("\n");
    text.push_str(
        "\n\nwhere each value came from (flag > environment > .env > config file > preset > default):\n",
    );
    text.push_str(&align(&table));
    ctx.emit(&text, &Value::Object(top));
    Ok(())
}

/// The configured databases on one line: each name with where its URL comes from.
fn databases_text(s: &Settings) -> String {
    s.databases
        .iter()
        .map(|d| {
            let retention = if d.retention.is_some() {
                ", own retention"
            } else {
                ""
            };
            format!(
                "{} (URL from {}{retention})",
                crate::runtime::redact::sanitize(&d.name),
                d.url_origin()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A configured database for `--json`: never a URL from a variable or a file.
fn database_json(d: &DatabaseEntry) -> Value {
    json!({
        "name": d.name,
        "folder": crate::archive::naming::database_folder(&d.name),
        "url_from": d.url_origin(),
        "url": match &d.url {
            UrlSource::Inline(u) => Value::String(redacted_url(u)),
            UrlSource::Env(_) | UrlSource::File(_) => Value::Null,
        },
        "retention": d.retention,
    })
}

/// Rows in columns two spaces apart, without trailing blanks.
fn align(rows: &[[String; 4]]) -> String {
    let mut widths = [0usize; 4];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (i, (c, w)) in r.iter().zip(widths).enumerate() {
                if i + 1 == r.len() {
                    line.push_str(c);
                } else {
                    line.push_str(&format!("{c:<w$}  "));
                }
            }
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The database URL with its password masked (or why it does not parse).
fn redacted_url(url: &str) -> String {
    let shown = crate::pg::conninfo::ConnInfo::parse(url)
        .map_or_else(|e| format!("(invalid: {e})"), |c| c.redacted());
    crate::runtime::redact::scrub(&shown)
}

fn retention_rule(s: &Settings, key: Key) -> Option<u32> {
    let p = &s.retention;
    match key {
        Key::KeepLast => p.keep_last,
        Key::KeepDaily => p.keep_daily,
        Key::KeepWeekly => p.keep_weekly,
        Key::KeepMonthly => p.keep_monthly,
        Key::KeepYearly => p.keep_yearly,
        Key::MaxAgeDays => p.max_age_days,
        _ => None,
    }
}

/// The docker-exec key `key`'s value, when set.
fn docker_value(s: &Settings, key: Key) -> Option<String> {
    match (&s.docker, key) {
        (Some(DockerTarget::Container(name)), Key::DockerContainer) => Some(name.clone()),
        (Some(DockerTarget::Compose { service, .. }), Key::DockerComposeService) => {
            Some(service.clone())
        }
        (Some(DockerTarget::Compose { file: Some(f), .. }), Key::DockerComposeFile) => {
            Some(f.display().to_string())
        }
        _ => None,
    }
}

/// The destinations' URLs (they hold no credentials), or `-`.
fn remote_text(s: &Settings) -> String {
    let urls: Vec<&str> = s
        .remote
        .destinations
        .iter()
        .map(|d| d.url.as_str())
        .collect();
    if urls.is_empty() {
        "-".to_string()
    } else {
        urls.join(" ")
    }
}

fn path_text(p: Option<&std::path::PathBuf>) -> String {
    p.map_or_else(|| "-".to_string(), |p| p.display().to_string())
}

/// A key's value as the `key = value` line shows it, and whether that line names the source
/// (the lines of earlier versions are kept as they were).
fn text_value(s: &Settings, key: Key) -> (String, bool) {
    let enc = &s.encryption;
    match key {
        Key::ConfigFile => (path_text(s.config_file.as_ref()), false),
        Key::DatabaseUrl => match &s.database_url {
            None => ("(not set)".to_string(), false),
            Some(u) => (redacted_url(&u.value), true),
        },
        Key::BackupDir => (s.backup_dir.value.display().to_string(), true),
        Key::PgBin => (
            s.pg_bin
                .as_ref()
                .map_or_else(|| "(PATH)".to_string(), |p| p.value.display().to_string()),
            true,
        ),
        Key::Format => (s.format.value.to_string(), true),
        Key::Compression => (s.compression.value.algorithm.to_string(), true),
        Key::CompressionLevel => (s.compression.value.level.to_string(), false),
        Key::Jobs => (s.jobs.map_or_else(|| "-".into(), |j| j.to_string()), false),
        Key::Encryption => (if enc.enabled { "age" } else { "none" }.into(), false),
        Key::AgeRecipients => (
            match &enc.recipients {
                None => "-".to_string(),
                Some(Recipients::Keys(k)) => format!("{} key(s)", k.len()),
                Some(Recipients::File(f)) => f.display().to_string(),
            },
            false,
        ),
        Key::AgeIdentity => (path_text(enc.identity_file.as_ref()), false),
        Key::PassphraseFile => (path_text(enc.passphrase_file.as_ref()), false),
        Key::SuspectRatio => (s.suspect_ratio.value.to_string(), true),
        Key::LockTimeout => (
            if s.lock_timeout.value.is_zero() {
                "0 (no limit)".to_string()
            } else {
                super::human_duration(s.lock_timeout.value)
            },
            true,
        ),
        Key::DockerContainer | Key::DockerComposeService | Key::DockerComposeFile => {
            (docker_value(s, key).unwrap_or_else(|| "-".into()), false)
        }
        Key::Globals => (s.globals.to_string(), false),
        Key::SafetyBackup => (s.safety_backup.to_string(), false),
        Key::SafetyBackupKeep => (
            crate::runtime::units::compact_duration(
                s.retention.safety_backup_keep.unwrap_or_default().as_secs(),
            ),
            false,
        ),
        Key::Validate => (s.validate_before_backup.to_string(), false),
        Key::RowCounts => (s.row_counts.to_string(), false),
        Key::Remote => (remote_text(s), true),
        Key::RemoteTimeout => (
            crate::runtime::units::compact_duration(s.remote.timeout.as_secs()),
            true,
        ),
        Key::RemoteRequireEncryption => (s.remote.require_encryption.to_string(), true),
        Key::RemoteOnly => (s.remote.only.to_string(), true),
        Key::KeepLast
        | Key::KeepDaily
        | Key::KeepWeekly
        | Key::KeepMonthly
        | Key::KeepYearly
        | Key::MaxAgeDays => (
            match retention_rule(s, key) {
                None => "-".to_string(),
                Some(0) => "0 (off)".to_string(),
                Some(n) => n.to_string(),
            },
            false,
        ),
        Key::Schedule | Key::DrillSchedule => (
            schedule_text(s, key).map_or_else(|| "-".to_string(), str::to_string),
            true,
        ),
        Key::ScheduleHour => (
            s.schedule
                .hour
                .map_or_else(|| "-".to_string(), |h| h.to_string()),
            true,
        ),
        Key::ScheduleTz => (s.schedule.timezone.name().to_string(), true),
        Key::Preset => (
            s.preset
                .as_ref()
                .map_or_else(|| "-".to_string(), |p| p.value.to_string()),
            true,
        ),
        Key::VerifyEvery => (cadence_text(s.verify_every.as_ref()), true),
        Key::DrillEvery => (cadence_text(s.drill_every.as_ref()), true),
        Key::HookBefore | Key::HookAfter | Key::HookOnFailure | Key::HookFinally => (
            hook_command(s, key).unwrap_or_else(|| "-".to_string()),
            true,
        ),
        Key::HookTimeout => (
            s.hooks
                .timeout
                .map_or_else(|| "0 (no limit)".to_string(), super::human_duration),
            true,
        ),
        Key::CheckMaxAge => (
            crate::runtime::units::compact_duration(s.check.max_age.value.as_secs()),
            true,
        ),
        Key::CheckMaxDrillAge => (
            match s.check.max_drill_age.value.as_secs() {
                0 => "0 (off)".to_string(),
                n => crate::runtime::units::compact_duration(n),
            },
            true,
        ),
        Key::CheckMinSize => (
            match s.check.min_size.value {
                0 => "0 (off)".to_string(),
                n => format!("{n} ({})", super::human_bytes(n)),
            },
            true,
        ),
        Key::MetricsFile => (path_text(s.metrics_file.as_ref().map(|p| &p.value)), true),
        Key::Notify
        | Key::NotifyOn
        | Key::Deliver
        | Key::NotifyTimeout
        | Key::NotifyRetries
        | Key::EmailMaxSize
        | Key::TelegramMaxSize
        | Key::TelegramApiUrl
        | Key::TelegramToken
        | Key::TelegramOwners => (notify_text(&notify_value(s, key)), true),
    }
}

/// A notification key's value: destinations masked, the token never shown.
fn notify_value(s: &Settings, key: Key) -> Value {
    let n = &s.notify;
    match key {
        Key::Notify if n.destinations.is_empty() => Value::Null,
        Key::Notify => json!(n
            .destinations
            .iter()
            .map(|d| d.masked())
            .collect::<Vec<_>>()),
        Key::NotifyOn => json!(match n.on {
            crate::notify::On::Failure => "failure",
            crate::notify::On::Always => "always",
        }),
        Key::Deliver => {
            let mut v = Vec::new();
            if n.deliver_telegram {
                v.push("telegram");
            }
            if n.deliver_email {
                v.push("email");
            }
            if v.is_empty() {
                Value::Null
            } else {
                json!(v)
            }
        }
        Key::NotifyTimeout => seconds(n.timeout),
        Key::NotifyRetries => json!(n.retries),
        Key::EmailMaxSize => json!(n.email_max_size),
        Key::TelegramMaxSize => json!(n.telegram_max_size),
        Key::TelegramApiUrl => json!(n.telegram_api),
        Key::TelegramToken => json!(s
            .telegram
            .token
            .as_ref()
            .map(|_| crate::runtime::redact::MASK)),
        Key::TelegramOwners if s.telegram.owners.is_empty() => Value::Null,
        Key::TelegramOwners => json!(s.telegram.owners),
        _ => Value::Null,
    }
}

/// A notification key's JSON value as the text lines show it.
fn notify_text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(t) => t.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// A hook's command line, with any known secret masked.
fn hook_command(s: &Settings, key: Key) -> Option<String> {
    let h = &s.hooks;
    let command = match key {
        Key::HookBefore => &h.before,
        Key::HookAfter => &h.after,
        Key::HookOnFailure => &h.on_failure,
        Key::HookFinally => &h.finally,
        _ => &None,
    };
    command
        .as_deref()
        .map(|c| crate::runtime::redact::scrub(&crate::runtime::redact::sanitize(c)))
}

/// A cadence in days when it is whole days (`7d`), else as a duration; `0 (off)`; `-` unset.
fn cadence_text(d: Option<&crate::config::Sourced<std::time::Duration>>) -> String {
    const DAY: u64 = 24 * 3600;
    match d.map(|d| d.value) {
        None => "-".to_string(),
        Some(d) if d.is_zero() => "0 (off)".to_string(),
        Some(d) if d.as_secs() % DAY == 0 && d.subsec_nanos() == 0 => {
            format!("{}d", d.as_secs() / DAY)
        }
        Some(d) => super::human_duration(d),
    }
}

/// A duration in whole seconds when it has no fraction, else in fractional seconds.
fn seconds(d: std::time::Duration) -> Value {
    if d.subsec_nanos() == 0 {
        json!(d.as_secs())
    } else {
        json!(d.as_secs_f64())
    }
}

/// The cron expression `key` sets (the backup's is unset when `BACKUP_SCHEDULE_HOUR` made it).
fn schedule_text(s: &Settings, key: Key) -> Option<&str> {
    let schedule = match key {
        Key::Schedule if s.schedule.hour.is_none() => s.schedule.backup.as_ref(),
        Key::DrillSchedule => s.schedule.drill.as_ref(),
        _ => None,
    };
    schedule.map(crate::config::Schedule::expression)
}

/// A key's value with its JSON type: numbers, booleans, `null` when unset, an array of inline
/// recipients (a string when they are in a file), the lock timeout and check's maximum age in
/// seconds, check's minimum size in bytes.
fn json_value(s: &Settings, key: Key) -> Value {
    let path = |p: Option<&std::path::PathBuf>| {
        p.map_or(Value::Null, |p| Value::String(p.display().to_string()))
    };
    let enc = &s.encryption;
    match key {
        Key::ConfigFile => path(s.config_file.as_ref()),
        Key::DatabaseUrl => s
            .database_url
            .as_ref()
            .map_or(Value::Null, |u| Value::String(redacted_url(&u.value))),
        Key::BackupDir => path(Some(&s.backup_dir.value)),
        Key::PgBin => path(s.pg_bin.as_ref().map(|p| &p.value)),
        Key::Format => json!(s.format.value.to_string()),
        Key::Compression => json!(s.compression.value.algorithm.to_string()),
        Key::CompressionLevel => json!(s.compression.value.level),
        Key::Jobs => json!(s.jobs),
        Key::Encryption => json!(enc.enabled),
        Key::AgeRecipients => match &enc.recipients {
            None => Value::Null,
            Some(Recipients::Keys(k)) => json!(k),
            Some(Recipients::File(f)) => json!(f.display().to_string()),
        },
        Key::AgeIdentity => path(enc.identity_file.as_ref()),
        Key::PassphraseFile => path(enc.passphrase_file.as_ref()),
        Key::SuspectRatio => json!(s.suspect_ratio.value),
        Key::LockTimeout => seconds(s.lock_timeout.value),
        Key::DockerContainer | Key::DockerComposeService | Key::DockerComposeFile => {
            json!(docker_value(s, key))
        }
        Key::Globals => json!(s.globals),
        Key::SafetyBackup => json!(s.safety_backup),
        Key::SafetyBackupKeep => seconds(s.retention.safety_backup_keep.unwrap_or_default()),
        Key::Validate => json!(s.validate_before_backup),
        Key::RowCounts => json!(s.row_counts),
        Key::Remote => json!(s
            .remote
            .destinations
            .iter()
            .map(|d| d.url.as_str())
            .collect::<Vec<_>>()),
        Key::RemoteTimeout => seconds(s.remote.timeout),
        Key::RemoteRequireEncryption => json!(s.remote.require_encryption),
        Key::RemoteOnly => json!(s.remote.only),
        Key::KeepLast
        | Key::KeepDaily
        | Key::KeepWeekly
        | Key::KeepMonthly
        | Key::KeepYearly
        | Key::MaxAgeDays => json!(retention_rule(s, key)),
        Key::Schedule | Key::DrillSchedule => json!(schedule_text(s, key)),
        Key::ScheduleHour => json!(s.schedule.hour),
        Key::ScheduleTz => json!(s.schedule.timezone.name()),
        Key::Preset => json!(s.preset.as_ref().map(|p| p.value.name())),
        Key::VerifyEvery => s
            .verify_every
            .as_ref()
            .map_or(Value::Null, |d| seconds(d.value)),
        Key::DrillEvery => s
            .drill_every
            .as_ref()
            .map_or(Value::Null, |d| seconds(d.value)),
        Key::HookBefore | Key::HookAfter | Key::HookOnFailure | Key::HookFinally => {
            json!(hook_command(s, key))
        }
        Key::HookTimeout => s.hooks.timeout.map_or(json!(0), seconds),
        Key::CheckMaxAge => json!(s.check.max_age.value.as_secs()),
        Key::CheckMinSize => json!(s.check.min_size.value),
        Key::CheckMaxDrillAge => json!(s.check.max_drill_age.value.as_secs()),
        Key::MetricsFile => path(s.metrics_file.as_ref().map(|p| &p.value)),
        Key::Notify
        | Key::NotifyOn
        | Key::Deliver
        | Key::NotifyTimeout
        | Key::NotifyRetries
        | Key::EmailMaxSize
        | Key::TelegramMaxSize
        | Key::TelegramApiUrl
        | Key::TelegramToken
        | Key::TelegramOwners => notify_value(s, key),
    }
}
