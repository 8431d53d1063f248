//! Cron schedules, for the daemon and the system-scheduler recipes: a crontab line of 5 fields (or
//! 6, seconds first) read by croner, in UTC or a named time zone, and the next slot after a time.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;

/// How many years ahead a schedule must fire at least once: the calendar's weekdays repeat
/// within 28 years, so a day that exists at all (a fifth Monday in February) comes by then.
const SEARCH_YEARS: usize = 28;

/// A cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// As the user wrote it (trimmed).
    expression: String,
    tz: Tz,
    cron: croner::Cron,
}

/// The six fields of a schedule, nicknames (`@daily`) and names (`mon`, `jan`) turned into
/// numbers: second, minute, hour, day of month, month, day of week.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    pub second: String,
    pub minute: String,
    pub hour: String,
    pub day_of_month: String,
    pub month: String,
    pub day_of_week: String,
}

impl Schedule {
    /// Reads `expression`: 5 crontab fields (minute first), 6 with seconds first, or a nickname
    /// (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`). The error says what is wrong.
    pub fn parse(expression: &str, tz: Tz) -> Result<Schedule, String> {
        let expression = expression.trim();
        let cron = croner::Cron::new(expression)
            .with_seconds_optional()
            .parse()
            .map_err(|e| e.to_string())?;
        let schedule = Schedule {
            expression: expression.to_string(),
            tz,
            cron,
        };
        schedule.refuse_misplaced_specials()?;
        let today = Utc::now().with_timezone(&tz).date_naive();
        if !schedule.fires_within(today) || schedule.next_after(Utc::now()).is_none() {
            return Err("it never fires (no such date)".into());
        }
        Ok(schedule)
    }

    /// `L`, `W` and `#` belong to the day fields; croner takes them elsewhere and then never
    /// fires.
    fn refuse_misplaced_specials(&self) -> Result<(), String> {
        let f = self.fields();
        let others = [
            ("second", &f.second),
            ("minute", &f.minute),
            ("hour", &f.hour),
            ("month", &f.month),
        ];
        match others
            .iter()
            .find(|(_, v)| v.contains(['L', 'l', 'W', 'w', '#']))
        {
            Some((field, value)) => Err(format!(
                "the {field} field {value:?} uses L, W or #, which only the day-of-month and day-of-week fields take"
            )),
            None => Ok(()),
        }
    }

    /// Whether some second of some day from `today` to [`SEARCH_YEARS`] years on matches: a
    /// bounded search, where croner's own looks thousands of years ahead before it gives up.
    fn fires_within(&self, today: NaiveDate) -> bool {
        let p = &self.cron.pattern;
        let any = |n: u32, hit: &dyn Fn(u32) -> Result<bool, croner::errors::CronError>| {
            (0..n).any(|v| hit(v).unwrap_or(false))
        };
        let in_a_day = any(60, &|v| p.second_match(v))
            && any(60, &|v| p.minute_match(v))
            && any(24, &|v| p.hour_match(v));
        in_a_day
            && today.iter_days().take(SEARCH_YEARS * 366).any(|d| {
                p.month_match(d.month()).unwrap_or(false)
                    && p.day_match(d.year(), d.month(), d.day()).unwrap_or(false)
            })
    }

    /// Every day at `hour` o'clock (0-23): seed 002's `BACKUP_SCHEDULE_HOUR`.
    pub fn daily_at(hour: u32, tz: Tz) -> Result<Schedule, String> {
        if hour > 23 {
            return Err(format!("{hour} is no hour of the day (0-23)"));
        }
        Schedule::parse(&format!("0 {hour} * * *"), tz)
    }

