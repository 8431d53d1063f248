//! A throwaway PostgreSQL server for the integration tests: one per test process, started on first use
//! by [`server`], shared by every test (each test makes its own databases), stopped when the process
//! exits. [`own_server`] starts a second one, the same way, for tests that must see every database
//! of a server.
//!
//! Start-up: `initdb` into a temporary folder, then `postgres` on a Unix socket in that folder and on a
//! free TCP port of 127.0.0.1. Local (socket) connections are trusted; TCP connections need a password
//! (scram-sha-256). Two roles exist: the superuser [`SUPERUSER`] (password [`SUPER_PASSWORD`]) and the
//! login role [`APP_ROLE`] with `CREATEDB` (password [`APP_PASSWORD`]), which owns every database that
//! [`PgServer::create_db`] makes.
//!
//! When the tests run as root (initdb refuses root), the folder is handed to the `postgres` OS user and
//! initdb and postgres run as that user. The server gets SIGINT (fast shutdown) when the test process
//! exits: from an `atexit` handler, which also removes the folder, and, should the process be killed,
//! from the kernel (`PR_SET_PDEATHSIG`). Folders left behind by killed runs are removed by the next run.

// Each test module uses only part of this API.
#![allow(dead_code)]

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The superuser made by initdb. Trusted over the socket; [`SUPER_PASSWORD`] over TCP.
pub const SUPERUSER: &str = "postgres";
/// Password of [`SUPERUSER`], needed over TCP only.
pub const SUPER_PASSWORD: &str = "su-Pa55#word";
/// An ordinary login role with `CREATEDB`; it owns the databases that tests create.
pub const APP_ROLE: &str = "app";
/// Password of [`APP_ROLE`]. Its special characters are deliberate: a URL must percent-encode them.
pub const APP_PASSWORD: &str = "S3cr3t-p@ss:w/rd%";

const INSTALL_HINT: &str = "The integration tests need a PostgreSQL server installation \
(initdb, postgres, pg_ctl, psql, pg_dump, pg_isready); they never skip.\n\
Install it: apt-get install postgresql postgresql-client\n\
or set AOS_TEST_PG_BIN to a folder that holds initdb, postgres and pg_ctl (and the client tools).";

/// Name prefix of the temporary folders, used to find the ones killed runs left behind.
const TEMP_PREFIX: &str = "aos-backup-it-pg.";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts to start the postmaster, each on a new port (another process may take the free port first).
const LAUNCH_ATTEMPTS: usize = 3;

/// The running server. Get it with [`server`].
pub struct PgServer {
    /// Folder of the PostgreSQL binaries used (`initdb`, `postgres`, `psql`, `pg_dump`, ...).
    pub bindir: PathBuf,
    /// Folder of the Unix socket (`host` for libpq).
    pub socket_dir: PathBuf,
    /// The TCP port on 127.0.0.1, also the socket's port number.
    pub port: u16,
    /// The cluster's data folder.
    pub data_dir: PathBuf,
    /// Major version of the server, from `postgres --version`.
    pub major: u32,
    /// The server's log (stdout and stderr of the postmaster).
    pub log_file: PathBuf,
    /// How long initdb plus start-up plus role set-up took.
    pub startup: Duration,
    root: PathBuf,
    _tmp: TempDir,
}

static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
static OWN_SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
static BUSY_SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();

/// The server of this test process, started on the first call. Panics when it cannot start (with the
/// reason and the server log), and again in every later test.
pub fn server() -> &'static PgServer {
    match SERVER.get_or_init(|| start(&[])) {
        Ok(server) => server,
        Err(message) => panic!("the test PostgreSQL server did not start: {message}"),
    }
}

/// A second server, for the tests that must see every database of a server (backups of a whole
/// server): no other test makes databases there. Started on the first call, stopped at exit like
/// [`server`]; the same roles.
pub fn own_server() -> &'static PgServer {
    match OWN_SERVER.get_or_init(|| start(&[])) {
        Ok(server) => server,
        Err(message) => panic!("the second test PostgreSQL server did not start: {message}"),
    }
}

/// A third server whose autovacuum visits every database each second (`autovacuum_naptime=1`),
/// for the tests that need an autovacuum worker connected to a database. Started on the first
/// call, stopped at exit like [`server`]; the same roles.
pub fn busy_autovacuum_server() -> &'static PgServer {
    match BUSY_SERVER.get_or_init(|| start(&["autovacuum_naptime=1"])) {
        Ok(server) => server,
        Err(message) => panic!("the autovacuum test PostgreSQL server did not start: {message}"),
    }
}

