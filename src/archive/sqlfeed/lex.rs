//! The one place that knows how psql reads SQL text: '...' and E'...' strings, "..." identifiers,
//! dollar quotes, `--` and nested `/* */` comments, and which bytes make up identifiers. Both
//! lexers of the feeder are built on it: [`super::stream::Stream`] follows the whole script, and
//! [`super::clean::scan`] one statement of the clean section.

/// Whether `c` can be part of an identifier or keyword (as psql has it: letters, digits, `_`,
/// `$`, and every byte of a non-ASCII character).
pub(super) fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Which bytes count as an identifier's when the lexer looks at what stands before a `$` (does
/// it open a dollar quote?) and before an `E'` (does the string take backslash escapes?).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Idents {
    /// psql's: [`is_ident`].
    Psql,
    /// [`is_ident`] without `$`: the rule the clean-section scanner has always followed, kept so
    /// that its verdicts stay as they were. It differs from psql's only right after an unquoted
    /// identifier that holds a `$` (`a$$b$`), which pg_dump never writes.
    WithoutDollar,
}

/// What a byte is to the statement around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token {
    /// A byte of top-level text: outside quotes and comments, or one that opens a quoted token
    /// (`'`, `"`, and `$tag` of a dollar quote). `after_ident`: the top-level byte before it is
    /// an identifier's, by the lexer's [`Idents`].
    Text { byte: u8, after_ident: bool },
    /// A comment began, or a quoted token ended: it stands in the statement as this one byte
    /// (`b' '` for a comment, the quote for a token).
    Boundary(u8),
}

/// Where the lexer is, between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Top,
    /// After a `-` at top level: a `--` comment if another follows.
    Dash,
    /// After a `/` at top level: a `/*` comment if a `*` follows.
    Slash,
    /// In a `--` comment, up to the end of the line.
    LineComment,
    /// In a `/* ... */` comment ([`Lexer::depth`] deep), after a `*`, after a `/`.
    Block,
    BlockStar,
    BlockSlash,
    /// In a '...' string ([`Lexer::escapes`] for E'...'), after a backslash in an E'...'
    /// string, after a quote that ends it unless another follows.
    Single,
    SingleEscape,
    SingleEnd,
    /// In a "..." identifier, after a quote that ends it unless another follows.
    Double,
    DoubleEnd,
    /// After a `$` that may open a dollar quote: its tag is being read.
    DollarTag,
    /// In a dollar-quoted string whose closing tag is [`Lexer::tag`].
    Dollar,
}

/// SQL text lexed byte by byte, across lines and across writes, as psql lexes it. No
/// allocation per byte.
#[derive(Debug)]
pub(super) struct Lexer {
    tok: Tok,
    idents: Idents,
    depth: u32,
    escapes: bool,
    /// The dollar quote's tag, both `$` included, and how much of it the body has matched.
    tag: Vec<u8>,
    matched: usize,
    /// The last two top-level bytes (0: a comment or quoted token).
    prev: u8,
    prev2: u8,
}

/// Whether a byte was used up, or must be read again in the state it led to.
#[derive(PartialEq, Eq)]
enum Read {
    Done,
    Again,
}

impl Lexer {
    /// A lexer at the start of a statement, judging what stands before a `$` or an `E'` by
    /// `idents`.
    pub(super) fn new(idents: Idents) -> Self {
        Lexer {
            tok: Tok::Top,
            idents,
            depth: 0,
            escapes: false,
            tag: Vec::new(),
            matched: 0,
            prev: 0,
            prev2: 0,
        }
    }

    /// Outside quotes and comments, and not between the two bytes that may start a comment.
    pub(super) fn at_top(&self) -> bool {
        self.tok == Tok::Top
    }

    /// Where in `rest` the next byte is that can change anything: the bytes before it lie inside
    /// a quoted token or a comment and need no look (found with memchr). None: no byte of `rest`.
    pub(super) fn next_to_read(&self, rest: &[u8]) -> Option<usize> {
        match self.tok {
            Tok::Dollar if self.matched == 0 => memchr::memchr(b'$', rest),
            Tok::Single if self.escapes => memchr::memchr2(b'\'', b'\\', rest),
            Tok::Single => memchr::memchr(b'\'', rest),
            Tok::Double => memchr::memchr(b'"', rest),
            Tok::LineComment => memchr::memchr(b'\n', rest),
            Tok::Block => memchr::memchr2(b'*', b'/', rest),
            _ => Some(0),
        }
    }

    /// Reads one byte, telling `out` what it and any byte held back before it are.
    pub(super) fn step(&mut self, c: u8, out: &mut impl FnMut(Token)) {
        while self.read(c, out) == Read::Again {}
    }

