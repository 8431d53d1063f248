//! What a backup really is, read from its content rather than its name: age, zstd and gzip
//! layers around a custom archive, plain SQL, a tar archive, or a directory archive.

use crate::archive::crypto::KeySource;
use crate::archive::format::DumpFormat;
use crate::error::Error;
use anyhow::Result;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// A wrapping layer around the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// age encryption (binary or armored header).
    Age,
    /// A zstd frame.
    Zstd,
    /// A gzip stream (members read one after another).
    Gzip,
}

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    Layer(Layer),
    Format(DumpFormat),
    Unknown,
}

const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";
/// First line of an ASCII-armored age file (`age --armor`).
const AGE_ARMOR_MAGIC: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
/// How many bytes [`sniff`] wants to see.
pub const SNIFF_LEN: usize = 512;

/// Classifies a file from its first bytes.
#[must_use]
pub fn sniff(head: &[u8]) -> Sniff {
    if head.starts_with(AGE_MAGIC) || head.starts_with(AGE_ARMOR_MAGIC) {
        Sniff::Layer(Layer::Age)
    } else if head.starts_with(ZSTD_MAGIC) {
        Sniff::Layer(Layer::Zstd)
    } else if head.starts_with(GZIP_MAGIC) {
        Sniff::Layer(Layer::Gzip)
    } else if head.starts_with(b"PGDMP") {
        Sniff::Format(DumpFormat::Custom)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Sniff::Format(DumpFormat::Tar)
    } else if looks_like_sql(head) {
        Sniff::Format(DumpFormat::Plain)
    } else {
        Sniff::Unknown
    }
}

fn looks_like_sql(head: &[u8]) -> bool {
    // The head may end in the middle of a UTF-8 sequence.
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if e.valid_up_to() + 4 >= head.len() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or("")
        }
        Err(_) => return false,
    };
    if text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return false;
    }
    let t = text.trim_start().to_ascii_uppercase();
    [
        "--", "/*", "SET ", "CREATE ", "BEGIN", "SELECT ", "INSERT ", "COPY ", "\\", "DROP ",
        "ALTER ",
    ]
    .iter()
    .any(|p| t.starts_with(p))
}

/// A reader that has read its first bytes ahead.
struct Peeked<R> {
    head: Vec<u8>,
    pos: usize,
    inner: R,
}

