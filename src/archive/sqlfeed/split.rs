//! A file of SQL queries cut into statements at the top-level `;`s, by the one tokenizer
//! (`lex`): a `;` inside a string, a quoted identifier, a dollar quote or a comment cuts nothing.

use super::lex::{Idents, Lexer, Token};

/// The statements of `text`, each trimmed, without its `;`; statements holding only blanks and
/// comments are left out.
#[must_use]
pub fn split_statements(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut lexer = Lexer::new(Idents::Psql);
    let mut out = Vec::new();
    let mut start = 0;
    // Whether the statement so far holds anything but blanks and comments.
    let mut meaningful = false;
    for (i, &b) in bytes.iter().enumerate() {
        let mut cut = false;
        lexer.step(b, &mut |token| match token {
            Token::Text { byte: b';', .. } => cut = true,
            Token::Text { byte, .. } if !byte.is_ascii_whitespace() => meaningful = true,
            Token::Boundary(q) if q != b' ' => meaningful = true,
            Token::Text { .. } | Token::Boundary(_) => {}
        });
        if cut {
            push(&mut out, &text[start..i], meaningful);
            start = i + 1;
            meaningful = false;
        }
    }
    push(&mut out, &text[start..], meaningful);
    out
}

fn push(out: &mut Vec<String>, statement: &str, meaningful: bool) {
    if meaningful {
        out.push(statement.trim().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_end_at_top_level_semicolons_only() {
        let text = "SELECT 1;\n-- a comment; still a comment\nSELECT ';' AS \"a;b\", $$x;y$$\n;\n/* c; */ ;  \nSELECT true";
        assert_eq!(
            split_statements(text),
            vec![
                "SELECT 1",
                "-- a comment; still a comment\nSELECT ';' AS \"a;b\", $$x;y$$",
                "SELECT true"
            ]
        );
        assert!(split_statements("  ;\n-- only a comment\n").is_empty());
    }
}
