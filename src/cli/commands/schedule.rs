//! `aos-backup schedule --print systemd|cron|daemon`: the configured backup schedule as a recipe
//! for the system's scheduler: a systemd service and timer (`Persistent=true`), a crontab line, or
//! a systemd service that runs `aos-backup daemon`. The recipe runs this binary in the current
//! folder, whose `.env` aos-backup reads itself: no secret is ever written into it.

use super::Ctx;
use crate::cli::args::{ScheduleArgs, SchedulerKind};
use crate::config::{Key, Schedule, Source, KEYS};
use crate::error::Error;
use crate::runtime::schedule::Fields;
use anyhow::Result;
use chrono_tz::Tz;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The unit names the systemd recipes use.
const SERVICE: &str = "aos-backup.service";
const TIMER: &str = "aos-backup.timer";
const DAEMON_SERVICE: &str = "aos-backup-daemon.service";

/// Prints the recipe.
pub fn run(ctx: &Ctx, args: &ScheduleArgs) -> Result<()> {
    let schedule = ctx.settings.schedule.backup.clone().ok_or_else(|| {
        Error::usage("no backup schedule to print: set BACKUP_SCHEDULE or BACKUP_SCHEDULE_HOUR")
            .hint("set BACKUP_SCHEDULE to a cron expression (e.g. \"15 2 * * *\") or BACKUP_SCHEDULE_HOUR=3 in ./.env, then run this again in that folder")
    })?;
    let setup = Setup::of(ctx)?;
    let (files, notice) = match args.print {
        SchedulerKind::Systemd => match on_calendar(&schedule.fields(), schedule.timezone()) {
            Ok(calendar) => (systemd(&setup, &schedule, &calendar), None),
            Err(why) => {
                let notice = format!(
                    "the schedule {schedule} has no systemd calendar form ({why}): printing a service that runs `aos-backup daemon` instead"
                );
                (vec![daemon(&setup, &schedule, Some(&notice))], Some(notice))
            }
        },
        SchedulerKind::Cron => (vec![("crontab", cron(&setup, &schedule)?)], None),
        SchedulerKind::Daemon => (vec![daemon(&setup, &schedule, None)], None),
    };
    if let Some(n) = &notice {
        tracing::warn!("{n}");
    }
    let text = files
        .iter()
        .map(|(_, body)| body.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let by_name: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|(name, body)| ((*name).to_string(), json!(body)))
        .collect();
    ctx.emit(
        text.trim_end(),
        &json!({
            "schedule": schedule.expression(),
            "timezone": schedule.timezone().name(),
            "files": by_name,
            "notice": notice,
        }),
    );
    Ok(())
}

/// What every recipe needs: where to run, what to run, and what it cannot carry.
struct Setup {
    /// The folder the recipe runs in (its `.env` and `aos-backup.toml` are read there).
    cwd: PathBuf,
    /// This binary, then the global flags that were given (never `--database-url`).
    command: Vec<String>,
    /// Comment lines: where DATABASE_URL comes from, the settings this shell alone holds.
    notes: Vec<String>,
    /// Schedule settings from this shell's environment, which the daemon needs.
    schedule_env: Vec<(&'static str, String)>,
}

impl Setup {
    fn of(ctx: &Ctx) -> Result<Setup> {
        let cwd = std::env::current_dir()
            .map_err(|e| anyhow::anyhow!("cannot read the current folder: {e}"))?;
        let exe = std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("cannot find the path of this program: {e}"))?;
        let s = &ctx.settings;
        let mut command = vec![exe.display().to_string()];
        let absolute = |p: &Path| cwd.join(p).display().to_string();
        if let Some(cfg) = s
            .config_file
            .as_ref()
            .filter(|_| matches!(s.source(Key::ConfigFile), Source::Flag | Source::Env))
        {
            command.extend(["--config".to_string(), absolute(cfg)]);
        }
        if s.backup_dir.source == Source::Flag {
            command.extend(["--backup-dir".to_string(), absolute(&s.backup_dir.value)]);
        }
        if let Some(p) = s.pg_bin.as_ref().filter(|p| p.source == Source::Flag) {
            command.extend(["--pg-bin".to_string(), absolute(&p.value)]);
        }
        command.extend(["--log-format".to_string(), "json".to_string()]);
        let schedule_env = schedule_env(ctx);
        let notes = notes(ctx, &cwd);
        Ok(Setup {
            cwd,
            command,
            notes,
            schedule_env,
        })
    }

