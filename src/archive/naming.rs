//! Backup file names: `aos-backup-YYYYMMDD-HHMMSS[-LABEL]<ext>`, and the id inside them.

use crate::archive::format::{Algorithm, DumpFormat};
use chrono::{DateTime, Utc};

/// The label of a restore's safety backup, taken of the target before it is replaced: retention
/// spares these for a while.
pub const SAFETY_LABEL: &str = "pre-restore";

/// Every backup file name starts with this.
pub const PREFIX: &str = "aos-backup-";
/// Suffix of files still being written.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Suffix of the metadata sidecar.
pub const META_SUFFIX: &str = ".meta.json";
/// Extension of age-encrypted files.
pub const AGE_EXT: &str = ".age";
/// Suffix of the roles-and-tablespaces script stored with a backup (`backup --globals`).
pub const GLOBALS_SUFFIX: &str = ".globals.sql";

/// Backup file extensions this tool writes or reads, longest first.
pub const KNOWN_EXTENSIONS: &[&str] = &[
    ".dump.zst.age",
    ".dump.gz.age",
    ".sql.zst.age",
    ".sql.gz.age",
    ".dump.age",
    ".sql.age",
    ".dump.zst",
    ".dump.gz",
    ".sql.zst",
    ".sql.gz",
    ".backup",
    ".dump",
    ".sql",
    ".tar",
    ".dir",
];

/// The id of a backup made at `time` with an optional label: `YYYYMMDD-HHMMSS[-LABEL]`.
#[must_use]
pub fn make_id(time: DateTime<Utc>, label: Option<&str>) -> String {
    let base = time.format("%Y%m%d-%H%M%S").to_string();
    match label {
        Some(l) => format!("{base}-{l}"),
        None => base,
    }
}

/// Checks a `--name` label: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `-` or `.`.
pub fn validate_label(label: &str) -> Result<(), String> {
    let ok_chars = label
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if label.is_empty() || label.len() > 64 || !ok_chars || label.starts_with(['-', '.']) {
        return Err(format!(
            "invalid label {label:?}: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '-' or '.'"
        ));
    }
    Ok(())
}

/// The file extension for a backup with these properties.
#[must_use]
pub fn extension(format: DumpFormat, algorithm: Algorithm, encrypted: bool) -> String {
    let base = match format {
        DumpFormat::Directory => return ".dir".to_string(),
        DumpFormat::Tar => ".tar",
        DumpFormat::Custom => ".dump",
        DumpFormat::Plain => ".sql",
    };
    let comp = match algorithm {
        Algorithm::Zstd => ".zst",
        Algorithm::Gzip => ".gz",
        Algorithm::PgDump | Algorithm::None => "",
    };
    let age = if encrypted { AGE_EXT } else { "" };
    format!("{base}{comp}{age}")
}

/// The file name of a backup: `aos-backup-<id><ext>`.
#[must_use]
pub fn file_name(id: &str, ext: &str) -> String {
    format!("{PREFIX}{id}{ext}")
}

/// The name of the globals script of the backup `backup_file`: `<backup_file>.globals.sql`, with
/// `.age` when it is encrypted.
#[must_use]
pub fn globals_name(backup_file: &str, encrypted: bool) -> String {
    let age = if encrypted { AGE_EXT } else { "" };
    format!("{backup_file}{GLOBALS_SUFFIX}{age}")
}

/// The backup file a globals script belongs to, when `name` is one (see [`globals_name`]).
#[must_use]
pub fn globals_owner(name: &str) -> Option<&str> {
    let plain = name.strip_suffix(AGE_EXT).unwrap_or(name);
    plain
        .strip_suffix(GLOBALS_SUFFIX)
        .filter(|owner| looks_like_backup(owner))
}

/// The id inside one of our file names, or `None` for names we did not make.
#[must_use]
pub fn id_of(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix(PREFIX)?;
    let ext = KNOWN_EXTENSIONS.iter().find(|e| rest.ends_with(*e))?;
    let id = &rest[..rest.len() - ext.len()];
    (!id.is_empty()).then_some(id)
}

