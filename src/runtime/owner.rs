//! Who owns a throwaway resource (a drill's scratch database, an ephemeral cluster's folder):
//! this process, named by host, boot, pid and start time, written down with the resource so that
//! a later run can tell whether its owner is gone and the resource is a leftover to remove.

use std::fmt;

/// The process that made a throwaway resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The machine's host name.
    pub host: String,
    /// The kernel's boot id: a pid means nothing across reboots.
    pub boot: String,
    /// The process id.
    pub pid: u32,
    /// The process's start time in clock ticks since boot: a pid can be reused.
    pub start: u64,
}

/// Whether the owner of a resource still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It runs (or may: it is on another machine, which we cannot look at).
    Alive,
    /// It is gone: the resource is a leftover.
    Gone,
}

/// The marker's first word, so that a marker is never read out of an unrelated comment.
const TAG: &str = "aos-backup-owner";

impl Owner {
    /// This process.
    #[must_use]
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            host: host_name(),
            boot: boot_id(),
            pid,
            start: start_time(pid).unwrap_or(0),
        }
    }

    /// The one-line marker written with the resource (see [`Owner::parse`]).
    #[must_use]
    pub fn marker(&self) -> String {
        format!(
            "{TAG} host={} boot={} pid={} start={}",
            self.host, self.boot, self.pid, self.start
        )
    }

    /// Reads a marker written by [`Owner::marker`]; `None` for any other text.
    #[must_use]
    pub fn parse(text: &str) -> Option<Owner> {
        let mut words = text.split_whitespace();
        if words.next()? != TAG {
            return None;
        }
        let mut field = |name: &str| {
            words
                .next()?
                .strip_prefix(name)?
                .strip_prefix('=')
                .map(str::to_string)
        };
        Some(Owner {
            host: field("host")?,
            boot: field("boot")?,
            pid: field("pid")?.parse().ok()?,
            start: field("start")?.parse().ok()?,
        })
    }

    /// Whether this owner still runs, as far as this machine can tell.
    #[must_use]
    pub fn liveness(&self) -> Liveness {
        if self.host != host_name() {
            return Liveness::Alive;
        }
        if self.boot != boot_id() {
            return Liveness::Gone;
        }
        match start_time(self.pid) {
            Some(start) if start == self.start && running(self.pid) => Liveness::Alive,
            _ => Liveness::Gone,
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} on {}", self.pid, self.host)
    }
}

fn host_name() -> String {
    read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into())
}

fn boot_id() -> String {
    read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_else(|| "unknown".into())
}

fn read_trimmed(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text: String = text.trim().chars().filter(|c| !c.is_whitespace()).collect();
    (!text.is_empty()).then_some(text)
}

/// `/proc/PID/stat`'s fields after the command name (which may hold spaces and parentheses).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The process's start time (field 22 of `/proc/PID/stat`, the 20th after the name).
fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Not a zombie.
fn running(pid: u32) -> bool {
    stat_fields(pid)
        .and_then(|f| f.first().cloned())
        .is_some_and(|state| !matches!(state.as_str(), "Z" | "X"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_back_and_this_process_is_alive() {
        let me = Owner::current();
        assert!(me.start > 0);
        assert_eq!(Owner::parse(&me.marker()), Some(me.clone()));
        assert_eq!(me.liveness(), Liveness::Alive);
        assert_eq!(Owner::parse("a comment"), None);
        assert_eq!(Owner::parse("aos-backup-owner host=x"), None);
    }

    #[test]
    fn a_dead_or_reused_pid_or_another_boot_is_gone() {
        let me = Owner::current();
        let reused = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        assert_eq!(reused.liveness(), Liveness::Gone);
        let rebooted = Owner {
            boot: "another-boot".into(),
            ..me.clone()
        };
        assert_eq!(rebooted.liveness(), Liveness::Gone);
        let elsewhere = Owner {
            host: "another-host".into(),
            boot: "another-boot".into(),
            ..me
        };
        assert_eq!(elsewhere.liveness(), Liveness::Alive);
    }
}
