//! The core of aos-backup against a real PostgreSQL server: backups and restores that round trip
//! (every format and compression, files made by other tools), the connection forms, secrets that
//! never leak, failures with their exit codes and hints (and nothing left behind), names that never
//! overwrite, and log output fit for scripts.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::cmd::{Cmd, Output};
use crate::harness::{self, server, APP_PASSWORD};
use crate::support::{names_if_any as names_in, read_sidecar as sidecar, sha256_hex, Tmpfs};

/// A distinctive part of [`APP_PASSWORD`]: found in any form of the password, raw or encoded.
const PASSWORD_MARK: &str = "S3cr3t";

/// A small database owned by `app`: two tables, a foreign key, a serial, NULLs, tabs and non-ASCII text.
fn small_db(prefix: &str) -> String {
    let pg = server();
    let db = pg.create_db(prefix);
    pg.psql(
        &db,
        "SET client_min_messages = warning;
         SET ROLE app;
         CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, qty int, note text);
         INSERT INTO items (name, qty, note)
              SELECT 'item ' || g, g % 7,
                     CASE WHEN g % 3 = 0 THEN NULL ELSE 'ünï 🐘 ' || g || E'\ttab\\back' END
                FROM generate_series(1, 200) g;
         CREATE TABLE tags (item_id int NOT NULL REFERENCES items, tag text);
         INSERT INTO tags SELECT g, 't' || (g % 5) FROM generate_series(1, 200, 2) g;",
    );
    db
}

/// `aos-backup backup` of `url` (given as `DATABASE_URL`) with `args`, in a fresh folder.
fn backup(url: &str, args: &[&str]) -> Cmd {
    Cmd::new().arg("backup").args(args).env("DATABASE_URL", url)
}

/// `aos-backup restore --yes FILE` into `url`.
fn restore(url: &str, file: &Path) -> Cmd {
    Cmd::new()
        .args(["restore", "--yes"])
        .consent_from_database_of(file)
        .arg(file)
        .env("DATABASE_URL", url)
}

/// Runs a backup that must succeed and returns the path it printed, checked to be in `<cwd>/backups`.
#[track_caller]
fn backed_up(cmd: &Cmd) -> (Output, PathBuf) {
    let out = cmd.run();
    out.assert_success();
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "stdout is the path only:\n{out}"
    );
    // The path is absolute, or relative to the working folder.
    let path = cmd.dir().join(out.stdout_trimmed());
    let canonical = fs::canonicalize(&path)
        .unwrap_or_else(|e| panic!("the printed path {path:?} does not exist ({e}):\n{out}"));
    assert_eq!(
        canonical.parent().unwrap(),
        fs::canonicalize(cmd.dir().join("backups")).unwrap(),
        "the backup is not in <cwd>/backups:\n{out}"
    );
    (out, canonical)
}

/// Restores `file` into `db` (as `app` over TCP) and checks that it succeeded.
#[track_caller]
fn restored(file: &Path, db: &str) -> Output {
    let out = restore(&server().tcp_url(db), file).run();
    out.assert_success();
    out
}

/// Asserts that `dir` holds nothing that looks like a backup: no `aos-backup-*` file of any kind
/// (finished, `.partial`, `.meta.json`), no folder archive.
#[track_caller]
fn assert_no_backup_left(dir: &Path, out: &Output) {
    let left: Vec<String> = names_in(dir)
        .into_iter()
        .filter(|n| n.starts_with("aos-backup-") || n.ends_with(".partial"))
        .collect();
    assert!(
        left.is_empty(),
        "files left in {}: {left:?}\n{out}",
        dir.display()
    );
}

/// Asserts a failure: exit `code`, nothing on stdout, exactly one `error:` line containing every
/// `in_error` and one `hint:` line containing every `in_hint` (case-insensitive), no password.
#[track_caller]
fn assert_failure(out: &Output, code: i32, in_error: &[&str], in_hint: &[&str]) {
    out.assert_code(code);
    assert_eq!(out.stdout, "", "a failure prints nothing on stdout:\n{out}");
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    let hints: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("hint: "))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error: line:\n{out}");
    assert_eq!(hints.len(), 1, "expected one hint: line:\n{out}");
    let (error, hint) = (errors[0].to_lowercase(), hints[0].to_lowercase());
    for needle in in_error {
        assert!(
            error.contains(&needle.to_lowercase()),
            "the error line lacks {needle:?}:\n{out}"
        );
    }
    for needle in in_hint {
        assert!(
            hint.contains(&needle.to_lowercase()),
            "the hint lacks {needle:?}:\n{out}"
        );
    }
    assert_streams_have_no_secret(out);
}

/// Asserts that neither stdout nor stderr holds the app password (the command line may).
#[track_caller]
fn assert_streams_have_no_secret(out: &Output) {
    assert_no_secret(&out.stdout, &format!("stdout of {}", out.command));
    assert_no_secret(&out.stderr, &format!("stderr of {}", out.command));
}

/// Asserts that `text` holds the app password in no form (raw, percent-encoded, or any part).
#[track_caller]
fn assert_no_secret(text: &str, what: &str) {
    for secret in [
        APP_PASSWORD,
        &harness::app_password_encoded(),
        PASSWORD_MARK,
    ] {
        assert!(
            !text.contains(secret),
            "{what} shows the password ({secret:?}):\n{text}"
        );
    }
}

/// Asserts `file` has permissions `mode` (the permission bits only).
#[track_caller]
fn assert_mode(file: &Path, mode: u32) {
    let actual = fs::metadata(file).unwrap().permissions().mode() & 0o777;
    assert_eq!(actual, mode, "mode of {}: {actual:o}", file.display());
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Tables as aos-backup counts them: plain, partitioned, foreign and materialized views in user
/// schemas, not owned by an extension.
fn table_count(db: &str) -> u64 {
    server()
        .psql(
            db,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p', 'f', 'm')
                AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
                AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                   AND d.objid = c.oid AND d.deptype = 'e')",
        )
        .parse()
        .unwrap()
}

