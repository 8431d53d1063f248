//! The whole script's SQL followed statement by statement as psql follows it: where a top-level
//! statement starts, when a `;` ends one (not inside parentheses or a `BEGIN ATOMIC` body), and
//! when a top-level `COPY ... FROM stdin;` ends, after which COPY data follows.

use super::lex::{is_ident, Idents, Lexer, Token};

/// The script's SQL lexed as psql does, across lines and across writes, so that a line is
/// judged by where it stands: at the start of a top-level statement, or inside a string, a
/// dollar-quoted body, a comment, a statement. It also tells when a top-level
/// `COPY ... FROM stdin;` ends, after which COPY data follows. No allocation per byte; quoted
/// text and comments are skipped with memchr.
pub(super) struct Stream {
    lexer: Lexer,
    statement: Statement,
}

impl Stream {
    /// At the start of a script.
    pub(super) fn new() -> Self {
        Stream {
            lexer: Lexer::new(Idents::Psql),
            statement: Statement::new(),
        }
    }

    /// At the start of a top-level statement (only white space and comments since the last one).
    pub(super) fn at_start(&self) -> bool {
        self.lexer.at_top() && !self.statement.in_stmt
    }

    /// Whether a top-level `COPY ... FROM stdin;` ended since the last call.
    pub(super) fn take_copy(&mut self) -> bool {
        std::mem::take(&mut self.statement.copy_ended)
    }

    /// Reads the next bytes of the script's SQL.
    pub(super) fn feed(&mut self, b: &[u8]) {
        let mut i = 0;
        while i < b.len() {
            let Some(n) = self.lexer.next_to_read(&b[i..]) else {
                return;
            };
            i += n;
            let statement = &mut self.statement;
            self.lexer.step(b[i], &mut |token| statement.token(token));
            i += 1;
        }
    }
}

/// The top-level text of the statement being read, as far as [`Stream`] needs it.
struct Statement {
    /// Something other than white space and comments was seen since the last top-level `;`.
    in_stmt: bool,
    /// The statement's first top-level bytes, and its last ones (a ring; quoted text and
    /// comments stand as one byte).
    head: [u8; 5],
    head_len: usize,
    tail: [u8; 16],
    tail_pushed: usize,
    /// A top-level `COPY ... FROM stdin;` ended in the current line.
    copy_ended: bool,
    /// psql's own rule for SQL-standard function bodies (`BEGIN ATOMIC ... END`): in a statement
    /// that starts `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, `BEGIN` (and `CASE` inside it) opens
    /// a block that `END` closes, and a `;` ends the statement only outside blocks and
    /// parentheses. The word being read (lower case, cut at 9 bytes), the statement's word count,
    /// the first letters of its first words, and the depths.
    word: [u8; 9],
    word_len: usize,
    in_word: bool,
    words: u32,
    first_letters: [u8; 4],
    parens: u32,
    blocks: u32,
}

impl Statement {
    fn new() -> Self {
        Statement {
            in_stmt: false,
            head: [0; 5],
            head_len: 0,
            tail: [0; 16],
            tail_pushed: 0,
            copy_ended: false,
            word: [0; 9],
            word_len: 0,
            in_word: false,
            words: 0,
            first_letters: [0; 4],
            parens: 0,
            blocks: 0,
        }
    }

    /// What the lexer made of the next byte.
    fn token(&mut self, token: Token) {
        match token {
            Token::Text { byte, after_ident } => self.text(byte, after_ident),
            Token::Boundary(c) => {
                // A comment ends the word before it.
                if self.in_word {
                    self.end_word();
                }
                self.boundary(c);
            }
        }
    }

    /// A top-level byte.
    fn text(&mut self, c: u8, after_ident: bool) {
        self.word_byte(c, after_ident);
        match c {
            b'(' => {
                self.parens += 1;
                self.push(c);
            }
            b')' => {
                self.parens = self.parens.saturating_sub(1);
                self.push(c);
            }
            // Inside a `BEGIN ATOMIC` body or parentheses, psql does not end the statement.
            b';' if self.parens > 0 || self.blocks > 0 => self.push(c),
            b';' => self.end(),
            _ => self.push(c),
        }
    }

    /// A top-level `;` ends the statement.
    fn end(&mut self) {
        self.copy_ended |= self.is_copy_from_stdin();
        self.in_stmt = false;
        self.head_len = 0;
        self.tail_pushed = 0;
        self.words = 0;
        self.first_letters = [0; 4];
    }

