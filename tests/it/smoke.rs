//! Tests that prove the test harness itself: the server, its roles and URLs, the snapshots used for
//! comparisons, the rich schema, and the command builder.

use crate::cmd::Cmd;
use crate::harness::{self, server, APP_PASSWORD, APP_ROLE, SUPERUSER, SUPER_PASSWORD};

#[test]
fn server_starts_and_answers() {
    let pg = server();
    assert!(pg.major >= 12, "unexpected major version {}", pg.major);
    assert!(pg.socket_dir.join(format!(".s.PGSQL.{}", pg.port)).exists());
    assert!(pg.data_dir.join("PG_VERSION").exists());
    assert!(pg.bindir.join("pg_dump").is_file());
    let version = pg.psql("postgres", "SHOW server_version_num");
    assert_eq!(version.parse::<u32>().unwrap() / 10000, pg.major);
    assert_eq!(pg.psql("postgres", "SHOW fsync"), "off");
    assert_eq!(pg.psql("postgres", "SHOW max_connections"), "200");
    assert_eq!(pg.psql("postgres", "SELECT current_user"), SUPERUSER);
    eprintln!(
        "PostgreSQL {} from {} started in {:?}",
        pg.major,
        pg.bindir.display(),
        pg.startup
    );
}

#[test]
fn create_db_psql_round_trip_and_drop() {
    let pg = server();
    let db = pg.create_db("smoke-Round trip");
    let other = pg.create_db("smoke-Round trip");
    assert_ne!(db, other);
    assert!(db.starts_with("smoke_round_trip_"), "{db}");
    let owner = pg.psql(
        "postgres",
        &format!(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = {}",
            harness::quote_literal(&db)
        ),
    );
    assert_eq!(owner, APP_ROLE);

    pg.psql(
        &db,
        "CREATE TABLE t (id int, v text);\nINSERT INTO t VALUES (1, 'ünï 🐘'), (2, NULL);",
    );
    assert_eq!(
        pg.psql(&db, "SELECT id, v FROM t ORDER BY id"),
        "1|ünï 🐘\n2|"
    );
    let err = pg.try_psql(&db, "SELECT * FROM missing_table").unwrap_err();
    assert!(err.contains("missing_table"), "{err}");

    pg.drop_db(&db);
    pg.drop_db(&other);
    let left = pg.psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname IN ({}, {})",
            harness::quote_literal(&db),
            harness::quote_literal(&other)
        ),
    );
    assert_eq!(left, "0");
}

