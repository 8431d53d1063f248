//! The check that watches pg_dump's output on its way, for the formats written to a pipe.

use super::{ArchiveParser, SqlTail, Verdict};
use crate::archive::format::DumpFormat;

/// Checks pg_dump's output as it streams by, for the formats written to a pipe.
pub enum StreamCheck {
    Custom(Box<ArchiveParser>),
    Plain(Box<SqlTail>),
}

impl StreamCheck {
    /// The check for a format written to a pipe (custom or plain), or None.
    #[must_use]
    pub fn for_format(format: DumpFormat) -> Option<StreamCheck> {
        match format {
            DumpFormat::Custom => Some(StreamCheck::Custom(Box::new(ArchiveParser::custom()))),
            DumpFormat::Plain => Some(StreamCheck::Plain(Box::default())),
            DumpFormat::Directory | DumpFormat::Tar => None,
        }
    }

    /// Looks at the next bytes of pg_dump's output.
    pub fn feed(&mut self, data: &[u8]) {
        match self {
            StreamCheck::Custom(p) => p.feed(data),
            StreamCheck::Plain(t) => t.feed(data),
        }
    }

    /// The verdict once pg_dump's output has ended.
    #[must_use]
    pub fn finish(&self) -> Verdict {
        match self {
            StreamCheck::Custom(p) => p.finish(),
            StreamCheck::Plain(t) => t.finish(),
        }
    }
}

/// A writer that shows every byte to a [`StreamCheck`] on its way to `inner`.
pub struct Tee<'a, W> {
    pub inner: W,
    pub check: &'a mut StreamCheck,
}

impl<W: std::io::Write> std::io::Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.check.feed(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
