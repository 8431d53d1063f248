//! Which backups to keep: a pure function of (backups, policy, now).
//!
//! The rules follow the rotation scheme of restic/rustic `forget`: `keep_last` keeps the
//! N newest backups; `keep_daily`/`keep_weekly`/`keep_monthly`/`keep_yearly` keep the newest
//! backup of each of the N most recent calendar periods (UTC days, ISO weeks, months, years)
//! that contain backups; `max_age_days` keeps everything younger than D days. A backup is kept
//! when any rule keeps it, and [`plan_full`] records every rule that did.
//!
//! A count or age of 0 turns its rule off (as in restic and borg), so a policy whose rules are
//! all 0 or unset keeps everything.
//!
//! Safety rules sit on top: the newest backup that is not dated after `now` is always kept; the
//! backups the caller names as protected (the one a backup run just wrote) are always kept; and
//! once any rule is on, a backup dated after `now` (clock skew, a file copied from another host)
//! is kept rather than deleted, without taking the place of a real one in any rule.
//!
//! Nothing here performs I/O or reads the clock; `now` is a parameter, so the whole decision
//! can be previewed (dry run) and tested exhaustively.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Datelike, TimeDelta, Utc};

/// One complete backup that retention may keep or delete. (Incomplete and unmanaged files are
/// never passed in.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Stable identifier of the backup (for example its file name).
    pub id: String,
    /// When the backup was taken.
    pub time: DateTime<Utc>,
}

/// The retention policy; `None` or `Some(0)` means the rule is off. All rules off = keep
/// everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
// The `[retention]` table of the config file: a misspelt rule must not silently keep everything.
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Keep the N newest backups.
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the N most recent UTC days that have backups.
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the N most recent ISO weeks that have backups.
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the N most recent months that have backups.
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the N most recent years that have backups.
    pub keep_yearly: Option<u32>,
    /// Keep backups younger than this many days (BACKUP_RETENTION_DAYS).
    pub max_age_days: Option<u32>,
    /// How long a restore's safety backups are kept whatever the rules say
    /// (BACKUP_SAFETY_BACKUP_KEEP); `None`: [`DEFAULT_SAFETY_BACKUP_KEEP`]; zero: no longer than
    /// any other backup. Not a rule: a policy with only this is still empty.
    #[serde(skip)]
    pub safety_backup_keep: Option<std::time::Duration>,
}

/// How long safety backups are spared when the policy does not say.
pub const DEFAULT_SAFETY_BACKUP_KEEP: std::time::Duration =
    std::time::Duration::from_secs(7 * 86_400);

impl Policy {
    /// True when every rule is off (`None` or 0); such a policy keeps every backup.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        [
            self.keep_last,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
            self.max_age_days,
        ]
        .iter()
        .all(|rule| on(*rule).is_none())
    }
}

/// A rule's count when it is on: 0 means off, like unset.
fn on(rule: Option<u32>) -> Option<u32> {
    rule.filter(|n| *n > 0)
}

/// Why a backup is kept (or deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The newest backup not dated in the future, which is always kept.
    Newest,
    /// Named as protected by the caller (the backup just written), so always kept.
    Protected,
    /// A restore's safety backup, younger than the time safety backups are kept.
    SafetyBackup,
    /// No retention rule is set, so everything is kept.
    NoPolicy,
    /// Among the `keep_last` newest backups.
    Last,
    /// Newest backup of one of the `keep_daily` most recent days.
    Daily,
    /// Newest backup of one of the `keep_weekly` most recent ISO weeks.
    Weekly,
    /// Newest backup of one of the `keep_monthly` most recent months.
    Monthly,
    /// Newest backup of one of the `keep_yearly` most recent years.
    Yearly,
    /// Younger than `max_age_days`.
    WithinAge,
    /// Dated after `now`; kept because its age cannot be trusted.
    Future,
    /// Its recorded time disagrees with the time in its name; kept because its age cannot be
    /// trusted.
    TimeMismatch,
    /// No rule keeps it: the backup is deleted.
    Unmatched,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Reason::Newest => "newest backup",
            Reason::Protected => "protected",
            Reason::SafetyBackup => "safety backup",
            Reason::NoPolicy => "no retention policy",
            Reason::Last => "keep-last",
            Reason::Daily => "daily",
            Reason::Weekly => "weekly",
            Reason::Monthly => "monthly",
            Reason::Yearly => "yearly",
            Reason::WithinAge => "within max age",
            Reason::Future => "dated in the future",
            Reason::TimeMismatch => "time disagrees with its name",
            Reason::Unmatched => "matched no rule",
        };
        f.write_str(text)
    }
}

/// The verdict for one candidate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// The candidate's id.
    pub id: String,
    /// The candidate's time.
    pub time: DateTime<Utc>,
    /// True to keep the backup, false to delete it.
    pub keep: bool,
    /// Every rule that keeps the backup, in declaration order of [`Reason`];
    /// exactly `[Reason::Unmatched]` when it is deleted.
    pub reasons: Vec<Reason>,
}

/// Newest first; ties in time broken by id, descending. A total, deterministic order.
fn newest_first(a: &Candidate, b: &Candidate) -> Ordering {
    b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id))
}

/// Maps a time to the calendar period (day, ISO week, month, year) it falls in.
type PeriodKey = fn(&DateTime<Utc>) -> (i32, u32);

/// For candidates sorted newest first, marks the newest backup of each of the `n` most recent
/// periods that contain backups, where `period` maps a time to its period key.
///
/// `period` must be monotone in time (later time => same or later period), so the backups of one
/// period are contiguous in the sorted list and a period starts wherever the key changes.
fn newest_per_period<K: PartialEq>(
    sorted: &[&Candidate],
    n: u32,
    period: impl Fn(&DateTime<Utc>) -> K,
) -> Vec<bool> {
    let mut kept = vec![false; sorted.len()];
    let mut periods_used: u32 = 0;
    let mut last_key: Option<K> = None;
    for (slot, candidate) in kept.iter_mut().zip(sorted) {
        if periods_used >= n {
            break;
        }
        let key = period(&candidate.time);
        if last_key.as_ref() != Some(&key) {
            *slot = true;
            periods_used += 1;
            last_key = Some(key);
        }
    }
    kept
}

