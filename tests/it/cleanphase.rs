//! The clean phase of a restore, against a corpus of the object kinds that pg_dump treats
//! specially (views made into dummies, NOT VALID constraints, partitioned keys and indexes,
//! inheritance, rules, publications, extended statistics, event triggers, policies, large
//! objects, materialized views, triggers and functions, sequences and identity columns,
//! comments, several schemas with odd names):
//!
//! - each kind restores into an empty database and over a populated one (the same schema,
//!   loaded from the same SQL, then changed: other rows, objects dropped or altered), from a
//!   custom archive and from a plain `pg_dump --clean --if-exists | gzip` file, and the result
//!   dumps exactly as bare `pg_restore -1` of the same archive into an empty database;
//! - a plain SQL dump made without `--clean` is refused over a populated database (exit 3,
//!   target untouched) and restores into an empty one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cmd::{Cmd, Output};
use crate::harness::server;
use crate::support::pg_tool;
use crate::support::tempdir as work_dir;

/// Run before each setup: everything is made by the app role (the event-trigger case switches).
const PRELUDE: &str = "SET client_min_messages = warning;\nSET ROLE app;\n";

/// One object kind: the SQL that makes it (with data), and the SQL that turns a copy into a
/// populated target that differs from the backup (other rows, objects dropped or altered, never
/// objects the backup lacks: those would stay, as documented).
struct Case {
    name: &'static str,
    setup: &'static str,
    modify: &'static str,
}

/// The issue's repro: pg_dump makes by_key a dummy view in the clean section, which names the
/// domain; into an empty database that failed with `type "public.dom_nv" does not exist`.
const VIEW_ON_PRIMARY_KEY_SQL: &str = r"
CREATE DOMAIN dom_nv AS int;
ALTER DOMAIN dom_nv ADD CONSTRAINT dom_nv_ck CHECK (value > 0) NOT VALID;
CREATE TABLE base (key int PRIMARY KEY, data text, d dom_nv);
INSERT INTO base VALUES (1, 'one', 1), (2, 'two', 2);
CREATE VIEW by_key AS SELECT * FROM base GROUP BY key;
CREATE VIEW by_key_2 AS SELECT key, data FROM by_key;
";

const VIEW_ON_PRIMARY_KEY: Case = Case {
    name: "view_on_primary_key",
    setup: VIEW_ON_PRIMARY_KEY_SQL,
    modify: r"
DELETE FROM base WHERE key = 2;
INSERT INTO base VALUES (3, 'three', 3);
DROP VIEW by_key_2;
",
};

const NOT_VALID: Case = Case {
    name: "not_valid_constraints",
    setup: r"
CREATE DOMAIN posint AS int;
CREATE TABLE ref (id int PRIMARY KEY);
INSERT INTO ref VALUES (1);
CREATE TABLE t (a int, b posint, r int);
INSERT INTO t VALUES (-1, -5, 99);
ALTER DOMAIN posint ADD CONSTRAINT posint_ck CHECK (VALUE > 0) NOT VALID;
ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0) NOT VALID;
ALTER TABLE t ADD CONSTRAINT t_r_fk FOREIGN KEY (r) REFERENCES ref NOT VALID;
",
    modify: r"
ALTER TABLE t DROP CONSTRAINT t_a_pos;
ALTER DOMAIN posint DROP CONSTRAINT posint_ck;
INSERT INTO t VALUES (5, 5, 1);
",
};