    /// The comment lines of [`Setup::notes`], each starting with `# `.
    fn comments(&self) -> String {
        self.notes.iter().map(|n| format!("# {n}\n")).collect()
    }
}

/// Where DATABASE_URL comes from, and the settings that only this shell's environment holds (a
/// scheduler does not have them): names only, never values.
fn notes(ctx: &Ctx, cwd: &Path) -> Vec<String> {
    let s = &ctx.settings;
    let env_file = cwd.join(".env");
    let mut notes = vec![match s.database_url.as_ref().map(|u| u.source) {
        Some(Source::DotEnv) => format!(
            "DATABASE_URL and the other settings come from {} (aos-backup reads it itself; keep it chmod 600).",
            env_file.display()
        ),
        Some(Source::File) => "DATABASE_URL comes from the config file (keep it chmod 600).".to_string(),
        Some(Source::Flag | Source::Env) => format!(
            "DATABASE_URL is set only in this shell: put it in {} (chmod 600), which aos-backup reads itself.",
            env_file.display()
        ),
        _ => format!(
            "DATABASE_URL is not set: put it in {} (chmod 600), which aos-backup reads itself.",
            env_file.display()
        ),
    }];
    let shell_only: Vec<&str> = KEYS
        .iter()
        .filter(|d| !matches!(d.key, Key::DatabaseUrl) && !is_schedule_key(d.key))
        .filter(|d| s.source(d.key) == Source::Env)
        .map(|d| d.env)
        .collect();
    if !shell_only.is_empty() {
        notes.push(format!(
            "Set only in this shell, so not seen by the scheduler: {}; put them in {} too.",
            shell_only.join(", "),
            env_file.display()
        ));
    }
    notes
}

fn is_schedule_key(key: Key) -> bool {
    matches!(
        key,
        Key::Schedule | Key::ScheduleHour | Key::ScheduleTz | Key::DrillSchedule
    )
}

/// The schedule settings this shell's environment sets: a daemon's service needs them.
fn schedule_env(ctx: &Ctx) -> Vec<(&'static str, String)> {
    KEYS.iter()
        .filter(|d| is_schedule_key(d.key) && ctx.settings.source(d.key) == Source::Env)
        .filter_map(|d| Some((d.env, ctx.settings.env.var(d.env)?)))
        .collect()
}

/// The service that runs one backup, and the timer that starts it.
fn systemd(setup: &Setup, schedule: &Schedule, calendar: &str) -> Vec<(&'static str, String)> {
    let exec = systemd_command(&setup.command, "backup");
    let service = format!(
        "# /etc/systemd/system/{SERVICE}: one backup, started by {TIMER}.\n\
         {comments}\
         [Unit]\n\
         Description=aos-backup: back up PostgreSQL\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         WorkingDirectory={cwd}\n\
         ExecStart={exec}\n\
         # Run it as the user who owns the backup folder (without User=, it runs as root):\n\
         #User=backup\n",
        comments = setup.comments(),
        cwd = systemd_escape(&setup.cwd.display().to_string()),
    );
    let timer = format!(
        "# /etc/systemd/system/{TIMER}: the schedule {schedule}.\n\
         # Persistent=true: a run missed while the machine was off runs once at boot.\n\
         # Enable it: systemctl daemon-reload && systemctl enable --now {TIMER}\n\
         [Unit]\n\
         Description=aos-backup: back up PostgreSQL on the schedule {schedule}\n\
         \n\
         [Timer]\n\
         OnCalendar={calendar}\n\
         Persistent=true\n\
         {accuracy}\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        accuracy = if schedule.fields().second == "0" {
            ""
        } else {
            "AccuracySec=1s\n"
        },
    );
    vec![(SERVICE, service), (TIMER, timer)]
}

