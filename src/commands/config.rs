//! `aos-backup config`: the effective configuration and where each value came from, secrets redacted.

use super::Ctx;
use anyhow::Result;

/// Runs config.
pub fn run(ctx: &Ctx) -> Result<()> {
    let s = &ctx.settings;
    let url = match &s.database_url {
        None => ("(not set)".to_string(), "-".to_string()),
        Some(u) => {
            let shown = crate::conninfo::ConnInfo::parse(&u.value)
                .map_or_else(|e| format!("(invalid: {e})"), |c| c.redacted());
            (crate::redact::scrub(&shown), u.source.to_string())
        }
    };
    let p = &s.retention;
    let show = |v: Option<u32>| match v {
        None => "-".to_string(),
        Some(0) => "0 (off)".to_string(),
        Some(n) => n.to_string(),
    };
    let enc = &s.encryption;
    let recipients = match &enc.recipients {
        None => "-".to_string(),
        Some(crate::config::Recipients::Keys(k)) => format!("{} key(s)", k.len()),
        Some(crate::config::Recipients::File(f)) => f.display().to_string(),
    };
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or_else(|| "-".to_string(), |p| p.display().to_string())
    };
    let rows: Vec<(&str, String, String)> = vec![
        ("config_file", path(&s.config_file), "-".into()),
        ("database_url", url.0.clone(), url.1.clone()),
        (
            "backup_dir",
            s.backup_dir.value.display().to_string(),
            s.backup_dir.source.to_string(),
        ),
        (
            "pg_bin",
            s.pg_bin
                .as_ref()
                .map_or_else(|| "(PATH)".to_string(), |p| p.value.display().to_string()),
            s.pg_bin
                .as_ref()
                .map_or_else(|| "default".to_string(), |p| p.source.to_string()),
        ),
        (
            "format",
            s.format.value.to_string(),
            s.format.source.to_string(),
        ),
        (
            "compression",
            s.compression.value.algorithm.to_string(),
            s.compression.source.to_string(),
        ),
        (
            "compression_level",
            s.compression.value.level.to_string(),
            "-".into(),
        ),
        (
            "jobs",
            s.jobs.map_or_else(|| "-".into(), |j| j.to_string()),
            "-".into(),
        ),
        (
            "encryption",
            if enc.enabled { "age" } else { "none" }.into(),
            "-".into(),
        ),
        ("age_recipients", recipients, "-".into()),
        ("age_identity", path(&enc.identity_file), "-".into()),
        ("passphrase_file", path(&enc.passphrase_file), "-".into()),
        (
            "suspect_ratio",
            s.suspect_ratio.value.to_string(),
            s.suspect_ratio.source.to_string(),
        ),
        (
            "restore.lock_timeout",
            if s.lock_timeout.value.is_zero() {
                "0 (no limit)".to_string()
            } else {
                super::human_duration(s.lock_timeout.value)
            },
            s.lock_timeout.source.to_string(),
        ),
        ("retention.keep_last", show(p.keep_last), "-".into()),
        ("retention.keep_daily", show(p.keep_daily), "-".into()),
        ("retention.keep_weekly", show(p.keep_weekly), "-".into()),
        ("retention.keep_monthly", show(p.keep_monthly), "-".into()),
        ("retention.keep_yearly", show(p.keep_yearly), "-".into()),
        ("retention.max_age_days", show(p.max_age_days), "-".into()),
        (
            "production",
            s.env
                .production_marker()
                .map_or_else(|| "no".into(), |(k, v)| format!("yes ({k}={v})")),
            "-".into(),
        ),
    ];
    let text = rows
        .iter()
        .map(|(k, v, src)| {
            if src == "-" {
                format!("{k} = {v}")
            } else {
                format!("{k} = {v}  ({src})")
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let json: serde_json::Map<String, serde_json::Value> = rows
        .iter()
        .map(|(k, v, _)| ((*k).to_string(), serde_json::Value::String(v.clone())))
        .collect();
    ctx.emit(&text, &serde_json::Value::Object(json));
    Ok(())
}