const PARTITIONED: Case = Case {
    name: "partitioned",
    setup: r"
CREATE TABLE meas (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE meas_2020 PARTITION OF meas FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
CREATE TABLE meas_2021 PARTITION OF meas FOR VALUES FROM ('2021-01-01') TO ('2022-01-01')
    PARTITION BY LIST (id);
CREATE TABLE meas_2021_a PARTITION OF meas_2021 FOR VALUES IN (1, 2, 3);
CREATE TABLE meas_2021_b PARTITION OF meas_2021 DEFAULT;
CREATE INDEX meas_v ON meas (v);
CREATE UNIQUE INDEX meas_u ON meas (id, at, v);
CREATE TABLE meas_ref (id int, at date, FOREIGN KEY (id, at) REFERENCES meas);
INSERT INTO meas VALUES (1, '2020-05-05', 'a'), (2, '2021-03-03', 'b'), (9, '2021-04-04', 'c');
INSERT INTO meas_ref VALUES (2, '2021-03-03');
CREATE TABLE hashed (k int PRIMARY KEY, x text) PARTITION BY HASH (k);
CREATE TABLE hashed_0 PARTITION OF hashed FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE hashed_1 PARTITION OF hashed FOR VALUES WITH (MODULUS 2, REMAINDER 1);
INSERT INTO hashed SELECT g, 'x' || g FROM generate_series(1, 20) g;
",
    modify: r"
DELETE FROM meas WHERE id = 9;
ALTER TABLE meas DETACH PARTITION meas_2020;
DROP INDEX meas_v;
INSERT INTO hashed VALUES (100, 'new');
",
};

const INHERITANCE: Case = Case {
    name: "inheritance",
    setup: r"
CREATE TABLE parent (id int PRIMARY KEY, n text, CONSTRAINT n_nonempty CHECK (n <> ''));
CREATE TABLE child (extra text) INHERITS (parent);
CREATE TABLE grandchild () INHERITS (child);
CREATE TABLE other_parent (o int DEFAULT 7);
CREATE TABLE multi () INHERITS (parent, other_parent);
INSERT INTO parent VALUES (1, 'p');
INSERT INTO child VALUES (2, 'c', 'x');
INSERT INTO grandchild VALUES (3, 'g', 'y');
INSERT INTO multi VALUES (4, 'm', 8);
",
    modify: r"
ALTER TABLE grandchild NO INHERIT child;
DELETE FROM parent WHERE id = 1;
ALTER TABLE child ADD COLUMN later int;
",
};

const RULES: Case = Case {
    name: "rules",
    setup: r"
CREATE TABLE logged (id serial PRIMARY KEY, msg text);
CREATE TABLE archived (id int, msg text);
CREATE RULE logged_skip AS ON INSERT TO logged WHERE new.msg = 'skip' DO INSTEAD NOTHING;
CREATE RULE logged_archive AS ON DELETE TO logged DO ALSO INSERT INTO archived VALUES (old.id, old.msg);
CREATE VIEW logged_v AS SELECT id, msg FROM logged;
CREATE RULE logged_v_ins AS ON INSERT TO logged_v DO INSTEAD INSERT INTO logged (msg) VALUES (new.msg);
INSERT INTO logged (msg) VALUES ('hello'), ('skip'), ('world');
DELETE FROM logged WHERE msg = 'world';
",
    modify: r"
DROP RULE logged_skip ON logged;
INSERT INTO logged_v VALUES (0, 'via view');
",
};

const PUBLICATIONS: Case = Case {
    name: "publications",
    setup: r"
CREATE TABLE pub_a (id int PRIMARY KEY, x text);
CREATE TABLE pub_b (id int PRIMARY KEY, y text);
INSERT INTO pub_a VALUES (1, 'a');
CREATE PUBLICATION pub_some FOR TABLE pub_a, pub_b WITH (publish = 'insert, update');
CREATE PUBLICATION pub_filtered FOR TABLE pub_a WHERE (id > 0);
CREATE PUBLICATION pub_cols FOR TABLE pub_b (id, y);
",
    modify: r"
ALTER PUBLICATION pub_some DROP TABLE pub_b;
DROP PUBLICATION pub_cols;
INSERT INTO pub_b VALUES (2, 'b');
",
};

const STATISTICS: Case = Case {
    name: "extended_statistics",
    setup: r"
CREATE SCHEMA stats;
CREATE TABLE stats.t (a int, b int, c text);
INSERT INTO stats.t SELECT g % 10, g % 5, 'c' || (g % 3) FROM generate_series(1, 100) g;
CREATE STATISTICS stats.t_ab (dependencies, ndistinct, mcv) ON a, b FROM stats.t;
CREATE STATISTICS stats.t_expr ON (a + b), lower(c) FROM stats.t;
ALTER STATISTICS stats.t_ab SET STATISTICS 500;
",
    modify: r"
DROP STATISTICS stats.t_expr;
DELETE FROM stats.t WHERE a = 1;
",
};

const EVENT_TRIGGERS: Case = Case {
    name: "event_triggers",
    // Event triggers need a superuser.
    setup: r"
RESET ROLE;
CREATE TABLE ddl_log (tag text);
CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql
    AS $$BEGIN RAISE NOTICE 'ddl: %', tg_tag; END$$;
CREATE EVENT TRIGGER on_ddl ON ddl_command_end EXECUTE FUNCTION log_ddl();
CREATE EVENT TRIGGER on_drop ON sql_drop WHEN TAG IN ('DROP TABLE') EXECUTE FUNCTION log_ddl();
ALTER EVENT TRIGGER on_drop DISABLE;
INSERT INTO ddl_log VALUES ('setup');
SET ROLE app;
",
    modify: r"
RESET ROLE;
ALTER EVENT TRIGGER on_drop ENABLE;
DROP EVENT TRIGGER on_ddl;
INSERT INTO ddl_log VALUES ('x');
SET ROLE app;
",
};

const POLICIES: Case = Case {
    name: "policies",
    setup: r"
CREATE TABLE docs (id int PRIMARY KEY, owner text, body text);
INSERT INTO docs VALUES (1, 'app', 'mine'), (2, 'other', 'theirs');
ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
ALTER TABLE docs FORCE ROW LEVEL SECURITY;
CREATE POLICY docs_read ON docs FOR SELECT USING (owner = current_user);
CREATE POLICY docs_write ON docs AS RESTRICTIVE FOR UPDATE
    USING (owner = current_user) WITH CHECK (body <> '');
",
    modify: r"
DROP POLICY docs_write ON docs;
ALTER TABLE docs NO FORCE ROW LEVEL SECURITY;
UPDATE docs SET body = 'changed';
",
};

const LARGE_OBJECTS: Case = Case {
    name: "large_objects",
    setup: r"
CREATE TABLE files (id int PRIMARY KEY, blob oid);
SELECT lo_from_bytea(424301, 'first large object; with text');
SELECT lo_from_bytea(424302, decode(repeat('00ff', 1000), 'hex'));
COMMENT ON LARGE OBJECT 424301 IS 'the first';
INSERT INTO files VALUES (1, 424301), (2, 424302);
",
    modify: r"
SELECT lo_unlink(424302);
SELECT lo_put(424301, 0, '\x4649525354');
DELETE FROM files WHERE id = 2;
",
};

const MATVIEWS: Case = Case {
    name: "materialized_views",
    setup: r"
CREATE TABLE sales (id int PRIMARY KEY, region text, amount numeric);
INSERT INTO sales SELECT g, 'r' || (g % 3), g * 1.5 FROM generate_series(1, 30) g;
CREATE VIEW sales_v AS SELECT region, amount FROM sales WHERE amount > 3;
CREATE MATERIALIZED VIEW sales_by_region AS
    SELECT region, sum(amount) AS total FROM sales_v GROUP BY region;
CREATE UNIQUE INDEX sales_by_region_key ON sales_by_region (region);
CREATE MATERIALIZED VIEW sales_top AS SELECT * FROM sales_by_region WHERE total > 10;
CREATE MATERIALIZED VIEW sales_later AS SELECT count(*) AS n FROM sales WITH NO DATA;
",
    modify: r"
INSERT INTO sales VALUES (100, 'r9', 1000);
REFRESH MATERIALIZED VIEW sales_by_region;
REFRESH MATERIALIZED VIEW sales_later;
DROP MATERIALIZED VIEW sales_top;
",
};

const TRIGGERS_FUNCTIONS: Case = Case {
    name: "triggers_functions",
    setup: r#"
CREATE FUNCTION norm(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT lower(trim(t)) $$;
CREATE TABLE people (id int PRIMARY KEY, name text,
    name_norm text GENERATED ALWAYS AS (norm(name)) STORED, updated int DEFAULT 0);
CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    -- a comment; with a semicolon
    NEW.updated := OLD.updated + 1;
    RAISE NOTICE 'it''s; %', $$quoted;$$;
    RETURN NEW;
END
$body$;
CREATE TRIGGER people_bump BEFORE UPDATE ON people FOR EACH ROW
    WHEN (OLD.name IS DISTINCT FROM NEW.name) EXECUTE FUNCTION bump();
CREATE FUNCTION check_people() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
CREATE CONSTRAINT TRIGGER people_check AFTER INSERT ON people DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_people();
CREATE FUNCTION people_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM public.people';
CREATE VIEW people_stats AS SELECT people_count() AS n;
CREATE PROCEDURE add_person(i int, n text) LANGUAGE sql
    AS $$ INSERT INTO people (id, name) VALUES (i, n) $$;
CREATE AGGREGATE concat_all(text) (SFUNC = textcat, STYPE = text, INITCOND = '');
CALL add_person(1, ' Alice ');
INSERT INTO people (id, name) VALUES (2, 'Bob');
UPDATE people SET name = 'Robert' WHERE id = 2;
"#,
    modify: r"
DROP VIEW people_stats;
DROP TRIGGER people_bump ON people;
UPDATE people SET name = 'Al' WHERE id = 1;
DROP AGGREGATE concat_all(text);
",
};

const SEQUENCES: Case = Case {
    name: "sequences_identity",
    setup: r"
CREATE TABLE ser (id serial PRIMARY KEY, big bigserial, v text);
CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 5) PRIMARY KEY,
    d int GENERATED BY DEFAULT AS IDENTITY, v text);
CREATE SEQUENCE standalone START 5 INCREMENT 3 MAXVALUE 1000 CYCLE;
CREATE SEQUENCE owned_later;
CREATE TABLE uses_seq (n int DEFAULT nextval('standalone'), m bigint);
ALTER SEQUENCE owned_later OWNED BY uses_seq.m;
INSERT INTO ser (v) VALUES ('a'), ('b');
INSERT INTO ident (v) VALUES ('x'), ('y'), ('z');
INSERT INTO uses_seq (m) VALUES (1), (2);
SELECT setval('standalone', 42);
SELECT setval('owned_later', 7, false);
",
    modify: r"
INSERT INTO ser (v) VALUES ('c');
SELECT setval('standalone', 500);
ALTER TABLE ident ALTER COLUMN d DROP IDENTITY;
DROP SEQUENCE owned_later;
",
};

