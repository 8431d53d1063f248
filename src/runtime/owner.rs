//! Who owns a throwaway resource (a drill's scratch database, an ephemeral cluster's folder):
//! this process, named by host, boot, pid and start time, written down with the resource so that
//! a later run can tell whether its owner is gone and the resource is a leftover to remove.

use std::fmt;
use std::path::Path;
use std::time::Duration;

/// The file naming its owner inside a temp folder made by [`owned_temp_dir`].
pub const OWNER_FILE: &str = "owner";

/// A private (0700) folder in the temp folder (`TMPDIR`), named `<prefix>XXXXXX`, that names this
/// process as its owner: removed when the value is dropped, and by [`sweep_temp`] of a later
/// run when this process was killed first.
///
/// # Errors
/// The folder or its marker could not be written.
pub fn owned_temp_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let folder = tempfile::Builder::new().prefix(prefix).tempdir()?;
    std::fs::write(folder.path().join(OWNER_FILE), Owner::current().marker())?;
    Ok(folder)
}

/// Removes the folders of the temp folder named `<prefix>...` whose owner is gone (a run that
/// was killed); `what` says in the log what they held.
pub fn sweep_temp(prefix: &str, what: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let path = entry.path();
        if left_over(&path) {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::info!(
                    "removed {}, {what} left by a run that was killed",
                    path.display()
                ),
                Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
            }
        }
    }
}

/// Whether a temp folder's owner is gone; an unmarked one counts once it is an hour old.
fn left_over(path: &Path) -> bool {
    match std::fs::read_to_string(path.join(OWNER_FILE)) {
        Ok(text) => Owner::parse(&text).is_some_and(|o| o.liveness() == Liveness::Gone),
        Err(_) => std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(3600)),
    }
}

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
    fn a_folder_whose_owner_is_gone_is_left_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut gone = Owner::current();
        gone.start += 1;
        std::fs::write(dir.path().join(OWNER_FILE), gone.marker()).unwrap();
        assert!(left_over(dir.path()));
        std::fs::write(dir.path().join(OWNER_FILE), Owner::current().marker()).unwrap();
        assert!(!left_over(dir.path()));
        std::fs::remove_file(dir.path().join(OWNER_FILE)).unwrap();
        assert!(!left_over(dir.path()), "a fresh unmarked folder is kept");
    }

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