/// The id a folder entry holds, if it is one of our backups, its sidecar, or a leftover
/// (`.partial`) of either: each of these makes its id taken.
#[must_use]
pub fn id_held_by(entry_name: &str) -> Option<&str> {
    let base = entry_name
        .strip_suffix(PARTIAL_SUFFIX)
        .unwrap_or(entry_name);
    let base = base.strip_suffix(META_SUFFIX).unwrap_or(base);
    id_of(globals_owner(base).unwrap_or(base))
}

/// The first free id for a new backup: `base`, else `base-2`, `base-3`... (up to 99), where an id
/// is taken when any entry of `existing` (the folder's names) holds it: a backup of any
/// extension, a sidecar, or a `.partial` left by an interrupted run, which the new run must not
/// write over (or remove).
#[must_use]
pub fn free_id<'a>(
    base: &str,
    existing: impl IntoIterator<Item = &'a str> + Clone,
) -> Option<String> {
    (1..100)
        .map(|n| {
            if n == 1 {
                base.to_string()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|id| {
            !existing
                .clone()
                .into_iter()
                .any(|name| id_held_by(name) == Some(id.as_str()))
        })
}

/// The longest database name (in bytes) that gets a folder: PostgreSQL's own limit
/// (`NAMEDATALEN` - 1), so a folder name is at most three times as long, far below any
/// filesystem's limit.
pub const MAX_DATABASE_NAME: usize = 63;

/// The subfolder of the backup folder that holds database `name`'s backups when several
/// databases are backed up: ASCII letters, digits and `_` stay; `-` stays unless it comes first;
/// every other byte (`.`, `/`, `%`, spaces, control characters, non-ASCII) becomes `%XX`
/// (upper-case hex of its UTF-8 bytes). The rule is one-to-one (two names never share a folder)
/// and the result is never `.`, `..`, hidden, a path, or a name the catalog reads as a backup,
/// a sidecar or a leftover (those all hold a `.`). `None` for an empty name or one longer than
/// [`MAX_DATABASE_NAME`] bytes.
#[must_use]
pub fn database_folder(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_DATABASE_NAME {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let kept = b.is_ascii_alphanumeric() || b == b'_' || (b == b'-' && i > 0);
        if kept {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Some(out)
}

/// The database whose folder [`database_folder`] names `folder`; `None` when `folder` is not
/// such a name (another folder, or a backup made with `--format directory`).
#[must_use]
pub fn database_of_folder(folder: &str) -> Option<String> {
    let bytes = folder.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = folder.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(out).ok()?;
    (database_folder(&name).as_deref() == Some(folder)).then_some(name)
}

/// Whether a name looks like a backup of any tool (by extension), ours or not.
#[must_use]
pub fn looks_like_backup(file_name: &str) -> bool {
    !file_name.starts_with('.') && KNOWN_EXTENSIONS.iter().any(|e| file_name.ends_with(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn database_folders_are_safe_and_one_to_one() {
        for (name, folder) in [
            ("shop", "shop"),
            ("Shop_2-b", "Shop_2-b"),
            ("../x", "%2E%2E%2Fx"),
            ("/", "%2F"),
            ("-x", "%2Dx"),
            ("a.meta.json", "a%2Emeta%2Ejson"),
            ("50%", "50%25"),
            ("tab\there", "tab%09here"),
            ("caf\u{e9}", "caf%C3%A9"),
        ] {
            assert_eq!(database_folder(name).as_deref(), Some(folder), "{name:?}");
            assert_eq!(
                database_of_folder(folder).as_deref(),
                Some(name),
                "{folder:?}"
            );
            assert!(!looks_like_backup(folder) && !folder.contains(['.', '/']));
        }
        assert_eq!(database_folder(""), None);
        assert_eq!(database_folder(&"x".repeat(64)), None);
        let longest = database_folder(&"\u{e9}".repeat(31)).unwrap();
        assert!(longest.len() <= 3 * MAX_DATABASE_NAME);
        for other in [
            "a.b",
            "%2e",
            "%2",
            "%ZZ",
            "-x",
            "aos-backup-20250101-000000.dir",
            ".x",
        ] {
            assert_eq!(database_of_folder(other), None, "{other:?}");
        }
    }

    #[test]
    fn a_globals_script_belongs_to_its_backup_and_holds_its_id() {
        let backup = "aos-backup-20240101-000000.dump.zst";
        let plain = globals_name(backup, false);
        let sealed = globals_name(&format!("{backup}.age"), true);
        assert_eq!(plain, "aos-backup-20240101-000000.dump.zst.globals.sql");
        assert_eq!(
            sealed,
            "aos-backup-20240101-000000.dump.zst.age.globals.sql.age"
        );
        assert_eq!(globals_owner(&plain), Some(backup));
        assert_eq!(
            globals_owner(&sealed),
            Some("aos-backup-20240101-000000.dump.zst.age")
        );
        assert_eq!(globals_owner("roles.globals.sql"), None);
        assert_eq!(globals_owner(backup), None);
        assert_eq!(id_held_by(&plain), Some("20240101-000000"));
        assert_eq!(
            id_held_by(&format!("{plain}{PARTIAL_SUFFIX}")),
            Some("20240101-000000")
        );
    }

    #[test]
    fn ids_and_names_round_trip() {
        let t = Utc.with_ymd_and_hms(2025, 12, 13, 12, 0, 0).unwrap();
        assert_eq!(make_id(t, None), "20251213-120000");
        let id = make_id(t, Some("pre-deploy"));
        assert_eq!(id, "20251213-120000-pre-deploy");
        for (format, alg, enc, ext) in [
            (DumpFormat::Custom, Algorithm::PgDump, false, ".dump"),
            (DumpFormat::Custom, Algorithm::None, false, ".dump"),
            (DumpFormat::Custom, Algorithm::Zstd, false, ".dump.zst"),
            (DumpFormat::Custom, Algorithm::Gzip, true, ".dump.gz.age"),
            (DumpFormat::Plain, Algorithm::Gzip, false, ".sql.gz"),
            (DumpFormat::Plain, Algorithm::Zstd, true, ".sql.zst.age"),
            (DumpFormat::Directory, Algorithm::PgDump, false, ".dir"),
        ] {
            let e = extension(format, alg, enc);
            assert_eq!(e, ext);
            let name = file_name(&id, &e);
            assert_eq!(id_of(&name), Some(id.as_str()), "{name}");
        }
    }

    #[test]
    fn foreign_names_have_no_id() {
        assert_eq!(id_of("backup_2024.sql.gz"), None);
        assert_eq!(id_of("aos-backup-.dump"), None);
        assert_eq!(id_of("aos-backup-20251213-120000.dump.partial"), None);
        assert!(looks_like_backup("backup_2024.sql.gz"));
        assert!(!looks_like_backup("notes.txt"));
    }

    #[test]
    fn free_id_skips_backups_sidecars_and_leftovers() {
        let base = "20240331-120000";
        let none: [&str; 0] = [];
        assert_eq!(free_id(base, none).as_deref(), Some(base));
        for taken in [
            "aos-backup-20240331-120000.dump.zst",
            "aos-backup-20240331-120000.sql.gz",
            "aos-backup-20240331-120000.dump.zst.meta.json",
            "aos-backup-20240331-120000.dump.zst.partial",
            "aos-backup-20240331-120000.dump.zst.meta.json.partial",
            "aos-backup-20240331-120000.dir.partial",
        ] {
            assert_eq!(
                free_id(base, [taken, "notes.txt"]).as_deref(),
                Some("20240331-120000-2"),
                "{taken}"
            );
        }
        let names = [
            "aos-backup-20240331-120000.dump.zst.partial",
            "aos-backup-20240331-120000-2.dump.zst",
            "aos-backup-20240331-120001.dump.zst",
        ];
        assert_eq!(free_id(base, names).as_deref(), Some("20240331-120000-3"));
        let all: Vec<String> = (1..100)
            .map(|n| {
                if n == 1 {
                    format!("aos-backup-{base}.dump")
                } else {
                    format!("aos-backup-{base}-{n}.dump")
                }
            })
            .collect();
        assert_eq!(free_id(base, all.iter().map(String::as_str)), None);
    }

    #[test]
    fn labels_are_validated() {
        assert!(validate_label("nightly_1.2-x").is_ok());
        for bad in ["", "-x", ".x", "a/b", "a b", "ä", &"x".repeat(65)] {
            assert!(validate_label(bad).is_err(), "{bad:?}");
        }
    }
}