/// A folder to give as `PG_BIN`: the real `pg_dump`, `pg_restore` and `psql` (symlinks), except
/// for the `(name, script)` pairs, written as executable shell scripts. In scripts, `@REAL@` is
/// replaced by the folder of the real binaries.
pub fn fake_pg_bin(scripts: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("aos-backup-it-pgbin.")
        .tempdir()
        .unwrap();
    let real = &server().bindir;
    for tool in ["pg_dump", "pg_restore", "psql"] {
        let path = dir.path().join(tool);
        match scripts.iter().find(|(name, _)| *name == tool) {
            Some((_, script)) => {
                fs::write(
                    &path,
                    script.replace("@REAL@", &real.to_string_lossy()).as_bytes(),
                )
                .unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            }
            None => std::os::unix::fs::symlink(real.join(tool), &path).unwrap(),
        }
    }
    dir
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs a client program of the test server's installation with a clean environment.
fn run_tool(tool: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = Command::new(server().bindir.join(tool))
        .args(args)
        .env_clear()
        .env("PGPASSFILE", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---------------------------------------------------------------------------------------------
// 1. Round trip of the rich schema
// ---------------------------------------------------------------------------------------------

#[test]
fn rich_schema_round_trips_into_an_empty_database() {
    let pg = server();
    let source = pg.create_db("core_rich_src");
    pg.psql(&source, harness::rich_schema_sql());

    let before = chrono::Utc::now();
    let cmd = backup(&pg.tcp_url(&source), &[]);
    let (out, file) = backed_up(&cmd);
    let after = chrono::Utc::now();
    assert_streams_have_no_secret(&out);

    // aos-backup-YYYYMMDD-HHMMSS.dump.zst, stamped with the time of the backup, private.
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let stamp = name
        .strip_prefix("aos-backup-")
        .and_then(|n| n.strip_suffix(".dump.zst"))
        .unwrap_or_else(|| panic!("unexpected name {name}"));
    let time = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d-%H%M%S")
        .unwrap_or_else(|e| panic!("{name}: the time stamp {stamp:?} does not parse: {e}"))
        .and_utc();
    assert!(
        time >= before - chrono::Duration::seconds(1) && time <= after,
        "{name} is not stamped with the time of the backup ({before} .. {after})"
    );
    assert_mode(&file, 0o600);
    assert_mode(&file.with_file_name(format!("{name}.meta.json")), 0o600);
    let bytes = fs::read(&file).unwrap();
    assert!(
        bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "not a zstd file"
    );
    assert!(
        zstd::decode_all(&bytes[..]).unwrap().starts_with(b"PGDMP"),
        "not a custom archive inside"
    );
    let meta = sidecar(&file);
    assert_eq!(meta["sha256"], sha256_hex(&bytes));
    assert_eq!(meta["size_bytes"], bytes.len() as u64);
    assert_eq!(meta["tables"], table_count(&source));
    assert_no_secret(&meta.to_string(), "the sidecar");

    let empty = pg.create_db("core_rich_empty");
    let out = restored(&file, &empty);
    assert_streams_have_no_secret(&out);
    assert_eq!(out.stdout, "", "a restore prints nothing on stdout:\n{out}");
    assert_eq!(pg.table_contents(&empty), pg.table_contents(&source));
    assert_eq!(pg.dump_schema(&empty), pg.dump_schema(&source));

    // --json: the report of a second backup describes its file.
    let json_out = Cmd::new()
        .args(["backup", "--json"])
        .env("DATABASE_URL", pg.tcp_url(&source))
        .current_dir(cmd.dir())
        .run();
    json_out.assert_success();
    assert_streams_have_no_secret(&json_out);
    let report = json_out.json();
    let path = cmd
        .dir()
        .join(report["path"].as_str().expect("path is a string"));
    assert_ne!(path, file, "a second backup gets its own file");
    let bytes = fs::read(&path).unwrap();
    assert_eq!(report["sha256"], sha256_hex(&bytes));
    assert_eq!(report["size_bytes"], bytes.len() as u64);
    assert_eq!(report["tables"], table_count(&source));
    pg.drop_db(&source);
    pg.drop_db(&empty);
}

/// Backs up `source`, restores it over `target` (the rich schema with other data) and checks
/// that `target` then equals `source`, schema and data.
fn assert_restores_over_a_populated_copy(source: &str, target: &str) {
    let pg = server();
    pg.psql(
        target,
        "SET ROLE app;
         UPDATE public.customers SET name = 'changed', nickname = NULL WHERE id <= 50;
         DELETE FROM \"données\".\"Größe\" WHERE \"Wert\" IS NULL;
         INSERT INTO public.customers (email, name, password_hash, created_at)
              SELECT 'extra' || g || '@example.com', 'Extra ' || g, '\\x00', '2020-01-01'
                FROM generate_series(1, 25) g;
         SELECT setval('public.ticket_seq', 99999);",
    );
    let contents = pg.table_contents(source);
    assert_ne!(pg.table_contents(target), contents, "the target differs");
    let cmd = backup(&pg.tcp_url(source), &[]);
    let (_, file) = backed_up(&cmd);
    let out = restored(&file, target);
    assert_streams_have_no_secret(&out);
    assert_eq!(pg.table_contents(target), contents);
    assert_eq!(pg.dump_schema(target), pg.dump_schema(source));
}

#[test]
fn rich_schema_without_partition_keys_restores_over_a_populated_copy() {
    // Everything of the rich schema but the primary key of its partitioned table (and the foreign
    // key that needs it): the restore path without the partition case of the test below.
    let pg = server();
    let source = pg.create_db("core_rich_nopk_src");
    let target = pg.create_db("core_rich_nopk_dst");
    for db in [&source, &target] {
        pg.psql(db, harness::rich_schema_sql());
        pg.psql(
            db,
            "SET client_min_messages = warning; SET ROLE app;
             ALTER TABLE billing.invoices DROP CONSTRAINT invoices_pkey CASCADE;",
        );
    }
    assert_restores_over_a_populated_copy(&source, &target);
    pg.drop_db(&source);
    pg.drop_db(&target);
}

/// Regression: bare `pg_restore --clean` drops the primary key of each partition on its own
/// (`ALTER TABLE ONLY billing.invoices_2025 DROP CONSTRAINT invoices_2025_pkey`) before the
/// parent's, which PostgreSQL refuses ("cannot drop inherited constraint"), so a database with a
/// partitioned table that has a primary key could not be restored over itself. aos-backup feeds
/// pg_restore's script to psql and guards the clean phase (`src/sqlfeed.rs`).
#[test]
fn rich_schema_restores_over_a_populated_copy() {
    let pg = server();
    let source = pg.create_db("core_rich_full_src");
    let target = pg.create_db("core_rich_full_dst");
    for db in [&source, &target] {
        pg.psql(db, harness::rich_schema_sql());
    }
    assert_restores_over_a_populated_copy(&source, &target);
    pg.drop_db(&source);
    pg.drop_db(&target);
}

#[test]
fn a_failed_restore_over_a_populated_database_leaves_it_as_it_was() {
    // A view of the target depends on a table of the backup: pg_restore --clean cannot drop the
    // table, fails, and the single transaction leaves the target untouched.
    let pg = server();
    let source = small_db("core_failed_restore_src");
    let target = small_db("core_failed_restore_dst");
    pg.psql(
        &target,
        "SET ROLE app;
         UPDATE items SET name = 'kept' WHERE id <= 10;
         CREATE VIEW item_names AS SELECT name FROM items;",
    );
    let before = (pg.table_contents(&target), pg.dump_schema(&target));
    let cmd = backup(&pg.tcp_url(&source), &[]);
    let (_, file) = backed_up(&cmd);
    let out = restore(&pg.tcp_url(&target), &file).run();
    assert_failure(
        &out,
        1,
        &[
            "rolled back",
            &target,
            "psql failed",
            "could not drop",
            "depend",
        ],
        &["-v"],
    );
    assert_eq!(
        (pg.table_contents(&target), pg.dump_schema(&target)),
        before
    );
    assert!(file.is_file(), "the backup is still there");
    pg.drop_db(&source);
    pg.drop_db(&target);
}

// ---------------------------------------------------------------------------------------------
// 2. Every compression and format
// ---------------------------------------------------------------------------------------------

#[test]
fn every_compression_and_format_round_trips_with_its_extension() {
    let pg = server();
    let source = small_db("core_formats_src");
    let contents = pg.table_contents(&source);
    type Check = fn(&Path);
    let cases: [(&[&str], &str, Check); 5] = [
        (&["--compression", "gzip"], ".dump.gz", |p| {
            let bytes = fs::read(p).unwrap();
            assert!(bytes.starts_with(&[0x1f, 0x8b]), "not gzip");
            let mut inner = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut inner)
                .unwrap();
            assert!(inner.starts_with(b"PGDMP"));
        }),
        (&["--compression", "none"], ".dump", |p| {
            let bytes = fs::read(p).unwrap();
            assert!(bytes.starts_with(b"PGDMP"));
            assert!(
                contains(&bytes, b"item 199"),
                "the rows are stored as they are"
            );
            assert_eq!(sidecar(p)["compression"], "none");
        }),
        (&["--compression", "pg_dump"], ".dump", |p| {
            let bytes = fs::read(p).unwrap();
            assert!(bytes.starts_with(b"PGDMP"));
            assert!(
                !contains(&bytes, b"item 199"),
                "pg_dump compressed the rows"
            );
            assert_eq!(sidecar(p)["compression"], "pg_dump");
        }),
        (&["--format", "plain"], ".sql.zst", |p| {
            let sql = zstd::decode_all(&fs::read(p).unwrap()[..]).unwrap();
            let sql = String::from_utf8(sql).unwrap();
            assert!(sql.contains("PostgreSQL database dump complete"), "{sql}");
        }),
        (&["--format", "directory", "--jobs", "2"], ".dir", |p| {
            assert!(p.is_dir() && p.join("toc.dat").is_file());
            assert_eq!(sidecar(p)["format"], "directory");
        }),
    ];
    for (args, ext, check) in cases {
        let cmd = backup(&pg.tcp_url(&source), args);
        let (out, file) = backed_up(&cmd);
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("aos-backup-") && name.ends_with(ext),
            "{args:?}: {name} does not end with {ext}"
        );
        let bare = name.strip_prefix("aos-backup-").unwrap();
        assert_eq!(
            bare.len() - ext.len(),
            "YYYYMMDD-HHMMSS".len(),
            "{args:?}: {name} has something between the stamp and {ext}"
        );
        check(&file);
        let target = pg.create_db("core_formats_dst");
        let out_restore = restored(&file, &target);
        assert_eq!(
            pg.table_contents(&target),
            contents,
            "{args:?} did not round trip:\n{out}\n{out_restore}"
        );
        if args.contains(&"plain") {
            assert!(
                out_restore.stderr.contains("plain format"),
                "a plain dump is restored through psql:\n{out_restore}"
            );
        }
        pg.drop_db(&target);
    }
    pg.drop_db(&source);
}

// ---------------------------------------------------------------------------------------------
// 3. Files made by other tools
// ---------------------------------------------------------------------------------------------

#[test]
fn files_made_by_other_tools_restore_whatever_their_names() {
    let pg = server();
    let source = small_db("core_foreign_src");
    let contents = pg.table_contents(&source);
    let url = pg.tcp_url(&source);
    let folder = tempfile::tempdir().unwrap();
    let custom = run_tool("pg_dump", &["-Fc".as_ref(), "-d".as_ref(), url.as_ref()]);
    let plain = run_tool(
        "pg_dump",
        &["--no-owner".as_ref(), "-d".as_ref(), url.as_ref()],
    );
    assert!(custom.starts_with(b"PGDMP") && plain.starts_with(b"--"));
    let tar = run_tool("pg_dump", &["-Ft".as_ref(), "-d".as_ref(), url.as_ref()]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    let gzipped = gz.finish().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &custom).unwrap();
    let gzipped_custom = gz.finish().unwrap();

    for (name, bytes, format) in [
        ("pg_dump-Fc.dump", &custom, "custom"),
        ("backup_2024.sql.gz", &gzipped, "plain"),
        ("schema-and-data.sql", &plain, "plain"),
        ("misnamed-custom-archive.sql", &custom, "custom"),
        ("pg_dump-Fc.dump.gz", &gzipped_custom, "custom"),
        ("pg_dump-Ft.tar", &tar, "tar"),
    ] {
        let file = folder.path().join(name);
        fs::write(&file, bytes).unwrap();
        let target = pg.create_db("core_foreign_dst");
        let out = restored(&file, &target);
        assert_eq!(
            pg.table_contents(&target),
            contents,
            "{name} did not round trip:\n{out}"
        );
        assert!(
            out.stderr.contains(&format!("{format} format")),
            "{name} was not read as {format}:\n{out}"
        );
        assert_eq!(fs::read(&file).unwrap(), *bytes, "{name} was changed");
        pg.drop_db(&target);
    }

    // A directory archive made by pg_dump -Fd.
    let dir = folder.path().join("pg_dump-Fd");
    run_tool(
        "pg_dump",
        &[
            "-Fd".as_ref(),
            "-f".as_ref(),
            dir.as_os_str(),
            "-d".as_ref(),
            url.as_ref(),
        ],
    );
    let target = pg.create_db("core_foreign_dst");
    let out = restored(&dir, &target);
    assert_eq!(pg.table_contents(&target), contents, "{out}");
    assert!(out.stderr.contains("directory format"), "{out}");
    pg.drop_db(&target);
    pg.drop_db(&source);
}

// ---------------------------------------------------------------------------------------------
// 4. Connection forms
// ---------------------------------------------------------------------------------------------

#[test]
fn a_prisma_url_with_schema_and_connection_limit_works() {
    let pg = server();
    let source = small_db("core_prisma");
    let url = format!("{}?schema=public&connection_limit=5", pg.tcp_url(&source));
    let cmd = backup(&url, &[]);
    let (out, file) = backed_up(&cmd);
    assert_streams_have_no_secret(&out);
    let target = pg.create_db("core_prisma_dst");
    let target_url = format!("{}?schema=public&connection_limit=5", pg.tcp_url(&target));
    restore(&target_url, &file).run().assert_success();
    assert_eq!(pg.table_contents(&target), pg.table_contents(&source));
    pg.drop_db(&source);
    pg.drop_db(&target);
}

#[test]
fn a_unix_socket_url_works() {
    let pg = server();
    let source = small_db("core_socket");
    let cmd = backup(&pg.socket_url(&source), &[]);
    let (_, file) = backed_up(&cmd);
    let target = pg.create_db("core_socket_dst");
    restore(&pg.socket_url(&target), &file)
        .run()
        .assert_success();
    assert_eq!(pg.table_contents(&target), pg.table_contents(&source));
    pg.drop_db(&source);
    pg.drop_db(&target);
}

#[test]
fn database_url_from_a_dot_env_file_in_the_working_folder_works() {
    let pg = server();
    let source = small_db("core_dotenv");
    let cmd = Cmd::new().arg("backup");
    fs::write(
        cmd.dir().join(".env"),
        format!(
            "# the app's settings\nNODE_ENV=development\nDATABASE_URL=\"{}\"\n",
            pg.tcp_url(&source)
        ),
    )
    .unwrap();
    let (out, file) = backed_up(&cmd);
    assert_streams_have_no_secret(&out);
    assert_eq!(sidecar(&file)["database"], source.as_str());
    pg.drop_db(&source);
}

#[test]
fn database_url_flag_works_and_warns_that_the_password_is_visible() {
    let pg = server();
    let source = small_db("core_flag");
    let cmd = Cmd::new()
        .args(["backup", "--database-url"])
        .arg(pg.tcp_url(&source));
    let (out, file) = backed_up(&cmd);
    assert_eq!(sidecar(&file)["database"], source.as_str());
    let warning = out
        .stderr
        .lines()
        .find(|l| l.contains("--database-url"))
        .unwrap_or_else(|| panic!("no warning about the password on the command line:\n{out}"));
    assert!(
        warning.contains("WARN") && warning.contains("ps") && warning.contains("DATABASE_URL"),
        "{warning}"
    );
    assert_streams_have_no_secret(&out);
    pg.drop_db(&source);
}

// ---------------------------------------------------------------------------------------------
// 5. Secrets
// ---------------------------------------------------------------------------------------------

/// A `PG_BIN` whose tools record their argv (one argument per line) and environment in `log`,
/// then run the real tool.
fn recording_pg_bin(log: &Path) -> TempDir {
    let script = |tool: &str| {
        format!(
            "#!/bin/sh\n\
             printf '%s\\n' \"== {tool}\" \"$@\" >> '{log}/argv.log'\n\
             {{ echo '== {tool}'; env; }} >> '{log}/env.log'\n\
             exec '@REAL@/{tool}' \"$@\"\n",
            log = log.display()
        )
    };
    let (dump, restore, psql) = (script("pg_dump"), script("pg_restore"), script("psql"));
    fake_pg_bin(&[
        ("pg_dump", dump.as_str()),
        ("pg_restore", restore.as_str()),
        ("psql", psql.as_str()),
    ])
}

#[test]
fn the_password_never_reaches_argv_output_logs_or_metadata() {
    let pg = server();
    let source = small_db("core_secrets_src");
    let target = pg.create_db("core_secrets_dst");
    let log = tempfile::tempdir().unwrap();
    let bin = recording_pg_bin(log.path());
    let mut outputs = Vec::new();

    // Backups: default, -v, -vv and --json, custom and plain; restores of both.
    let cmd = backup(&pg.tcp_url(&source), &["-v"]).env("PG_BIN", bin.path());
    let (out, custom) = backed_up(&cmd);
    assert!(
        out.stderr.contains("DEBUG"),
        "-v shows debug output:\n{out}"
    );
    outputs.push(out);
    let meta = fs::read_to_string(custom.with_file_name(format!(
        "{}.meta.json",
        custom.file_name().unwrap().to_string_lossy()
    )))
    .unwrap();
    assert_no_secret(&meta, "the sidecar");
    for args in [&["-vv", "--format", "plain"][..], &["--json"][..], &[][..]] {
        let out = Cmd::new()
            .arg("backup")
            .args(args)
            .env("DATABASE_URL", pg.tcp_url(&source))
            .env("PG_BIN", bin.path())
            .current_dir(cmd.dir())
            .run();
        out.assert_success();
        outputs.push(out);
    }
    let plain = names_in(&cmd.dir().join("backups"))
        .into_iter()
        .find(|n| n.ends_with(".sql.zst"))
        .map(|n| cmd.dir().join("backups").join(n))
        .expect("the plain backup");
    for file in [&custom, &plain] {
        let out = restore(&pg.tcp_url(&target), file)
            .arg("-vv")
            .env("PG_BIN", bin.path())
            .run();
        out.assert_success();
        outputs.push(out);
    }
    assert_eq!(pg.table_contents(&target), pg.table_contents(&source));
    for name in names_in(&cmd.dir().join("backups")) {
        if name.ends_with(".meta.json") {
            let text = fs::read_to_string(cmd.dir().join("backups").join(&name)).unwrap();
            assert_no_secret(&text, &name);
        }
    }

    // Failures: a wrong password (the wrong one does not show either), and a tool that prints
    // the password in its error message.
    let wrong = "Wr0ng-p@ss%word";
    let wrong_url = format!(
        "postgresql://app:{}@127.0.0.1:{}/{source}",
        harness::percent_encode(wrong),
        pg.port
    );
    for args in [&[][..], &["-vv"][..], &["--json"][..]] {
        let cmd = backup(&wrong_url, args).env("PG_BIN", bin.path());
        let out = cmd.run();
        out.assert_code(7);
        assert!(
            out.to_string().contains("password authentication failed"),
            "{out}"
        );
        assert!(
            !out.stdout.contains("Wr0ng") && !out.stderr.contains("Wr0ng"),
            "the wrong password shows:\n{out}"
        );
        if args.is_empty() {
            assert_failure(&out, 7, &["password authentication failed"], &["password"]);
        }
        assert_no_backup_left(&cmd.dir().join("backups"), &out);
        outputs.push(out);
    }
    let leaky = fake_pg_bin(&[(
        "pg_dump",
        "#!/bin/sh\n\
         if [ \"$1\" = --version ]; then exec '@REAL@/pg_dump' \"$@\"; fi\n\
         echo \"pg_dump: error: connection to server failed: password=$PGPASSWORD rejected\" >&2\n\
         exit 1\n",
    )]);
    let cmd_leak = backup(&pg.tcp_url(&source), &["-v"]).env("PG_BIN", leaky.path());
    let out = cmd_leak.run();
    assert_failure(&out, 1, &["pg_dump failed", "password=********"], &["-v"]);
    assert_no_backup_left(&cmd_leak.dir().join("backups"), &out);
    outputs.push(out);
    let out = backup(&pg.tcp_url(&source), &["-v", "--log-format", "json"])
        .env("PG_BIN", leaky.path())
        .run();
    out.assert_code(1);
    assert!(out.stderr.contains("password=********"), "{out}");
    outputs.push(out);

    for out in &outputs {
        assert_streams_have_no_secret(out);
    }
    // The tools got the password through the environment, never on their command line.
    let argv = fs::read_to_string(log.path().join("argv.log")).unwrap();
    let env = fs::read_to_string(log.path().join("env.log")).unwrap();
    for tool in ["== pg_dump", "== pg_restore", "== psql"] {
        assert!(argv.contains(tool), "{tool} did not run:\n{argv}");
    }
    assert!(argv.contains("--dbname="), "{argv}");
    assert_no_secret(&argv, "the tools' argv");
    assert!(
        env.lines()
            .any(|l| l == format!("PGPASSWORD={APP_PASSWORD}")),
        "the tools did not get PGPASSWORD"
    );
    pg.drop_db(&source);
    pg.drop_db(&target);
}

// ---------------------------------------------------------------------------------------------
// 6. Failures: exit codes, hints, nothing left behind
// ---------------------------------------------------------------------------------------------

#[test]
fn backup_without_database_url_is_a_usage_error() {
    let cmd = Cmd::new().arg("backup");
    let out = cmd.run();
    assert_failure(
        &out,
        2,
        &["DATABASE_URL is not set"],
        &["DATABASE_URL", ".env", "--database-url"],
    );
    assert_no_backup_left(&cmd.dir().join("backups"), &out);
}

#[test]
fn backup_with_an_invalid_url_is_a_usage_error_that_hides_the_password() {
    let pg = server();
    for (url, in_error) in [
        ("mysql://app:pw@localhost/db".to_string(), "scheme"),
        (
            format!(
                "postgresql://app:{}@127.0.0.1:99999/db",
                harness::app_password_encoded()
            ),
            "port",
        ),
        (
            format!(
                "postgresql://app:{}@127.0.0.1:{}/db?sslmode=sometimes",
                harness::app_password_encoded(),
                pg.port
            ),
            "sslmode",
        ),
    ] {
        let cmd = backup(&url, &[]);
        let out = cmd.run();
        assert_failure(
            &out,
            2,
            &["invalid DATABASE_URL", in_error],
            &["postgresql://"],
        );
        assert_no_backup_left(&cmd.dir().join("backups"), &out);
    }
}

#[test]
fn backup_to_a_closed_port_fails_to_connect_with_a_hint_about_host_and_port() {
    let port = closed_port();
    let url = format!(
        "postgresql://app:{}@127.0.0.1:{port}/db",
        harness::app_password_encoded()
    );
    let cmd = backup(&url, &[]);
    let out = cmd.run();
    assert_failure(
        &out,
        7,
        &["cannot connect", &port.to_string()],
        &["running", "host", "port"],
    );
    assert_no_backup_left(&cmd.dir().join("backups"), &out);
}

#[test]
fn backup_of_a_missing_database_fails_to_connect_with_a_hint_about_createdb() {
    let pg = server();
    let cmd = backup(&pg.tcp_url("core_no_such_database"), &[]);
    let out = cmd.run();
    assert_failure(
        &out,
        7,
        &["core_no_such_database", "does not exist"],
        &["createdb"],
    );
    assert_no_backup_left(&cmd.dir().join("backups"), &out);
}

#[test]
fn backup_with_an_empty_pg_bin_fails_naming_pg_bin() {
    let pg = server();
    let db = small_db("core_no_tools");
    let empty = tempfile::tempdir().unwrap();
    let cmd = backup(&pg.tcp_url(&db), &[]).env("PG_BIN", empty.path());
    let out = cmd.run();
    assert_failure(
        &out,
        6,
        &[
            "pg_dump not found",
            "PG_BIN",
            &empty.path().to_string_lossy(),
        ],
        &["PG_BIN"],
    );
    assert_no_backup_left(&cmd.dir().join("backups"), &out);
    pg.drop_db(&db);
}

#[test]
fn backup_with_a_pg_dump_older_than_the_server_fails_with_both_versions_and_the_fix() {
    let pg = server();
    let db = small_db("core_old_tools");
    let ran = tempfile::tempdir().unwrap();
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$1\" = --version ]; then echo 'pg_dump (PostgreSQL) 12.3'; exit 0; fi\n\
         touch '{}/dumped'\n\
         exec '@REAL@/pg_dump' \"$@\"\n",
        ran.path().display()
    );
    let bin = fake_pg_bin(&[("pg_dump", &script)]);
    let cmd = backup(&pg.tcp_url(&db), &[]).env("PG_BIN", bin.path());
    let out = cmd.run();
    let server_version = pg.psql("postgres", "SHOW server_version");
    let server_version = server_version.split_whitespace().next().unwrap();
    assert_failure(
        &out,
        6,
        &["12.3", server_version, "older than the server"],
        &[&format!("postgresql-client-{}", pg.major), "PG_BIN"],
    );
    assert!(
        !ran.path().join("dumped").exists(),
        "the old pg_dump was run"
    );
    assert_no_backup_left(&cmd.dir().join("backups"), &out);
    pg.drop_db(&db);
}

