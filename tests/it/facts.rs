//! One source for each fact: the exit codes (README, `--help`, man page) come from
//! `aos_backup::ExitCode`, and `--help`, the shell completions and the man page from the
//! one clap definition. None of these tests needs the database.

use crate::cmd::Cmd;
use aos_backup::ExitCode;
use std::fmt::Write as _;

/// The subcommands a user can type (clap's own `help` aside).
const SUBCOMMANDS: &[&str] = &[
    "backup",
    "restore",
    "list",
    "verify",
    "prune",
    "daemon",
    "schedule",
    "config",
    "check",
    "completions",
    "man",
];

/// `(code, meaning)` for every exit code, as the enum defines them.
fn defined() -> Vec<(String, String)> {
    ExitCode::ALL
        .iter()
        .map(|c| (c.code().to_string(), c.meaning().to_string()))
        .collect()
}

/// Panics with a line-by-line diff unless `found` lists the same codes and meanings as the enum.
fn assert_same_codes(what: &str, found: &[(String, String)]) {
    let expected = defined();
    if found == expected.as_slice() {
        return;
    }
    let mut diff = String::new();
    for i in 0..expected.len().max(found.len()) {
        let (e, f) = (expected.get(i), found.get(i));
        if e != f {
            if let Some((code, meaning)) = e {
                let _ = writeln!(diff, "- {code} | {meaning}");
            }
            if let Some((code, meaning)) = f {
                let _ = writeln!(diff, "+ {code} | {meaning}");
            }
        }
    }
    panic!("the exit codes in {what} differ from src/exit.rs (- src/exit.rs, + {what}):\n{diff}");
}

#[test]
fn readme_exit_code_table_matches_the_exit_code_enum() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let section = readme
        .split("\n## Exit codes\n")
        .nth(1)
        .expect("README has an \"## Exit codes\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let rows: Vec<(String, String)> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and the `| --- |` line
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 2, "a row of two cells: {row:?}");
            // Markdown code spans are decoration: `--jobs` in the README is --jobs in --help.
            (cells[0].to_string(), cells[1].replace('`', ""))
        })
        .collect();
    assert!(
        !rows.is_empty(),
        "no table in README's Exit codes:\n{section}"
    );
    assert_same_codes("README.md", &rows);
}

#[test]
fn help_exit_code_table_is_generated_from_the_exit_code_enum() {
    let out = Cmd::new().arg("--help").run();
    out.assert_success();
    let table = out
        .stdout
        .split("\nExit codes:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no \"Exit codes:\" in --help:\n{out}"));
    // A line `  CODE meaning` starts an entry; an indented line without a code continues it.
    let mut rows: Vec<(String, String)> = Vec::new();
    for line in table.lines().filter(|l| !l.trim().is_empty()) {
        let text = line.trim_start();
        let code: String = text.chars().take_while(char::is_ascii_digit).collect();
        if code.is_empty() {
            let last = rows.last_mut().expect("the table starts with a code");
            last.1 = format!("{} {text}", last.1);
        } else {
            rows.push((code.clone(), text[code.len()..].trim().to_string()));
        }
    }
    assert_same_codes("aos-backup --help", &rows);
}

#[test]
fn subcommand_help_lists_global_options_after_its_own() {
    for sub in SUBCOMMANDS {
        let out = Cmd::new().args([sub, "--help"]).run();
        out.assert_success();
        let help = &out.stdout;
        let own = help
            .find("\nOptions:\n")
            .unwrap_or_else(|| panic!("no Options heading:\n{out}"));
        let global = help
            .find("\nGlobal options:\n")
            .unwrap_or_else(|| panic!("no \"Global options\" heading:\n{out}"));
        assert!(own < global, "global options come first:\n{out}");
        for flag in [
            "--verbose",
            "--quiet",
            "--json",
            "--database-url",
            "--config",
        ] {
            let at = help
                .find(flag)
                .unwrap_or_else(|| panic!("{flag} missing:\n{out}"));
            assert!(at > global, "{flag} is not under Global options:\n{out}");
        }
        assert!(
            help[own..global].contains("--help"),
            "-h/--help belongs to the command's options:\n{out}"
        );
    }
    let restore = Cmd::new().args(["restore", "--help"]).run();
    let help = &restore.stdout;
    let global = help.find("\nGlobal options:\n").unwrap();
    for flag in ["--from-database", "--lock-timeout", "--identity"] {
        let at = help
            .find(flag)
            .unwrap_or_else(|| panic!("{flag} missing:\n{restore}"));
        assert!(at < global, "{flag} is listed as global:\n{restore}");
    }
}

