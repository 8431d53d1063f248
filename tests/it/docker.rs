//! Docker-exec mode (`BACKUP_DOCKER_CONTAINER`, a Compose service) without a Docker engine: a
//! stand-in `docker` on `PATH` checks the argv it gets (no `-t`, `-i` for `exec`, `-T` for
//! Compose, `-e NAME` without a value, no password anywhere), logs it, and runs the command on
//! this machine the way `docker exec` would: with only the `-e` variables (taken from its own
//! environment), in a session of its own, forwarding no signal. So a backup and a restore go
//! through it against the real test server, and an interrupted run must stop the "container's"
//! pg_dump itself.

use crate::cmd::{self, Cmd, Output};
use crate::harness::{self, server, APP_PASSWORD};
use crate::support::{alive, backup_names, filled_db, names, tempdir, wait_until};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;
use tempfile::TempDir;

/// The stand-in. `@LOG@`, `@PIDS@`, `@FORBID@` and `@PATH@` are filled in by [`FakeDocker::new`].
const FAKE_DOCKER: &str = r#"#!/bin/sh
fail() { echo "fake docker: $*" >&2; exit 99; }
# One write per call, so that calls made at the same time (the stopper's) never interleave.
rec=$(for a in "$@"; do printf '%s\037' "$a"; done; printf '\036'); printf '%s' "$rec" >> '@LOG@'
for a in "$@"; do
  case "$a" in *'@FORBID@'*) fail "a password is in argv" ;; esac
  case "$a" in -t|--tty|-it|-ti) fail "a TTY was asked for ($a)" ;; esac
done
mode=exec
case "$1" in
  exec) shift ;;
  compose)
    shift; mode=compose
    if [ "$1" = -f ]; then shift 2; fi
    [ "$1" = exec ] || fail "compose: expected exec, got $1"
    shift ;;
  *) fail "unexpected docker command $1" ;;
esac
interactive=no; notty=no; names=
while :; do
  case "$1" in
    -i) interactive=yes; shift ;;
    -T) notty=yes; shift ;;
    -e)
      case "$2" in *=*) fail "-e $2 carries a value" ;; esac
      expr "$2" : '[A-Za-z_][A-Za-z0-9_]*$' >/dev/null || fail "bad variable name $2"
      names="$names $2"; shift 2 ;;
    -*) fail "unexpected option $1" ;;
    *) break ;;
  esac
done
target=$1; shift
case "$target" in
  missing) echo "Error response from daemon: No such container: missing" >&2; exit 1 ;;
  stopped) echo "Error response from daemon: container 4f2a9c1e7b3d is not running" >&2; exit 1 ;;
esac
if [ "$mode" = compose ]; then
  [ "$notty" = yes ] || fail "compose exec without -T"
elif [ "$1" != sh ]; then
  [ "$interactive" = yes ] || fail "exec without -i"
fi
for n in $names; do
  eval "isset=\${$n+x}; v=\${$n-}"
  [ -n "$isset" ] && set -- "$n=$v" "$@"
done
set -- env -i 'PATH=@PATH@' "$@"
exec 3<&0
setsid sh -c 'echo $$ >> "$0"; exec "$@"' '@PIDS@' "$@" <&3 3<&- &
child=$!
exec 3<&-
wait "$child"
"#;

/// A folder holding the stand-in `docker`, its argv log (arguments ended by US, calls by RS)
/// and the pids it started; and the backup folder of the runs that use it.
struct FakeDocker {
    dir: TempDir,
    backups: TempDir,
}

impl FakeDocker {
    fn new() -> FakeDocker {
        let dir = tempdir();
        let script = FAKE_DOCKER
            .replace("@LOG@", &dir.path().join("argv.log").to_string_lossy())
            .replace("@PIDS@", &dir.path().join("pids.log").to_string_lossy())
            .replace("@FORBID@", APP_PASSWORD)
            .replace(
                "@PATH@",
                &format!("{}:/usr/bin:/bin", server().bindir.display()),
            );
        let docker = dir.path().join("docker");
        fs::write(&docker, script).unwrap();
        fs::set_permissions(&docker, fs::Permissions::from_mode(0o755)).unwrap();
        FakeDocker {
            dir,
            backups: tempdir(),
        }
    }

    /// `aos-backup` with the stand-in first on `PATH`, connecting to `db` with the
    /// password-holding TCP URL.
    fn plain_cmd(&self, db: &str) -> Cmd {
        let path = format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Cmd::new()
            .env("PATH", path)
            .env("BACKUP_DIR", self.backups.path())
            .env("DATABASE_URL", server().tcp_url(db))
    }

    /// The same, in docker-exec mode for `container`.
    fn cmd(&self, container: &str, db: &str) -> Cmd {
        self.plain_cmd(db).env("BACKUP_DOCKER_CONTAINER", container)
    }