/// A fake pg_dump that writes part of a dump (to stdout, or into the `--file=` folder of a
/// directory archive, whose name it appends to `log`), then ends with `ending` (shell).
fn failing_pg_dump(log: &Path, ending: &str) -> TempDir {
    fake_pg_bin(&[(
        "pg_dump",
        &format!(
            "#!/bin/sh\n\
             if [ \"$1\" = --version ]; then exec '@REAL@/pg_dump' \"$@\"; fi\n\
             for a in \"$@\"; do\n\
               case \"$a\" in --file=*) dir=\"${{a#--file=}}\";; esac\n\
             done\n\
             echo \"${{dir:-stdout}}\" >> '{log}'\n\
             if [ -n \"$dir\" ]; then\n\
               mkdir -p \"$dir\" && printf 'PGDMP' > \"$dir/toc.dat\" && head -c 300000 /dev/urandom > \"$dir/3001.dat.gz\"\n\
             else\n\
               printf 'PGDMP'; head -c 600000 /dev/urandom\n\
             fi\n\
             {ending}\n",
            log = log.display()
        ),
    )])
}

/// Checks the log of [`failing_pg_dump`]: `runs` runs, the last into a directory archive's
/// temporary folder, the others to stdout.
#[track_caller]
fn assert_partial_output_was_written(log: &Path, runs: usize) {
    let log = fs::read_to_string(log).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), runs, "{log}");
    assert!(lines[..runs - 1].iter().all(|l| *l == "stdout"), "{log}");
    assert!(lines[runs - 1].ends_with(".dir.partial"), "{log}");
}