const COMMENTS: Case = Case {
    name: "comments",
    setup: r"
CREATE SCHEMA notes;
COMMENT ON SCHEMA notes IS 'notes; with ''quotes''';
CREATE TABLE notes.n (id int CONSTRAINT n_pk PRIMARY KEY, body text CHECK (body <> ''));
CREATE INDEX n_body ON notes.n (body);
CREATE FUNCTION notes.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE TYPE notes.kind AS ENUM ('a', 'b;c');
COMMENT ON TABLE notes.n IS E'multi\nline; comment -- not a comment';
COMMENT ON COLUMN notes.n.body IS 'Körper – тело – 本文 🧾';
COMMENT ON CONSTRAINT n_pk ON notes.n IS 'the key';
COMMENT ON INDEX notes.n_body IS 'index';
COMMENT ON FUNCTION notes.f() IS 'function; $$ dollar';
COMMENT ON TYPE notes.kind IS 'enum';
INSERT INTO notes.n VALUES (1, 'b');
",
    modify: r"
COMMENT ON TABLE notes.n IS 'changed';
COMMENT ON INDEX notes.n_body IS NULL;
INSERT INTO notes.n VALUES (2, 'x');
",
};

const SCHEMAS: Case = Case {
    name: "several_schemas",
    // Odd names: a `;` and a newline inside quoted identifiers make clean statements that
    // contain `;` or span lines.
    setup: r#"
CREATE SCHEMA "Sales Dept";
CREATE SCHEMA hr;
CREATE SCHEMA empty_one;
CREATE TYPE hr.grade AS ENUM ('junior', 'senior');
CREATE DOMAIN "Sales Dept"."Money;Amount" AS numeric(12,2) CHECK (VALUE >= 0);
CREATE TABLE hr.staff (id int PRIMARY KEY, g hr.grade, "Weird ""Col""; x" text DEFAULT 'a;b');
CREATE TABLE "Sales Dept"."Orders;2024" (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    staff int REFERENCES hr.staff, total "Sales Dept"."Money;Amount");
CREATE VIEW hr."Staff View" AS
    SELECT s.id, s.g, count(o.id) AS orders
      FROM hr.staff s LEFT JOIN "Sales Dept"."Orders;2024" o ON o.staff = s.id GROUP BY s.id;
CREATE TABLE hr."line
break" (x int PRIMARY KEY);
INSERT INTO hr.staff VALUES (1, 'junior', 'x'), (2, 'senior', DEFAULT);
INSERT INTO "Sales Dept"."Orders;2024" (staff, total) VALUES (1, 10.5), (2, 3);
INSERT INTO hr."line
break" VALUES (1);
"#,
    modify: r#"
DROP VIEW hr."Staff View";
DROP SCHEMA empty_one;
INSERT INTO hr.staff VALUES (3, 'junior', 'new');
"#,
};