    /// The first slot strictly after `t` (to the second), or `None` when there is none.
    #[must_use]
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz).with_nanosecond(0)?;
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The expression as configured.
    #[must_use]
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone the expression is read in.
    #[must_use]
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The expression's fields, normalized (see [`Fields`]).
    #[must_use]
    pub fn fields(&self) -> Fields {
        let parts: Vec<&str> = self.cron.as_str().split_whitespace().collect();
        let parts = match *parts.as_slice() {
            [m, h, dom, mon, dow] => ["0", m, h, dom, mon, dow],
            [s, m, h, dom, mon, dow] => [s, m, h, dom, mon, dow],
            // croner accepted it, so it has 5 or 6 fields.
            _ => ["0", "*", "*", "*", "*", "*"],
        };
        Fields {
            second: parts[0].to_string(),
            minute: parts[1].to_string(),
            hour: parts[2].to_string(),
            day_of_month: parts[3].to_string(),
            month: parts[4].to_string(),
            day_of_week: parts[5].to_string(),
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\" ({})", self.expression, self.tz.name())
    }
}

/// Reads a time zone name: `UTC` (any case) or an IANA name such as `Europe/Berlin`.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("utc") || name == "Z" {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| format!("{name:?} is no time zone name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_fields_and_nicknames() {
        let s = Schedule::parse("15 2 * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.next_after(at("2026-03-01T02:15:00Z")),
            Some(at("2026-03-02T02:15:00Z"))
        );
        let s = Schedule::parse("*/2 * * * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.next_after(at("2026-03-01T02:15:00.700Z")),
            Some(at("2026-03-01T02:15:02Z"))
        );
        assert_eq!(s.fields().second, "*/2");
        let s = Schedule::parse("@daily", Tz::UTC).unwrap();
        assert_eq!(s.fields().hour, "0");
        assert_eq!(s.fields().second, "0");
        let s = Schedule::parse("0 6 * * MON-FRI", Tz::UTC).unwrap();
        assert_eq!(s.fields().day_of_week, "1-5");
    }

    #[test]
    fn a_named_zone_moves_the_slot_with_summer_time() {
        let berlin = parse_timezone("Europe/Berlin").unwrap();
        let s = Schedule::daily_at(3, berlin).unwrap();
        assert_eq!(
            s.next_after(at("2026-01-10T12:00:00Z")),
            Some(at("2026-01-11T02:00:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-07-10T12:00:00Z")),
            Some(at("2026-07-11T01:00:00Z"))
        );
        assert_eq!(s.to_string(), "\"0 3 * * *\" (Europe/Berlin)");
    }

    #[test]
    fn bad_expressions_zones_and_hours_are_refused() {
        for bad in [
            "",
            "daily",
            "61 * * * *",
            "* * * *",
            "* * * * * * *",
            "0 0 31 2 *",
        ] {
            assert!(Schedule::parse(bad, Tz::UTC).is_err(), "{bad:?}");
        }
        assert!(Schedule::daily_at(24, Tz::UTC).is_err());
        for fine in [
            "0 0 L * *",
            "0 0 15W * *",
            "0 0 * * 5L",
            "0 0 * * 1#5",
            "0 0 29 2 *",
        ] {
            assert!(Schedule::parse(fine, Tz::UTC).is_ok(), "{fine:?}");
        }
        assert!(parse_timezone("Mars/Olympus").is_err());
        assert_eq!(parse_timezone("utc").unwrap(), Tz::UTC);
    }

    #[test]
    fn a_schedule_that_never_fires_is_refused_quickly() {
        for bad in [
            "L * * * *",
            "0 L * * *",
            "0 0 * 2W *",
            "0 0 31 2,4,6,9,11 *",
        ] {
            let start = std::time::Instant::now();
            assert!(Schedule::parse(bad, Tz::UTC).is_err(), "{bad:?}");
            assert!(
                start.elapsed() < std::time::Duration::from_secs(1),
                "{bad:?} took {:?}",
                start.elapsed()
            );
        }
        let err = Schedule::parse("L * * * *", Tz::UTC).unwrap_err();
        assert!(err.contains("minute field"), "{err}");
    }
}