/// The PostgreSQL binary folder: `AOS_TEST_PG_BIN` if set, else the highest
/// `/usr/lib/postgresql/<major>/bin` that holds `initdb`, else `pg_config --bindir`. Panics with
/// installation instructions when there is none.
pub fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("AOS_TEST_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file(),
            "AOS_TEST_PG_BIN={} holds no initdb.\n{INSTALL_HINT}",
            dir.display()
        );
        return dir;
    }
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let Some(version) = entry.file_name().to_str().and_then(parse_version) else {
                continue;
            };
            let bin = entry.path().join("bin");
            if bin.join("initdb").is_file() && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    if let Some((_, bin)) = best {
        return bin;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && bin.join("initdb").is_file() {
            return bin;
        }
    }
    panic!(
        "No PostgreSQL installation found in /usr/lib/postgresql or by pg_config.\n{INSTALL_HINT}"
    );
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for any part of a URL.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// [`APP_PASSWORD`] percent-encoded for the user-info part of a URL.
pub fn app_password_encoded() -> String {
    percent_encode(APP_PASSWORD)
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl PgServer {
    /// Creates a database with a unique name (`prefix`, a counter and the process id), owned by
    /// [`APP_ROLE`], and returns the name. `prefix` is reduced to `[a-z0-9_]`.
    pub fn create_db(&self, prefix: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut clean: String = prefix
            .chars()
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        clean.truncate(36);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{clean}_{n}_{}", std::process::id());
        self.psql(
            "postgres",
            &format!(
                "CREATE DATABASE {} OWNER {}",
                quote_ident(&name),
                quote_ident(APP_ROLE)
            ),
        );
        name
    }

    /// Drops a database, disconnecting its sessions; no error when it does not exist.
    pub fn drop_db(&self, db: &str) {
        self.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(db)),
        );
    }

    /// `postgresql://postgres@/DB?host=SOCKET_DIR&port=PORT`: the superuser over the socket, no password.
    pub fn socket_url(&self, db: &str) -> String {
        format!(
            "postgresql://{SUPERUSER}@/{}?host={}&port={}",
            percent_encode(db),
            percent_encode(&self.socket_dir.to_string_lossy()),
            self.port
        )
    }

    /// `postgresql://app:PASSWORD@127.0.0.1:PORT/DB`, the password percent-encoded.
    pub fn tcp_url(&self, db: &str) -> String {
        format!(
            "postgresql://{APP_ROLE}:{}@127.0.0.1:{}/{}",
            app_password_encoded(),
            self.port,
            percent_encode(db)
        )
    }

    /// Runs `sql` (any number of statements, psql backslash commands allowed) as the superuser over the
    /// socket (`psql -X -v ON_ERROR_STOP=1 -q -At`) and returns stdout trimmed. Panics with stderr on
    /// failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap_or_else(|err| {
            panic!(
                "psql on database {db} failed: {err}\n--- SQL ---\n{}",
                truncated(sql, 2000)
            )
        })
    }

    /// [`PgServer::psql`] that returns psql's stderr (and exit status) as the error instead of panicking.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = self.client(&self.bindir.join("psql"));
        cmd.args(["-X", "-v", "ON_ERROR_STOP=1", "-q", "-At", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER, "-d", db]);
        run_with_stdin(cmd, sql.as_bytes()).map(|out| out.trim().to_owned())
    }

    /// Runs `sql` as `user` over TCP (127.0.0.1) with `password` given through `PGPASSWORD`.
    pub fn try_psql_tcp(
        &self,
        user: &str,
        password: &str,
        db: &str,
        sql: &str,
    ) -> Result<String, String> {
        let mut cmd = self.client(&self.bindir.join("psql"));
        cmd.env("PGPASSWORD", password)
            .args(["-X", "-w", "-v", "ON_ERROR_STOP=1", "-q", "-At"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", user, "-d", db]);
        run_with_stdin(cmd, sql.as_bytes()).map(|out| out.trim().to_owned())
    }

    /// Runs `sql` through psql connected with a connection string or URL (such as
    /// [`PgServer::tcp_url`]), never prompting for a password.
    pub fn try_psql_url(&self, url: &str, sql: &str) -> Result<String, String> {
        let mut cmd = self.client(&self.bindir.join("psql"));
        cmd.args(["-X", "-w", "-v", "ON_ERROR_STOP=1", "-q", "-At", "-d", url]);
        run_with_stdin(cmd, sql.as_bytes()).map(|out| out.trim().to_owned())
    }

    /// The schema of `db` for comparisons: `pg_dump --schema-only --no-owner --no-acl` over the socket,
    /// without comment lines (`--`), `\restrict`/`\unrestrict` lines and blank lines.
    pub fn dump_schema(&self, db: &str) -> String {
        let mut cmd = self.client(&self.bindir.join("pg_dump"));
        cmd.args(["--schema-only", "--no-owner", "--no-acl", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER, "-d", db]);
        let dump = run_with_stdin(cmd, b"")
            .unwrap_or_else(|err| panic!("pg_dump --schema-only of {db} failed: {err}"));
        dump.lines()
            .filter(|line| {
                !(line.trim().is_empty()
                    || line.starts_with("--")
                    || line.starts_with("\\restrict")
                    || line.starts_with("\\unrestrict"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The data of `db` as deterministic text, for comparing a database with its restored copy:
    /// - every row of every table and populated materialized view outside the system schemas
    ///   (partitions as themselves, not through their parent; extension-owned tables left out), ordered
    ///   by schema and name, each as a `table SCHEMA.NAME (N rows)` header then its rows in record text
    ///   form (`(1,abc,)`), sorted by that text;
    /// - `last_value` and `is_called` of every sequence (serial, identity and standalone);
    /// - the oid, size and md5 of every large object (`pg_restore` keeps large-object oids).
    ///
    /// Meant for test-sized databases: each table is aggregated in memory.
    pub fn table_contents(&self, db: &str) -> String {
        self.try_psql(db, TABLE_CONTENTS_SQL)
            .unwrap_or_else(|err| panic!("reading the contents of {db} failed: {err}"))
    }

    /// A `Command` for a client tool with a clean environment: only `PATH`, a C locale, UTF-8 client
    /// encoding, UTC, and no password file or service file of the user running the tests.
    fn client(&self, program: &Path) -> Command {
        let mut cmd = clean_command(program);
        cmd.env("PGCLIENTENCODING", "UTF8")
            .env("PGTZ", "UTC")
            .env("PGDATESTYLE", "ISO, MDY")
            .env("PGPASSFILE", self.root.join("no-pgpass"))
            .env("PGSYSCONFDIR", self.root.join("no-sysconf"))
            .env("PGCONNECT_TIMEOUT", "10");
        cmd
    }
}

/// Text of every table, matview, sequence and large object; see [`PgServer::table_contents`].
const TABLE_CONTENTS_SQL: &str = r#"
SELECT CASE
         WHEN c.relkind = 'm' AND NOT c.relispopulated THEN
           format('SELECT %L', 'materialized view ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || ' (not populated)')
         ELSE
           format($f$SELECT %L || ' (' || count(*) || ' rows)' || coalesce(E'\n' || string_agg(t::text, E'\n' ORDER BY t::text COLLATE "C"), '') FROM %I.%I AS t$f$,
                  CASE c.relkind WHEN 'm' THEN 'materialized view ' ELSE 'table ' END
                    || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
                  n.nspname, c.relname)
       END
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm')
   AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
   AND NOT EXISTS (SELECT FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"
\gexec
SELECT format('SELECT %L || '' last_value='' || last_value || '' is_called='' || is_called FROM %I.%I',
              'sequence ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
              n.nspname, c.relname)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'S'
   AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
   AND NOT EXISTS (SELECT FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"
\gexec
SELECT 'large object ' || l.oid || ' bytes=' || length(lo_get(l.oid)) || ' md5=' || md5(lo_get(l.oid))
  FROM pg_largeobject_metadata l
 ORDER BY l.oid;
"#;

/// SQL for a demanding test database. Load it as the superuser into a fresh database owned by
/// [`APP_ROLE`] (as [`PgServer::create_db`] makes): `server().psql(&db, rich_schema_sql())`.
///
/// Everything is created as [`APP_ROLE`] (`SET ROLE app`), so that role can dump and restore it all.
/// The content is deterministic: two loads give equal [`PgServer::table_contents`] and
/// [`PgServer::dump_schema`]. It has:
/// - schemas `public`, `billing` and `"données"` (table `"Größe"`, column `"名前"`), a mixed-case
///   table name and a reserved-word column;
/// - trusted contrib extensions `pgcrypto` and `citext` (no superuser needed to restore);
/// - an enum, a domain, a range-partitioned table with 3 partitions and a foreign key to it;
/// - serial and identity columns, a standalone sequence advanced with `setval`, one reset with
///   `is_called = false`;
/// - a view, a populated materialized view with a unique index, a SQL function, a PL/pgSQL trigger
///   function and its trigger, foreign keys, btree/unique/partial/expression/GIN indexes, a check
///   constraint, comments, a row-level-security policy;
/// - two large objects with fixed oids (424201, 424202, one of ~340 kB), referenced from a table;
/// - emoji, Cyrillic, CJK and accented text, text with newlines, tabs and backslashes, NULLs, jsonb,
///   bytea, numeric, arrays, timestamps; about 11,000 rows in all.
pub fn rich_schema_sql() -> &'static str {
    RICH_SCHEMA_SQL
}

const RICH_SCHEMA_SQL: &str = r#"
SET client_min_messages = warning;
SET ROLE app;

CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS citext;

CREATE SCHEMA billing;
CREATE SCHEMA "données";
COMMENT ON SCHEMA billing IS 'Invoices and products';

CREATE TYPE billing.invoice_status AS ENUM ('draft', 'sent', 'paid', 'void');
CREATE DOMAIN public.cents AS bigint CHECK (VALUE >= 0);

-- serial, citext, jsonb, bytea, NULLs, a trigger
CREATE TABLE public.customers (
    id serial PRIMARY KEY,
    email citext NOT NULL UNIQUE,
    name text NOT NULL,
    nickname text,
    profile jsonb NOT NULL DEFAULT '{}',
    avatar bytea,
    password_hash bytea NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz
);
COMMENT ON TABLE public.customers IS 'Kunden – клиенты – 顧客 🧾';
CREATE INDEX customers_lower_name_idx ON public.customers (lower(name));
CREATE INDEX customers_nickname_idx ON public.customers (nickname) WHERE nickname IS NOT NULL;
CREATE INDEX customers_profile_idx ON public.customers USING gin (profile);

CREATE FUNCTION public.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := timestamptz '2024-06-01 12:00:00+00';
    RETURN NEW;
END
$$;
CREATE TRIGGER customers_touch BEFORE UPDATE ON public.customers
    FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();

-- identity (ALWAYS), a domain, row-level security
CREATE TABLE billing.products (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    title text NOT NULL,
    price public.cents NOT NULL,
    tags text[] NOT NULL DEFAULT '{}'
);
ALTER TABLE billing.products ENABLE ROW LEVEL SECURITY;
CREATE POLICY products_priced ON billing.products USING (price >= 0);

-- a partitioned table with identity (BY DEFAULT), an enum, three partitions
CREATE TABLE billing.invoices (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    customer_id integer NOT NULL REFERENCES public.customers (id),
    issued_on date NOT NULL,
    status billing.invoice_status NOT NULL DEFAULT 'draft',
    total public.cents NOT NULL,
    note text,
    PRIMARY KEY (id, issued_on)
) PARTITION BY RANGE (issued_on);
CREATE TABLE billing.invoices_2023 PARTITION OF billing.invoices
    FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE billing.invoices_2024 PARTITION OF billing.invoices
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE billing.invoices_2025 PARTITION OF billing.invoices
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX invoices_customer_idx ON billing.invoices (customer_id);

-- a foreign key to the partitioned table, a check constraint
CREATE TABLE billing.invoice_lines (
    invoice_id bigint NOT NULL,
    issued_on date NOT NULL,
    line_no smallint NOT NULL,
    product_id integer NOT NULL REFERENCES billing.products (id),
    quantity integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (invoice_id, issued_on, line_no),
    FOREIGN KEY (invoice_id, issued_on) REFERENCES billing.invoices (id, issued_on) ON DELETE CASCADE
);

-- standalone sequences
CREATE SEQUENCE public.ticket_seq START 100;
CREATE SEQUENCE billing.reset_seq;

-- non-ASCII identifiers
CREATE TABLE "données"."Größe" (
    "名前" text PRIMARY KEY,
    "Wert" numeric(12, 3),
    "Ёмкость" double precision,
    emoji text,
    measured_at timestamp
);
CREATE TABLE public."Mixed Case Table" (
    "select" integer,
    "Value" text
);

-- large objects with fixed oids
CREATE TABLE public.documents (
    id integer PRIMARY KEY,
    title text NOT NULL,
    body oid
);

-- data
INSERT INTO public.customers (email, name, nickname, profile, avatar, password_hash, created_at)
SELECT 'User' || i || '@Example.COM',
       (ARRAY['Zoë Müller', 'Иван Петров', '山田 太郎', 'José Ñúñez', 'Ólafur 🚀', 'Ωmega "quoted"'])[1 + i % 6]
           || ' #' || i,
       CASE WHEN i % 7 = 0 THEN 'nick-' || i END,
       jsonb_build_object('tier', i % 3, 'tags', jsonb_build_array('a', i),
                          'note', CASE WHEN i % 11 = 0 THEN NULL ELSE 'ok ✓ ' || i END),
       CASE WHEN i % 5 = 0 THEN NULL ELSE decode(md5(i::text), 'hex') END,
       digest('pw' || i, 'sha256'),
       timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour'
  FROM generate_series(1, 1000) AS i;
UPDATE public.customers SET nickname = 'updated-' || id WHERE id % 100 = 0;

INSERT INTO billing.products (sku, title, price, tags)
SELECT 'SKU-' || lpad(i::text, 4, '0'),
       (ARRAY['Kaffee ☕', 'Чай', '緑茶', 'Tea', 'Crème brûlée'])[1 + i % 5] || ' ' || i,
       i * 125,
       ARRAY['t' || i % 4, 'ünï']
  FROM generate_series(1, 50) AS i;

INSERT INTO billing.invoices (customer_id, issued_on, status, total, note)
SELECT 1 + i % 1000,
       date '2023-01-01' + i % 1095,
       (ARRAY['draft', 'sent', 'paid', 'void'])[1 + i % 4]::billing.invoice_status,
       i * 37 % 100000,
       CASE i % 4
           WHEN 0 THEN NULL
           WHEN 1 THEN 'line one' || E'\n' || 'line two'
           WHEN 2 THEN 'tab' || E'\t' || 'and back\slash'
           ELSE 'Привет, 世界 👋 #' || i
       END
  FROM generate_series(1, 3000) AS i;

INSERT INTO billing.invoice_lines (invoice_id, issued_on, line_no, product_id, quantity)
SELECT inv.id, inv.issued_on, l, 1 + (inv.id + l) % 50, 1 + (inv.id * l) % 9
  FROM billing.invoices AS inv, generate_series(1, 1 + (inv.id % 3)::int) AS l;

INSERT INTO "données"."Größe"
SELECT 'Ünïcødé-' || i || CASE i % 3 WHEN 0 THEN ' 名前' WHEN 1 THEN ' имя' ELSE ' 🌍' END,
       CASE WHEN i % 9 = 0 THEN NULL ELSE round(i * 1.234, 3) END,
       i / 8.0,
       CASE WHEN i % 2 = 0 THEN '😀😃😄' ELSE NULL END,
       timestamp '2024-02-29 23:59:59' - i * interval '1 day'
  FROM generate_series(1, 500) AS i;

INSERT INTO public."Mixed Case Table" VALUES (1, 'duplicate'), (1, 'duplicate'), (NULL, NULL), (2, '');

DO $$
BEGIN
    PERFORM setval('public.ticket_seq', 4242);
    PERFORM nextval('billing.reset_seq');
    PERFORM setval('billing.reset_seq', 10, false);
    PERFORM lo_from_bytea(424201, 'hello large object');
    PERFORM lo_from_bytea(424202, convert_to(repeat('große Datei 🐘 ', 20000), 'UTF8'));
END
$$;
COMMENT ON LARGE OBJECT 424201 IS 'a small large object';
INSERT INTO public.documents VALUES (1, 'hello', 424201), (2, 'big', 424202), (3, 'none', NULL);

-- a SQL function, a view and a materialized view over the data
CREATE FUNCTION billing.customer_total(customer integer) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(total), 0)::bigint FROM billing.invoices WHERE customer_id = customer
$$;
CREATE VIEW billing.customer_totals AS
SELECT c.id, c.email, c.name AS "Kundenname", billing.customer_total(c.id) AS total
  FROM public.customers AS c;
CREATE MATERIALIZED VIEW billing.monthly_revenue AS
SELECT date_trunc('month', issued_on)::date AS month, count(*) AS invoices, sum(total) AS revenue
  FROM billing.invoices
 WHERE status <> 'void'
 GROUP BY 1;
CREATE UNIQUE INDEX monthly_revenue_month_idx ON billing.monthly_revenue (month);

RESET ROLE;
"#;

/// Makes and starts a server, with `settings` as extra `name=value` server settings; the error
/// carries the reason and, if the server ran, its log.
fn start(settings: &[&str]) -> Result<PgServer, String> {
    let began = Instant::now();
    let bindir = pg_bin();
    for tool in [
        "initdb",
        "postgres",
        "pg_ctl",
        "psql",
        "pg_dump",
        "pg_isready",
    ] {
        assert!(
            bindir.join(tool).is_file(),
            "{} has no {tool}.\n{INSTALL_HINT}",
            bindir.display()
        );
    }
    let run_as = RunAs::detect()?;
    let major = postgres_major(&bindir)?;

    let parent = temp_parent(run_as);
    sweep_stale(&parent);
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempdir_in(&parent)
        .map_err(|e| {
            format!(
                "cannot create a temporary folder in {}: {e}",
                parent.display()
            )
        })?;
    let root = tmp.path().to_path_buf();
    fs::write(root.join("owner.pid"), std::process::id().to_string())
        .map_err(|e| format!("cannot write to {}: {e}", root.display()))?;
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot chmod {}: {e}", root.display()))?;
    let socket_dir = root.join("sock");
    fs::create_dir(&socket_dir).map_err(|e| format!("cannot create the socket folder: {e}"))?;
    fs::set_permissions(&socket_dir, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot chmod {}: {e}", socket_dir.display()))?;
    let data_dir = root.join("data");
    let log_file = root.join("server.log");
    run_as.chown_tree(&root)?;

    initdb(&bindir, run_as, &root, &data_dir)?;

    let mut failures = Vec::new();
    for _ in 0..LAUNCH_ATTEMPTS {
        let port = free_port()?;
        let folders = Folders {
            root: &root,
            data_dir: &data_dir,
            socket_dir: &socket_dir,
            log_file: &log_file,
        };
        match launch(&bindir, run_as, &folders, port, settings) {
            Ok(postmaster) => {
                register_cleanup(postmaster, root.clone());
                let server = PgServer {
                    bindir,
                    socket_dir,
                    port,
                    data_dir,
                    major,
                    log_file,
                    startup: Duration::ZERO,
                    root,
                    _tmp: tmp,
                };
                server
                    .try_psql("postgres", &roles_sql())
                    .map_err(|e| format!("creating the roles failed: {e}"))?;
                return Ok(PgServer {
                    startup: began.elapsed(),
                    ..server
                });
            }
            Err(LaunchError {
                message,
                port_taken,
            }) => {
                failures.push(message);
                if !port_taken {
                    break;
                }
            }
        }
    }
    Err(failures.join("\n\n"))
}

fn roles_sql() -> String {
    format!(
        "ALTER ROLE {su} PASSWORD {su_pw};\n\
         CREATE ROLE {app} LOGIN CREATEDB PASSWORD {app_pw};\n",
        su = quote_ident(SUPERUSER),
        su_pw = quote_literal(SUPER_PASSWORD),
        app = quote_ident(APP_ROLE),
        app_pw = quote_literal(APP_PASSWORD),
    )
}

/// The OS user that runs initdb and postgres: the `postgres` user when the tests run as root.
#[derive(Clone, Copy)]
struct RunAs(Option<(libc::uid_t, libc::gid_t)>);

impl RunAs {
    fn detect() -> Result<Self, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(Self(None));
        }
        let name = CString::new(SUPERUSER).expect("no NUL in a constant");
        // SAFETY: `name` is a valid C string; the result is read at once, before any other getpw* call
        // (this runs once per process, under the OnceLock).
        let entry = unsafe { libc::getpwnam(name.as_ptr()) };
        if entry.is_null() {
            return Err(
                "the tests run as root, initdb refuses root, and there is no OS user \
                        `postgres` to run the server as: create one (apt-get install postgresql \
                        does) or run the tests as an ordinary user"
                    .into(),
            );
        }
        // SAFETY: `entry` is non-null and points to the passwd record getpwnam returned.
        Ok(Self(Some(unsafe { ((*entry).pw_uid, (*entry).pw_gid) })))
    }

    fn apply(self, cmd: &mut Command) {
        if let Some((uid, gid)) = self.0 {
            cmd.uid(uid).gid(gid);
        }
    }

    /// Hands `path` and everything below it to the server's user.
    fn chown_tree(self, path: &Path) -> Result<(), String> {
        let Some((uid, gid)) = self.0 else {
            return Ok(());
        };
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(|e| format!("cannot chown {} to postgres: {e}", path.display()))?;
        if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            let entries =
                fs::read_dir(path).map_err(|e| format!("cannot list {}: {e}", path.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("cannot list {}: {e}", path.display()))?;
                self.chown_tree(&entry.path())?;
            }
        }
        Ok(())
    }
}

/// A command with an empty environment but `PATH`, a C locale and UTC.
fn clean_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("LC_ALL", "C").env("TZ", "UTC");
    cmd
}

fn postgres_major(bindir: &Path) -> Result<u32, String> {
    let out = clean_command(&bindir.join("postgres"))
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}/postgres: {e}", bindir.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "postgres (PostgreSQL) 15.14 (Debian 15.14-1.pgdg120+1)"
    text.split_once("(PostgreSQL)")
        .and_then(|(_, rest)| {
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .ok_or_else(|| format!("cannot read the version from `postgres --version`: {text:?}"))
}

/// "15" -> [15], "9.6" -> [9, 6]; None for names that are not versions.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The folder for the temporary cluster: the usual temp folder, unless the server's user could not
/// reach it (root's TMPDIR inside a private folder); then `/tmp`.
fn temp_parent(run_as: RunAs) -> PathBuf {
    let tmp = std::env::temp_dir();
    let reachable = tmp
        .ancestors()
        .all(|dir| fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if run_as.0.is_none() || reachable {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}

/// Removes folders of earlier runs whose test process and postmaster are both gone (killed runs).
fn sweep_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let Some(owner) = read_pid(&dir.join("owner.pid")) else {
            continue;
        };
        if pid_alive(owner) {
            continue;
        }
        if read_pid(&dir.join("data/postmaster.pid")).is_some_and(pid_alive) {
            continue;
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

fn read_pid(file: &Path) -> Option<libc::pid_t> {
    fs::read_to_string(file)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
}

fn pid_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn initdb(bindir: &Path, run_as: RunAs, root: &Path, data_dir: &Path) -> Result<(), String> {
    let mut failures = Vec::new();
    for locale in ["C.UTF-8", "C"] {
        let mut cmd = clean_command(&bindir.join("initdb"));
        cmd.arg("-D")
            .arg(data_dir)
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["-N", "-E", "UTF8", &format!("--locale={locale}")])
            .current_dir(root)
            .stdin(Stdio::null());
        run_as.apply(&mut cmd);
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}/initdb: {e}", bindir.display()))?;
        if out.status.success() {
            return Ok(());
        }
        failures.push(format!(
            "initdb --locale={locale} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        let _ = fs::remove_dir_all(data_dir);
    }
    Err(failures.join("\n"))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot find a free TCP port on 127.0.0.1: {e}"))
}

/// Whether the postmaster has exited; set by the thread that waits for it.
#[derive(Default)]
struct ExitWatch {
    exited: AtomicBool,
    status: Mutex<Option<String>>,
}

struct Postmaster {
    pid: libc::pid_t,
    watch: Arc<ExitWatch>,
}

struct LaunchError {
    message: String,
    port_taken: bool,
}

impl From<String> for LaunchError {
    fn from(message: String) -> Self {
        Self {
            message,
            port_taken: false,
        }
    }
}

/// The folders and files of one server.
struct Folders<'a> {
    root: &'a Path,
    data_dir: &'a Path,
    socket_dir: &'a Path,
    log_file: &'a Path,
}

/// Starts the postmaster and waits until it accepts connections.
fn launch(
    bindir: &Path,
    run_as: RunAs,
    folders: &Folders<'_>,
    port: u16,
    settings: &[&str],
) -> Result<Postmaster, LaunchError> {
    let Folders {
        root,
        data_dir,
        socket_dir,
        log_file,
    } = *folders;
    let log = fs::File::create(log_file)
        .map_err(|e| format!("cannot create {}: {e}", log_file.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot duplicate the log file handle: {e}"))?;
    let mut cmd = clean_command(&bindir.join("postgres"));
    cmd.arg("-D")
        .arg(data_dir)
        .arg("-k")
        .arg(socket_dir)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "unix_socket_permissions=0777"])
        .args(["-c", "fsync=off"])
        .args(["-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off"])
        .args(["-c", "max_connections=200"])
        .args(["-c", "max_prepared_transactions=10"]);
    for setting in settings {
        cmd.args(["-c", setting]);
    }
    cmd.current_dir(root)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    run_as.apply(&mut cmd);
    let test_process = libc::pid_t::try_from(std::process::id()).expect("pid fits pid_t");
    // SIGINT (fast shutdown) when the thread that spawned the postmaster exits; that thread never does,
    // so this fires when the test process ends, even by SIGKILL. Set after the uid change, which would
    // clear it.
    let hook = move || {
        // SAFETY: plain system calls with valid arguments.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT as libc::c_ulong) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::getppid() } != test_process {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the hook only calls async-signal-safe functions (prctl, getppid) and does not allocate.
    unsafe { cmd.pre_exec(hook) };

    let watch = Arc::new(ExitWatch::default());
    let thread_watch = Arc::clone(&watch);
    let (spawned_tx, spawned_rx) = mpsc::channel();
    thread::Builder::new()
        .name("postmaster-parent".into())
        .spawn(move || {
            let mut child = match cmd.spawn() {
                Ok(child) => child,
                Err(e) => {
                    let _ = spawned_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = spawned_tx.send(Ok(child.id()));
            let status = child.wait();
            *thread_watch
                .status
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(format!("{status:?}"));
            thread_watch.exited.store(true, Ordering::SeqCst);
            // Stay alive: PR_SET_PDEATHSIG is tied to this thread.
            loop {
                thread::park();
            }
        })
        .map_err(|e| format!("cannot start the postmaster thread: {e}"))?;
    let pid = spawned_rx
        .recv()
        .map_err(|_| "the postmaster thread died".to_owned())?
        .map_err(|e| format!("cannot run {}/postgres: {e}", bindir.display()))?;
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if watch.exited.load(Ordering::SeqCst) {
            let log = fs::read_to_string(log_file).unwrap_or_default();
            let status = watch
                .status
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            return Err(LaunchError {
                port_taken: log.contains("could not bind") || log.contains("already in use"),
                message: format!(
                    "postgres exited at start-up ({}) on port {port}; server log:\n{log}",
                    status.unwrap_or_default()
                ),
            });
        }
        if is_ready(bindir, socket_dir, port) {
            return Ok(Postmaster { pid, watch });
        }
        if Instant::now() > deadline {
            // SAFETY: sending a signal to the child we started.
            unsafe { libc::kill(pid, libc::SIGINT) };
            let log = fs::read_to_string(log_file).unwrap_or_default();
            return Err(format!(
                "postgres did not accept connections within {READY_TIMEOUT:?}; server log:\n{log}"
            )
            .into());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn is_ready(bindir: &Path, socket_dir: &Path, port: u16) -> bool {
    clean_command(&bindir.join("pg_isready"))
        .arg("-h")
        .arg(socket_dir)
        .args([
            "-p",
            &port.to_string(),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-q",
            "-t",
            "2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

struct Cleanup {
    pid: libc::pid_t,
    watch: Arc<ExitWatch>,
    root: PathBuf,
}

static CLEANUP: Mutex<Vec<Cleanup>> = Mutex::new(Vec::new());

fn register_cleanup(postmaster: Postmaster, root: PathBuf) {
    let cleanup = Cleanup {
        pid: postmaster.pid,
        watch: postmaster.watch,
        root,
    };
    let mut all = CLEANUP.lock().unwrap_or_else(PoisonError::into_inner);
    if all.is_empty() {
        // SAFETY: registers a plain function that does not unwind.
        unsafe { libc::atexit(stop_servers_at_exit) };
    }
    all.push(cleanup);
}

/// At process exit: fast shutdown of each server, wait up to 10 s for their postmasters, then
/// remove their folders.
extern "C" fn stop_servers_at_exit() {
    let all = CLEANUP.lock().unwrap_or_else(PoisonError::into_inner);
    for cleanup in all.iter() {
        if !cleanup.watch.exited.load(Ordering::SeqCst) {
            // SAFETY: signalling the postmaster we started (the waiting thread has not reaped it yet).
            unsafe { libc::kill(cleanup.pid, libc::SIGINT) };
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for cleanup in all.iter() {
        while !cleanup.watch.exited.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        if cleanup.watch.exited.load(Ordering::SeqCst) {
            let _ = fs::remove_dir_all(&cleanup.root);
        }
    }
}

/// Runs `cmd` with `input` on stdin; stdout on success, else the exit status and stderr.
fn run_with_stdin(mut cmd: Command, input: &[u8]) -> Result<String, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        // A failed write (the child exited early) shows in its exit status and stderr.
        let _ = stdin.write_all(&input);
    });
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {program} failed: {e}"))?;
    let _ = writer.join();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} exited with {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
