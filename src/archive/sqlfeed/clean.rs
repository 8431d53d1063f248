//! The clean section of a script made with `--clean`: which lines belong to it, where each of
//! its statements ends, and the `DO` blocks that guard them and retry the drops that failed.

use super::lex::{Idents, Lexer, Token};

/// What the `DO` block says when it skips a statement; [`crate::runtime::process::failure`] looks for it.
pub const SKIPPED_MARK: &str = "skipped during clean: ";

/// The kinds of statement pg_dump writes into its clean section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CleanKind {
    /// `DROP ...`, `ALTER ... DROP ...`, `SELECT pg_catalog.lo_unlink(...)`: tried again if it
    /// fails, since another drop may first have to happen.
    Drop,
    /// `CREATE OR REPLACE VIEW ... AS SELECT NULL::...`: a view made into a dummy so that what it
    /// depends on can be dropped. Never run twice (that would recreate a view dropped meanwhile).
    DummyView,
}

/// What a line at the start of a statement is to the clean section.
pub(super) enum Line {
    /// Comments, blank lines, SET, set_config, psql meta-commands: the clean section goes on.
    Neutral,
    /// The first line of a statement of the clean section.
    Clean(CleanKind),
    /// The comment that heads an archive entry (`-- Name: ...`): the clean section is over.
    Entry,
    /// Anything else ends the clean section.
    Other,
}

/// Classifies a line at the start of a statement in the preamble or clean section.
pub(super) fn classify(line: &[u8], from_pg_dump: bool) -> Line {
    let Ok(text) = std::str::from_utf8(line) else {
        return Line::Other;
    };
    let t = text.trim_end();
    if is_entry_header(t) {
        return Line::Entry;
    }
    if t.is_empty()
        || t.starts_with("--")
        || t.starts_with('\\')
        || t.starts_with("SET ")
        || t.starts_with("SELECT pg_catalog.set_config(")
    {
        return Line::Neutral;
    }
    if t.starts_with("DROP ")
        || (t.starts_with("ALTER ") && t.contains(" DROP "))
        || t.starts_with("SELECT pg_catalog.lo_unlink(")
    {
        return Line::Clean(CleanKind::Drop);
    }
    // Only pg_dump's scripts are known to hold dummy views in their clean section.
    if from_pg_dump && t.starts_with("CREATE OR REPLACE VIEW ") {
        return Line::Clean(CleanKind::DummyView);
    }
    Line::Other
}

/// The comment lines pg_dump puts at the top of each archive entry (plain format and
/// pg_restore's script): `-- Name: x; Type: TABLE; ...`, `-- Data for Name: ...`, and with
/// `--verbose` `-- TOC entry 215 (class 1259 OID 16390)` first.
fn is_entry_header(line: &str) -> bool {
    line.starts_with("-- Name: ")
        || line.starts_with("-- Data for Name: ")
        || line.starts_with("-- TOC entry ")
}

/// Where [`scan`] is, between lines of one statement.
pub(super) struct Lex(Lexer);

impl Lex {
    /// At the start of a statement.
    pub(super) fn new() -> Self {
        Lex(Lexer::new(Idents::WithoutDollar))
    }
}

/// What one line did to the statement.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
    /// The statement goes on in the next line.
    Open,
    /// The line ends the statement with its one `;`.
    Complete,
    /// A `;` in the middle of the line: more than one statement, not pg_dump's.
    Broken,
}

/// Follows quotes, dollar quotes and comments through one line of a statement, read as if it
/// ended with its newline (the last line of a script may not).
pub(super) fn scan(lex: &mut Lex, line: &str) -> Scan {
    for (i, &c) in line.as_bytes().iter().enumerate() {
        let mut ends = false;
        lex.0.step(c, &mut |token| {
            ends |= matches!(token, Token::Text { byte: b';', .. });
        });
        if ends {
            return if line[i + 1..].trim().is_empty() {
                Scan::Complete
            } else {
                Scan::Broken
            };
        }
    }
    if !line.ends_with('\n') {
        lex.0.step(b'\n', &mut |_| {});
    }
    Scan::Open
}

/// Errors that mean the object to drop is not there: nothing is left to drop, so they are
/// neither tried again nor reported.
const NOTHING_THERE: &str =
    "undefined_object OR undefined_table OR undefined_function OR invalid_schema_name";

/// Errors that a guarded statement must not swallow: the restore's lock_timeout
/// (`lock_not_available`, 55P03) and statement_timeout or a cancel (`query_canceled`, 57014). Each
/// guarded statement would otherwise wait the whole limit in turn.
const PASS_ON: &str = "lock_not_available OR query_canceled";