#[test]
fn pg_dump_failing_midway_leaves_no_file_and_hints_at_privileges() {
    let pg = server();
    let db = small_db("core_dump_fails");
    let log = tempfile::NamedTempFile::new().unwrap();
    let bin = failing_pg_dump(
        log.path(),
        "echo 'pg_dump: error: query failed: ERROR:  permission denied for table t' >&2; exit 1",
    );
    for args in [
        &[][..],
        &["--compression", "none"][..],
        &["--format", "plain"][..],
        &["--format", "directory", "--jobs", "2"][..],
    ] {
        let cmd = backup(&pg.tcp_url(&db), args).env("PG_BIN", bin.path());
        let out = cmd.run();
        assert_failure(
            &out,
            1,
            &["pg_dump failed", "permission denied for table t"],
            &["privileges"],
        );
        assert_no_backup_left(&cmd.dir().join("backups"), &out);
    }
    assert_partial_output_was_written(log.path(), 4);
    pg.drop_db(&db);
}

#[test]
fn pg_dump_crashing_midway_leaves_no_file() {
    let pg = server();
    let db = small_db("core_dump_crashes");
    let log = tempfile::NamedTempFile::new().unwrap();
    let bin = failing_pg_dump(
        log.path(),
        "echo 'pg_dump: dumping contents of table public.items' >&2; kill -9 $$",
    );
    for args in [&[][..], &["--format", "directory"][..]] {
        let cmd = backup(&pg.tcp_url(&db), args).env("PG_BIN", bin.path());
        let out = cmd.run();
        assert_failure(&out, 1, &["pg_dump failed", "killed by signal 9"], &["-v"]);
        assert_no_backup_left(&cmd.dir().join("backups"), &out);
    }
    assert_partial_output_was_written(log.path(), 2);
    pg.drop_db(&db);
}

