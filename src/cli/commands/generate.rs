//! `completions` and `man`: shell completion scripts and the manual page, generated from the one
//! clap definition of the command line (and the exit codes from [`ExitCode`] and `check`'s from
//! [`CheckStatus`]), so that they cannot drift from `--help`.

use crate::cli::args::{Cli, Command};
use crate::exit::ExitCode;
use crate::ops::check::CheckStatus;
use clap::CommandFactory;
use roff::{bold, roman, Roff};
use std::io::Write;

/// The completion script for `shell`.
#[must_use]
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "aos-backup", &mut out);
    out
}

/// The manual page, in roff: one page (like `rg --generate man`), with the synopsis and the
/// global options, then each subcommand with its own options, the environment notes and the
/// exit status. (clap_mangen's SUBCOMMANDS section would point at one page per subcommand,
/// which we do not ship.)
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;

    Roff::new()
        .control("SH", ["COMMANDS"])
        .to_writer(&mut out)?;
    for sub in cmd.get_subcommands() {
        let name = format!("aos-backup {}", sub.get_name());
        // `-h` is the same everywhere: listed once, at the top.
        let sub_man = clap_mangen::Man::new(sub.clone().bin_name(&name).disable_help_flag(true));
        let mut roff = Roff::new();
        roff.control("SS", [name.as_str()]);
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            roff.text([roman(about.to_string())]);
        }
        roff.control("PP", []);
        roff.to_writer(&mut out)?;
        // The subcommand's synopsis and options, under this subsection rather than as
        // sections of their own.
        let mut part = Vec::new();
        sub_man.render_synopsis_section(&mut part)?;
        sub_man.render_options_section(&mut part)?;
        for line in String::from_utf8_lossy(&part).lines() {
            if !line.starts_with(".SH ") {
                writeln!(out, "{line}")?;
            }
        }
    }

    let mut roff = Roff::new();
    roff.control("SH", ["ENVIRONMENT"]);
    for line in crate::cli::args::ENVIRONMENT_NOTES.lines() {
        roff.text([roman(line)]);
        roff.control("br", []);
    }
    roff.control("SH", ["EXIT STATUS"]);
    for code in ExitCode::ALL {
        roff.control("TP", []);
        roff.text([bold(code.code().to_string())]);
        roff.text([roman(code.meaning())]);
    }
    // `check` ends with codes of its own, in a section of their own.
    roff.control("SH", ["CHECK EXIT STATUS"]);
    roff.text([roman(
        "aos-backup check follows the Nagios plugin convention instead:",
    )]);
    for status in CheckStatus::ALL {
        roff.control("TP", []);
        roff.text([bold(status.code().to_string())]);
        roff.text([roman(status.meaning())]);
    }
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(once_preamble(&out))
}

/// Each piece rendered above starts with the same two-line roff preamble (defining `\*(Aq`);
/// the page needs it once, at the top.
fn once_preamble(page: &[u8]) -> Vec<u8> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(page.len());
    for line in page.split_inclusive(|&b| b == b'\n') {
        let preamble = line.starts_with(b".ie \\n(.g .ds Aq") || line.starts_with(b".el .ds Aq");
        if !preamble || seen.insert(line) {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Runs `completions` or `man`, which need no settings, database or tools (a broken config
/// file must not stop them); `None` for every other command.
#[must_use]
pub fn standalone(command: &Command) -> Option<i32> {
    let text = match command {
        Command::Completions(a) => Ok(completions(a.shell)),
        Command::Man => man_page(),
        _ => return None,
    };
    let written = text.and_then(|bytes| {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&bytes)?;
        stdout.flush()
    });
    Some(match written {
        Ok(()) => ExitCode::Success.code(),
        // `aos-backup man | head`: the reader had enough.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::Success.code(),
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::Failure.code()
        }
    })
}
