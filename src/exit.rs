//! Exit codes: one documented number per way a run can end, so scripts and cron can branch on them.
//!
//! This is the one definition of the codes and their meanings: the table in `--help`, the man
//! page's EXIT STATUS section and the variants' documentation come from it, and a test checks
//! the README's table against it.

/// Defines [`ExitCode`] with each variant's number and meaning given once.
macro_rules! exit_codes {
    ($($name:ident = $code:literal: $meaning:literal,)*) => {
        /// How a run ended. The numbers are part of the public interface (README, `--help`,
        /// the man page).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ExitCode {
            $(#[doc = $meaning] $name = $code,)*
        }

        impl ExitCode {
            /// Every exit code, in increasing order.
            pub const ALL: &'static [ExitCode] = &[$(ExitCode::$name,)*];

            /// What the code means, in one line (as in `--help` and the README).
            #[must_use]
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ExitCode::$name => $meaning,)*
                }
            }
        }
    };
}

exit_codes! {
    Success = 0: "success",
    Failure = 1: "failure: the operation failed (pg_dump/pg_restore error, I/O error, disk full)",
    Usage = 2: "usage: bad command line, configuration or input file, a missing or non-matching key, a secret file others can read; nothing was done",
    Refused = 3: "refused by a safety guard (production, no confirmation, --jobs on a populated target, a link planted as the lock file); nothing was done",
    Integrity = 4: "integrity: a backup failed verification (checksum, damage, missing metadata); never for our own disk, permissions or keys",
    Locked = 5: "locked: another aos-backup run holds the backup folder",
    Tools = 6: "tools: pg_dump/pg_restore/psql missing, or older than the server",
    Connection = 7: "connection: the database could not be reached, or refused the login",
    Offsite = 8: "off-site copy missing: the backup was made and kept locally, but a destination did not get a verified copy",
    Findings = 9: "validate found consistency problems in the database (orphans, invalid indexes, sequences behind their data...)",
    DrillRestore = 10: "drill failed: the backup did not restore into the scratch database",
    DrillCheck = 11: "drill failed: the backup restored, but a check did not pass (row counts, validate, --check-sql)",
    Interrupted = 130: "interrupted by Ctrl-C (SIGINT)",
    Terminated = 143: "terminated (SIGTERM)",
}

impl ExitCode {
    /// The process exit status.
    #[must_use]
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The exit-code table of `--help`: one code a line, long meanings wrapped under their
    /// start so that the table stays readable in an 80-column terminal.
    #[must_use]
    pub fn help_table() -> String {
        code_table(Self::ALL.iter().map(|c| (c.code(), c.meaning())))
    }
}

/// A table of exit codes and their meanings as `--help` shows it: one code a line, indented,
/// long meanings wrapped under their start to fit 80 columns. `check`'s own codes use it too.
#[must_use]
pub fn code_table<'a>(rows: impl Iterator<Item = (i32, &'a str)>) -> String {
    const INDENT: &str = "  ";
    const CODE_WIDTH: usize = 5;
    const WIDTH: usize = 80;
    let hang = " ".repeat(INDENT.len() + CODE_WIDTH);
    let mut out = String::new();
    for (code, meaning) in rows {
        let mut line = format!("{INDENT}{code:<CODE_WIDTH$}");
        let mut fresh = true;
        for word in meaning.split(' ') {
            if !fresh && line.len() + 1 + word.len() > WIDTH {
                out.push_str(&line);
                out.push('\n');
                line.clone_from(&hang);
                fresh = true;
            }
            if !fresh {
                line.push(' ');
            }
            line.push_str(word);
            fresh = false;
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_sorted_and_described() {
        let codes: Vec<i32> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 130, 143]);
        for c in ExitCode::ALL {
            assert!(!c.meaning().is_empty() && !c.meaning().contains('\n'));
        }
    }

    #[test]
    fn help_table_wraps_under_the_meaning_and_keeps_every_word() {
        let table = ExitCode::help_table();
        for line in table.lines() {
            assert!(line.len() <= 80, "{line:?}");
            assert!(line.starts_with("  "), "{line:?}");
        }
        assert!(
            table.starts_with("  0    success\n  1    failure: "),
            "{table}"
        );
        assert!(table.ends_with("  143  terminated (SIGTERM)"), "{table}");
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let expected: Vec<String> = ExitCode::ALL
            .iter()
            .flat_map(|c| {
                let mut w = vec![c.code().to_string()];
                w.extend(words(c.meaning()));
                w
            })
            .collect();
        assert_eq!(words(&table), expected);
    }
}