const ALL: [&Case; 15] = [
    &VIEW_ON_PRIMARY_KEY,
    &NOT_VALID,
    &PARTITIONED,
    &INHERITANCE,
    &RULES,
    &PUBLICATIONS,
    &STATISTICS,
    &EVENT_TRIGGERS,
    &POLICIES,
    &LARGE_OBJECTS,
    &MATVIEWS,
    &TRIGGERS_FUNCTIONS,
    &SEQUENCES,
    &COMMENTS,
    &SCHEMAS,
];

/// `pg_dump ARGS DB | gzip > out`.
fn pg_dump_gz(db: &str, args: &[&str], out: &Path) {
    let sql = pg_tool("pg_dump", args, db);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&sql).unwrap();
    fs::write(out, gz.finish().unwrap()).unwrap();
}

/// What the comparisons look at: the schema (`pg_dump --schema-only`) and every row, sequence
/// and large object.
fn snapshot(db: &str) -> (String, String) {
    let pg = server();
    (pg.dump_schema(db), pg.table_contents(db))
}

/// `aos-backup restore --yes FILE` into `db`, as the superuser (event triggers need one).
fn restore(db: &str, file: &Path) -> Output {
    Cmd::new()
        .args(["restore", "--yes"])
        .arg(file)
        .env("DATABASE_URL", server().socket_url(db))
        .run()
}