impl<R: Read> Peeked<R> {
    fn new(mut inner: R) -> io::Result<Self> {
        let mut head = vec![0; SNIFF_LEN];
        let mut filled = 0;
        while filled < SNIFF_LEN {
            match inner.read(&mut head[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        head.truncate(filled);
        Ok(Peeked {
            head,
            pos: 0,
            inner,
        })
    }
}

impl<R: Read> Read for Peeked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.head.len() {
            let n = buf.len().min(self.head.len() - self.pos);
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// An opened backup: what it is, and (for single files) a reader of the bare dump.
pub struct Opened {
    pub layers: Vec<Layer>,
    pub format: DumpFormat,
    /// The dump with every layer removed; `None` for a directory archive.
    pub reader: Option<Box<dyn Read + Send>>,
}

impl Opened {
    /// Whether pg_restore can read the file itself (seekable: parallel restore possible).
    #[must_use]
    pub fn is_bare(&self) -> bool {
        self.layers.is_empty()
    }
}

/// Opens `path`, peels its layers and identifies the dump inside. Fails with a usage error for a
/// missing, empty or unrecognized file, before anything touches a database.
pub fn open(path: &Path, keys: &KeySource) -> Result<Opened> {
    let what = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::usage(format!("cannot open {what}: {e}")).hint(
            "give the path of a backup file, a backup id, or `latest` (see `aos-backup list`)",
        )
    })?;
    if meta.is_dir() {
        if path.join("toc.dat").is_file() {
            return Ok(Opened {
                layers: Vec::new(),
                format: DumpFormat::Directory,
                reader: None,
            });
        }
        return Err(Error::usage(format!(
            "{what} is a folder but not a pg_dump directory archive (no toc.dat)"
        ))
        .hint("give a backup file, or a folder written by pg_dump --format=directory")
        .into());
    }
    if meta.len() == 0 {
        return Err(Error::usage(format!("{what} is empty: it is not a backup"))
            .hint(
                "the backup that wrote it probably failed; use another backup (`aos-backup list`)",
            )
            .into());
    }
    let file = File::open(path).map_err(|e| Error::usage(format!("cannot open {what}: {e}")))?;
    let mut reader: Box<dyn Read + Send> = Box::new(io::BufReader::with_capacity(1 << 20, file));
    let mut layers = Vec::new();
    loop {
        let peeked = Peeked::new(reader).map_err(|e| damaged(&what, &layers, &e))?;
        let kind = sniff(&peeked.head);
        if peeked.head.is_empty() {
            return Err(Error::integrity(format!(
                "{what}: nothing inside the {} layer",
                describe(&layers)
            ))
            .hint("the file is damaged; use another backup")
            .into());
        }
        match kind {
            Sniff::Format(format) => {
                return Ok(Opened {
                    layers,
                    format,
                    reader: Some(Box::new(peeked)),
                })
            }
            Sniff::Unknown => {
                return Err(Error::usage(format!(
                    "{what} is not a PostgreSQL backup{} (not a pg_dump archive, SQL, gzip, zstd or age file)",
                    if layers.is_empty() { String::new() } else { format!(" inside its {} layer", describe(&layers)) }
                ))
                .hint("give a file written by pg_dump or aos-backup")
                .into())
            }
            Sniff::Layer(_) if layers.len() >= 4 => {
                return Err(Error::usage(format!("{what}: too many nested layers")).into());
            }
            Sniff::Layer(layer) => {
                layers.push(layer);
                reader = match layer {
                    Layer::Age => {
                        let expected = expected_key(path);
                        if keys.is_empty() {
                            let needs = crate::archive::crypto::needs_note(expected.encryption, &expected.recipients);
                            return Err(crate::archive::crypto::key_error(format!("{what} is encrypted (age), and no key was given{needs}"))
                                .hint("set BACKUP_AGE_IDENTITY (or --identity) to the identity file, or BACKUP_PASSPHRASE_FILE for passphrase backups")
                                .into());
                        }
                        if peeked.head.starts_with(AGE_ARMOR_MAGIC) {
                            keys.open(age::armor::ArmoredReader::new(peeked), &what, &expected)?
                        } else {
                            keys.open(peeked, &what, &expected)?
                        }
                    }
                    Layer::Zstd => Box::new(
                        zstd::stream::read::Decoder::new(peeked).map_err(|e| damaged(&what, &layers, &e))?,
                    ),
                    Layer::Gzip => Box::new(flate2::read::MultiGzDecoder::new(peeked)),
                };
            }
        }
    }
}

/// What the sidecar next to `path` (if any) says about the key that opens it.
fn expected_key(path: &Path) -> crate::archive::crypto::Expected {
    let meta_path = crate::archive::meta::Meta::path_for(path);
    match crate::archive::meta::Meta::read(&meta_path) {
        Ok(m) => crate::archive::crypto::Expected {
            encryption: m.encryption.known(),
            recipients: m.recipients,
        },
        Err(_) => crate::archive::crypto::Expected::default(),
    }
}

fn describe(layers: &[Layer]) -> String {
    layers
        .iter()
        .map(|l| match l {
            Layer::Age => "age",
            Layer::Zstd => "zstd",
            Layer::Gzip => "gzip",
        })
        .collect::<Vec<_>>()
        .join("+")
}

fn damaged(what: &str, layers: &[Layer], e: &io::Error) -> anyhow::Error {
    Error::integrity(format!("{what}: damaged {} data: {e}", describe(layers)))
        .hint("the file is damaged or truncated; use another backup")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_each_kind() {
        assert_eq!(sniff(b"PGDMP\x01\x0f"), Sniff::Format(DumpFormat::Custom));
        assert_eq!(
            sniff(b"--\n-- PostgreSQL database dump\n"),
            Sniff::Format(DumpFormat::Plain)
        );
        assert_eq!(
            sniff(b"SET statement_timeout = 0;"),
            Sniff::Format(DumpFormat::Plain)
        );
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Sniff::Layer(Layer::Gzip));
        assert_eq!(
            sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Sniff::Layer(Layer::Zstd)
        );
        assert_eq!(
            sniff(b"age-encryption.org/v1\n-> X25519"),
            Sniff::Layer(Layer::Age)
        );
        assert_eq!(sniff(b"hello world"), Sniff::Unknown);
        assert_eq!(sniff(&[0u8, 1, 2, 3]), Sniff::Unknown);
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(&tar), Sniff::Format(DumpFormat::Tar));
    }

    #[test]
    fn layers_are_peeled_by_content_not_name() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("misnamed.dump");
        let sql = b"--\n-- PostgreSQL database dump\n--\nSELECT 1;\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&zstd::encode_all(&sql[..], 3).unwrap())
            .unwrap();
        std::fs::write(&p, gz.finish().unwrap()).unwrap();
        let mut opened = open(&p, &KeySource::default()).unwrap();
        assert_eq!(opened.layers, vec![Layer::Gzip, Layer::Zstd]);
        assert_eq!(opened.format, DumpFormat::Plain);
        let mut out = Vec::new();
        opened.reader.take().unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, sql);
    }

    #[test]
    fn empty_missing_and_foreign_files_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("e.dump");
        std::fs::write(&empty, b"").unwrap();
        let junk = dir.path().join("j.dump");
        std::fs::write(&junk, b"\x00\x01binary junk").unwrap();
        for (p, needle) in [
            (empty, "empty"),
            (junk, "not a PostgreSQL backup"),
            (dir.path().join("missing.dump"), "cannot open"),
            (dir.path().to_path_buf(), "no toc.dat"),
        ] {
            let err = open(&p, &KeySource::default()).err().unwrap();
            let e = crate::error::find(&err).unwrap();
            assert_eq!(e.kind, crate::error::Kind::Usage);
            assert!(e.message.contains(needle), "{}", e.message);
        }
    }
}
