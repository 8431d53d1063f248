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

/// The longest duration any key takes: ten years.
const MAX_DURATION_SECS: f64 = 3650.0 * 86400.0;

/// Parses a duration: the one reader of every duration key (hook and lock timeouts, check ages,
/// cadences). Amounts with units, written together or apart: `26h`, `90m`, `500ms`, `1d12h`,
/// `1h 30m`, `1.5s`; the units are `ms`, `s`, `m`, `h`, `d` and `w` (or `sec`, `min`, `hour`,
/// `day`, `week` and their plurals), in any case. A number alone is seconds; a number without
/// a unit after others (`1h1`) is refused. At most ten years. The error says what is wrong.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err("an empty duration (give one like 30s, 90m or 2d)".into());
    }
    let secs = if t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        number_of(text, &t)?
    } else {
        sum_of_amounts(text, &t)?
    };
    if !secs.is_finite() || secs > MAX_DURATION_SECS {
        return Err(format!("{text:?} is too long (at most 3650d)"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// The seconds of `t` (`text` lower-cased and trimmed), a series of amounts with units.
fn sum_of_amounts(text: &str, t: &str) -> Result<f64, String> {
    let mut secs = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let after = &rest[digits..];
        let letters = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (number, unit) = (&rest[..digits], &after[..letters]);
        if unit.is_empty() && !number.is_empty() {
            return Err(format!(
                "{text:?}: the number {number} has no unit (use s, m, h, d or w)"
            ));
        }
        secs += number_of(text, number)? * unit_secs(text, unit)?;
        rest = after[letters..].trim_start();
    }
    Ok(secs)
}

fn number_of(text: &str, number: &str) -> Result<f64, String> {
    number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 30s, 90m or 2d)"))
}

fn unit_secs(text: &str, unit: &str) -> Result<f64, String> {
    Ok(match unit {
        "ms" => 0.001,
        "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        "w" | "week" | "weeks" => 7.0 * 86400.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use s, m, h, d or w)"
            ))
        }
    })
}

/// Parses an age such as `26h`, `90m`, `2d`, `1w`, `45s` or `1d12h` (a number alone is
/// seconds): a [`parse_duration`] in whole numbers of whole seconds.
pub fn parse_span(text: &str) -> Result<std::time::Duration, String> {
    if text.contains('.') {
        return Err(format!(
            "{text:?}: give whole numbers (like 90m rather than 1.5h)"
        ));
    }
    let d = parse_duration(text)?;
    if d.subsec_nanos() != 0 {
        return Err(format!("{text:?}: give whole seconds"));
    }
    Ok(d)
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
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 days").is_err());
    }

    #[test]
    fn one_duration_grammar_for_every_key() {
        for (text, secs) in [
            ("1d", 86_400.0),
            ("1w", 604_800.0),
            ("1d12h", 129_600.0),
            ("1h 30m", 5_400.0),
            ("1.5s", 1.5),
            ("2days", 172_800.0),
            ("0.5", 0.5),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
        for bad in [
            "1h1", "1d 12", "1h30", "3 d", "h1", "1x", "-1s", "1..5s", "3651d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let err = parse_duration("1h1").unwrap_err();
        assert!(err.contains("no unit"), "{err}");
        assert!(parse_span("1h1").is_err());
        assert!(parse_span("500ms").is_err());
        assert_eq!(parse_span("1000ms"), Ok(Duration::from_secs(1)));
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