/// A database loaded with `sql` (after [`PRELUDE`]).
fn loaded(prefix: &str, sql: &[&str]) -> String {
    let pg = server();
    let db = pg.create_db(prefix);
    let mut script = PRELUDE.to_string();
    for part in sql {
        script.push_str(part);
    }
    pg.psql(&db, &script);
    db
}

/// The archives of a source database: a custom one and a plain `--clean --if-exists` one.
fn archives(source: &str, dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let custom = dir.join("source.dump");
    let out = pg_tool("pg_dump", &["-Fc", "--no-owner", "--no-acl"], source);
    fs::write(&custom, out).unwrap();
    let plain = dir.join("source.sql.gz");
    pg_dump_gz(
        source,
        &["-Fp", "--clean", "--if-exists", "--no-owner", "--no-acl"],
        &plain,
    );
    vec![("custom", custom), ("plain", plain)]
}

/// What bare `pg_restore -1` of `archive` into a new empty database gives.
fn reference(archive: &Path, prefix: &str) -> (String, String) {
    let pg = server();
    let db = pg.create_db(prefix);
    pg_tool(
        "pg_restore",
        &["-1", "--no-owner", "--no-acl", &archive.to_string_lossy()],
        &db,
    );
    let snap = snapshot(&db);
    pg.drop_db(&db);
    snap
}

/// The whole check for the cases `cases` (their setups loaded together into one source).
fn check(name: &str, cases: &[&Case]) {
    check_targets(name, cases, &[false, true]);
}

/// [`check`] into the targets listed: `false` an empty one, `true` a populated one.
fn check_targets(name: &str, cases: &[&Case], targets: &[bool]) {
    let pg = server();
    let work = work_dir();
    let setup: Vec<&str> = cases.iter().map(|c| c.setup).collect();
    let modify: Vec<&str> = cases.iter().map(|c| c.modify).collect();
    let source = loaded(&format!("cp_{name}_src"), &setup);
    let archives = archives(&source, work.path());
    let expected = reference(&archives[0].1, &format!("cp_{name}_ref"));
    // The reference is the source itself, whatever the format.
    assert_eq!(snapshot(&source), expected, "{name}: bare pg_restore -1");

    for (format, file) in &archives {
        for &populated in targets {
            let target = if populated {
                let mut sql = setup.clone();
                sql.extend(&modify);
                loaded(&format!("cp_{name}_pop"), &sql)
            } else {
                pg.create_db(&format!("cp_{name}_empty"))
            };
            let what = format!(
                "{name}: {format} archive into {} target",
                if populated { "a populated" } else { "an empty" }
            );
            if populated {
                assert_ne!(snapshot(&target), expected, "{what}: not changed");
            }
            let out = restore(&target, file);
            assert!(out.code == Some(0), "{what}: restore failed:\n{out}");
            let got = snapshot(&target);
            assert_eq!(got.0, expected.0, "{what}: the schema differs");
            assert_eq!(got.1, expected.1, "{what}: the contents differ");
            pg.drop_db(&target);
        }
    }
    pg.drop_db(&source);
}

