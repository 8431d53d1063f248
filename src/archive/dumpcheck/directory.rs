//! The check of a directory archive once pg_dump is done: its `toc.dat`, the data files it names,
//! and nothing else in the folder.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{ArchiveParser, DataFile, Verdict};

/// Checks a directory archive written by pg_dump: `toc.dat` parses to its end; every data file
/// it names exists and is whole (a gzip file decompresses to its end; a table's COPY data ends
/// with pg_dump's `\.` end-of-data line and nothing after it); for large objects, every file
/// their list names exists (and decompresses, when gzipped); and the folder holds no file that
/// none of these name.
#[must_use]
pub fn check_directory(dir: &Path) -> Verdict {
    let (verdict, files) = match read_toc(dir) {
        Ok(toc) => toc,
        Err(v) => return v,
    };
    let mut named: HashSet<OsString> = HashSet::new();
    named.insert("toc.dat".into());
    let unknown = match check_files(dir, &files, &mut named) {
        Ok(unknown) => unknown,
        Err(v) => return v,
    };
    if let Some(v) = unnamed_files(dir, &named) {
        return v;
    }
    match unknown {
        Some(why) => Verdict::Unknown(why),
        None => verdict,
    }
}

/// Parses `toc.dat`: its verdict, if complete, and the data files it names.
fn read_toc(dir: &Path) -> Result<(Verdict, Vec<(String, DataFile)>), Verdict> {
    let toc = match std::fs::read(dir.join("toc.dat")) {
        Ok(b) => b,
        Err(e) => {
            return Err(Verdict::Incomplete(format!(
                "its toc.dat cannot be read: {e}"
            )))
        }
    };
    let mut p = ArchiveParser::directory_toc();
    p.feed(&toc);
    let verdict = p.finish();
    if !matches!(verdict, Verdict::Complete { .. }) {
        return Err(verdict);
    }
    Ok((verdict, p.files))
}

/// Checks the data files `toc.dat` names, adding the names found to `named`. Stops at the first
/// one missing or incomplete; else returns why the first that cannot be judged cannot be.
fn check_files(
    dir: &Path,
    files: &[(String, DataFile)],
    named: &mut HashSet<OsString>,
) -> Result<Option<String>, Verdict> {
    let mut unknown = None;
    for (name, kind) in files {
        if name.contains('/') || name.starts_with('.') {
            return Err(Verdict::Unknown(format!(
                "toc.dat names an unexpected file {name:?}"
            )));
        }
        let Some(found) = existing(dir, name) else {
            return Err(Verdict::Incomplete(format!(
                "its data file {name} is missing"
            )));
        };
        named.insert(found.file_name().unwrap_or_default().to_os_string());
        let checked = match kind {
            DataFile::Blobs => check_blob_list(dir, name, &found, named),
            DataFile::Copy => check_data_file(&found, true),
            DataFile::Other => check_data_file(&found, false),
        };
        match checked {
            Verdict::Complete { .. } => {}
            Verdict::Unknown(why) => unknown = unknown.or(Some(why)),
            incomplete @ Verdict::Incomplete(_) => return Err(incomplete),
        }
    }
    Ok(unknown)
}

/// The verdict on a folder that holds files none of `named`, or that cannot be read.
fn unnamed_files(dir: &Path, named: &HashSet<OsString>) -> Option<Verdict> {
    let entries = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) => {
            return Some(Verdict::Incomplete(format!(
                "the folder cannot be read: {e}"
            )))
        }
    };
    let mut extra: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| !named.contains(n))
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    if extra.is_empty() {
        return None;
    }
    extra.sort();
    Some(Verdict::Incomplete(format!(
        "it is garbled: it holds file(s) its table of contents does not name: {}",
        extra.join(", ")
    )))
}