#[test]
fn completions_for_each_shell_mention_the_subcommands_and_flags() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = Cmd::new().args(["completions", shell]).run();
        out.assert_success();
        let script = &out.stdout;
        assert!(script.len() > 500, "{shell}: a short script:\n{out}");
        assert!(out.stderr.is_empty(), "{shell}:\n{out}");
        for word in SUBCOMMANDS.iter().copied().chain([
            "from-database",
            "lock-timeout",
            "terminate-sessions",
            "dry-run",
        ]) {
            assert!(
                script.contains(word),
                "{shell}: {word:?} missing:\n{script}"
            );
        }
        if shell == "bash" || shell == "zsh" {
            for flag in ["--from-database", "--lock-timeout", "--database-url"] {
                assert!(script.contains(flag), "{shell}: {flag} missing:\n{script}");
            }
        }
    }
}

#[test]
fn bash_accepts_the_bash_completion_script_and_registers_it() {
    let cmd = Cmd::new().args(["completions", "bash"]);
    let out = cmd.run();
    out.assert_success();
    let file = cmd.dir().join("aos-backup.bash");
    std::fs::write(&file, &out.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("run bash -n");
    assert!(
        check.status.success(),
        "bash -n rejects the script: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"source "$1" && complete -p aos-backup"#)
        .arg("bash")
        .arg(&file)
        .output()
        .expect("run bash");
    let shown = String::from_utf8_lossy(&loaded.stdout);
    assert!(
        loaded.status.success() && shown.contains("aos-backup"),
        "sourcing the script registers no completion: {shown}{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
}

/// The man page's text with roff's escapes and font changes taken out.
fn man_text() -> String {
    let out = Cmd::new().arg("man").run();
    out.assert_success();
    assert!(
        out.stdout.contains("\n.TH aos-backup 1 "),
        "not a man page:\n{out}"
    );
    out.stdout
        .replace("\\-", "-")
        .replace("\\*(Aq", "'")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
}

#[test]
fn man_page_documents_every_subcommand_and_its_options() {
    let man = man_text();
    for sub in SUBCOMMANDS {
        let heading = format!(".SS \"aos-backup {sub}\"");
        assert!(man.contains(&heading), "{heading:?} missing:\n{man}");
    }
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH \"GLOBAL OPTIONS\"",
        ".SH COMMANDS",
    ] {
        assert!(man.contains(section), "{section:?} missing:\n{man}");
    }
    let restore = man
        .split(".SS \"aos-backup restore\"")
        .nth(1)
        .and_then(|rest| rest.split(".SS ").next())
        .unwrap();
    for flag in ["--from-database", "--lock-timeout", "--terminate-sessions"] {
        assert!(
            restore.contains(flag),
            "{flag} missing under restore:\n{restore}"
        );
    }
    assert!(
        !man.contains("aos-backup-restore(1)"),
        "points at man pages that do not exist:\n{man}"
    );
}

#[test]
fn man_page_exit_status_is_the_exit_code_table() {
    let man = man_text();
    let section = man
        .split(".SH \"EXIT STATUS\"\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no EXIT STATUS section:\n{man}"));
    let section = section.split("\n.SH ").next().unwrap();
    let rows: Vec<(String, String)> = section
        .split(".TP\n")
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| {
            let (code, meaning) = entry.split_once('\n').unwrap_or((entry, ""));
            (code.to_string(), meaning.trim().replace('\n', " "))
        })
        .collect();
    assert_same_codes("aos-backup man", &rows);
}

#[test]
fn completions_and_man_read_no_configuration() {
    let cmd = Cmd::new().args(["completions", "bash"]);
    std::fs::write(cmd.dir().join("aos-backup.toml"), "this is [not toml").unwrap();
    std::fs::write(cmd.dir().join(".env"), "not an assignment\n").unwrap();
    // The broken files do stop a command that reads them...
    let config = Cmd::new().arg("config").current_dir(cmd.dir()).run();
    assert_eq!(config.code, Some(2), "{config}");
    // ...but not these two.
    cmd.run().assert_success();
    let man = Cmd::new().arg("man").current_dir(cmd.dir()).run();
    man.assert_success();
    assert!(man.stderr.is_empty(), "{man}");
}

#[test]
fn completions_for_an_unknown_shell_is_a_usage_error() {
    let out = Cmd::new().args(["completions", "tcsh"]).run();
    out.assert_code(2);
    assert!(out.stdout.is_empty(), "{out}");
    assert!(
        out.stderr.contains("bash"),
        "the error lists the shells:\n{out}"
    );
}