macro_rules! corpus_tests {
    ($($test:ident => $case:ident,)*) => {
        $(
            #[test]
            fn $test() {
                check($case.name, &[&$case]);
            }
        )*
    };
}

corpus_tests! {
    restores_a_view_that_depends_on_a_primary_key => VIEW_ON_PRIMARY_KEY,
    restores_not_valid_constraints_on_domains_and_tables => NOT_VALID,
    restores_partitioned_tables_keys_and_indexes => PARTITIONED,
    restores_inheritance => INHERITANCE,
    restores_rules => RULES,
    restores_publications => PUBLICATIONS,
    restores_extended_statistics => STATISTICS,
    restores_event_triggers => EVENT_TRIGGERS,
    restores_policies => POLICIES,
    restores_large_objects => LARGE_OBJECTS,
    restores_materialized_views => MATVIEWS,
    restores_triggers_and_functions => TRIGGERS_FUNCTIONS,
    restores_sequences_and_identity_columns => SEQUENCES,
    restores_comments => COMMENTS,
    restores_several_schemas_with_odd_names => SCHEMAS,
}

/// Over an older version of the schema that lacks the domain and the views: the dummy view
/// cannot be made (its column type does not exist), nor can the domain's constraint be
/// dropped. Before, the dummy view ended the guarded part, and the restore failed.
#[test]
fn restores_over_an_older_schema_that_lacks_a_domain_and_views() {
    let older = Case {
        name: "older_schema",
        setup: VIEW_ON_PRIMARY_KEY_SQL,
        modify: r"
DROP VIEW by_key_2;
DROP VIEW by_key;
ALTER TABLE base DROP COLUMN d;
DROP DOMAIN dom_nv;
DELETE FROM base WHERE key = 1;
",
    };
    check_targets(older.name, &[&older], &[true]);
}

/// A dummy view first in the clean section, then the drops of partitioned indexes and keys,
/// which fail unless guarded ("cannot drop index ... because other objects depend on it").
#[test]
fn restores_a_dummy_view_and_partitioned_indexes_over_a_populated_database() {
    check_targets(
        "dummy_and_partitions",
        &[&VIEW_ON_PRIMARY_KEY, &PARTITIONED],
        &[true],
    );
}

/// The target's views depend on each other the other way round (an older version): pg_dump's
/// clean order (v2, then v1) cannot drop v2 first. The failed drop is tried again once v1 is
/// gone; without that, v2 would stay and its CREATE would fail.
#[test]
fn restores_over_views_that_depend_on_each_other_the_other_way() {
    let inverted = Case {
        name: "inverted_views",
        setup: r"
CREATE TABLE t (a int);
INSERT INTO t VALUES (1), (2);
CREATE VIEW v1 AS SELECT a FROM t;
CREATE VIEW v2 AS SELECT a FROM v1;
",
        modify: r"
DROP VIEW v2;
DROP VIEW v1;
CREATE VIEW v2 AS SELECT a, 'old' AS version FROM t;
CREATE VIEW v1 AS SELECT a FROM v2;
INSERT INTO t VALUES (3);
",
    };
    check_targets(inverted.name, &[&inverted], &[true]);
}

/// `--jobs` runs pg_restore straight into the database; into an empty one it too leaves
/// `--clean` out, whose dummy view could only fail there.
#[test]
fn a_parallel_restore_into_an_empty_database_needs_no_clean_section() {
    let pg = server();
    let work = work_dir();
    let source = loaded("cp_jobs_src", &[VIEW_ON_PRIMARY_KEY.setup, SCHEMAS.setup]);
    let archive = &archives(&source, work.path())[0].1;
    let target = pg.create_db("cp_jobs_empty");
    Cmd::new()
        .args(["restore", "--yes", "--jobs", "2"])
        .arg(archive)
        .env("DATABASE_URL", server().socket_url(&target))
        .run()
        .assert_success();
    assert_eq!(snapshot(&target), snapshot(&source));
    pg.drop_db(&target);
    pg.drop_db(&source);
}