    /// Each call's arguments, in order.
    fn calls(&self) -> Vec<Vec<String>> {
        let text = fs::read_to_string(self.dir.path().join("argv.log")).unwrap_or_default();
        text.split_terminator('\x1e')
            .map(|call| call.split_terminator('\x1f').map(str::to_string).collect())
            .collect()
    }

    /// The processes started "in the container".
    fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.dir.path().join("pids.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// The calls that ran `tool` in the container.
    fn runs_of(&self, tool: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.iter().any(|a| a == tool))
            .count()
    }
}

/// Checks every logged call: the stand-in refused the bad ones already (exit 99), so this
/// proves they were made at all, and that the password is nowhere in them.
fn assert_clean_argv(fake: &FakeDocker) {
    let calls = fake.calls();
    assert!(!calls.is_empty(), "docker was never called");
    for call in &calls {
        let line = call.join(" ");
        assert!(!line.contains(APP_PASSWORD), "password in argv: {line}");
        assert!(
            !line.contains(&harness::app_password_encoded()),
            "password in argv: {line}"
        );
        assert!(!call.iter().any(|a| a == "-t"), "a TTY: {line}");
        let stop = call.iter().any(|a| a == "aos-backup-stop");
        assert!(
            stop || call.iter().any(|a| a == "-i" || a == "-T"),
            "no -i: {line}"
        );
        for pair in call.windows(2).filter(|w| w[0] == "-e") {
            assert!(!pair[1].contains('='), "-e with a value: {line}");
        }
    }
}

/// The one `error:` line of a failed run.
fn error_line(out: &Output) -> &str {
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{out}");
    errors[0]
}

#[test]
fn backup_and_restore_run_inside_the_container_with_no_password_in_argv() {
    let pg = server();
    let db = filled_db("docker_rt");
    let fake = FakeDocker::new();
    let out = fake
        .cmd("hyper-db", &db)
        .args(["backup", "--globals"])
        .run();
    out.assert_success();
    let backup = PathBuf::from(out.stdout_trimmed());
    assert!(backup.is_file(), "{out}");
    assert!(fake.runs_of("pg_dump") >= 2, "{:?}", fake.calls());
    assert!(fake.runs_of("pg_dumpall") >= 2, "{:?}", fake.calls());
    let globals = fs::read_to_string(format!("{}.globals.sql", backup.display())).unwrap();
    assert!(globals.contains("CREATE ROLE"), "{globals}");

    let verified = fake.cmd("hyper-db", &db).arg("verify").arg(&backup).run();
    verified.assert_success();
    assert!(fake.runs_of("pg_restore") >= 2, "{:?}", fake.calls());

    let target = pg.create_db("docker_rt_target");
    let restored = fake
        .cmd("hyper-db", &target)
        .args(["restore", "--yes", "--from-database", &db])
        .arg(&backup)
        .run();
    restored.assert_success();
    assert_eq!(pg.table_contents(&target), pg.table_contents(&db));
    assert!(fake.runs_of("psql") >= 2, "{:?}", fake.calls());
    assert_clean_argv(&fake);
    let first = &fake.calls()[0];
    assert_eq!(first[..2], ["exec", "-i"], "{first:?}");
    assert!(first.contains(&"hyper-db".to_string()));
}

#[test]
fn a_compose_service_runs_the_tools_with_docker_compose_exec_t() {
    let db = filled_db("docker_compose");
    let fake = FakeDocker::new();
    let out = fake
        .plain_cmd(&db)
        .env("BACKUP_DOCKER_COMPOSE_SERVICE", "db")
        .env("BACKUP_DOCKER_COMPOSE_FILE", "/srv/app/compose.yml")
        .arg("backup")
        .run();
    out.assert_success();
    assert_clean_argv(&fake);
    let dump = fake
        .calls()
        .into_iter()
        .find(|c| c.last().is_some_and(|a| a.starts_with("--dbname=")))
        .expect("a pg_dump call");
    assert_eq!(
        dump[..5],
        ["compose", "-f", "/srv/app/compose.yml", "exec", "-T"],
        "{dump:?}"
    );
    assert!(dump.contains(&"db".to_string()) && dump.contains(&"pg_dump".to_string()));
}

#[test]
fn a_missing_or_stopped_container_is_one_clear_line_and_exit_7() {
    let db = filled_db("docker_missing");
    let fake = FakeDocker::new();
    for (container, said, hint) in [
        (
            "missing",
            "No such container: missing",
            "BACKUP_DOCKER_CONTAINER",
        ),
        ("stopped", "is not running", "docker start"),
    ] {
        let cmd = fake.cmd(container, &db).arg("backup");
        let out = cmd.run();
        out.assert_code(7);
        let line = error_line(&out);
        assert!(line.contains(said), "{out}");
        assert!(
            line.contains(&format!("container \"{container}\"")),
            "{out}"
        );
        assert!(
            out.stderr.contains("hint:") && out.stderr.contains(hint),
            "{out}"
        );
        assert!(backup_names(fake.backups.path()).is_empty(), "{out}");
    }
    assert_clean_argv(&fake);
}

