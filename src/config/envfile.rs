//! Reading `./.env` without ever echoing a line of it. The values are parsed by dotenvy (its
//! semantics stay the ones users know), but dotenvy's errors carry the raw line, password
//! included; this module walks the file the same way to find the line number and name the
//! problem itself, and warns when an unquoted `$` is silently expanded (`pa$ss` becomes `pa`).

use crate::error::Error;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// What is wrong with a `.env` file: where, and what, never the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The first and last line (1-based) of the entry; equal for a one-line entry.
    pub lines: (usize, usize),
    pub what: String,
}

impl Problem {
    fn lines_text(&self) -> String {
        if self.lines.0 == self.lines.1 {
            format!("line {}", self.lines.0)
        } else {
            format!("line {} (through line {})", self.lines.0, self.lines.1)
        }
    }
}

/// An entry that parsed: its key, where it is, and the variables its value refers to with `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    first_line: usize,
    key: String,
    /// Names after an unquoted (or double-quoted) `$`; an empty name is a bare `$`.
    references: Vec<String>,
}

/// Reads the `.env` at `path` into a map, or fails with a usage error that names the file, the
/// line and the problem, and never the content.
pub fn load(path: &Path) -> Result<HashMap<String, String>, Error> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::usage(format!("cannot read {}: {e}", path.display()))
            .hint("fix the .env file (KEY=value per line) or remove it")
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        Error::usage(format!(
            "cannot parse {}: line {line} is not UTF-8 text",
            path.display()
        ))
        .hint("save the .env file as UTF-8")
    })?;
    // dotenvy's iterator does not skip a byte-order mark; editors on Windows write one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let invalid = |p: &Problem| {
        Error::usage(format!(
            "cannot parse {}: {}: {}",
            path.display(),
            p.lines_text(),
            p.what
        ))
        .hint("fix that line of the .env file (KEY=value; quote a value that has spaces, quotes or $ in single quotes: KEY='...'), or remove the file")
    };
    let entries = scan(text).map_err(|p| invalid(&p))?;
    let mut out = HashMap::new();
    for (n, item) in dotenvy::from_read_iter(text.as_bytes()).enumerate() {
        match item {
            Ok((k, v)) => {
                out.insert(k, v);
            }
            Err(_) => {
                // The scan and dotenvy disagree: still name the line, never its text.
                let lines = entries
                    .get(n)
                    .map_or((0, 0), |e| (e.first_line, e.first_line));
                let what = "this line cannot be parsed".to_string();
                return Err(if lines.0 == 0 {
                    Error::usage(format!("cannot parse {}", path.display()))
                        .hint("fix the .env file (KEY=value per line) or remove it")
                } else {
                    invalid(&Problem { lines, what })
                });
            }
        }
    }
    warn_expansions(path, &entries);
    Ok(out)
}

/// Warns, for each value where a `$` was read as a reference to a variable that is not set (so
/// it was replaced by nothing), naming the file, the line and the key, never the value.
fn warn_expansions(path: &Path, entries: &[Entry]) {
    let mut defined: HashSet<&str> = HashSet::new();
    for e in entries {
        let unset = e.references.iter().any(|name| {
            name.is_empty()
                || !(defined.contains(name.as_str()) || std::env::var_os(name).is_some())
        });
        if unset {
            tracing::warn!(
                "{} line {}: the value of {} has a `$` outside single quotes, read as a variable that is not set and replaced by nothing; if the `$` belongs to the value, put the value in single quotes ({}='...') or write \\$",
                path.display(),
                e.first_line,
                e.key,
                e.key
            );
        } else if !e.references.is_empty() {
            tracing::debug!(
                "{} line {}: the value of {} refers to other variables with $",
                path.display(),
                e.first_line,
                e.key
            );
        }
        defined.insert(&e.key);
    }
}

/// Walks the file as dotenvy does and returns its entries, or the first problem.
fn scan(text: &str) -> Result<Vec<Entry>, Problem> {
    let mut entries = Vec::new();
    for logical in logical_lines(text)? {
        if let Some(entry) = parse_line(&logical.text).map_err(|what| Problem {
            lines: (logical.first, logical.last),
            what,
        })? {
            entries.push(Entry {
                first_line: logical.first,
                ..entry
            });
        }
    }
    Ok(entries)
}

