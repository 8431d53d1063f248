//! TLS: aos-backup's own connection and the pg_dump/pg_restore it starts both honour `sslmode`
//! and `sslrootcert`, against a server that only lets the role `tlsonly` in over TLS.

use crate::cmd::Cmd;
use crate::harness::{self, server};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const ROLE: &str = "tlsonly";
const PASSWORD: &str = "tls-Only-pw";

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed for the TLS tests: apt-get install openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Turns TLS on in the shared server once, with a CA-signed certificate for `localhost`; returns
/// the CA certificate's path.
fn ca_cert() -> &'static Path {
    static CA: OnceLock<PathBuf> = OnceLock::new();
    CA.get_or_init(|| {
        let s = server();
        let dir = s.data_dir.join("tls-test");
        std::fs::create_dir_all(&dir).unwrap();
        openssl(&["req", "-new", "-x509", "-days", "2", "-nodes", "-subj", "/CN=aos-test-ca", "-keyout", "ca.key", "-out", "ca.crt"], &dir);
        openssl(&["req", "-new", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"], &dir);
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n").unwrap();
        openssl(
            &["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt"],
            &dir,
        );
        // The server reads its key as its own user, and wants it private.
        let owner = std::fs::metadata(&s.data_dir).unwrap();
        for f in ["server.key", "server.crt"] {
            std::os::unix::fs::chown(dir.join(f), Some(owner.uid()), Some(owner.gid())).unwrap();
        }
        std::fs::set_permissions(dir.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let hba = s.data_dir.join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!("hostssl all {ROLE} 127.0.0.1/32 scram-sha-256\nhost all {ROLE} 127.0.0.1/32 reject\n{old}"),
        )
        .unwrap();
        s.psql(
            "postgres",
            &format!(
                "CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}';\nGRANT {app} TO {ROLE};\n\
                 ALTER SYSTEM SET ssl = on;\nALTER SYSTEM SET ssl_cert_file = '{crt}';\nALTER SYSTEM SET ssl_key_file = '{key}';\n\
                 SELECT pg_reload_conf();",
                app = harness::APP_ROLE,
                crt = dir.join("server.crt").display(),
                key = dir.join("server.key").display(),
            ),
        );
        for _ in 0..100 {
            if s.psql("postgres", "SHOW ssl") == "on" {
                return dir.join("ca.crt");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the server did not turn TLS on; see {}", s.log_file.display());
    })
}

fn db_with_data() -> String {
    let s = server();
    let db = s.create_db("tls");
    s.psql(
        &db,
        &format!(
            "SET ROLE {}; CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g;",
            harness::APP_ROLE
        ),
    );
    db
}

fn url(host: &str, db: &str, query: &str) -> String {
    format!(
        "postgresql://{ROLE}:{PASSWORD}@{host}:{}/{db}?{query}",
        server().port
    )
}

#[test]
fn sslmode_require_backs_up_and_restores_over_tls_only() {
    ca_cert();
    let db = db_with_data();
    let cmd = Cmd::new()
        .env("DATABASE_URL", url("localhost", &db, "sslmode=require"))
        .args(["backup"]);
    let out = cmd.run();
    out.assert_success();
    let file = out.stdout_trimmed().to_string();
    Cmd::new()
        .env("DATABASE_URL", url("localhost", &db, "sslmode=require"))
        .args([
            "restore",
            "--yes",
            &cmd.dir().join(&file).display().to_string(),
        ])
        .run()
        .assert_success();
    assert_eq!(server().psql(&db, "SELECT count(*) FROM t"), "100");
}

#[test]
fn sslmode_disable_is_rejected_for_a_tls_only_role() {
    ca_cert();
    let db = db_with_data();
    let out = Cmd::new()
        .env("DATABASE_URL", url("localhost", &db, "sslmode=disable"))
        .args(["backup"])
        .run();
    out.assert_code(7);
    assert!(out.stderr.contains("pg_hba.conf"), "{}", out.stderr);
}

#[test]
fn verify_full_checks_the_chain_and_the_host_name() {
    let ca = ca_cert().display().to_string();
    let db = db_with_data();
    let good = Cmd::new()
        .env(
            "DATABASE_URL",
            url(
                "localhost",
                &db,
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
        )
        .args(["backup"])
        .run();
    good.assert_success();
    // The certificate names localhost, not 127.0.0.1.
    let wrong_name = Cmd::new()
        .env(
            "DATABASE_URL",
            url(
                "127.0.0.1",
                &db,
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
        )
        .args(["backup"])
        .run();
    wrong_name.assert_code(7);
    assert!(
        wrong_name.stderr.contains("certificate"),
        "{}",
        wrong_name.stderr
    );
    assert!(
        wrong_name.stderr.contains("hint:") && wrong_name.stderr.contains("sslrootcert"),
        "{}",
        wrong_name.stderr
    );
    // verify-ca checks the chain only, so the IP address is fine there.
    Cmd::new()
        .env(
            "DATABASE_URL",
            url(
                "127.0.0.1",
                &db,
                &format!("sslmode=verify-ca&sslrootcert={ca}"),
            ),
        )
        .args(["backup"])
        .run()
        .assert_success();
    // No root certificate that knows our CA: refused.
    let unknown_ca = Cmd::new()
        .env("DATABASE_URL", url("localhost", &db, "sslmode=verify-full"))
        .args(["backup"])
        .run();
    unknown_ca.assert_code(7);
    assert!(
        unknown_ca.stderr.contains("certificate") || unknown_ca.stderr.contains("Issuer"),
        "{}",
        unknown_ca.stderr
    );
    assert!(!unknown_ca.stderr.contains(PASSWORD));
}
