//! The streaming pipeline of a backup: pg_dump's output flows through compression, then
//! encryption, then the SHA-256, into the temporary file, in one pass with bounded memory.

use crate::crypto::Sealer;
use crate::format::{Algorithm, Compression};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts and hashes the bytes that reach the file.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the hex SHA-256 and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex(&self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Lowercase hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

type Disk = HashingWriter<BufWriter<File>>;

enum Sealed {
    Plain(Disk),
    Age(age::stream::StreamWriter<Disk>),
}

impl Write for Sealed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Plain(w) => w.write(buf),
            Sealed::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Plain(w) => w.flush(),
            Sealed::Age(w) => w.flush(),
        }
    }
}

impl Sealed {
    fn finish(self) -> io::Result<Disk> {
        match self {
            Sealed::Plain(w) => Ok(w),
            Sealed::Age(w) => w.finish(),
        }
    }
}

enum Compressed {
    None(Sealed),
    Zstd(zstd::stream::write::Encoder<'static, Sealed>),
    Gzip(flate2::write::GzEncoder<Sealed>),
}

impl Write for Compressed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressed::None(w) => w.write(buf),
            Compressed::Zstd(w) => w.write(buf),
            Compressed::Gzip(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressed::None(w) => w.flush(),
            Compressed::Zstd(w) => w.flush(),
            Compressed::Gzip(w) => w.flush(),
        }
    }
}

/// What the pipeline wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
    /// Bytes stored in the file.
    pub stored_bytes: u64,
    /// Bytes pg_dump produced.
    pub dump_bytes: u64,
}

/// The write side: compression, then encryption, then hashing, into a file.
pub struct Sink {
    stage: Compressed,
    dump_bytes: u64,
}

/// How many zstd worker threads to use: all cores.
fn zstd_workers() -> u32 {
    std::thread::available_parallelism()
        .map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
        .max(1)
}

impl Sink {
    /// Sets up the stages over `file`.
    pub fn new(file: File, compression: Compression, sealer: Option<&Sealer>) -> Result<Sink> {
        let disk = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let sealed = match sealer {
            None => Sealed::Plain(disk),
            Some(s) => Sealed::Age(
                s.encryptor()?
                    .wrap_output(disk)
                    .context("starting age encryption")?,
            ),
        };
        let stage = match compression.algorithm {
            Algorithm::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(sealed, compression.level)
                    .context("starting zstd")?;
                enc.include_checksum(true).context("configuring zstd")?;
                let workers = zstd_workers();
                if workers > 1 {
                    enc.multithread(workers).context("starting zstd workers")?;
                }
                Compressed::Zstd(enc)
            }
            Algorithm::Gzip => Compressed::Gzip(flate2::write::GzEncoder::new(
                sealed,
                flate2::Compression::new(u32::try_from(compression.level).unwrap_or(6)),
            )),
            Algorithm::None | Algorithm::PgDump => Compressed::None(sealed),
        };
        Ok(Sink {
            stage,
            dump_bytes: 0,
        })
    }

    /// Finishes every stage and syncs the file to disk.
    pub fn finish(self) -> Result<Written> {
        let sealed = match self.stage {
            Compressed::None(w) => w,
            Compressed::Zstd(w) => w.finish().context("finishing zstd")?,
            Compressed::Gzip(w) => w.finish().context("finishing gzip")?,
        };
        let disk = sealed.finish().context("finishing age encryption")?;
        let (buf, sha256, stored_bytes) = disk.finish();
        let file = buf
            .into_inner()
            .map_err(|e| e.into_error())
            .context("writing the backup file")?;
        file.sync_all().context("syncing the backup file to disk")?;
        Ok(Written {
            sha256,
            stored_bytes,
            dump_bytes: self.dump_bytes,
        })
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stage.write(buf)?;
        self.dump_bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stage.flush()
    }
}

/// Copies `from` into `to` in large chunks, adding to `counter` as it goes. Returns the bytes copied.
pub fn pump(from: &mut dyn Read, to: &mut dyn Write, counter: &AtomicU64) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// SHA-256 and size of a file, read in large chunks.
pub fn hash_file(path: &std::path::Path, counter: &AtomicU64) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = HashingWriter::new(io::sink());
    pump(&mut f, &mut h, counter)?;
    let (_, sha, n) = h.finish();
    Ok((sha, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(alg: Algorithm, level: i32) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let data: Vec<u8> = (0..3_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut sink = Sink::new(
            File::create(&p).unwrap(),
            Compression {
                algorithm: alg,
                level,
            },
            None,
        )
        .unwrap();
        let counter = AtomicU64::new(0);
        pump(&mut &data[..], &mut sink, &counter).unwrap();
        let w = sink.finish().unwrap();
        assert_eq!(w.dump_bytes, data.len() as u64);
        assert_eq!(counter.load(Ordering::Relaxed), data.len() as u64);
        let stored = std::fs::read(&p).unwrap();
        assert_eq!(w.stored_bytes, stored.len() as u64);
        assert_eq!(w.sha256, hex(&Sha256::digest(&stored)));
        let back = match alg {
            Algorithm::Zstd => zstd::decode_all(&stored[..]).unwrap(),
            Algorithm::Gzip => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&stored[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            _ => stored.clone(),
        };
        assert_eq!(back, data);
        if alg != Algorithm::None {
            assert!(stored.len() < data.len() / 4, "{alg:?} did not compress");
        }
    }

    #[test]
    fn zstd_gzip_and_none_round_trip_with_matching_checksums() {
        roundtrip(Algorithm::Zstd, 1);
        roundtrip(Algorithm::Gzip, 6);
        roundtrip(Algorithm::None, 0);
    }

    #[test]
    fn age_encrypted_output_decrypts_with_the_identity() {
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        let sealer = Sealer::Recipients(vec![Box::new(id.to_public())]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.age");
        let mut sink = Sink::new(
            File::create(&p).unwrap(),
            Compression {
                algorithm: Algorithm::Zstd,
                level: 1,
            },
            Some(&sealer),
        )
        .unwrap();
        sink.write_all(b"PGDMP secret data").unwrap();
        let w = sink.finish().unwrap();
        let stored = std::fs::read(&p).unwrap();
        assert_eq!(w.sha256, hex(&Sha256::digest(&stored)));
        assert!(stored.starts_with(b"age-encryption.org/v1"));
        let idfile = dir.path().join("id.txt");
        std::fs::write(&idfile, id.to_string().expose_secret()).unwrap();
        let keys = crate::crypto::KeySource {
            identity_file: Some(idfile),
            passphrase_file: None,
        };
        let mut opened = crate::archive::open(&p, &keys).unwrap();
        let mut out = Vec::new();
        opened.reader.take().unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"PGDMP secret data");
    }
}
