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

/// A span of seconds in at most two units, largest first: `45s`, `90m`, `26h`, `2d4h`. Below two
/// hours in minutes, below two days in hours (as thresholds such as `26h` are written).
#[must_use]
pub fn compact_duration(secs: u64) -> String {
    let two = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => two(secs / 60, "m", secs % 60, "s"),
        7200..=172_799 => two(secs / 3600, "h", secs % 3600 / 60, "m"),
        _ => two(secs / 86400, "d", secs % 86400 / 3600, "h"),
    }
}

/// Parses a duration such as `26h`, `90m`, `2d`, `1w`, `45s` or `1d12h` (a bare number is
/// seconds). The error says what is wrong, in words.
pub fn parse_span(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err("an empty duration (give one like 26h, 90m or 2d)".into());
    }
    let mut secs: u64 = 0;
    let mut rest = t.as_str();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let after = &rest[digits..];
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (number, unit) = (&rest[..digits], after[..unit_len].trim());
        let value: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration (like 26h, 90m or 2d)"))?;
        let factor = match unit {
            "" | "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86400,
            "w" | "week" | "weeks" => 7 * 86400,
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (use s, m, h, d or w)"
                ))
            }
        };
        secs = value
            .checked_mul(factor)
            .and_then(|s| secs.checked_add(s))
            .ok_or_else(|| format!("{text:?} is too long"))?;
        rest = &after[unit_len..];
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Parses a size such as `1MB`, `500kB`, `2GiB`, `1M` or `4096` (bytes). `kB`, `MB`, `GB`, `TB`
/// are powers of 1000; `KiB`, `MiB`, `GiB`, `TiB` and the bare letters `K`, `M`, `G`, `T` are
/// powers of 1024. Case does not matter.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim().to_ascii_lowercase());
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (like 1MB, 500KiB or 4096)"))?;
    let factor: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use B, kB, MB, GB, KiB, MiB or GiB)"
            ))
        }
    };
    let bytes = (value * factor).round();
    #[allow(clippy::cast_precision_loss)]
    let too_big = bytes >= u64::MAX as f64;
    if !bytes.is_finite() || too_big {
        return Err(format!("{text:?} is too big"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn spans_parse_in_every_unit_and_combined() {
        for (text, secs) in [
            ("26h", 26 * 3600),
            ("90m", 5400),
            ("2d", 172_800),
            ("1w", 604_800),
            ("45", 45),
            ("1d12h", 129_600),
            (" 3H ", 10_800),
        ] {
            assert_eq!(parse_span(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        for bad in ["", "h", "26x", "1.5h", "-1h", "99999999999999999999d"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse_in_decimal_and_binary_units() {
        for (text, bytes) in [
            ("4096", 4096),
            ("1MB", 1_000_000),
            ("1mb", 1_000_000),
            ("500kB", 500_000),
            ("1MiB", 1_048_576),
            ("1M", 1_048_576),
            ("1.5K", 1536),
            ("2 GB", 2_000_000_000),
            ("0", 0),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "MB", "1XB", "-1", "1e30TB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn compact_durations_use_two_units_at_most() {
        assert_eq!(compact_duration(45), "45s");
        assert_eq!(compact_duration(5400), "90m");
        assert_eq!(compact_duration(5430), "90m30s");
        assert_eq!(compact_duration(26 * 3600), "26h");
        assert_eq!(compact_duration(30 * 3600 + 120), "30h2m");
        assert_eq!(compact_duration(52 * 3600), "2d4h");
        assert_eq!(compact_duration(3 * 86400), "3d");
    }
}