#[test]
fn our_own_connection_from_this_machine_failing_says_so_in_docker_mode() {
    let db = filled_db("docker_hostconn");
    let fake = FakeDocker::new();
    let url = server()
        .tcp_url(&db)
        .replace(&format!(":{}/", server().port), ":1/");
    let out = fake
        .cmd("hyper-db", &db)
        .env("DATABASE_URL", url)
        .arg("backup")
        .run();
    out.assert_code(7);
    error_line(&out);
    assert!(out.stderr.contains("connects from this machine"), "{out}");
    assert!(out.stderr.contains("container \"hyper-db\""), "{out}");
}

#[test]
fn what_needs_our_files_inside_the_container_is_refused_up_front() {
    let db = filled_db("docker_refused");
    let fake = FakeDocker::new();
    let out = fake
        .cmd("hyper-db", &db)
        .args(["backup", "--format", "directory"])
        .run();
    out.assert_code(2);
    assert!(error_line(&out).contains("directory format"), "{out}");
    assert!(fake.calls().is_empty(), "refused before docker runs");

    let made = fake.cmd("hyper-db", &db).arg("backup").run();
    made.assert_success();
    let backup = made.stdout_trimmed().to_string();
    let target = server().create_db("docker_refused_target");
    let out = fake
        .cmd("hyper-db", &target)
        .args([
            "restore",
            "--yes",
            "--jobs",
            "2",
            "--from-database",
            &db,
            &backup,
        ])
        .run();
    out.assert_code(2);
    assert!(error_line(&out).contains("--jobs"), "{out}");
}

/// Backends of `db` that pg_dump opened.
fn pg_dump_backends(db: &str) -> u32 {
    server()
        .psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = {} AND application_name = 'pg_dump'",
                harness::quote_literal(db)
            ),
        )
        .parse()
        .unwrap()
}

/// Starts a backup whose pg_dump (in the "container") waits for a lock, signals aos-backup alone
/// with `signal`, and checks that nothing it started in the container survives.
fn interrupt_a_blocked_backup(signal: libc::c_int) -> Output {
    let db = filled_db("docker_interrupt");
    let blocker = crate::support::Blocker::lock(&db, "big");
    let fake = FakeDocker::new();
    let cmd = fake.cmd("hyper-db", &db).arg("backup");
    let child = cmd.spawn();
    wait_until(
        "pg_dump waits for the lock",
        Duration::from_secs(30),
        Some(&child),
        || pg_dump_backends(&db) > 0,
    );
    let in_container = fake.pids();
    assert!(!in_container.is_empty());
    cmd::signal(&child, signal);
    let out = cmd.wait(child);
    wait_until(
        &format!("the container's processes {in_container:?} are gone"),
        Duration::from_secs(15),
        None,
        || in_container.iter().all(|p| !alive(*p)),
    );
    wait_until(
        "pg_dump's backend is gone",
        Duration::from_secs(15),
        None,
        || pg_dump_backends(&db) == 0,
    );
    drop(blocker);
    if signal == libc::SIGTERM {
        let leftovers: Vec<String> = names(fake.backups.path())
            .into_iter()
            .filter(|n| n.starts_with("aos-backup-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}\n{out}");
    }
    assert!(
        fake.calls()
            .iter()
            .any(|c| c.contains(&"aos-backup-stop".into())),
        "the stopper ran: {:?}",
        fake.calls()
    );
    assert_clean_argv(&fake);
    out
}

#[test]
fn sigterm_mid_backup_stops_pg_dump_inside_the_container() {
    let out = interrupt_a_blocked_backup(libc::SIGTERM);
    out.assert_code(143);
}

#[test]
fn sigkill_mid_backup_still_stops_pg_dump_inside_the_container() {
    let out = interrupt_a_blocked_backup(libc::SIGKILL);
    assert_eq!(out.signal, Some(libc::SIGKILL), "{out}");
}

#[test]
fn a_backup_in_the_container_records_row_counts_on_the_snapshot_pg_dump_dumps() {
    let db = filled_db("docker_rows");
    let fake = FakeDocker::new();
    let out = fake.cmd("hyper-db", &db).args(["backup", "--json"]).run();
    out.assert_success();
    let rows: Vec<(String, u64)> = out.json()["row_counts"]
        .as_array()
        .unwrap_or_else(|| panic!("no row counts: {out}"))
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().into(),
                t["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [("big", 20000), ("other", 1), ("small", 2)].map(|(t, n)| (t.to_string(), n));
    assert_eq!(rows, expected);
    let dumps = fake.calls();
    let dump = dumps
        .iter()
        .find(|c| c.iter().any(|a| a.starts_with("--format=")))
        .expect("a pg_dump call");
    assert!(
        dump.iter().any(|a| a.starts_with("--snapshot=")),
        "{dump:?}"
    );
    assert_clean_argv(&fake);
}