/// One entry of the file: a line, or several when a quote spans them.
struct Logical {
    first: usize,
    last: usize,
    text: String,
}

/// dotenvy's line states (`iter.rs`): where a line may end, and where it continues.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Complete,
    Escape,
    StrongOpen,
    StrongOpenEscape,
    WeakOpen,
    WeakOpenEscape,
    Comment,
    WhiteSpace,
}

fn end_state(prev: State, segment: &str) -> (usize, State) {
    let mut state = prev;
    let mut at = 0;
    for (pos, c) in segment.char_indices() {
        at = pos;
        state = match state {
            State::WhiteSpace => match c {
                '#' => return (at, State::Comment),
                '\\' => State::Escape,
                '"' => State::WeakOpen,
                '\'' => State::StrongOpen,
                _ => State::Complete,
            },
            State::Escape => State::Complete,
            State::Complete => match c {
                c if c.is_whitespace() && c != '\n' && c != '\r' => State::WhiteSpace,
                '\\' => State::Escape,
                '"' => State::WeakOpen,
                '\'' => State::StrongOpen,
                _ => State::Complete,
            },
            State::WeakOpen => match c {
                '\\' => State::WeakOpenEscape,
                '"' => State::Complete,
                _ => State::WeakOpen,
            },
            State::WeakOpenEscape => State::WeakOpen,
            State::StrongOpen => match c {
                '\\' => State::StrongOpenEscape,
                '\'' => State::Complete,
                _ => State::StrongOpen,
            },
            State::StrongOpenEscape => State::StrongOpen,
            State::Comment => return (at, State::Comment),
        };
    }
    (at, state)
}

/// The key at the start of an entry, when it has the shape `KEY=` (safe to show: a key is
/// made of letters, digits, `_` and `.`).
fn key_of(text: &str) -> Option<String> {
    let t = text.trim_start();
    let t = t.strip_prefix("export ").map_or(t, str::trim_start);
    let end = t.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))?;
    let key = &t[..end];
    let starts_well = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    (starts_well && t[end..].trim_start().starts_with('=')).then(|| key.to_string())
}