/// Checks a large-object list (`blobs.toc`) and the files it names, adding them to `named`.
fn check_blob_list(dir: &Path, name: &str, found: &Path, named: &mut HashSet<OsString>) -> Verdict {
    let list = match std::fs::read_to_string(found) {
        Ok(t) => t,
        Err(e) => return Verdict::Incomplete(format!("{name} cannot be read: {e}")),
    };
    let mut unknown = None;
    for line in list.lines() {
        let Some((_, file)) = line.split_once(' ') else {
            return Verdict::Incomplete(format!("{name} has a damaged line"));
        };
        let blob = if file.contains('/') {
            None
        } else {
            existing(dir, file)
        };
        let Some(blob) = blob else {
            return Verdict::Incomplete(format!("its large-object file {file} is missing"));
        };
        named.insert(blob.file_name().unwrap_or_default().to_os_string());
        // A large object's bytes have no end marker: only a compressed stream can be checked.
        match check_data_file(&blob, false) {
            Verdict::Complete { .. } => {}
            Verdict::Unknown(why) => unknown = unknown.or(Some(why)),
            incomplete @ Verdict::Incomplete(_) => return incomplete,
        }
    }
    unknown.map_or(Verdict::Complete { tables: None }, Verdict::Unknown)
}

/// pg_dump's last bytes of a table's COPY data (pg_dump.c, `dumpTableData_copy`).
const COPY_END: &[u8] = b"\\.\n\n\n";

/// Checks one data file: a `.gz` one must decompress to the end of a complete gzip stream;
/// with `copy`, its (decompressed) content must end with pg_dump's end-of-data line. Files
/// compressed otherwise (`.lz4`, `.zst`: pg_dump 16 and later) cannot be judged here.
fn check_data_file(path: &Path, copy: bool) -> Verdict {
    let shown = path.file_name().unwrap_or_default().to_string_lossy();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return Verdict::Incomplete(format!("its data file {shown} cannot be read: {e}")),
    };
    let tail = match ext {
        "gz" => match gzip_tail(file, &shown) {
            Ok(tail) => tail,
            Err(v) => return v,
        },
        "lz4" | "zst" => {
            return Verdict::Unknown(format!("its data file {shown} is compressed with {ext}"))
        }
        _ if !copy => return Verdict::Complete { tables: None },
        _ => match file_tail(file) {
            Ok(tail) => tail,
            Err(e) => {
                return Verdict::Incomplete(format!("its data file {shown} cannot be read: {e}"))
            }
        },
    };
    if !copy {
        return Verdict::Complete { tables: None };
    }
    copy_end(&tail, &shown)
}

/// The last bytes of a gzipped file's content, once it has decompressed to the end of its gzip
/// stream.
fn gzip_tail(file: File, shown: &str) -> Result<Vec<u8>, Verdict> {
    let mut gz = flate2::read::MultiGzDecoder::new(io::BufReader::new(file));
    let mut tail: Vec<u8> = Vec::with_capacity(32);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match gz.read(&mut buf) {
            Ok(0) => return Ok(tail),
            Ok(n) => {
                total += n as u64;
                keep_tail(&mut tail, &buf[..n]);
            }
            Err(e) => {
                return Err(Verdict::Incomplete(format!(
                    "its data file {shown} is not a complete gzip stream ({e}, after {total} bytes of content): cut short or garbled"
                )))
            }
        }
    }
}

/// The last bytes of an uncompressed file, enough to hold [`COPY_END`] and the byte before it.
fn file_tail(mut file: File) -> io::Result<Vec<u8>> {
    let len = file.metadata()?.len();
    let from = len.saturating_sub(COPY_END.len() as u64 + 1);
    file.seek(SeekFrom::Start(from))?;
    let mut tail: Vec<u8> = Vec::with_capacity(32);
    file.read_to_end(&mut tail)?;
    Ok(tail)
}