    fn read(&mut self, c: u8, out: &mut impl FnMut(Token)) -> Read {
        match self.tok {
            Tok::Top => {
                self.top(c, out);
                Read::Done
            }
            Tok::Dash | Tok::Slash => self.comment_start(c, out),
            Tok::LineComment => {
                if c == b'\n' {
                    self.tok = Tok::Top;
                }
                Read::Done
            }
            Tok::Block | Tok::BlockStar | Tok::BlockSlash => self.block(c),
            Tok::Single | Tok::SingleEscape | Tok::SingleEnd => self.single(c, out),
            Tok::Double | Tok::DoubleEnd => self.double(c, out),
            Tok::DollarTag => self.dollar_tag(c, out),
            Tok::Dollar => {
                self.dollar(c, out);
                Read::Done
            }
        }
    }

    fn top(&mut self, c: u8, out: &mut impl FnMut(Token)) {
        match c {
            b'-' => self.tok = Tok::Dash,
            b'/' => self.tok = Tok::Slash,
            b'\'' => {
                self.escapes = matches!(self.prev, b'E' | b'e') && !self.ident(self.prev2);
                self.text(c, out);
                self.tok = Tok::Single;
            }
            b'"' => {
                self.text(c, out);
                self.tok = Tok::Double;
            }
            b'$' if !self.ident(self.prev) => {
                self.text(c, out);
                self.tag.clear();
                self.tag.push(c);
                self.tok = Tok::DollarTag;
            }
            _ => self.text(c, out),
        }
    }

    /// The byte after a top-level `-` or `/`: a comment starts, or the held byte was text.
    fn comment_start(&mut self, c: u8, out: &mut impl FnMut(Token)) -> Read {
        let first = if self.tok == Tok::Dash { b'-' } else { b'/' };
        self.tok = Tok::Top;
        if first == b'-' && c == b'-' {
            self.tok = Tok::LineComment;
        } else if first == b'/' && c == b'*' {
            self.tok = Tok::Block;
            self.depth = 1;
        } else {
            self.text(first, out);
            return Read::Again;
        }
        self.boundary(b' ', out);
        Read::Done
    }

    fn block(&mut self, c: u8) -> Read {
        match self.tok {
            Tok::Block => match c {
                b'*' => self.tok = Tok::BlockStar,
                b'/' => self.tok = Tok::BlockSlash,
                _ => {}
            },
            Tok::BlockStar => {
                self.tok = Tok::Block;
                if c != b'/' {
                    return Read::Again;
                }
                self.depth -= 1;
                if self.depth == 0 {
                    self.tok = Tok::Top;
                }
            }
            _ => {
                self.tok = Tok::Block;
                if c != b'*' {
                    return Read::Again;
                }
                self.depth += 1;
            }
        }
        Read::Done
    }

    fn single(&mut self, c: u8, out: &mut impl FnMut(Token)) -> Read {
        match self.tok {
            Tok::Single => match c {
                b'\\' if self.escapes => self.tok = Tok::SingleEscape,
                b'\'' => self.tok = Tok::SingleEnd,
                _ => {}
            },
            Tok::SingleEscape => self.tok = Tok::Single,
            _ if c == b'\'' => self.tok = Tok::Single,
            _ => {
                self.end_token(b'\'', out);
                return Read::Again;
            }
        }
        Read::Done
    }

    fn double(&mut self, c: u8, out: &mut impl FnMut(Token)) -> Read {
        match self.tok {
            Tok::Double if c == b'"' => self.tok = Tok::DoubleEnd,
            Tok::Double => {}
            _ if c == b'"' => self.tok = Tok::Double,
            _ => {
                self.end_token(b'"', out);
                return Read::Again;
            }
        }
        Read::Done
    }

    /// A byte of what may be a dollar quote's opening tag.
    fn dollar_tag(&mut self, c: u8, out: &mut impl FnMut(Token)) -> Read {
        if c == b'$' {
            self.tag.push(c);
            self.tok = Tok::Dollar;
            self.matched = 0;
        } else if is_ident(c) && !(self.tag.len() == 1 && c.is_ascii_digit()) {
            self.tag.push(c);
            self.text(c, out);
        } else {
            self.tok = Tok::Top;
            return Read::Again;
        }
        Read::Done
    }

    /// A byte of a dollar-quoted body, which may be part of its closing tag.
    fn dollar(&mut self, c: u8, out: &mut impl FnMut(Token)) {
        if c == self.tag[self.matched] {
            self.matched += 1;
            if self.matched == self.tag.len() {
                self.end_token(b'$', out);
            }
        } else {
            self.matched = usize::from(c == b'$');
        }
    }

    fn text(&mut self, c: u8, out: &mut impl FnMut(Token)) {
        out(Token::Text {
            byte: c,
            after_ident: self.ident(self.prev),
        });
        self.prev2 = self.prev;
        self.prev = c;
    }

    fn end_token(&mut self, quote: u8, out: &mut impl FnMut(Token)) {
        self.tok = Tok::Top;
        self.boundary(quote, out);
    }

    fn boundary(&mut self, c: u8, out: &mut impl FnMut(Token)) {
        out(Token::Boundary(c));
        self.prev2 = self.prev;
        self.prev = 0;
    }

    fn ident(&self, c: u8) -> bool {
        match self.idents {
            Idents::Psql => is_ident(c),
            Idents::WithoutDollar => c != b'$' && is_ident(c),
        }
    }
}
