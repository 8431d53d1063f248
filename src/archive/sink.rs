//! The streaming pipeline of a backup: pg_dump's output flows through compression, then
//! encryption, then the SHA-256, into the temporary file, in one pass with bounded memory.

use crate::archive::crypto::Sealer;
use crate::archive::format::{Algorithm, Compression};
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

/// How many zstd worker threads to use. At the fast levels one core compresses faster than
/// pg_dump produces (zstd -1 runs at ~500 MB/s, pg_dump at ~170 MB/s on the benchmark), and
/// worker threads only compete with pg_dump and the server for the cores: compress inline (0).
/// Slower levels use every core.
fn zstd_workers(level: i32) -> u32 {
    if level <= 3 {
        return 0;
    }
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
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
                let workers = zstd_workers(compression.level);
                if workers > 0 {
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

/// A copy that failed, and on which side. Reading a backup, a read error is about its content
/// (decompression, decryption, a truncated file); a write error is about our side (a full disk
/// under a temp file, a folder we may not write, a child that stopped reading). They lead to
/// different exit codes, so the side is a type, not a guess from the message.
#[derive(Debug)]
pub enum PumpError {
    /// Reading the source failed.
    Read(io::Error),
    /// Writing the destination failed.
    Write(io::Error),
}

impl PumpError {
    /// The underlying I/O error.
    #[must_use]
    pub fn io(&self) -> &io::Error {
        match self {
            PumpError::Read(e) | PumpError::Write(e) => e,
        }
    }

    /// The kind of the underlying I/O error.
    #[must_use]
    pub fn kind(&self) -> io::ErrorKind {
        self.io().kind()
    }
}

impl std::fmt::Display for PumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.io().fmt(f)
    }
}

impl std::error::Error for PumpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io().source()
    }
}

impl From<PumpError> for io::Error {
    fn from(e: PumpError) -> io::Error {
        match e {
            PumpError::Read(e) | PumpError::Write(e) => e,
        }
    }
}

/// Copies `from` into `to` in large chunks, adding to `counter` as it goes. Returns the bytes
/// copied, or which side failed.
pub fn pump(
    from: &mut dyn Read,
    to: &mut dyn Write,
    counter: &AtomicU64,
) -> Result<u64, PumpError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PumpError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(PumpError::Write)?;
        total += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Like [`pump`], but a separate thread reads `from` into a bounded queue of `depth` 1 MiB
/// buffers, so the producer (pg_dump) never waits while a chunk is being compressed: memory
/// stays bounded at about `depth` MiB whatever the database size. Read errors come back as the
/// error of the call. On a write error it returns at once; the reader thread ends when `from`
/// does (the caller stops the producer).
pub fn pump_buffered(
    mut from: Box<dyn Read + Send>,
    to: &mut dyn Write,
    counter: &AtomicU64,
    depth: usize,
) -> Result<u64, PumpError> {
    use std::sync::mpsc::sync_channel;
    const CHUNK: usize = 1 << 20;
    const SHORT_READ: usize = 64 << 10;
    const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
    let (full_tx, full_rx) = sync_channel::<io::Result<Vec<u8>>>(depth);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(depth + 2);
    for _ in 0..depth + 2 {
        let _ = empty_tx.send(vec![0u8; CHUNK]);
    }
    let reader = std::thread::spawn(move || {
        while let Ok(mut buf) = empty_rx.recv() {
            buf.resize(CHUNK, 0);
            let mut filled = 0;
            // Fill the whole buffer: a pipe gives at most its own size per read.
            let result = loop {
                match from.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == CHUNK {
                            break Ok(());
                        }
                        // pg_dump writes 4-8 KiB at a time; reading each write as it comes costs
                        // a wake-up of both processes per write. A pipe has no low-water mark,
                        // so after a short read let data gather (the 1 MiB pipe holds ~6 ms of
                        // pg_dump's fastest output, so it never has to wait).
                        if n < SHORT_READ {
                            std::thread::sleep(GATHER);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(filled);
            let done = filled < CHUNK || result.is_err();
            if full_tx.send(result.map(|()| buf)).is_err() || done {
                return;
            }
        }
    });
    let mut total = 0u64;
    while let Ok(msg) = full_rx.recv() {
        let buf = msg.map_err(PumpError::Read)?;
        if buf.is_empty() {
            break;
        }
        to.write_all(&buf).map_err(PumpError::Write)?;
        total += buf.len() as u64;
        counter.fetch_add(buf.len() as u64, Ordering::Relaxed);
        let last = buf.len() < CHUNK;
        let _ = empty_tx.send(buf);
        if last {
            break;
        }
    }
    let _ = reader.join();
    Ok(total)
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
    fn buffered_pump_copies_everything_in_order() {
        let data: Vec<u8> = (0..5_500_000u32).map(|i| (i % 253) as u8).collect();
        for depth in [1, 4] {
            let mut out = Vec::new();
            let counter = AtomicU64::new(0);
            let n = pump_buffered(
                Box::new(std::io::Cursor::new(data.clone())),
                &mut out,
                &counter,
                depth,
            )
            .unwrap();
            assert_eq!(n, data.len() as u64);
            assert_eq!(out, data);
        }
        let err = pump_buffered(
            Box::new(FailAfter(3_000_000)),
            &mut Vec::new(),
            &AtomicU64::new(0),
            2,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    struct FailAfter(usize);
    impl Read for FailAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            let n = buf.len().min(self.0).min(100_000);
            self.0 -= n;
            Ok(n)
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
        let sealer = Sealer::Recipients(vec![id.to_public()]);
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
        // A secret file must be private (fsutil::check_secret_file).
        std::fs::set_permissions(&idfile, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let keys = crate::archive::crypto::KeySource {
            identity_file: Some(idfile),
            passphrase_file: None,
        };
        let mut opened = crate::archive::layers::open(&p, &keys).unwrap();
        let mut out = Vec::new();
        opened.reader.take().unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"PGDMP secret data");
    }
}