#[test]
fn backup_dir_that_is_a_regular_file_is_a_clear_error_and_the_file_is_untouched() {
    let pg = server();
    let db = small_db("core_dir_is_file");
    let cmd = Cmd::new()
        .arg("backup")
        .env("DATABASE_URL", pg.tcp_url(&db));
    let file = cmd.dir().join("not-a-folder");
    fs::write(&file, b"precious").unwrap();
    // The file itself, and a folder below it.
    for backup_dir in [file.clone(), file.join("sub")] {
        let out = Cmd::new()
            .arg("backup")
            .env("DATABASE_URL", pg.tcp_url(&db))
            .env("BACKUP_DIR", &backup_dir)
            .current_dir(cmd.dir())
            .run();
        assert!(
            matches!(out.code, Some(1 | 2)),
            "expected exit code 1 or 2:\n{out}"
        );
        assert_failure(
            &out,
            out.code.unwrap(),
            &["not a folder", &backup_dir.to_string_lossy()],
            &["BACKUP_DIR", "folder"],
        );
        assert!(
            !out.stderr.contains("permission"),
            "not a permission problem:\n{out}"
        );
        assert_eq!(fs::read(&file).unwrap(), b"precious");
        assert_eq!(names_in(cmd.dir()), vec!["not-a-folder".to_string()]);
    }
    pg.drop_db(&db);
}