/// Decides, for every candidate, keep or delete. Output: one Decision per candidate, newest first
/// (ties broken by id, descending, so the order is total and deterministic).
///
/// See the module documentation for the rules. A backup dated after `now` is never counted as
/// [`Reason::WithinAge`]; it gets [`Reason::Future`] instead (when any rule is on), and takes no
/// slot of the count-based rules.
///
/// Every candidate whose id is in `protected` is kept ([`Reason::Protected`]). A backup run
/// passes the id of the backup it just wrote: whatever the dates say, the prune that follows a
/// backup never deletes that backup.
///
/// Every candidate whose id is in `untrusted` (its recorded time disagrees with its name: an
/// edited or damaged sidecar) is treated like a future-dated one: it is kept
/// ([`Reason::TimeMismatch`], once any rule is on), takes no slot of the count-based or calendar
/// rules, and is never the newest.
#[must_use]
pub fn plan_full(
    candidates: &[Candidate],
    policy: &Policy,
    now: DateTime<Utc>,
    protected: &[&str],
    untrusted: &[&str],
) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| newest_first(a, b));

    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); sorted.len()];
    let is_untrusted = |c: &Candidate| untrusted.contains(&c.id.as_str());

    // The backups whose time can be trusted: not dated after `now`, and not untrusted. Only
    // they take the place of the newest and the slots of the rules.
    let counted: Vec<usize> = (0..sorted.len())
        .filter(|&i| sorted[i].time <= now && !is_untrusted(sorted[i]))
        .collect();

    // Rules are applied in the declaration order of `Reason`, so each list comes out ordered.
    // The floor: the newest backup that is not dated in the future. (A future-dated one cannot
    // take its place: when every backup is future-dated, each is kept anyway.)
    if let Some(&newest) = counted.first() {
        reasons[newest].push(Reason::Newest);
    }
    for (r, candidate) in reasons.iter_mut().zip(&sorted) {
        if protected.contains(&candidate.id.as_str()) {
            r.push(Reason::Protected);
        }
    }

    if policy.is_empty() {
        for r in &mut reasons {
            r.push(Reason::NoPolicy);
        }
    } else {
        // Backups dated after `now` (or untrusted) are kept anyway (reason Future), so they
        // must not use up keep-last or calendar slots: otherwise two backups with a skewed
        // clock could push the real, current backup out.
        let past: Vec<&Candidate> = counted.iter().map(|&i| sorted[i]).collect();
        if let Some(n) = on(policy.keep_last) {
            // u32 -> usize cannot lose information on the 32/64-bit targets we build for;
            // saturate anyway rather than unwrap.
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            for &i in counted.iter().take(n) {
                reasons[i].push(Reason::Last);
            }
        }

        let period_rules: [(Option<u32>, Reason, PeriodKey); 4] = [
            (policy.keep_daily, Reason::Daily, |t| {
                (t.year(), t.ordinal())
            }),
            (policy.keep_weekly, Reason::Weekly, |t| {
                let week = t.iso_week();
                (week.year(), week.week())
            }),
            (policy.keep_monthly, Reason::Monthly, |t| {
                (t.year(), t.month())
            }),
            (policy.keep_yearly, Reason::Yearly, |t| (t.year(), 0)),
        ];
        for (count, reason, period) in period_rules {
            if let Some(n) = on(count) {
                let kept = newest_per_period(&past, n, period);
                for (&i, keep) in counted.iter().zip(kept) {
                    if keep {
                        reasons[i].push(reason);
                    }
                }
            }
        }

        // TimeDelta::days panics only beyond ~1e11 days (i64::MAX ms); u32::MAX (~4.3e9) is below.
        // `now - time` cannot overflow either: chrono documents the difference of any two
        // DateTimes as always in range.
        let max_age = on(policy.max_age_days).map(|days| TimeDelta::days(i64::from(days)));
        for (r, candidate) in reasons.iter_mut().zip(&sorted) {
            // Future, TimeMismatch and WithinAge are exclusive, so the list stays in
            // declaration order.
            let age = now.signed_duration_since(candidate.time);
            if age < TimeDelta::zero() {
                r.push(Reason::Future);
            } else if is_untrusted(candidate) {
                r.push(Reason::TimeMismatch);
            } else if max_age.is_some_and(|max| age < max) {
                r.push(Reason::WithinAge);
            }
        }
    }

    sorted
        .into_iter()
        .zip(reasons)
        .map(|(candidate, mut reasons)| {
            let keep = !reasons.is_empty();
            if !keep {
                reasons.push(Reason::Unmatched);
            }
            Decision {
                id: candidate.id.clone(),
                time: candidate.time,
                keep,
                reasons,
            }
        })
        .collect()
}

/// The plan when some candidates (ids in `safety`) are a restore's safety backups: while other
/// backups exist, a safety backup takes no rule's place (it is not the newest, nor one of the
/// last N, nor a day's) and is decided by its own time only: kept while younger than `keep`,
/// deleted after. When only safety backups exist, they are planned as any backups (the newest
/// is kept), younger ones spared as well.
#[must_use]
pub fn plan_with_safety(
    candidates: &[Candidate],
    policy: &Policy,
    now: DateTime<Utc>,
    (protected, untrusted): (&[&str], &[&str]),
    safety: &[&str],
    keep: std::time::Duration,
) -> Vec<Decision> {
    let is_safety = |id: &str| safety.contains(&id);
    if candidates.iter().all(|c| is_safety(&c.id)) {
        let mut decisions = plan_full(candidates, policy, now, protected, untrusted);
        spare_safety_backups(&mut decisions, safety, keep, now);
        return decisions;
    }
    let aside: Vec<&str> = untrusted.iter().chain(safety).copied().collect();
    let mut decisions = plan_full(candidates, policy, now, protected, &aside);
    let keep = TimeDelta::from_std(keep).unwrap_or(TimeDelta::MAX);
    for d in &mut decisions {
        let id = d.id.as_str();
        let age = now.signed_duration_since(d.time);
        if !is_safety(id)
            || untrusted.contains(&id)
            || protected.contains(&id)
            || age < TimeDelta::zero()
        {
            continue;
        }
        d.keep = age < keep;
        d.reasons = vec![if d.keep {
            Reason::SafetyBackup
        } else {
            Reason::Unmatched
        }];
    }
    decisions
}

