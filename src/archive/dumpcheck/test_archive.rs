//! Archives written byte by byte for the unit tests, for the archive versions no installed
//! pg_dump writes.

use super::toc::{BLK_BLOBS, BLK_DATA, FORMAT_CUSTOM};

/// Writes archives the way pg_dump's `WriteHead`/`WriteToc`/`_StartData`/`_EndData` do, for
/// the archive versions no installed pg_dump writes.
pub(super) struct Writer {
    pub(super) out: Vec<u8>,
    pub(super) minor: u8,
}

impl Writer {
    pub(super) fn int(&mut self, v: i64) {
        self.out.push(u8::from(v < 0));
        let a = u32::try_from(v.unsigned_abs()).unwrap();
        self.out.extend_from_slice(&a.to_le_bytes());
    }

    pub(super) fn str(&mut self, s: Option<&str>) {
        match s {
            None => self.int(-1),
            Some(s) => {
                self.int(i64::try_from(s.len()).unwrap());
                self.out.extend_from_slice(s.as_bytes());
            }
        }
    }

    /// A custom archive of version 1.`minor`. Entries: (dump id, desc, has data).
    pub(super) fn archive(minor: u8, entries: &[(i64, &str, bool)]) -> Vec<u8> {
        let mut w = Writer {
            out: b"PGDMP".to_vec(),
            minor,
        };
        w.head();
        w.int(i64::try_from(entries.len()).unwrap());
        for &(id, desc, data) in entries {
            w.entry(id, desc, data);
        }
        for &(id, desc, _) in entries.iter().filter(|e| e.2) {
            w.data_block(id, desc);
        }
        w.out
    }

    /// What follows the magic: version, sizes, format, compression, date, names.
    fn head(&mut self) {
        self.out
            .extend_from_slice(&[1, self.minor, 0, 4, 8, FORMAT_CUSTOM]);
        if self.minor >= 15 {
            self.out.push(0);
        } else {
            self.int(0);
        }
        for v in [0, 1, 2, 3, 4, 124, 0] {
            self.int(v);
        }
        for s in ["db", "17.0", "17.0"] {
            self.str(Some(s));
        }
    }

    /// One table-of-contents entry.
    fn entry(&mut self, id: i64, desc: &str, data: bool) {
        self.int(id);
        self.int(i64::from(data));
        self.str(Some("1259"));
        self.str(Some("16384"));
        self.str(Some("t"));
        self.str(Some(desc));
        self.int(2);
        self.str(Some("CREATE TABLE t (a int);\n"));
        self.str(Some(""));
        self.str(None);
        self.str(Some("public"));
        self.str(Some(""));
        if self.minor >= 14 {
            self.str(Some("heap"));
        }
        if self.minor >= 16 {
            self.int(i64::from(b'r'));
        }
        self.str(Some("owner"));
        self.str(Some("false"));
        self.str(Some("1"));
        self.str(Some("2"));
        self.str(None);
        self.out.push(if data { 1 } else { 3 });
        self.out.extend_from_slice(&[0; 8]);
    }

    /// The data block of entry `id`: two large objects for `BLOBS`, one row otherwise.
    fn data_block(&mut self, id: i64, desc: &str) {
        if desc == "BLOBS" {
            self.out.push(BLK_BLOBS);
            self.int(id);
            for oid in [16400, 16401] {
                self.int(oid);
                self.int(2);
                self.out.extend_from_slice(b"xy");
                self.int(0);
            }
            self.int(0);
        } else {
            self.out.push(BLK_DATA);
            self.int(id);
            self.int(4);
            self.out.extend_from_slice(b"1\t2\n");
            self.int(0);
        }
    }
}