#[test]
fn a_full_disk_fails_with_a_hint_and_leaves_no_backup() {
    let pg = server();
    let db = pg.create_db("core_disk_full");
    // About 2 MB of incompressible-ish text: more than the 256 kB disk.
    pg.psql(
        &db,
        "SET ROLE app;
         CREATE TABLE big (id int, payload text);
         INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 30000) g;",
    );
    // The disk: a 256 kB tmpfs as BACKUP_DIR (dropped after the command, before its folder).
    let disk = tempfile::tempdir().unwrap();
    let backups = disk.path().join("backups");
    let mounted = Tmpfs::mount(&backups, "256k");
    // Without permission to mount (not root), a fake pg_dump reports the full disk instead.
    let fake = fake_pg_bin(&[(
        "pg_dump",
        "#!/bin/sh\n\
         if [ \"$1\" = --version ]; then exec '@REAL@/pg_dump' \"$@\"; fi\n\
         head -c 100000 /dev/zero\n\
         echo 'pg_dump: error: could not write to output file: No space left on device' >&2\n\
         exit 1\n",
    )]);
    let mut cmd = backup(&pg.tcp_url(&db), &["--compression", "none"]).env("BACKUP_DIR", &backups);
    if mounted.is_none() {
        eprintln!("mount is not permitted here: simulating the full disk with a fake pg_dump");
        cmd = cmd.env("PG_BIN", fake.path());
    }
    let out = cmd.run();
    assert_failure(&out, 1, &["No space left on device"], &["disk is full"]);
    assert_no_backup_left(&backups, &out);
    if mounted.is_some() {
        // The partial file is gone: the disk is empty again (but for the lock file).
        let free = Command::new("df")
            .args(["--output=used", "-B1"])
            .arg(&backups)
            .output()
            .unwrap();
        let used: u64 = String::from_utf8_lossy(&free.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(used <= 8192, "{used} bytes still used on the tmpfs:\n{out}");
    }
    drop(cmd);
    drop(mounted);
    pg.drop_db(&db);
}