    /// Follows the words of a top-level statement (see the `word` field): psql's lexer rule.
    fn word_byte(&mut self, c: u8, after_ident: bool) {
        if self.in_word && is_ident(c) {
            if self.word_len < self.word.len() {
                self.word[self.word_len] = c.to_ascii_lowercase();
            }
            self.word_len += 1;
            return;
        }
        if self.in_word {
            self.end_word();
        }
        if (c.is_ascii_alphabetic() || c == b'_' || c >= 0x80) && !after_ident {
            self.in_word = true;
            self.word[0] = c.to_ascii_lowercase();
            self.word_len = 1;
        }
    }

    fn end_word(&mut self) {
        self.in_word = false;
        let word = if self.word_len > self.word.len() {
            &[][..]
        } else {
            &self.word[..self.word_len]
        };
        let n = self.words as usize;
        if n < self.first_letters.len()
            && matches!(
                word,
                b"create" | b"function" | b"procedure" | b"or" | b"replace"
            )
        {
            self.first_letters[n] = word[0];
        }
        self.words += 1;
        if self.creates_routine() && self.parens == 0 {
            match word {
                b"begin" => self.blocks += 1,
                b"case" if self.blocks >= 1 => self.blocks += 1,
                b"end" if self.blocks > 0 => self.blocks -= 1,
                _ => {}
            }
        }
    }

    /// The statement starts `CREATE [OR REPLACE] FUNCTION|PROCEDURE`.
    fn creates_routine(&self) -> bool {
        let f = self.first_letters;
        f[0] == b'c'
            && (f[1] == b'f'
                || f[1] == b'p'
                || (f[1] == b'o' && f[2] == b'r' && matches!(f[3], b'f' | b'p')))
    }

    /// A byte of the statement's top-level text.
    fn push(&mut self, c: u8) {
        if !c.is_ascii_whitespace() {
            self.in_stmt = true;
        }
        if !self.in_stmt {
            return;
        }
        if self.head_len < self.head.len() {
            self.head[self.head_len] = c;
            self.head_len += 1;
        }
        self.tail[self.tail_pushed % self.tail.len()] = c;
        self.tail_pushed += 1;
    }

    /// A comment or the end of a quoted token: a boundary in the statement's text.
    fn boundary(&mut self, c: u8) {
        if self.in_stmt {
            self.tail[self.tail_pushed % self.tail.len()] = c;
            self.tail_pushed += 1;
        }
    }

    /// The statement that a top-level `;` ends is `COPY ... FROM stdin`.
    fn is_copy_from_stdin(&self) -> bool {
        let head = &self.head[..self.head_len];
        if head.len() < 5
            || !head[..4].eq_ignore_ascii_case(b"COPY")
            || !head[4].is_ascii_whitespace()
        {
            return false;
        }
        let n = self.tail_pushed.min(self.tail.len());
        let mut tail = [0u8; 16];
        for (k, slot) in tail[..n].iter_mut().enumerate() {
            *slot = self.tail[(self.tail_pushed - n + k) % self.tail.len()];
        }
        let t = tail[..n].trim_ascii_end();
        let Some(t) = strip_suffix_ci(t, b"stdin") else {
            return false;
        };
        let before = t.trim_ascii_end();
        if before.len() == t.len() {
            return false;
        }
        let Some(t) = strip_suffix_ci(before, b"from") else {
            return false;
        };
        !matches!(t.last(), Some(&c) if is_ident(c))
    }
}

fn strip_suffix_ci<'a>(t: &'a [u8], suffix: &[u8]) -> Option<&'a [u8]> {
    let cut = t.len().checked_sub(suffix.len())?;
    t[cut..].eq_ignore_ascii_case(suffix).then_some(&t[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lexer_finds_copy_from_stdin_statements_and_their_ends() {
        for (sql, copy) in [
            ("COPY t FROM stdin;", true),
            ("copy \"t\" (a, b) from STDIN ;", true),
            ("COPY t FROM stdin /* c */;", true),
            ("COPY t FROM 'stdin';", false),
            ("COPY t TO stdout;", false),
            ("SELECT 1 FROM stdin;", false),
            ("COPY t FROMstdin;", false),
            ("-- COPY t FROM stdin;\n", false),
            ("COPY t FROM $$stdin$$;", false),
        ] {
            let mut s = Stream::new();
            s.feed(sql.as_bytes());
            assert_eq!(s.take_copy(), copy, "{sql}");
        }
        let mut s = Stream::new();
        for part in [
            "SELECT $a$ ; $",
            "a$, E'\\'; ' /* /* */ ;",
            " */ -",
            "- ;\n",
        ] {
            s.feed(part.as_bytes());
            assert!(!s.at_start(), "{part}");
        }
        s.feed(b";");
        assert!(s.at_start());
    }
}