/// Keeps the safety backups (ids in `safety`) younger than `keep`, whatever the rules decided
/// ([`Reason::SafetyBackup`]); one dated after `now` is left to the rules (they keep it).
pub fn spare_safety_backups(
    decisions: &mut [Decision],
    safety: &[&str],
    keep: std::time::Duration,
    now: DateTime<Utc>,
) {
    let Ok(keep) = TimeDelta::from_std(keep) else {
        return;
    };
    for d in decisions.iter_mut() {
        let age = now.signed_duration_since(d.time);
        if !safety.contains(&d.id.as_str()) || age < TimeDelta::zero() || age >= keep {
            continue;
        }
        d.reasons.retain(|r| *r != Reason::Unmatched);
        d.reasons.push(Reason::SafetyBackup);
        d.reasons.sort_by_key(|r| *r as u8);
        d.keep = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    use Reason::{
        Daily, Future, Last, Monthly, Newest, NoPolicy, Protected, SafetyBackup, TimeMismatch,
        Unmatched, Weekly, WithinAge, Yearly,
    };

    /// [`plan_full`] with nothing protected and nothing untrusted.
    fn plan(candidates: &[Candidate], policy: &Policy, now: DateTime<Utc>) -> Vec<Decision> {
        plan_protecting(candidates, policy, now, &[])
    }

    /// [`plan_full`] with `protected` and nothing untrusted.
    fn plan_protecting(
        candidates: &[Candidate],
        policy: &Policy,
        now: DateTime<Utc>,
        protected: &[&str],
    ) -> Vec<Decision> {
        plan_full(candidates, policy, now, protected, &[])
    }

    /// Parses an RFC 3339 timestamp such as `2024-01-01T03:00:00Z`.
    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("bad test timestamp {s:?}: {e}"))
            .with_timezone(&Utc)
    }

    fn cand(id: &str, time: &str) -> Candidate {
        Candidate {
            id: id.to_owned(),
            time: at(time),
        }
    }

    /// One backup per day at 03:00 UTC, from `first` to `last` inclusive, id = `YYYY-MM-DD`.
    fn daily_backups(first: &str, last: &str) -> Vec<Candidate> {
        let first: NaiveDate = first.parse().unwrap();
        let last: NaiveDate = last.parse().unwrap();
        first
            .iter_days()
            .take_while(|d| *d <= last)
            .map(|d| Candidate {
                id: d.to_string(),
                time: d.and_hms_opt(3, 0, 0).unwrap().and_utc(),
            })
            .collect()
    }

    /// Daily backups 2024-01-01 ..= 2024-03-31 (a Monday to a Sunday), seen at noon on the last day.
    fn q1() -> Vec<Candidate> {
        daily_backups("2024-01-01", "2024-03-31")
    }
    const Q1_NOW: &str = "2024-03-31T12:00:00Z";

    fn policy(f: impl FnOnce(&mut Policy)) -> Policy {
        let mut p = Policy::default();
        f(&mut p);
        p
    }

    fn kept_ids(decisions: &[Decision]) -> BTreeSet<String> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.id.clone())
            .collect()
    }

    struct Case {
        name: &'static str,
        candidates: Vec<Candidate>,
        policy: Policy,
        now: &'static str,
        /// Exactly the ids that must be kept.
        kept: &'static [&'static str],
        /// Full reason lists to check for some ids.
        reasons: &'static [(&'static str, &'static [Reason])],
    }

    fn cases() -> Vec<Case> {
        vec![
            Case {
                name: "empty input",
                candidates: vec![],
                policy: policy(|p| p.keep_last = Some(3)),
                now: Q1_NOW,
                kept: &[],
                reasons: &[],
            },
            Case {
                name: "empty input, empty policy",
                candidates: vec![],
                policy: Policy::default(),
                now: Q1_NOW,
                kept: &[],
                reasons: &[],
            },
            Case {
                name: "empty policy keeps everything",
                candidates: daily_backups("2024-03-29", "2024-03-31"),
                policy: Policy::default(),
                now: Q1_NOW,
                kept: &["2024-03-29", "2024-03-30", "2024-03-31"],
                reasons: &[
                    ("2024-03-31", &[Newest, NoPolicy]),
                    ("2024-03-30", &[NoPolicy]),
                    ("2024-03-29", &[NoPolicy]),
                ],
            },
            Case {
                name: "only keep_last",
                candidates: q1(),
                policy: policy(|p| p.keep_last = Some(3)),
                now: Q1_NOW,
                kept: &["2024-03-29", "2024-03-30", "2024-03-31"],
                reasons: &[
                    ("2024-03-31", &[Newest, Last]),
                    ("2024-03-30", &[Last]),
                    ("2024-03-28", &[Unmatched]),
                ],
            },
            Case {
                name: "keep_last 0 is off: with no other rule, everything is kept",
                candidates: daily_backups("2024-03-29", "2024-03-31"),
                policy: policy(|p| p.keep_last = Some(0)),
                now: Q1_NOW,
                kept: &["2024-03-29", "2024-03-30", "2024-03-31"],
                reasons: &[
                    ("2024-03-31", &[Newest, NoPolicy]),
                    ("2024-03-29", &[NoPolicy]),
                ],
            },
            Case {
                name: "keep_last larger than available",
                candidates: daily_backups("2024-03-30", "2024-03-31"),
                policy: policy(|p| p.keep_last = Some(10)),
                now: Q1_NOW,
                kept: &["2024-03-30", "2024-03-31"],
                reasons: &[("2024-03-30", &[Last])],
            },
            Case {
                name: "only age: strictly younger than D days",
                candidates: q1(),
                policy: policy(|p| p.max_age_days = Some(10)),
                now: Q1_NOW,
                // 03-22 03:00 is 9d9h old; 03-21 03:00 is 10d9h old.
                kept: &[
                    "2024-03-22",
                    "2024-03-23",
                    "2024-03-24",
                    "2024-03-25",
                    "2024-03-26",
                    "2024-03-27",
                    "2024-03-28",
                    "2024-03-29",
                    "2024-03-30",
                    "2024-03-31",
                ],
                reasons: &[
                    ("2024-03-31", &[Newest, WithinAge]),
                    ("2024-03-22", &[WithinAge]),
                    ("2024-03-21", &[Unmatched]),
                ],
            },
            Case {
                name: "age boundary: exactly D days old is deleted",
                candidates: vec![
                    cand("exact", "2024-03-29T12:00:00Z"),
                    cand("just-younger", "2024-03-29T12:00:01Z"),
                    cand("newest", "2024-03-31T11:00:00Z"),
                ],
                policy: policy(|p| p.max_age_days = Some(2)),
                now: Q1_NOW,
                kept: &["just-younger", "newest"],
                reasons: &[("exact", &[Unmatched]), ("just-younger", &[WithinAge])],
            },
            Case {
                name: "max_age 0 is off: with no other rule, everything is kept",
                candidates: daily_backups("2024-03-29", "2024-03-31"),
                policy: policy(|p| p.max_age_days = Some(0)),
                now: Q1_NOW,
                kept: &["2024-03-29", "2024-03-30", "2024-03-31"],
                reasons: &[("2024-03-30", &[NoPolicy])],
            },
            Case {
                name: "every rule 0: everything is kept",
                candidates: daily_backups("2024-03-29", "2024-03-31"),
                policy: Policy {
                    keep_last: Some(0),
                    keep_daily: Some(0),
                    keep_weekly: Some(0),
                    keep_monthly: Some(0),
                    keep_yearly: Some(0),
                    max_age_days: Some(0),
                    safety_backup_keep: None,
                },
                now: Q1_NOW,
                kept: &["2024-03-29", "2024-03-30", "2024-03-31"],
                reasons: &[("2024-03-29", &[NoPolicy])],
            },
            Case {
                name: "a rule at 0 is off next to one that is on",
                candidates: q1(),
                policy: policy(|p| {
                    p.max_age_days = Some(0);
                    p.keep_last = Some(2);
                }),
                now: Q1_NOW,
                kept: &["2024-03-30", "2024-03-31"],
                reasons: &[("2024-03-31", &[Newest, Last]), ("2024-03-30", &[Last])],
            },
            Case {
                name: "keep_last 0 with age rule",
                candidates: q1(),
                policy: policy(|p| {
                    p.keep_last = Some(0);
                    p.max_age_days = Some(2);
                }),
                now: Q1_NOW,
                kept: &["2024-03-30", "2024-03-31"],
                reasons: &[
                    ("2024-03-31", &[Newest, WithinAge]),
                    ("2024-03-30", &[WithinAge]),
                ],
            },
            Case {
                name: "keep_daily",
                candidates: q1(),
                policy: policy(|p| p.keep_daily = Some(7)),
                now: Q1_NOW,
                kept: &[
                    "2024-03-25",
                    "2024-03-26",
                    "2024-03-27",
                    "2024-03-28",
                    "2024-03-29",
                    "2024-03-30",
                    "2024-03-31",
                ],
                reasons: &[("2024-03-31", &[Newest, Daily]), ("2024-03-25", &[Daily])],
            },
            Case {
                name: "keep_daily 0 is off",
                candidates: daily_backups("2024-03-30", "2024-03-31"),
                policy: policy(|p| p.keep_daily = Some(0)),
                now: Q1_NOW,
                kept: &["2024-03-30", "2024-03-31"],
                reasons: &[("2024-03-30", &[NoPolicy])],
            },
            Case {
                name: "keep_weekly keeps the Sunday of each ISO week",
                candidates: q1(),
                policy: policy(|p| p.keep_weekly = Some(4)),
                now: Q1_NOW,
                kept: &["2024-03-10", "2024-03-17", "2024-03-24", "2024-03-31"],
                reasons: &[("2024-03-24", &[Weekly])],
            },
            Case {
                name: "keep_monthly keeps the last day of each month",
                candidates: q1(),
                policy: policy(|p| p.keep_monthly = Some(2)),
                now: Q1_NOW,
                kept: &["2024-02-29", "2024-03-31"],
                reasons: &[("2024-02-29", &[Monthly])],
            },
            Case {
                name: "keep_monthly larger than available",
                candidates: q1(),
                policy: policy(|p| p.keep_monthly = Some(12)),
                now: Q1_NOW,
                kept: &["2024-01-31", "2024-02-29", "2024-03-31"],
                reasons: &[("2024-01-31", &[Monthly])],
            },
            Case {
                name: "keep_yearly with a single year",
                candidates: q1(),
                policy: policy(|p| p.keep_yearly = Some(2)),
                now: Q1_NOW,
                kept: &["2024-03-31"],
                reasons: &[("2024-03-31", &[Newest, Yearly])],
            },
            Case {
                name: "keep_yearly over several years",
                candidates: daily_backups("2021-12-29", "2023-01-02"),
                policy: policy(|p| p.keep_yearly = Some(3)),
                now: "2023-01-02T12:00:00Z",
                kept: &["2021-12-31", "2022-12-31", "2023-01-02"],
                reasons: &[("2021-12-31", &[Yearly]), ("2022-12-31", &[Yearly])],
            },
            Case {
                name: "combination of daily, weekly and monthly",
                candidates: q1(),
                policy: policy(|p| {
                    p.keep_daily = Some(3);
                    p.keep_weekly = Some(2);
                    p.keep_monthly = Some(2);
                }),
                now: Q1_NOW,
                kept: &[
                    "2024-02-29",
                    "2024-03-24",
                    "2024-03-29",
                    "2024-03-30",
                    "2024-03-31",
                ],
                reasons: &[
                    ("2024-03-31", &[Newest, Daily, Weekly, Monthly]),
                    ("2024-03-24", &[Weekly]),
                    ("2024-03-30", &[Daily]),
                    ("2024-02-29", &[Monthly]),
                    ("2024-03-01", &[Unmatched]),
                ],
            },
            Case {
                name: "combination of everything",
                candidates: q1(),
                policy: policy(|p| {
                    p.keep_last = Some(2);
                    p.keep_daily = Some(3);
                    p.keep_weekly = Some(1);
                    p.keep_monthly = Some(1);
                    p.keep_yearly = Some(1);
                    p.max_age_days = Some(5);
                }),
                now: Q1_NOW,
                kept: &[
                    "2024-03-27",
                    "2024-03-28",
                    "2024-03-29",
                    "2024-03-30",
                    "2024-03-31",
                ],
                reasons: &[
                    (
                        "2024-03-31",
                        &[Newest, Last, Daily, Weekly, Monthly, Yearly, WithinAge],
                    ),
                    ("2024-03-30", &[Last, Daily, WithinAge]),
                    ("2024-03-29", &[Daily, WithinAge]),
                    ("2024-03-27", &[WithinAge]),
                ],
            },
            Case {
                name: "periods without backups are skipped",
                candidates: vec![
                    cand("jun-early", "2023-06-01T00:00:00Z"),
                    cand("jun-late", "2023-06-30T00:00:00Z"),
                    cand("oct", "2023-10-15T00:00:00Z"),
                    cand("jan", "2024-01-10T00:00:00Z"),
                ],
                policy: policy(|p| p.keep_monthly = Some(3)),
                now: "2024-06-01T00:00:00Z",
                kept: &["jan", "jun-late", "oct"],
                reasons: &[("jun-late", &[Monthly]), ("jun-early", &[Unmatched])],
            },
            Case {
                name: "days are UTC calendar days; newest of each day wins",
                candidates: vec![
                    cand("d1-early", "2024-01-01T00:30:00Z"),
                    cand("d1-late", "2024-01-01T23:30:00Z"),
                    cand("d2-early", "2024-01-02T00:30:00Z"),
                    cand("d2-late", "2024-01-02T18:00:00Z"),
                    cand("d0", "2023-12-31T23:59:59Z"),
                ],
                policy: policy(|p| p.keep_daily = Some(2)),
                now: "2024-01-03T00:00:00Z",
                kept: &["d1-late", "d2-late"],
                reasons: &[("d2-late", &[Newest, Daily]), ("d1-late", &[Daily])],
            },
            Case {
                name: "ISO week 2020-W53 spans the year boundary",
                candidates: vec![
                    cand("2020-12-21", "2020-12-21T03:00:00Z"), // 2020-W52
                    cand("2020-12-31", "2020-12-31T03:00:00Z"), // 2020-W53
                    cand("2021-01-01", "2021-01-01T03:00:00Z"), // 2020-W53
                ],
                policy: policy(|p| p.keep_weekly = Some(2)),
                now: "2021-01-02T00:00:00Z",
                kept: &["2020-12-21", "2021-01-01"],
                reasons: &[("2020-12-31", &[Unmatched]), ("2020-12-21", &[Weekly])],
            },
            Case {
                name: "yearly splits what ISO weeks join",
                candidates: vec![
                    cand("2020-12-21", "2020-12-21T03:00:00Z"),
                    cand("2020-12-31", "2020-12-31T03:00:00Z"),
                    cand("2021-01-01", "2021-01-01T03:00:00Z"),
                ],
                policy: policy(|p| p.keep_yearly = Some(2)),
                now: "2021-01-02T00:00:00Z",
                kept: &["2020-12-31", "2021-01-01"],
                reasons: &[("2020-12-31", &[Yearly])],
            },
            Case {
                name: "ISO week 2021-W01 starts on Monday 2021-01-04",
                candidates: daily_backups("2020-12-27", "2021-01-04"),
                policy: policy(|p| p.keep_weekly = Some(3)),
                now: "2021-01-05T00:00:00Z",
                // 12-27 is the Sunday of W52, 01-03 the Sunday of W53, 01-04 is W01.
                kept: &["2020-12-27", "2021-01-03", "2021-01-04"],
                reasons: &[("2021-01-03", &[Weekly]), ("2020-12-28", &[Unmatched])],
            },
            Case {
                name: "ties in time: greatest id is the newest",
                candidates: vec![
                    cand("a", "2024-03-30T03:00:00Z"),
                    cand("c", "2024-03-30T03:00:00Z"),
                    cand("b", "2024-03-30T03:00:00Z"),
                ],
                policy: policy(|p| p.keep_daily = Some(5)),
                now: Q1_NOW,
                kept: &["c"],
                reasons: &[("c", &[Newest, Daily]), ("b", &[Unmatched])],
            },
            Case {
                name: "ties in time with keep_last",
                candidates: vec![
                    cand("a", "2024-03-30T03:00:00Z"),
                    cand("c", "2024-03-30T03:00:00Z"),
                    cand("b", "2024-03-30T03:00:00Z"),
                ],
                policy: policy(|p| p.keep_last = Some(2)),
                now: Q1_NOW,
                kept: &["b", "c"],
                reasons: &[("b", &[Last]), ("a", &[Unmatched])],
            },
            Case {
                name: "future backups are kept when a rule is set",
                candidates: vec![
                    cand("past", "2024-03-20T03:00:00Z"),
                    cand("now", Q1_NOW),
                    cand("future", "2024-04-01T03:00:00Z"),
                ],
                policy: policy(|p| p.max_age_days = Some(1)),
                now: Q1_NOW,
                kept: &["future", "now"],
                reasons: &[
                    ("future", &[Future]),
                    ("now", &[Newest, WithinAge]),
                    ("past", &[Unmatched]),
                ],
            },
            Case {
                name: "future backups are never within age, only Future",
                candidates: vec![
                    cand("past", "2024-03-31T03:00:00Z"),
                    cand("future", "2024-04-01T03:00:00Z"),
                ],
                policy: policy(|p| p.max_age_days = Some(7)),
                now: Q1_NOW,
                kept: &["future", "past"],
                reasons: &[("future", &[Future]), ("past", &[Newest, WithinAge])],
            },
            Case {
                // Future-dated backups are kept anyway and do not use up keep_last slots.
                name: "future backups do not count towards keep_last",
                candidates: vec![
                    cand("past", "2024-03-31T03:00:00Z"),
                    cand("future-1", "2024-04-01T03:00:00Z"),
                    cand("future-2", "2024-04-02T03:00:00Z"),
                ],
                policy: policy(|p| p.keep_last = Some(1)),
                now: Q1_NOW,
                kept: &["future-1", "future-2", "past"],
                reasons: &[
                    ("future-2", &[Future]),
                    ("future-1", &[Future]),
                    ("past", &[Newest, Last]),
                ],
            },
            Case {
                name: "future backups with an empty policy: only NoPolicy",
                candidates: vec![
                    cand("past", "2024-03-31T03:00:00Z"),
                    cand("future", "2024-04-01T03:00:00Z"),
                ],
                policy: Policy::default(),
                now: Q1_NOW,
                kept: &["future", "past"],
                reasons: &[("future", &[NoPolicy]), ("past", &[Newest, NoPolicy])],
            },
            Case {
                // The reported case: a backup dated next year must not make the real ones
                // (the one just written among them) fall out of every rule.
                name: "a future-dated backup does not take the place of the newest real one",
                candidates: vec![
                    cand("old", "2024-03-20T03:00:00Z"),
                    cand("real", "2024-03-30T03:00:00Z"),
                    cand("next-year", "2025-03-31T03:00:00Z"),
                ],
                policy: policy(|p| p.max_age_days = Some(1)),
                now: Q1_NOW,
                kept: &["next-year", "real"],
                reasons: &[
                    ("next-year", &[Future]),
                    ("real", &[Newest]),
                    ("old", &[Unmatched]),
                ],
            },
            Case {
                name: "only future-dated backups: all kept, none is the newest",
                candidates: vec![
                    cand("f1", "2024-04-01T03:00:00Z"),
                    cand("f2", "2024-04-02T03:00:00Z"),
                ],
                policy: policy(|p| p.keep_last = Some(1)),
                now: Q1_NOW,
                kept: &["f1", "f2"],
                reasons: &[("f1", &[Future]), ("f2", &[Future])],
            },
        ]
    }

    #[test]
    fn table() {
        for case in cases() {
            let decisions = plan(&case.candidates, &case.policy, at(case.now));
            let name = case.name;

            assert_eq!(
                decisions.len(),
                case.candidates.len(),
                "{name}: one decision per candidate"
            );
            let expected: BTreeSet<String> = case.kept.iter().map(|s| (*s).to_owned()).collect();
            assert_eq!(kept_ids(&decisions), expected, "{name}: kept ids");

            for (id, reasons) in case.reasons {
                let decision = decisions
                    .iter()
                    .find(|d| d.id == *id)
                    .unwrap_or_else(|| panic!("{name}: no decision for {id}"));
                assert_eq!(decision.reasons, *reasons, "{name}: reasons of {id}");
            }
        }
    }

    #[test]
    fn output_is_newest_first_with_ties_by_id_descending() {
        let candidates = vec![
            cand("b", "2024-01-02T00:00:00Z"),
            cand("x", "2024-01-01T00:00:00Z"),
            cand("a", "2024-01-02T00:00:00Z"),
            cand("z", "2024-01-03T00:00:00Z"),
        ];
        let ids: Vec<String> = plan(&candidates, &Policy::default(), at(Q1_NOW))
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, ["z", "b", "a", "x"]);
    }

    #[test]
    fn decisions_carry_the_candidate_time() {
        let candidates = vec![cand("a", "2024-01-02T03:04:05Z")];
        let decisions = plan(&candidates, &Policy::default(), at(Q1_NOW));
        assert_eq!(decisions[0].time, at("2024-01-02T03:04:05Z"));
    }

    #[test]
    fn duplicate_ids_do_not_panic() {
        let candidates = vec![
            cand("dup", "2024-03-30T03:00:00Z"),
            cand("dup", "2024-03-30T03:00:00Z"),
            cand("dup", "2024-03-29T03:00:00Z"),
        ];
        let decisions = plan(&candidates, &policy(|p| p.keep_last = Some(1)), at(Q1_NOW));
        let keeps: Vec<bool> = decisions.iter().map(|d| d.keep).collect();
        assert_eq!(keeps, [true, false, false]);
    }

    #[test]
    fn policy_is_empty_only_when_every_rule_is_off() {
        assert!(Policy::default().is_empty());
        for index in 0..6 {
            let mut p = Policy::default();
            *rule_mut(&mut p, index) = Some(0);
            assert!(p.is_empty(), "0 is off: {p:?}");
            *rule_mut(&mut p, index) = Some(1);
            assert!(!p.is_empty(), "{p:?}");
        }
    }

    #[test]
    fn protected_ids_are_kept_whatever_the_rules_say() {
        let candidates = vec![
            cand("old", "2024-03-01T03:00:00Z"),
            cand("just-made", "2024-03-31T11:00:00Z"),
            cand("future", "2025-01-01T00:00:00Z"),
            cand("future-2", "2025-01-02T00:00:00Z"),
        ];
        let p = policy(|p| p.keep_last = Some(1));
        // Unprotected, "just-made" is kept anyway as the newest real backup; protect the old one
        // to see the rule at work, and both together.
        let decisions = plan_protecting(&candidates, &p, at(Q1_NOW), &["old"]);
        let old = decisions.iter().find(|d| d.id == "old").unwrap();
        assert!(old.keep);
        assert_eq!(old.reasons, [Protected]);
        let made = decisions.iter().find(|d| d.id == "just-made").unwrap();
        assert_eq!(made.reasons, [Newest, Last]);
        let decisions = plan_protecting(&candidates, &p, at(Q1_NOW), &["just-made"]);
        let made = decisions.iter().find(|d| d.id == "just-made").unwrap();
        assert_eq!(made.reasons, [Newest, Protected, Last]);
        assert!(!decisions.iter().find(|d| d.id == "old").unwrap().keep);
        // Protected with an empty policy: kept for both reasons.
        let decisions = plan_protecting(&candidates, &Policy::default(), at(Q1_NOW), &["old"]);
        let old = decisions.iter().find(|d| d.id == "old").unwrap();
        assert_eq!(old.reasons, [Protected, NoPolicy]);
    }

    #[test]
    fn reason_display_and_serialization() {
        let all = [
            (Newest, "newest backup", "newest"),
            (Protected, "protected", "protected"),
            (NoPolicy, "no retention policy", "no-policy"),
            (Last, "keep-last", "last"),
            (Daily, "daily", "daily"),
            (Weekly, "weekly", "weekly"),
            (Monthly, "monthly", "monthly"),
            (Yearly, "yearly", "yearly"),
            (WithinAge, "within max age", "within-age"),
            (Future, "dated in the future", "future"),
            (Unmatched, "matched no rule", "unmatched"),
        ];
        for (reason, text, json) in all {
            assert_eq!(reason.to_string(), text);
            assert_eq!(serde_json::to_value(reason).unwrap(), json);
        }
    }

    #[test]
    fn policy_serde_round_trip() {
        let p = policy(|p| {
            p.keep_daily = Some(7);
            p.max_age_days = Some(30);
        });
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), p);
    }

    // ---------------------------------------------------------------- property tests

    fn fixed_now() -> DateTime<Utc> {
        at("2024-06-15T12:00:00Z")
    }

    /// Times within about three years before and one month after `fixed_now`; whole-hour
    /// offsets make ties in time and several backups per day common.
    fn offset_seconds() -> impl Strategy<Value = i64> {
        prop_oneof![
            -3 * 365 * 86_400_i64..30 * 86_400,
            (-2_000_i64..48).prop_map(|hours| hours * 3_600),
        ]
    }

    /// 0..60 candidates with unique ids.
    fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
        prop::collection::vec(offset_seconds(), 0..60).prop_map(|offsets| {
            offsets
                .into_iter()
                .enumerate()
                .map(|(i, secs)| Candidate {
                    id: format!("b{i:02}"),
                    time: fixed_now() + TimeDelta::seconds(secs),
                })
                .collect()
        })
    }

    fn policies() -> impl Strategy<Value = Policy> {
        let rule = || prop::option::of(0_u32..10);
        (rule(), rule(), rule(), rule(), rule(), rule()).prop_map(
            |(keep_last, keep_daily, keep_weekly, keep_monthly, keep_yearly, max_age_days)| {
                Policy {
                    keep_last,
                    keep_daily,
                    keep_weekly,
                    keep_monthly,
                    keep_yearly,
                    max_age_days,
                    safety_backup_keep: None,
                }
            },
        )
    }

    fn rule_mut(p: &mut Policy, index: usize) -> &mut Option<u32> {
        match index {
            0 => &mut p.keep_last,
            1 => &mut p.keep_daily,
            2 => &mut p.keep_weekly,
            3 => &mut p.keep_monthly,
            4 => &mut p.keep_yearly,
            _ => &mut p.max_age_days,
        }
    }

    /// Set-based oracle for a period rule: the distinct periods, newest first, the first `n` of
    /// them, and the newest backup (by the output order) within each.
    fn oracle_period_keeps<K: Ord>(
        decisions: &[Decision],
        n: u32,
        period: impl Fn(&DateTime<Utc>) -> K,
    ) -> BTreeSet<String> {
        let mut newest_in_period: BTreeMap<K, &Decision> = BTreeMap::new();
        // Backups dated after now never take a period slot.
        for d in decisions.iter().filter(|d| d.time <= fixed_now()) {
            // `decisions` is newest first, so the first one seen per period is its newest.
            newest_in_period.entry(period(&d.time)).or_insert(d);
        }
        newest_in_period
            .values()
            .rev()
            .take(n as usize)
            .map(|d| d.id.clone())
            .collect()
    }

    fn ids_with(decisions: &[Decision], reason: Reason) -> BTreeSet<String> {
        decisions
            .iter()
            .filter(|d| d.reasons.contains(&reason))
            .map(|d| d.id.clone())
            .collect()
    }

    proptest! {
        /// 1. One decision per candidate, same ids, newest-first order.
        #[test]
        fn prop_one_decision_per_candidate_newest_first(cs in candidates(), p in policies()) {
            let decisions = plan(&cs, &p, fixed_now());
            prop_assert_eq!(decisions.len(), cs.len());

            let mut input_ids: Vec<&str> = cs.iter().map(|c| c.id.as_str()).collect();
            let mut output_ids: Vec<&str> = decisions.iter().map(|d| d.id.as_str()).collect();
            input_ids.sort_unstable();
            output_ids.sort_unstable();
            prop_assert_eq!(input_ids, output_ids);

            for d in &decisions {
                let c = cs.iter().find(|c| c.id == d.id).unwrap();
                prop_assert_eq!(c.time, d.time);
            }
            for pair in decisions.windows(2) {
                prop_assert!(
                    (pair[0].time, &pair[0].id) > (pair[1].time, &pair[1].id),
                    "not strictly newest first: {:?} then {:?}", pair[0], pair[1]
                );
            }
        }

        /// 2. The newest backup not dated in the future is always kept, with reason Newest, and
        ///    no other has it; future-dated backups are always kept too.
        #[test]
        fn prop_newest_is_always_kept(cs in candidates(), p in policies()) {
            let decisions = plan(&cs, &p, fixed_now());
            let newest_real = cs
                .iter()
                .filter(|c| c.time <= fixed_now())
                .max_by(|a, b| newest_first(b, a));
            for d in &decisions {
                let is_floor = newest_real.is_some_and(|c| c.id == d.id);
                prop_assert_eq!(d.reasons.contains(&Newest), is_floor, "{:?}", d);
                if is_floor || d.time > fixed_now() {
                    prop_assert!(d.keep, "{:?}", d);
                }
            }
        }

        /// Protected ids are always kept with reason Protected; protecting never deletes
        /// anything the plain plan keeps.
        #[test]
        fn prop_protected_are_kept(
            cs in candidates(),
            p in policies(),
            picks in prop::collection::vec(0_usize..60, 0..4),
        ) {
            let protected: Vec<&str> = picks
                .iter()
                .filter_map(|i| cs.get(*i).map(|c| c.id.as_str()))
                .collect();
            let plain = kept_ids(&plan(&cs, &p, fixed_now()));
            let decisions = plan_protecting(&cs, &p, fixed_now(), &protected);
            for d in &decisions {
                let is_protected = protected.contains(&d.id.as_str());
                prop_assert_eq!(d.reasons.contains(&Protected), is_protected);
                if is_protected {
                    prop_assert!(d.keep);
                }
            }
            prop_assert!(plain.is_subset(&kept_ids(&decisions)));
        }

        /// A policy whose rules are all 0 or unset deletes nothing.
        #[test]
        fn prop_all_zero_policy_deletes_nothing(
            cs in candidates(),
            zeros in prop::collection::vec(any::<bool>(), 6),
        ) {
            let mut p = Policy::default();
            for (index, zero) in zeros.into_iter().enumerate() {
                if zero {
                    *rule_mut(&mut p, index) = Some(0);
                }
            }
            prop_assert!(p.is_empty());
            for d in plan(&cs, &p, fixed_now()) {
                prop_assert!(d.keep && d.reasons.contains(&NoPolicy));
            }
        }

        /// 3. An empty policy keeps everything, with reason NoPolicy.
        #[test]
        fn prop_empty_policy_keeps_everything(cs in candidates()) {
            for d in plan(&cs, &Policy::default(), fixed_now()) {
                prop_assert!(d.keep);
                prop_assert!(d.reasons.contains(&NoPolicy));
            }
        }

        /// 4. The result does not depend on the input order.
        #[test]
        fn prop_independent_of_input_order(
            (cs, shuffled) in candidates()
                .prop_flat_map(|cs| (Just(cs.clone()), Just(cs).prop_shuffle())),
            p in policies(),
        ) {
            let expected = plan(&cs, &p, fixed_now());
            prop_assert_eq!(&plan(&shuffled, &p, fixed_now()), &expected);
            let reversed: Vec<Candidate> = cs.iter().rev().cloned().collect();
            prop_assert_eq!(&plan(&reversed, &p, fixed_now()), &expected);
        }

        /// 5. Raising a count (or enabling a rule on a non-empty policy) never deletes a
        ///    backup that was kept before.
        #[test]
        fn prop_monotone_in_every_rule(
            cs in candidates(),
            p in policies(),
            rule in 0_usize..6,
            increase in 0_u32..10,
        ) {
            let mut bigger = p.clone();
            let slot = rule_mut(&mut bigger, rule);
            match *slot {
                Some(n) if n > 0 => *slot = Some(n + increase),
                // Turning on the first rule (it was unset or 0) turns "keep everything" into a
                // real policy, which may delete; that is the one allowed exception.
                _ => {
                    prop_assume!(!p.is_empty());
                    *slot = Some(increase);
                }
            }
            let before = kept_ids(&plan(&cs, &p, fixed_now()));
            let after = kept_ids(&plan(&cs, &bigger, fixed_now()));
            prop_assert!(
                before.is_subset(&after),
                "{:?} -> {:?} stopped keeping {:?}", p, bigger, before.difference(&after)
            );
        }

        /// 6. keep_last N keeps at least min(N, len) backups (the newest ones); nothing ever
        ///    deletes more than len - 1.
        #[test]
        fn prop_keep_last_lower_bound(cs in candidates(), p in policies(), n in 0_u32..70) {
            let any = plan(&cs, &p, fixed_now());
            let deleted = any.iter().filter(|d| !d.keep).count();
            prop_assert!(deleted <= cs.len().saturating_sub(1));

            let with_last = Policy { keep_last: Some(n), ..p };
            let decisions = plan(&cs, &with_last, fixed_now());
            prop_assert!(decisions.iter().filter(|d| d.keep).count() >= cs.len().min(n as usize));
            // Future-dated backups are kept anyway and take no keep-last slot: the N newest of
            // the others get Last.
            let past: Vec<&Decision> = decisions.iter().filter(|d| d.time <= fixed_now()).collect();
            let wanted = past.len().min(n as usize);
            for d in &past[..wanted] {
                prop_assert!(d.keep && d.reasons.contains(&Last));
            }
            for d in &past[wanted..] {
                prop_assert!(!d.reasons.contains(&Last));
            }
            for d in decisions.iter().filter(|d| d.time > fixed_now()) {
                prop_assert!(d.keep && !d.reasons.contains(&Last));
            }
        }

        /// 7. Kept backups have reasons without Unmatched; deleted ones exactly [Unmatched].
        #[test]
        fn prop_reasons_are_consistent(cs in candidates(), p in policies()) {
            for d in plan(&cs, &p, fixed_now()) {
                if d.keep {
                    prop_assert!(!d.reasons.is_empty());
                    prop_assert!(!d.reasons.contains(&Unmatched));
                } else {
                    prop_assert_eq!(&d.reasons, &vec![Unmatched]);
                }
            }
        }

        /// The period rules agree with a set-based oracle (guards the contiguity shortcut).
        #[test]
        fn prop_period_rules_match_oracle(cs in candidates(), n in 0_u32..10) {
            let p = Policy {
                keep_daily: Some(n),
                keep_weekly: Some(n),
                keep_monthly: Some(n),
                keep_yearly: Some(n),
                ..Policy::default()
            };
            let decisions = plan(&cs, &p, fixed_now());
            prop_assert_eq!(
                ids_with(&decisions, Daily),
                oracle_period_keeps(&decisions, n, |t| t.date_naive())
            );
            prop_assert_eq!(
                ids_with(&decisions, Weekly),
                oracle_period_keeps(&decisions, n, |t| (t.iso_week().year(), t.iso_week().week()))
            );
            prop_assert_eq!(
                ids_with(&decisions, Monthly),
                oracle_period_keeps(&decisions, n, |t| (t.year(), t.month()))
            );
            prop_assert_eq!(
                ids_with(&decisions, Yearly),
                oracle_period_keeps(&decisions, n, |t| t.year())
            );
        }

        /// The age and future rules: exactly the young past backups are WithinAge, exactly the
        /// future ones are Future (when a rule is set), and both are kept.
        #[test]
        fn prop_age_and_future(cs in candidates(), p in policies()) {
            let now = fixed_now();
            for d in plan(&cs, &p, now) {
                let future = d.time > now;
                let young = p
                    .max_age_days
                    .is_some_and(|days| !future && now - d.time < TimeDelta::days(days.into()));
                prop_assert_eq!(d.reasons.contains(&Future), future && !p.is_empty());
                prop_assert_eq!(d.reasons.contains(&WithinAge), young);
                if young || (future && !p.is_empty()) {
                    prop_assert!(d.keep);
                }
            }
        }

        /// Duplicated ids (not expected) do not panic and still give one decision each.
        #[test]
        fn prop_duplicate_ids_do_not_panic(
            raw in prop::collection::vec(("[a-c]", offset_seconds()), 0..30),
            p in policies(),
        ) {
            let cs: Vec<Candidate> = raw
                .into_iter()
                .map(|(id, secs)| Candidate { id, time: fixed_now() + TimeDelta::seconds(secs) })
                .collect();
            let decisions = plan(&cs, &p, fixed_now());
            prop_assert_eq!(decisions.len(), cs.len());
            if !cs.is_empty() {
                prop_assert!(decisions[0].keep);
            }
        }
    }

    #[test]
    fn an_untrusted_time_is_kept_but_takes_no_slot_and_is_not_the_newest() {
        let now = at("2026-11-21T00:00:00Z");
        let c = [
            cand("real-newest", "2026-11-20T00:00:00Z"),
            cand("edited", "2026-11-20T12:00:00Z"),
            cand("older", "2026-11-19T00:00:00Z"),
            cand("oldest", "2026-11-18T00:00:00Z"),
        ];
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let d = plan_full(&c, &policy, now, &[], &["edited"]);
        let by = |id: &str| d.iter().find(|x| x.id == id).unwrap().clone();
        assert_eq!(by("edited").reasons, [TimeMismatch]);
        assert_eq!(by("real-newest").reasons, [Newest, Last]);
        assert!(!by("older").keep && !by("oldest").keep);
        // Without the flag, the edited one would have pushed the real newest out.
        let d = plan_full(&c, &policy, now, &[], &[]);
        assert_eq!(d[0].id, "edited");
        assert_eq!(d[0].reasons, [Newest, Last]);
        assert!(!d[1].keep);
        // No policy: everything is kept anyway.
        assert!(plan_full(&c, &Policy::default(), now, &[], &["edited"])
            .iter()
            .all(|d| d.keep));
    }

    #[test]
    fn a_safety_backup_takes_no_rules_place_and_goes_after_its_time() {
        let now = at("2026-11-21T00:00:00Z");
        let c = [
            cand("pre-restore", "2026-11-20T12:00:00Z"),
            cand("regular", "2026-11-20T00:00:00Z"),
            cand("old-pre-restore", "2026-11-01T00:00:00Z"),
            cand("older", "2026-11-19T00:00:00Z"),
        ];
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let week = std::time::Duration::from_secs(7 * 86_400);
        let safety = ["pre-restore", "old-pre-restore"];
        let d = plan_with_safety(&c, &policy, now, (&[], &[]), &safety, week);
        let by = |id: &str| d.iter().find(|x| x.id == id).unwrap().clone();
        assert_eq!(by("regular").reasons, [Newest, Last]);
        assert_eq!(by("pre-restore").reasons, [SafetyBackup]);
        assert!(by("pre-restore").keep);
        assert!(!by("old-pre-restore").keep && !by("older").keep);
        // Only safety backups: the newest is kept as any newest would be.
        let only = [c[0].clone(), c[2].clone()];
        let d = plan_with_safety(&only, &policy, now, (&[], &[]), &safety, week);
        assert!(d.iter().find(|x| x.id == "pre-restore").unwrap().keep);
    }

    #[test]
    fn safety_backups_are_spared_for_their_time() {
        let candidates = vec![
            cand("old", "2024-03-20T03:00:00Z"),
            cand("safe-young", "2024-03-29T03:00:00Z"),
            cand("safe-old", "2024-03-10T03:00:00Z"),
            cand("new", "2024-03-31T03:00:00Z"),
        ];
        let mut decisions = plan(&candidates, &policy(|p| p.keep_last = Some(1)), at(Q1_NOW));
        let week = std::time::Duration::from_secs(7 * 86_400);
        spare_safety_backups(
            &mut decisions,
            &["safe-young", "safe-old"],
            week,
            at(Q1_NOW),
        );
        let kept = kept_ids(&decisions);
        assert_eq!(
            kept,
            ["new", "safe-young"]
                .iter()
                .map(ToString::to_string)
                .collect()
        );
        let young = decisions.iter().find(|d| d.id == "safe-young").unwrap();
        assert_eq!(young.reasons, [SafetyBackup]);
        let mut none = plan(&candidates, &policy(|p| p.keep_last = Some(1)), at(Q1_NOW));
        spare_safety_backups(
            &mut none,
            &["safe-young"],
            std::time::Duration::ZERO,
            at(Q1_NOW),
        );
        assert!(!kept_ids(&none).contains("safe-young"));
    }
}