// ---------------------------------------------------------------------------------------------
// 7. Never overwrite
// ---------------------------------------------------------------------------------------------

const NOW: &str = "2025-12-13T12:00:00Z";

#[test]
fn two_backups_in_the_same_second_get_two_files_and_the_first_is_unchanged() {
    let pg = server();
    let db = small_db("core_same_second");
    let cmd = backup(&pg.tcp_url(&db), &[]).env("AOS_BACKUP_NOW", NOW);
    let (_, first) = backed_up(&cmd);
    assert_eq!(
        first.file_name().unwrap(),
        "aos-backup-20251213-120000.dump.zst"
    );
    let first_bytes = fs::read(&first).unwrap();
    let first_meta =
        fs::read(first.with_file_name("aos-backup-20251213-120000.dump.zst.meta.json")).unwrap();
    pg.psql(
        &db,
        "SET ROLE app; INSERT INTO items (name) VALUES ('added later')",
    );

    let (_, second) = backed_up(&cmd);
    assert_eq!(
        second.file_name().unwrap(),
        "aos-backup-20251213-120000-2.dump.zst"
    );
    assert_eq!(
        fs::read(&first).unwrap(),
        first_bytes,
        "the first file changed"
    );
    assert_eq!(
        fs::read(first.with_file_name("aos-backup-20251213-120000.dump.zst.meta.json")).unwrap(),
        first_meta,
        "the first sidecar changed"
    );
    assert_ne!(fs::read(&second).unwrap(), first_bytes);
    assert_eq!(sidecar(&second)["id"], "20251213-120000-2");
    let second_bytes = fs::read(&second).unwrap();
    let (_, third) = backed_up(&cmd);
    assert_eq!(
        third.file_name().unwrap(),
        "aos-backup-20251213-120000-3.dump.zst"
    );
    assert_eq!(fs::read(&first).unwrap(), first_bytes);
    assert_eq!(fs::read(&second).unwrap(), second_bytes);

    // Each holds its own data.
    let target = pg.create_db("core_same_second_dst");
    restored(&first, &target);
    assert_eq!(
        pg.psql(
            &target,
            "SELECT count(*) FROM items WHERE name = 'added later'"
        ),
        "0"
    );
    restored(&second, &target);
    assert_eq!(pg.table_contents(&target), pg.table_contents(&db));
    pg.drop_db(&db);
    pg.drop_db(&target);
}

#[test]
fn a_label_is_appended_to_the_name_and_an_invalid_label_is_a_usage_error() {
    let pg = server();
    let db = small_db("core_label");
    let cmd = backup(&pg.tcp_url(&db), &["--name", "pre-deploy"]).env("AOS_BACKUP_NOW", NOW);
    let (_, file) = backed_up(&cmd);
    assert_eq!(
        file.file_name().unwrap(),
        "aos-backup-20251213-120000-pre-deploy.dump.zst"
    );
    assert_eq!(sidecar(&file)["label"], "pre-deploy");
    let (_, again) = backed_up(&cmd);
    assert_eq!(
        again.file_name().unwrap(),
        "aos-backup-20251213-120000-pre-deploy-2.dump.zst"
    );
    assert!(file.is_file());

    for bad in ["../escape", "two words", "-dash", "ä", ""] {
        let flag = format!("--name={bad}");
        let cmd = backup(&pg.tcp_url(&db), &[&flag]).env("AOS_BACKUP_NOW", NOW);
        let out = cmd.run();
        assert_failure(&out, 2, &["invalid label"], &["--name"]);
        assert_no_backup_left(&cmd.dir().join("backups"), &out);
        assert_no_backup_left(cmd.dir(), &out);
    }
    pg.drop_db(&db);
}