/// Whether the last bytes of a table's COPY data are pg_dump's end-of-data line, at the start of
/// a line.
fn copy_end(tail: &[u8], shown: &str) -> Verdict {
    let ends = tail.ends_with(COPY_END) && {
        let before = tail.len() - COPY_END.len();
        // The end line starts a line: the file's start (an empty table), or after a row.
        before == 0 || tail[before - 1] == b'\n'
    };
    if ends {
        Verdict::Complete { tables: None }
    } else {
        Verdict::Incomplete(format!(
            "its data file {shown} does not end with pg_dump's end-of-data line (\\.): cut short or garbled"
        ))
    }
}

/// Keeps the last few bytes seen in `tail`.
fn keep_tail(tail: &mut Vec<u8>, data: &[u8]) {
    const KEEP_TAIL: usize = 16;
    if data.len() >= KEEP_TAIL {
        tail.clear();
        tail.extend_from_slice(&data[data.len() - KEEP_TAIL..]);
    } else {
        tail.extend_from_slice(data);
        if tail.len() > KEEP_TAIL {
            tail.drain(..tail.len() - KEEP_TAIL);
        }
    }
}

/// The data file `name`, with whichever compression suffix pg_dump gave it.
fn existing(dir: &Path, name: &str) -> Option<PathBuf> {
    ["", ".gz", ".lz4", ".zst"]
        .iter()
        .map(|s| dir.join(format!("{name}{s}")))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::super::test_archive::Writer;
    use super::super::toc::FORMAT_TAR;
    use super::*;

    #[test]
    fn a_real_directory_archive_is_complete_until_a_file_goes() {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dumpcheck/objects.dir");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for e in std::fs::read_dir(&fixture).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
        }
        assert_eq!(check_directory(d), Verdict::Complete { tables: Some(4) });
        let toc = std::fs::read(d.join("toc.dat")).unwrap();
        for cut in 0..toc.len() {
            std::fs::write(d.join("toc.dat"), &toc[..cut]).unwrap();
            assert!(
                matches!(check_directory(d), Verdict::Incomplete(_)),
                "toc.dat cut at {cut}"
            );
        }
        std::fs::write(d.join("toc.dat"), &toc).unwrap();
        // Compressed data files count too.
        let data = std::fs::read(d.join("3359.dat")).unwrap();
        std::fs::remove_file(d.join("3359.dat")).unwrap();
        assert!(matches!(check_directory(d), Verdict::Incomplete(w) if w.contains("3359.dat")));
        std::fs::write(d.join("3359.dat.gz"), gzip(&data)).unwrap();
        assert_eq!(check_directory(d), Verdict::Complete { tables: Some(4) });
        std::fs::remove_file(d.join("blob_16427.dat")).unwrap();
        assert!(
            matches!(check_directory(d), Verdict::Incomplete(w) if w.contains("blob_16427.dat"))
        );
    }

    #[test]
    fn a_directory_archive_needs_its_toc_and_data_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // toc.dat of a directory archive: the custom header with format 5 and file names.
        let mut w = Writer {
            out: b"PGDMP".to_vec(),
            minor: 14,
        };
        w.out.extend_from_slice(&[1, 14, 0, 4, 8, FORMAT_TAR]);
        w.int(-1);
        for v in [0, 1, 2, 3, 4, 124, 0] {
            w.int(v);
        }
        for s in ["db", "15.0", "15.0"] {
            w.str(Some(s));
        }
        w.int(3);
        for (id, desc, file) in [
            (10, "TABLE", ""),
            (20, "TABLE DATA", "20.dat"),
            (30, "BLOBS", "blobs.toc"),
        ] {
            w.int(id);
            w.int(i64::from(!file.is_empty()));
            for s in ["0", "0", "t", desc] {
                w.str(Some(s));
            }
            w.int(2);
            for s in ["", "", "", "public", "", "heap", "o", "false"] {
                w.str(Some(s));
            }
            w.str(None);
            w.str(Some(file));
        }
        std::fs::write(d.join("toc.dat"), &w.out).unwrap();
        assert!(matches!(check_directory(d), Verdict::Incomplete(why) if why.contains("20.dat")));
        std::fs::write(d.join("20.dat.gz"), gzip(b"1\t2\n\\.\n\n\n")).unwrap();
        std::fs::write(d.join("blobs.toc"), b"16400 blob_16400.dat\n").unwrap();
        assert!(
            matches!(check_directory(d), Verdict::Incomplete(why) if why.contains("blob_16400"))
        );
        std::fs::write(d.join("blob_16400.dat.gz"), b"x").unwrap();
        assert!(
            matches!(check_directory(d), Verdict::Incomplete(why) if why.contains("gzip")),
            "a large object's gzip stream is checked"
        );
        std::fs::write(d.join("blob_16400.dat.gz"), gzip(b"")).unwrap();
        assert_eq!(check_directory(d), Verdict::Complete { tables: Some(1) });
        std::fs::write(d.join("toc.dat"), &w.out[..w.out.len() - 3]).unwrap();
        assert!(matches!(check_directory(d), Verdict::Incomplete(_)));
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A copy of the real directory archive fixture, its data files gzipped with `gz`.
    fn fixture_copy(gz: bool) -> tempfile::TempDir {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dumpcheck/objects.dir");
        let dir = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(&fixture).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            if gz && name.ends_with(".dat") && name != "toc.dat" {
                std::fs::write(dir.path().join(format!("{name}.gz")), gzip(&bytes)).unwrap();
            } else {
                std::fs::write(dir.path().join(&name), bytes).unwrap();
            }
        }
        dir
    }

    #[test]
    fn every_cut_or_addition_to_a_table_data_file_is_incomplete() {
        for gz in [false, true] {
            let dir = fixture_copy(gz);
            let d = dir.path();
            assert_eq!(check_directory(d), Verdict::Complete { tables: Some(4) });
            let name = if gz { "3359.dat.gz" } else { "3359.dat" };
            let whole = std::fs::read(d.join(name)).unwrap();
            for cut in 0..whole.len() {
                std::fs::write(d.join(name), &whole[..cut]).unwrap();
                let v = check_directory(d);
                assert!(
                    matches!(&v, Verdict::Incomplete(why) if why.contains("3359.dat")),
                    "gz {gz}, cut at {cut}: {v:?}"
                );
            }
            // Garbage after the data (inside the compressed stream, or after it).
            let plain = std::fs::read(fixture_copy(false).path().join("3359.dat")).unwrap();
            for junk in [b"x".as_slice(), b"\n", b"\\.\n", b"5\tmore\n"] {
                let mut more = plain.clone();
                more.extend_from_slice(junk);
                let bytes = if gz { gzip(&more) } else { more };
                std::fs::write(d.join(name), bytes).unwrap();
                assert!(
                    matches!(check_directory(d), Verdict::Incomplete(_)),
                    "gz {gz}, {junk:?} appended"
                );
            }
            if gz {
                let mut more = whole.clone();
                more.extend_from_slice(b"garbage");
                std::fs::write(d.join(name), more).unwrap();
                assert!(matches!(check_directory(d), Verdict::Incomplete(_)));
            }
            std::fs::write(d.join(name), &whole).unwrap();
            assert_eq!(check_directory(d), Verdict::Complete { tables: Some(4) });
            // A gzipped large object cut short; an uncompressed one cannot be judged by its end.
            let blob = if gz {
                "blob_16426.dat.gz"
            } else {
                "blob_16426.dat"
            };
            let bytes = std::fs::read(d.join(blob)).unwrap();
            std::fs::write(d.join(blob), &bytes[..bytes.len() / 2]).unwrap();
            assert_eq!(
                matches!(check_directory(d), Verdict::Incomplete(_)),
                gz,
                "gz {gz}: a cut large object"
            );
            std::fs::write(d.join(blob), &bytes).unwrap();
            // A file nobody named.
            std::fs::write(d.join("9999.dat"), b"\\.\n\n\n").unwrap();
            let v = check_directory(d);
            assert!(
                matches!(&v, Verdict::Incomplete(why) if why.contains("garbled") && why.contains("9999.dat")),
                "{v:?}"
            );
        }
    }
}