/// Every kind at once: the dependencies between them shape the clean section too.
#[test]
fn restores_the_whole_corpus_at_once() {
    check("all", &ALL);
}

// ---------------------------------------------------------------------------------------------
// A plain SQL dump without DROP statements
// ---------------------------------------------------------------------------------------------

#[test]
fn a_sql_dump_without_drops_is_refused_over_a_populated_database_and_restores_into_an_empty_one() {
    let pg = server();
    let work = work_dir();
    let cases = [&VIEW_ON_PRIMARY_KEY, &PARTITIONED, &LARGE_OBJECTS];
    let setup: Vec<&str> = cases.iter().map(|c| c.setup).collect();
    let modify: Vec<&str> = cases.iter().map(|c| c.modify).collect();
    let source = loaded("cp_noclean_src", &setup);
    let expected = snapshot(&source);
    // A hand-made `pg_dump | gzip`, and the same with --verbose (`-- TOC entry` comments).
    let plain = work.path().join("handmade.sql.gz");
    pg_dump_gz(&source, &["--no-owner", "--no-acl"], &plain);
    let verbose = work.path().join("verbose.sql.gz");
    pg_dump_gz(&source, &["--verbose"], &verbose);

    let mut sql = setup.clone();
    sql.extend(&modify);
    let populated = loaded("cp_noclean_pop", &sql);
    let before = snapshot(&populated);
    // A database without tables that holds a function is not empty either.
    let function_only = loaded(
        "cp_noclean_fn",
        &["CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';"],
    );
    let function_only_before = snapshot(&function_only);
    for file in [&plain, &verbose] {
        for (target, before) in [
            (&populated, &before),
            (&function_only, &function_only_before),
        ] {
            let out = restore(target, file);
            out.assert_code(3);
            let lines: Vec<&str> = out
                .stderr
                .lines()
                .filter(|l| l.starts_with("error:") || l.starts_with("hint:"))
                .collect();
            assert!(
                out.stderr.contains("no DROP statements")
                    && out.stderr.contains("only into an empty database")
                    && out.stderr.contains("pg_dump --clean --if-exists")
                    && out.stderr.contains("new empty database"),
                "{out}"
            );
            assert_eq!(lines.len(), 2, "a one-line error and a hint:\n{out}");
            assert!(
                !out.stderr.contains("rolled back"),
                "refused before the target is touched:\n{out}"
            );
            assert_eq!(&snapshot(target), before, "{}", file.display());
        }
    }

    // --force tries anyway: over the populated copy it fails and rolls back; into the database
    // that holds only an unrelated function it works.
    let forced = |db: &str| {
        Cmd::new()
            .args(["restore", "--yes", "--force"])
            .arg(&plain)
            .env("DATABASE_URL", server().socket_url(db))
            .run()
    };
    let out = forced(&populated);
    out.assert_code(1);
    assert!(out.stderr.contains("rolled back"), "{out}");
    assert_eq!(snapshot(&populated), before);
    forced(&function_only).assert_success();
    assert_eq!(snapshot(&function_only).1, expected.1);

    // The same files restore into an empty database.
    for file in [&plain, &verbose] {
        let empty = pg.create_db("cp_noclean_empty");
        restore(&empty, file).assert_success();
        assert_eq!(snapshot(&empty), expected, "{}", file.display());
        pg.drop_db(&empty);
    }

    // A data-only dump is meant for a database that has the schema: not refused.
    let data_only = work.path().join("data.sql.gz");
    pg_dump_gz(
        &source,
        &["--data-only", "--no-owner", "--no-acl"],
        &data_only,
    );
    let schema_only = loaded("cp_noclean_schema", &[]);
    let schema = pg_tool(
        "pg_dump",
        &["--schema-only", "--no-owner", "--no-acl"],
        &source,
    );
    pg.psql(&schema_only, &String::from_utf8(schema).unwrap());
    restore(&schema_only, &data_only).assert_success();
    assert_eq!(snapshot(&schema_only), expected);

    for db in [&source, &populated, &function_only, &schema_only] {
        pg.drop_db(db);
    }
}