// ---------------------------------------------------------------------------------------------
// 8. Logs
// ---------------------------------------------------------------------------------------------

#[test]
fn json_log_format_makes_every_stderr_line_json() {
    let pg = server();
    let db = small_db("core_json_logs");
    let cmd = backup(&pg.tcp_url(&db), &["--log-format", "json", "-v"]);
    let (ok, _) = backed_up(&cmd);
    let failed = Cmd::new()
        .args(["backup", "--log-format", "json"])
        .env("DATABASE_URL", pg.tcp_url("core_json_logs_missing"))
        .run();
    failed.assert_code(7);
    for out in [&ok, &failed] {
        assert!(!out.stderr.trim().is_empty(), "no log lines:\n{out}");
        for line in out.stderr.lines() {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{out}"));
            assert!(
                value["level"].is_string() && value["message"].is_string(),
                "{line}"
            );
        }
        assert_streams_have_no_secret(out);
    }
    let error: serde_json::Value = failed
        .stderr
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no ERROR line:\n{failed}"));
    assert_eq!(error["exit_code"], 7);
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
    assert!(error["hint"].as_str().unwrap().contains("createdb"));
    pg.drop_db(&db);
}

#[test]
fn quiet_backup_prints_only_the_path_and_nothing_on_stderr() {
    let pg = server();
    let db = small_db("core_quiet");
    let cmd = backup(&pg.tcp_url(&db), &["-q"]);
    let (out, file) = backed_up(&cmd);
    assert_eq!(out.stderr, "", "-q prints nothing on stderr:\n{out}");
    assert_eq!(out.stdout, format!("{}\n", out.stdout_trimmed()));
    assert!(file.is_file());
    // Errors still show.
    let out = backup(&pg.tcp_url("core_quiet_missing"), &["-q"]).run();
    assert_failure(&out, 7, &["does not exist"], &["createdb"]);
    pg.drop_db(&db);
}

#[test]
fn stderr_has_no_ansi_escapes_when_it_is_not_a_terminal() {
    let pg = server();
    let db = small_db("core_no_ansi");
    let cmd = backup(&pg.tcp_url(&db), &["-v"]);
    let (ok, file) = backed_up(&cmd);
    assert!(ok.stderr.contains("INFO"), "{ok}");
    let target = pg.create_db("core_no_ansi_dst");
    let restore_out = restored(&file, &target);
    let failed = backup(&pg.tcp_url("core_no_ansi_missing"), &[]).run();
    failed.assert_code(7);
    for out in [&ok, &restore_out, &failed] {
        assert!(
            !out.stderr.contains('\u{1b}') && !out.stdout.contains('\u{1b}'),
            "ANSI escape codes:\n{out:?}"
        );
    }
    pg.drop_db(&db);
    pg.drop_db(&target);
}

/// Regression: pg_dump and pg_restore wrap large-object data in their own `BEGIN;`/`COMMIT;`.
/// Inside psql's single transaction, that inner COMMIT committed the clean phase and the data, so
/// a failure after the data section (here: an index whose name a target table already uses) left
/// a half-restored database while the restore reported a rollback.
#[test]
fn a_failure_after_large_object_data_still_rolls_everything_back() {
    let pg = server();
    let source = pg.create_db("core_lo_src");
    pg.psql(
        &source,
        "SET ROLE app;
         CREATE TABLE t AS SELECT g AS id, md5(g::text) AS val FROM generate_series(1, 1000) g;
         CREATE INDEX t_val_idx ON t (val);
         SELECT lo_from_bytea(0, 'hello large object');",
    );
    for format in ["custom", "plain"] {
        let cmd = backup(&pg.tcp_url(&source), &["--format", format]);
        let (_, file) = backed_up(&cmd);
        let target = pg.create_db("core_lo_dst");
        pg.psql(&target, "SET ROLE app; CREATE TABLE t (id int, val text); CREATE TABLE t_val_idx (x int); SELECT lo_from_bytea(0, 'target lo');");
        let before = (pg.table_contents(&target), pg.dump_schema(&target));
        let out = restore(&pg.tcp_url(&target), &file).run();
        out.assert_code(1);
        assert!(out.stderr.contains("rolled back"), "{format}: {out}");
        assert_eq!(
            (pg.table_contents(&target), pg.dump_schema(&target)),
            before,
            "{format}: the target changed although the restore failed:\n{out}"
        );
        pg.drop_db(&target);
    }
    pg.drop_db(&source);
}

/// JSON log lines carry the facts as fields for log shippers; text lines say them in words only.
#[test]
fn json_log_lines_carry_fields_and_text_lines_keep_their_words() {
    let pg = server();
    let db = small_db("logfields");
    let url = pg.tcp_url(&db);
    let json = backup(&url, &["--log-format", "json"]).run();
    json.assert_success();
    let line = json
        .stderr
        .lines()
        .find(|l| l.contains("backup complete"))
        .unwrap_or_else(|| panic!("no completion line: {}", json.stderr));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["database"], db.as_str(), "{line}");
    assert!(v["bytes"].as_u64().is_some_and(|b| b > 0), "{line}");
    assert!(v["duration_ms"].as_u64().is_some(), "{line}");
    assert_eq!(v["file"], json.stdout_trimmed(), "{line}");

    let text = backup(&url, &[]).run();
    text.assert_success();
    let line = text
        .stderr
        .lines()
        .find(|l| l.contains("backup complete"))
        .unwrap();
    assert!(
        !line.contains("duration_ms") && !line.contains("bytes="),
        "{line}"
    );
}
