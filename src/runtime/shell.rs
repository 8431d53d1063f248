//! Commands printed for a person to paste into a shell: one word quoted for `sh`, and the
//! command that drops a database a swap kept (said by `restore`, `list` and `prune`).

/// `word`, as it is when it is plain, else in single quotes for a POSIX shell.
#[must_use]
pub fn word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.,/:@%+=".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The command that drops database `name`; for a name with control characters (or characters
/// that reorder text), which a printed command could only show altered, what to do instead.
#[must_use]
pub fn drop_database_command(name: &str) -> String {
    if crate::runtime::redact::sanitize(name) != name {
        return "DROP DATABASE with its exact name (it holds control characters, which no printed command can show)".into();
    }
    let sql = format!("DROP DATABASE {}", crate::pg::contents::quote_ident(name));
    format!("psql -d postgres -c {}", word(&sql))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_the_drop_command() {
        assert_eq!(word("shop"), "shop");
        assert_eq!(word("/usr/bin/aos-backup"), "/usr/bin/aos-backup");
        assert_eq!(word("my db"), "'my db'");
        assert_eq!(word("it's"), "'it'\\''s'");
        assert_eq!(word(""), "''");
        assert_eq!(
            drop_database_command("shop__aos_old_1"),
            r#"psql -d postgres -c 'DROP DATABASE "shop__aos_old_1"'"#
        );
        assert_eq!(
            drop_database_command("a\"b"),
            r#"psql -d postgres -c 'DROP DATABASE "a""b"'"#
        );
        assert!(drop_database_command("a\tb").contains("control characters"));
        assert!(drop_database_command("a\u{202e}b").contains("control characters"));
    }
}