#[test]
fn rich_schema_loads_and_snapshots_are_deterministic() {
    let pg = server();
    let db = pg.create_db("smoke_rich");
    assert_eq!(pg.psql(&db, harness::rich_schema_sql()), "");

    let contents = pg.table_contents(&db);
    assert_eq!(contents, pg.table_contents(&db));
    for expected in [
        "table billing.invoices_2023 (",
        "table billing.invoices_2024 (",
        "table billing.invoices_2025 (",
        "table \"données\".\"Größe\" (500 rows)",
        "table public.customers (1000 rows)",
        "table public.\"Mixed Case Table\" (4 rows)",
        "materialized view billing.monthly_revenue (36 rows)",
        "sequence public.ticket_seq last_value=4242 is_called=true",
        "sequence billing.reset_seq last_value=10 is_called=false",
        "sequence public.customers_id_seq last_value=1000 is_called=true",
        "sequence billing.invoices_id_seq last_value=3000 is_called=true",
        "large object 424201 bytes=18 md5=",
        "large object 424202 ",
        "😀😃😄",
        "Иван Петров",
        "山田 太郎",
    ] {
        assert!(
            contents.contains(expected),
            "table_contents lacks {expected:?}:\n{}",
            &contents[..contents.len().min(3000)]
        );
    }
    assert!(
        !contents.contains("billing.invoices ("),
        "partitioned parents are not listed"
    );
    let rows: usize = contents
        .lines()
        .filter_map(|l| {
            l.split_once(" (")?
                .1
                .strip_suffix(" rows)")?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert!((5000..20000).contains(&rows), "{rows} rows");

    let schema = pg.dump_schema(&db);
    assert_eq!(schema, pg.dump_schema(&db));
    for expected in [
        "CREATE EXTENSION IF NOT EXISTS pgcrypto",
        "CREATE EXTENSION IF NOT EXISTS citext",
        "CREATE SCHEMA \"données\";",
        "PARTITION BY RANGE (issued_on)",
        "CREATE MATERIALIZED VIEW billing.monthly_revenue",
        "CREATE TRIGGER customers_touch",
        "CREATE POLICY products_priced",
        "FOREIGN KEY (invoice_id, issued_on) REFERENCES billing.invoices(id, issued_on)",
    ] {
        assert!(schema.contains(expected), "dump_schema lacks {expected:?}");
    }
    assert!(!schema
        .lines()
        .any(|l| l.starts_with("--") || l.trim().is_empty()));

    // Everything belongs to app, so app can dump and restore it.
    let not_app = pg.psql(
        &db,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname IN ('public', 'billing', 'données') AND pg_get_userbyid(c.relowner) <> 'app'",
    );
    assert_eq!(not_app, "0");

    // A second load gives the same snapshots: tests may compare separately loaded databases.
    let twin = pg.create_db("smoke_rich_twin");
    pg.psql(&twin, harness::rich_schema_sql());
    assert_eq!(pg.table_contents(&twin), contents);
    assert_eq!(pg.dump_schema(&twin), schema);

    pg.drop_db(&db);
    pg.drop_db(&twin);
}

#[test]
fn rich_schema_survives_pg_dump_and_pg_restore_as_app() {
    let pg = server();
    let source = pg.create_db("smoke_dump_src");
    let target = pg.create_db("smoke_dump_dst");
    pg.psql(&source, harness::rich_schema_sql());
    let archive = tempfile::tempdir().unwrap();
    let file = archive.path().join("rich.dump");

    let run = |tool: &str, args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(pg.bindir.join(tool))
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
    };
    let source_url = pg.tcp_url(&source);
    let target_url = pg.tcp_url(&target);
    run(
        "pg_dump",
        &[
            "-Fc".as_ref(),
            "--no-owner".as_ref(),
            "-f".as_ref(),
            file.as_os_str(),
            "-d".as_ref(),
            source_url.as_ref(),
        ],
    );
    run(
        "pg_restore",
        &[
            "--no-owner".as_ref(),
            "--exit-on-error".as_ref(),
            "-d".as_ref(),
            target_url.as_ref(),
            file.as_os_str(),
        ],
    );
    assert_eq!(pg.table_contents(&target), pg.table_contents(&source));
    assert_eq!(pg.dump_schema(&target), pg.dump_schema(&source));

    // And the snapshots do see a difference.
    pg.psql(
        &target,
        "UPDATE \"données\".\"Größe\" SET emoji = '🙃' WHERE \"Wert\" IS NULL",
    );
    assert_ne!(pg.table_contents(&target), pg.table_contents(&source));
    pg.psql(
        &target,
        "CREATE INDEX extra_idx ON billing.products (title)",
    );
    assert_ne!(pg.dump_schema(&target), pg.dump_schema(&source));

    pg.drop_db(&source);
    pg.drop_db(&target);
}

#[test]
fn app_logs_in_over_tcp_with_its_password_only() {
    let pg = server();
    let db = pg.create_db("smoke_tcp");
    assert_eq!(
        pg.try_psql_tcp(APP_ROLE, APP_PASSWORD, &db, "SELECT current_user")
            .unwrap(),
        APP_ROLE
    );
    assert_eq!(
        pg.try_psql_tcp(SUPERUSER, SUPER_PASSWORD, &db, "SELECT current_user")
            .unwrap(),
        SUPERUSER
    );
    let err = pg
        .try_psql_tcp(APP_ROLE, "wrong password", &db, "SELECT 1")
        .unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");
    let err = pg.try_psql_tcp(APP_ROLE, "", &db, "SELECT 1").unwrap_err();
    assert!(err.contains("password"), "{err}");
    pg.drop_db(&db);
}

#[test]
fn urls_connect() {
    let pg = server();
    let db = pg.create_db("smoke_urls");
    assert_eq!(harness::app_password_encoded(), "S3cr3t-p%40ss%3Aw%2Frd%25");
    let tcp = pg.tcp_url(&db);
    assert!(tcp.starts_with("postgresql://app:S3cr3t-p%40ss%3Aw%2Frd%25@127.0.0.1:"));
    assert_eq!(
        pg.try_psql_url(&tcp, "SELECT current_user || ' ' || current_database()")
            .unwrap(),
        format!("app {db}")
    );
    let socket = pg.socket_url(&db);
    assert!(socket.starts_with("postgresql://postgres@/"), "{socket}");
    assert!(!socket["postgresql://".len()..].contains("//"), "{socket}");
    assert_eq!(
        pg.try_psql_url(&socket, "SELECT current_user || ' ' || current_database()")
            .unwrap(),
        format!("postgres {db}")
    );
    let wrong = tcp.replace("%25@", "x@");
    assert!(pg.try_psql_url(&wrong, "SELECT 1").is_err());
    pg.drop_db(&db);
}

#[test]
fn cmd_runs_the_binary() {
    let cmd = Cmd::new().arg("--help");
    assert!(cmd.dir().is_dir());
    assert!(cmd.home().is_dir());
    let out = cmd.run();
    // The CLI is being written; for now only check that the binary ran and exited.
    assert!(out.code.is_some(), "{out}");
    assert!(out.command.contains("aos-backup"), "{}", out.command);
}

#[test]
fn cmd_output_helpers() {
    let out = Cmd::new()
        .env("AOS_SMOKE", "1")
        .env_remove("AOS_SMOKE")
        .stdin_bytes(b"ignored".to_vec())
        .timeout(std::time::Duration::from_secs(30))
        .run();
    let out = crate::cmd::Output {
        stdout: " {\"ok\": true}\n".into(),
        ..out
    };
    assert_eq!(out.stdout_trimmed(), "{\"ok\": true}");
    assert_eq!(out.json()["ok"], serde_json::Value::Bool(true));
    let shown = out.to_string();
    assert!(shown.contains("--- stdout ---") && shown.contains("--- stderr ---"));
}