/// Splits the file into entries as dotenvy's `QuotedLines` does.
fn logical_lines(text: &str) -> Result<Vec<Logical>, Problem> {
    let mut out = Vec::new();
    let mut physical = text.split_inclusive('\n').enumerate().peekable();
    while let Some((i, first_line)) = physical.next() {
        let first = i + 1;
        let mut last = first;
        let mut buf = String::new();
        let mut state = State::Complete;
        let mut segment = first_line;
        loop {
            let start = buf.len();
            buf.push_str(segment);
            if buf.trim_start().starts_with('#') {
                break;
            }
            let (at, s) = end_state(state, &buf[start..]);
            state = s;
            match state {
                State::Complete => {
                    if buf.ends_with('\n') {
                        buf.pop();
                        if buf.ends_with('\r') {
                            buf.pop();
                        }
                    }
                    out.push(Logical {
                        first,
                        last,
                        text: buf,
                    });
                    break;
                }
                State::Comment => {
                    buf.truncate(start + at);
                    out.push(Logical {
                        first,
                        last,
                        text: buf,
                    });
                    break;
                }
                _ => {}
            }
            match physical.next() {
                Some((j, next)) => {
                    last = j + 1;
                    segment = next;
                }
                None => {
                    let of =
                        key_of(&buf).map_or_else(String::new, |k| format!(" (the value of {k})"));
                    let what = match state {
                        State::StrongOpen | State::StrongOpenEscape => format!(
                            "a single quote (') is not closed by the end of the file{of}; inside single quotes a ' cannot appear"
                        ),
                        State::WeakOpen | State::WeakOpenEscape => {
                            format!("a double quote (\") is not closed by the end of the file{of}")
                        }
                        State::Escape => format!("the file ends with a backslash{of}"),
                        _ => format!("the last line ends with a space but no newline{of}; add a newline at the end of the file"),
                    };
                    return Err(Problem {
                        lines: (first, last),
                        what,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Parses one entry as dotenvy's `LineParser` does: `Ok(None)` for a blank or comment line,
/// the entry, or what is wrong (never the text).
fn parse_line(text: &str) -> Result<Option<Entry>, String> {
    let line = text.trim_end().trim_start();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let no_key = || {
        "does not start with a variable name (KEY=value expected; a name has letters, digits and _)"
            .to_string()
    };
    let (mut key, mut rest) = parse_key(line).ok_or_else(no_key)?;
    rest = rest.trim_start();
    if key == "export" && !rest.starts_with('=') {
        (key, rest) = parse_key(rest).ok_or_else(no_key)?;
        rest = rest.trim_start();
    }
    let Some(value) = rest.strip_prefix('=') else {
        return Err("no = after the variable name (KEY=value expected)".to_string());
    };
    let value = value.trim_start();
    if value.is_empty() || value.starts_with('#') {
        return Ok(Some(Entry {
            first_line: 0,
            key,
            references: Vec::new(),
        }));
    }
    let references = parse_value(value, &key)?;
    Ok(Some(Entry {
        first_line: 0,
        key,
        references,
    }))
}

fn parse_key(line: &str) -> Option<(String, &str)> {
    if !line.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return None;
    }
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(line.len());
    Some((line[..end].to_string(), &line[end..]))
}

#[derive(PartialEq, Eq)]
enum Substitution {
    None,
    Block,
    EscapedBlock,
}

/// Walks a value as dotenvy's `parse_value` does; returns the names referred to with `$`, or
/// what is wrong.
fn parse_value(input: &str, key: &str) -> Result<Vec<String>, String> {
    let mut strong_quote = false;
    let mut weak_quote = false;
    let mut escaped = false;
    let mut expecting_end = false;
    let mut mode = Substitution::None;
    let mut name = String::new();
    let mut references = Vec::new();
    // A `$name` right before a quote swallows the quote (dotenvy keeps it as a character).
    let mut quote_swallowed = false;
    for c in input.chars() {
        if expecting_end {
            if c == ' ' || c == '\t' {
                continue;
            } else if c == '#' {
                break;
            }
            return Err(format!(
                "the value of {key} has a space that is not inside quotes; quote the whole value ({key}='...')"
            ));
        } else if escaped {
            if !matches!(c, '\\' | '\'' | '"' | '$' | ' ' | 'n') {
                return Err(format!(
                    "the value of {key} has an unknown escape (a backslash before a character other than \\ ' \" $ space or n); put the value in single quotes ({key}='...')"
                ));
            }
            escaped = false;
        } else if strong_quote {
            if c == '\'' {
                strong_quote = false;
            }
        } else if mode != Substitution::None {
            if c.is_alphanumeric() {
                name.push(c);
            } else {
                match mode {
                    Substitution::None => {}
                    Substitution::Block => {
                        if c == '{' && name.is_empty() {
                            mode = Substitution::EscapedBlock;
                        } else {
                            references.push(std::mem::take(&mut name));
                            if c == '$' {
                                mode = Substitution::Block;
                            } else {
                                mode = Substitution::None;
                                quote_swallowed |= c == '"' || c == '\'';
                            }
                        }
                    }
                    Substitution::EscapedBlock => {
                        if c == '}' {
                            mode = Substitution::None;
                            references.push(std::mem::take(&mut name));
                        } else {
                            name.push(c);
                        }
                    }
                }
            }
        } else if c == '$' {
            mode = Substitution::Block;
        } else if weak_quote {
            if c == '"' {
                weak_quote = false;
            } else if c == '\\' {
                escaped = true;
            }
        } else if c == '\'' {
            strong_quote = true;
        } else if c == '"' {
            weak_quote = true;
        } else if c == '\\' {
            escaped = true;
        } else if c == ' ' || c == '\t' {
            expecting_end = true;
        }
    }
    if mode == Substitution::EscapedBlock {
        return Err(format!("the value of {key} has a `${{` without its `}}`"));
    }
    if strong_quote || weak_quote {
        let why = if quote_swallowed {
            format!(
                "; a `$` reference right before a quote takes the quote with it: put a value with `$` in single quotes ({key}='...')"
            )
        } else {
            String::new()
        };
        return Err(format!("a quote in the value of {key} is not closed{why}"));
    }
    if mode == Substitution::Block {
        references.push(name);
    }
    Ok(references)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether dotenvy accepts `text`.
    fn dotenvy_ok(text: &str) -> bool {
        dotenvy::from_read_iter(text.as_bytes()).all(|r| r.is_ok())
    }

    #[test]
    fn the_scan_fails_exactly_where_dotenvy_does_and_never_shows_the_value() {
        let cases = [
            "A=b\n",
            "A=b",
            "A=b \n",
            "A=b ",
            "A='it's'\n",
            "A='it'\n",
            "A=\"x\"\n",
            "A=\"x\n",
            "A='x\n",
            "A=pa ss\n",
            "A=pass # comment\n",
            "A=pass#x\n",
            "export A=b\n",
            "export A b\n",
            "export=1\n",
            "A=pa$ss\n",
            "A=\"pa$ss\"\n",
            "A='pa$ss'\n",
            "A=pa\\$ss\n",
            "A=${B}\n",
            "A=${B\n",
            "A=\\q\n",
            "A=\"a\\qb\"\n",
            "A='multi\nline'\n",
            "A=\"multi\nline\"\n",
            "# comment\n\nA=1\n",
            "   \n",
            "1A=x\n",
            "S3cr3t\n",
            "A = spaced\n",
            "A.B=x\n",
            "A=x\\\ny\n",
            "A=x\r\n",
            "A='a\\'b'\n",
            "A=\"\"\n",
            "A=\n",
            "A=$\n",
            "A=p@$$w0rd\n",
            "A='unterminated\nB=2\n",
            "A=x\nB='y z'\nC=\"q\"\n",
        ];
        for text in cases {
            let ours = scan(text);
            assert_eq!(ours.is_ok(), dotenvy_ok(text), "{text:?}: {ours:?}");
            if let Err(p) = ours {
                for secret in ["pa ss", "it's", "S3cr3t", "unterminated", "spaced", "a\\qb"] {
                    assert!(!p.what.contains(secret), "{text:?}: {}", p.what);
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn the_scan_agrees_with_dotenvy_on_any_text(
            body in proptest::collection::vec(
                proptest::sample::select(vec![
                    "A=", "export ", "B", "x", " ", "\t", "'", "\"", "$", "${", "}", "\\", "\n", "\r\n", "#", "=", ".", "_", "1",
                ]),
                0..24,
            )
        ) {
            let text: String = body.concat();
            let ours = scan(&text);
            proptest::prop_assert_eq!(ours.is_ok(), dotenvy_ok(&text), "{:?}: {:?}", text, ours);
        }
    }

    #[test]
    fn problems_name_the_line_and_the_key() {
        let p = scan("A=1\n# c\nPASSWORD=pa ss\n").unwrap_err();
        assert_eq!(p.lines, (3, 3));
        assert!(
            p.what.contains("PASSWORD") && p.what.contains("space"),
            "{}",
            p.what
        );
        let p = scan("A=1\nNAME='it's'\nB=2\n").unwrap_err();
        assert_eq!(p.lines, (2, 3));
        assert!(
            p.what.contains("NAME") && p.what.contains("single quote"),
            "{}",
            p.what
        );
        let p = scan("A=1\nB=\"x\n").unwrap_err();
        assert_eq!(p.lines.0, 2);
        assert!(p.what.contains("double quote"), "{}", p.what);
    }

    #[test]
    fn references_are_found_outside_single_quotes_only() {
        let e = scan("A=pa$ss\nB='pa$ss'\nC=pa\\$ss\nD=\"${X}y\"\nE=p@$$w\n").unwrap();
        let refs: Vec<(&str, Vec<String>)> = e
            .iter()
            .map(|e| (e.key.as_str(), e.references.clone()))
            .collect();
        assert_eq!(
            refs,
            vec![
                ("A", vec!["ss".to_string()]),
                ("B", vec![]),
                ("C", vec![]),
                ("D", vec!["X".to_string()]),
                ("E", vec![String::new(), "w".to_string()]),
            ]
        );
    }
}