/// A service that runs `aos-backup daemon`, for any schedule.
fn daemon(setup: &Setup, schedule: &Schedule, notice: Option<&str>) -> (&'static str, String) {
    let exec = systemd_command(&setup.command, "daemon");
    let environment: String = setup
        .schedule_env
        .iter()
        .map(|(k, v)| format!("Environment={}\n", systemd_quote(&format!("{k}={v}"))))
        .collect();
    let text = format!(
        "# /etc/systemd/system/{DAEMON_SERVICE}: `aos-backup daemon`, backing up on the schedule {schedule}.\n\
         {notice}\
         # Enable it: systemctl daemon-reload && systemctl enable --now {DAEMON_SERVICE}\n\
         {comments}\
         [Unit]\n\
         Description=aos-backup daemon: back up PostgreSQL on the schedule {schedule}\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         WorkingDirectory={cwd}\n\
         {environment}\
         ExecStart={exec}\n\
         # Run it as the user who owns the backup folder (without User=, it runs as root):\n\
         #User=backup\n\
         Restart=on-failure\n\
         RestartSec=30\n\
         # 2: the configuration is unusable; restarting does not help.\n\
         RestartPreventExitStatus=2\n\
         # SIGTERM goes to the daemon alone, which stops its pg_dump and removes partial files.\n\
         KillMode=mixed\n\
         TimeoutStopSec=30\n\
         # 143: stopped while a backup ran, which was cancelled cleanly.\n\
         SuccessExitStatus=143\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        notice = notice.map_or_else(String::new, |n| format!("# Note: {n}.\n")),
        comments = setup.comments(),
        cwd = systemd_escape(&setup.cwd.display().to_string()),
    );
    (DAEMON_SERVICE, text)
}

/// The crontab lines: the time zone and the backup (for `crontab -e` as the backup's user).
fn cron(setup: &Setup, schedule: &Schedule) -> Result<String> {
    let fields = cron_fields(schedule)?;
    let mut command = vec![
        "cd".to_string(),
        crate::runtime::shell::word(&setup.cwd.display().to_string()),
        "&&".to_string(),
    ];
    command.extend(setup.command.iter().map(|a| crate::runtime::shell::word(a)));
    command.push("backup".to_string());
    // In a crontab line, % ends the command.
    let command = command.join(" ").replace('%', "\\%");
    let tz = schedule.timezone().name();
    Ok(format!(
        "# aos-backup: the schedule {schedule}, for `crontab -e` as the user who owns the backup folder.\n\
         {comments}\
         # cron mails what a run prints; append `>> FILE 2>&1` to keep a log instead.\n\
         # CRON_TZ sets the time zone for cronie; other crons read the times in the system's zone.\n\
         CRON_TZ={tz}\n\
         {fields} {command}\n",
        comments = setup.comments(),
    ))
}

/// The schedule's five crontab fields, or the usage error when it fires at seconds cron lacks.
fn cron_fields(schedule: &Schedule) -> Result<String> {
    let parts: Vec<&str> = schedule.expression().split_whitespace().collect();
    match parts.as_slice() {
        [one] => Ok((*one).to_string()),
        [_, _, _, _, _] => Ok(parts.join(" ")),
        [seconds, rest @ ..] if *seconds == "0" => Ok(rest.join(" ")),
        _ => Err(Error::usage(format!(
            "the schedule {schedule} fires at seconds, which a crontab cannot express (once a minute at most)"
        ))
        .hint("use `schedule --print systemd` or `aos-backup daemon`, or drop the seconds field")
        .into()),
    }
}

/// The systemd calendar event (`OnCalendar=`) of `fields` in `tz`, or why there is none.
fn on_calendar(fields: &Fields, tz: Tz) -> Result<String, String> {
    let dom_set = fields.day_of_month != "*";
    let dow_set = fields.day_of_week != "*";
    if dom_set && dow_set {
        return Err(
            "cron runs it when the day of the month or the day of the week matches, systemd only when both do"
                .into(),
        );
    }
    let weekdays = if dow_set {
        format!("{} ", weekdays(&fields.day_of_week)?)
    } else {
        String::new()
    };
    Ok(format!(
        "{weekdays}*-{}-{} {}:{}:{} {}",
        numeric(&fields.month, 1)?,
        numeric(&fields.day_of_month, 1)?,
        numeric(&fields.hour, 0)?,
        numeric(&fields.minute, 0)?,
        numeric(&fields.second, 0)?,
        tz.name()
    ))
}

/// A numeric cron field in systemd's syntax: `*`, numbers, ranges (`a-b` is `a..b`) and steps
/// (`*/n` is `first/n`), comma-separated.
fn numeric(field: &str, first: u32) -> Result<String, String> {
    if field == "*" {
        return Ok("*".into());
    }
    let items = field
        .split(',')
        .map(|item| numeric_item(item, first))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(items.join(","))
}