/// The custom setting that collects the clean statements that failed, as a JSON array of
/// `[statement, error]`, for [`RETRY_BLOCK`].
pub(super) const FAILED_SETTING: &str = "aos_backup.clean_failed";

/// The guarded form of a clean statement (`stmt`, without its `;`): a `DO` block that runs it and
/// skips it if it fails; a drop that fails is remembered for [`RETRY_BLOCK`].
pub(super) fn wrap(stmt: &str, kind: CleanKind) -> String {
    match kind {
        CleanKind::Drop => format!(
            "DO $aos_clean$DECLARE s text := $aos_stmt${stmt}$aos_stmt$; BEGIN EXECUTE s; \
             EXCEPTION WHEN {PASS_ON} THEN RAISE; WHEN {NOTHING_THERE} THEN NULL; WHEN OTHERS THEN \
             PERFORM pg_catalog.set_config('{FAILED_SETTING}', \
             (coalesce(nullif(pg_catalog.current_setting('{FAILED_SETTING}', true), ''), '[]')::jsonb \
             || jsonb_build_array(jsonb_build_array(s, SQLERRM)))::text, false); END$aos_clean$;\n"
        ),
        CleanKind::DummyView => format!(
            "DO $aos_clean$BEGIN EXECUTE $aos_stmt${stmt}$aos_stmt$; \
             EXCEPTION WHEN {PASS_ON} THEN RAISE; WHEN OTHERS THEN RAISE NOTICE 'aos-backup: no dummy view: %', SQLERRM; END$aos_clean$;\n"
        ),
    }
}

/// Runs after the clean section: tries the failed drops again, in their order, as long as each
/// round drops something more; warns about each that still fails.
pub(super) const RETRY_BLOCK: &str = "DO $aos_retry$
DECLARE
    failed jsonb := coalesce(nullif(pg_catalog.current_setting('aos_backup.clean_failed', true), ''), '[]')::jsonb;
    still jsonb;
    item jsonb;
    progress boolean := true;
BEGIN
    WHILE progress AND jsonb_array_length(failed) > 0 LOOP
        progress := false;
        still := '[]';
        FOR item IN SELECT value FROM jsonb_array_elements(failed) LOOP
            BEGIN
                EXECUTE item->>0;
                progress := true;
            EXCEPTION WHEN lock_not_available OR query_canceled THEN
                RAISE;
            WHEN undefined_object OR undefined_table OR undefined_function OR invalid_schema_name THEN
                progress := true;
            WHEN OTHERS THEN
                still := still || jsonb_build_array(jsonb_build_array(item->>0, SQLERRM));
            END;
        END LOOP;
        failed := still;
    END LOOP;
    FOR item IN SELECT value FROM jsonb_array_elements(failed) LOOP
        RAISE WARNING 'aos-backup: skipped during clean: %', item->>1;
    END LOOP;
    PERFORM pg_catalog.set_config('aos_backup.clean_failed', '', false);
END$aos_retry$;
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_ends_follow_quotes_dollar_quotes_and_comments() {
        let cases: [(&[&str], Scan); 8] = [
            (&["DROP TABLE x;"], Scan::Complete),
            (&["DROP TABLE \"a;b\";  "], Scan::Complete),
            (&["DROP TABLE \"a", "b;\";"], Scan::Complete),
            (&["SELECT 'it''s;' ;"], Scan::Complete),
            (&["SELECT E'\\';' ;"], Scan::Complete),
            (&["SELECT $f$;$f$, $1;"], Scan::Complete),
            (&["SELECT /* ; /* ; */ ; */ 1 -- ;", ";"], Scan::Complete),
            (&["DROP TABLE a; DROP TABLE b;"], Scan::Broken),
        ];
        for (lines, want) in cases {
            let mut lex = Lex::new();
            let mut got = Scan::Open;
            for l in lines {
                got = scan(&mut lex, l);
            }
            assert_eq!(got, want, "{lines:?}");
        }
    }

    #[test]
    fn guards_let_lock_timeouts_and_cancels_through() {
        for text in [
            wrap("DROP TABLE x", CleanKind::Drop),
            wrap("CREATE OR REPLACE VIEW v AS SELECT 1", CleanKind::DummyView),
            RETRY_BLOCK.to_string(),
        ] {
            let pass = text
                .find("WHEN lock_not_available OR query_canceled THEN")
                .unwrap_or_else(|| panic!("{text}"));
            let raise = text[pass..].find("RAISE;").unwrap();
            assert!(raise < text[pass..].find("WHEN OTHERS").unwrap(), "{text}");
        }
    }
}
