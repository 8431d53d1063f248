//! Numbers and durations in words (`1.5 KiB`, `3 tables`, `2m05s`): shared by the commands and
//! by the lower layers that write messages, so it sits below `commands`.

/// Bytes as a human-readable size.
#[must_use]
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `1 table`, `3 tables`.
#[must_use]
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A duration like `3.2s` or `2m05s`.
#[must_use]
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// An age in words: `1 day ago`, `9 hours ago`, `2 minutes in the future`.
#[must_use]
pub fn age_phrase(
    then: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let secs = (now - then).num_seconds();
    let abs = secs.unsigned_abs();
    let amount = match abs {
        0..=119 => count(abs, "second"),
        120..=7199 => count(abs / 60, "minute"),
        7200..=86_399 => count(abs / 3600, "hour"),
        _ => count(abs / 86400, "day"),
    };
    if secs < 0 {
        format!("{amount} in the future")
    } else {
        format!("{amount} ago")
    }
}