fn numeric_item(item: &str, first: u32) -> Result<String, String> {
    let unmappable = || format!("{item:?} has no systemd form");
    let number = |s: &str| s.parse::<u32>().map_err(|_| unmappable());
    match (item.split_once('/'), item.split_once('-')) {
        (Some(("*", step)), _) => Ok(format!("{first:02}/{}", number(step)?)),
        (Some((start, step)), None) => Ok(format!("{:02}/{}", number(start)?, number(step)?)),
        (None, Some((a, b))) => Ok(format!("{:02}..{:02}", number(a)?, number(b)?)),
        (None, None) => Ok(format!("{:02}", number(item)?)),
        (Some(_), Some(_)) => Err(unmappable()),
    }
}

/// Days of the week (0 and 7 are Sunday) as systemd names: `1-5` is `Mon..Fri`.
fn weekdays(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let name = |s: &str| {
        s.parse::<usize>()
            .ok()
            .and_then(|n| NAMES.get(n).copied())
            .ok_or_else(|| format!("the day of the week {field:?} has no systemd form"))
    };
    let items = field
        .split(',')
        .map(|item| match item.split_once('-') {
            Some((a, b)) => Ok(format!("{}..{}", name(a)?, name(b)?)),
            None => name(item).map(str::to_string),
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(items.join(","))
}

/// `ExecStart=`'s command line: `base`, then the subcommand.
fn systemd_command(base: &[String], sub: &str) -> String {
    base.iter()
        .map(|a| systemd_quote(a))
        .chain(std::iter::once(sub.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `%` doubled: systemd expands `%x` specifiers in unit settings.
fn systemd_escape(s: &str) -> String {
    s.replace('%', "%%")
}

/// One word for systemd's command line: in double quotes when it holds a blank, a quote or a
/// backslash.
fn systemd_quote(s: &str) -> String {
    let s = systemd_escape(s);
    if s.chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::schedule::parse_timezone;

    fn calendar(expression: &str, tz: &str) -> Result<String, String> {
        let s = Schedule::parse(expression, parse_timezone(tz).unwrap()).unwrap();
        on_calendar(&s.fields(), s.timezone())
    }

    #[test]
    fn cron_expressions_become_systemd_calendar_events() {
        for (expression, tz, want) in [
            ("0 3 * * *", "UTC", "*-*-* 03:00:00 UTC"),
            (
                "15 2 * * *",
                "Europe/Berlin",
                "*-*-* 02:15:00 Europe/Berlin",
            ),
            ("*/15 * * * *", "UTC", "*-*-* *:00/15:00 UTC"),
            ("30 2 * * MON-FRI", "UTC", "Mon..Fri *-*-* 02:30:00 UTC"),
            ("0 4 * * 0,6", "UTC", "Sun,Sat *-*-* 04:00:00 UTC"),
            ("0 0 1 * *", "UTC", "*-*-01 00:00:00 UTC"),
            ("@daily", "UTC", "*-*-* 00:00:00 UTC"),
            ("*/2 * * * * *", "UTC", "*-*-* *:*:00/2 UTC"),
            ("0 1-5 * * *", "UTC", "*-*-* 01..05:00:00 UTC"),
        ] {
            assert_eq!(
                calendar(expression, tz).as_deref(),
                Ok(want),
                "{expression}"
            );
        }
        for unmappable in ["0 0 1 * 1", "0 0 L * *", "0 1-5/2 * * *", "0 0 * * 5#2"] {
            assert!(calendar(unmappable, "UTC").is_err(), "{unmappable}");
        }
    }

    #[test]
    fn crontab_fields_drop_a_zero_seconds_field_and_refuse_others() {
        let s = |e: &str| Schedule::parse(e, Tz::UTC).unwrap();
        assert_eq!(cron_fields(&s("15 2 * * *")).unwrap(), "15 2 * * *");
        assert_eq!(cron_fields(&s("0 15 2 * * *")).unwrap(), "15 2 * * *");
        assert_eq!(cron_fields(&s("@hourly")).unwrap(), "@hourly");
        assert!(cron_fields(&s("*/2 * * * * *")).is_err());
    }

    #[test]
    fn words_are_quoted_for_systemd() {
        assert_eq!(systemd_quote("/srv/my app"), "\"/srv/my app\"");
        assert_eq!(systemd_quote("/srv/100%"), "/srv/100%%");
    }
}
