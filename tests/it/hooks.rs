//! Hooks around a backup, against a real PostgreSQL server: `before`, `after`, `on-failure` and
//! `finally` run in that order and are told the outcome in `AOS_BACKUP_*` variables; a failing
//! or slow `before` cancels the backup; a hook past its time is killed with its children; a hook
//! never sees `DATABASE_URL`, a `PG*` variable or the password; hook output stays off stdout.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cmd::{Cmd, Output};
use crate::harness::{app_password_encoded, server, APP_PASSWORD};
use crate::support::{self, alive, names_if_any, tempdir};

/// A hook script: appends one line to `LOG` (the hook's name, then `NAME=value` for each
/// `AOS_BACKUP_*` variable, tab-separated, `-` when unset), dumps its environment to
/// `LOG.HOOK.env`, and says hello on stdout.
const SCRIPT: &str = r#"log="$1"
line="$AOS_BACKUP_HOOK"
for v in OPERATION DATABASE STATUS EXIT_CODE FILE SIZE DURATION ERROR; do
  eval "x=\${AOS_BACKUP_$v-(unset)}"
  line="$line	$v=$x"
done
printf '%s\n' "$line" >> "$log"
env > "$log.$AOS_BACKUP_HOOK.env"
echo "hello from the $AOS_BACKUP_HOOK hook"
"#;

/// The hook script in `dir`, and the command line that runs it for every hook.
struct Recorder {
    log: PathBuf,
    command: String,
}

impl Recorder {
    fn new(dir: &Path) -> Recorder {
        let script = dir.join("hook.sh");
        fs::write(&script, SCRIPT).unwrap();
        let log = dir.join("hooks.log");
        let command = format!("sh {} {}", script.display(), log.display());
        Recorder { log, command }
    }

    /// Each hook that ran, in order, with its variables.
    fn runs(&self) -> Vec<(String, BTreeMap<String, String>)> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| {
                let mut fields = l.split('\t');
                let hook = fields.next().unwrap().to_string();
                let vars = fields
                    .map(|f| {
                        let (k, v) = f.split_once('=').unwrap();
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                (hook, vars)
            })
            .collect()
    }

    fn order(&self) -> Vec<String> {
        self.runs().into_iter().map(|(h, _)| h).collect()
    }

    fn vars_of(&self, hook: &str) -> BTreeMap<String, String> {
        self.runs()
            .into_iter()
            .find(|(h, _)| h == hook)
            .unwrap_or_else(|| panic!("the {hook} hook did not run: {:?}", self.order()))
            .1
    }

    fn env_of(&self, hook: &str) -> String {
        fs::read_to_string(format!("{}.{hook}.env", self.log.display())).unwrap()
    }
}

/// `aos-backup` backing up `db` (as `app` over TCP, the password in `DATABASE_URL`) into
/// `dir`, with every hook running `rec`'s script.
fn aos(dir: &Path, db: &str, rec: &Recorder) -> Cmd {
    Cmd::new()
        .env("BACKUP_DIR", dir)
        .env("PG_BIN", &server().bindir)
        .env("DATABASE_URL", server().tcp_url(db))
        .env("BACKUP_HOOK_BEFORE", &rec.command)
        .env("BACKUP_HOOK_AFTER", &rec.command)
        .env("BACKUP_HOOK_ON_FAILURE", &rec.command)
        .env("BACKUP_HOOK_FINALLY", &rec.command)
}

fn small_db(prefix: &str) -> String {
    let pg = server();
    let db = pg.create_db(prefix);
    pg.psql(
        &db,
        "SET ROLE app; CREATE TABLE t (a int); INSERT INTO t VALUES (1), (2);",
    );
    db
}

fn backups(dir: &Path) -> Vec<String> {
    names_if_any(dir)
        .into_iter()
        .filter(|n| n.ends_with(".dump.zst"))
        .collect()
}

#[track_caller]
fn assert_stderr(out: &Output, needle: &str) {
    assert!(
        out.stderr.contains(needle),
        "{needle:?} not in stderr:\n{out}"
    );
}

#[test]
fn hooks_run_in_order_and_are_told_the_outcome() {
    let tmp = tempdir();
    let (dir, rec) = (tmp.path().join("b"), Recorder::new(tmp.path()));
    let db = small_db("hooks_order");
    let out = aos(&dir, &db, &rec).arg("backup").run();
    out.assert_success();
    // Hook output goes to the log on stderr; stdout is only the result.
    let path = PathBuf::from(out.stdout_trimmed());
    assert!(path.is_file(), "{out}");
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    assert_stderr(&out, "hello from the before hook");
    assert_stderr(&out, "hello from the finally hook");
    assert_eq!(rec.order(), ["before", "after", "finally"]);

    let before = rec.vars_of("before");
    assert_eq!(before["OPERATION"], "backup");
    assert_eq!(before["DATABASE"], db);
    assert_eq!(before["STATUS"], "(unset)");
    assert_eq!(before["FILE"], "(unset)");
    let after = rec.vars_of("after");
    assert_eq!(after["STATUS"], "success");
    assert_eq!(after["EXIT_CODE"], "0");
    assert_eq!(after["FILE"], path.display().to_string());
    assert_eq!(
        after["SIZE"],
        fs::metadata(&path).unwrap().len().to_string()
    );
    assert!(after["DURATION"].parse::<u64>().is_ok(), "{after:?}");
    assert_eq!(after["ERROR"], "(unset)");
    assert_eq!(rec.vars_of("finally"), after, "finally is told the same");

    // --json: stdout stays one JSON document.
    let out = aos(&dir, &db, &rec).args(["--json", "backup"]).run();
    out.assert_success();
    assert!(out.json()["path"].is_string(), "{out}");
}

#[test]
fn a_failing_before_hook_cancels_the_backup() {
    let tmp = tempdir();
    let (dir, rec) = (tmp.path().join("b"), Recorder::new(tmp.path()));
    let db = small_db("hooks_before_fails");
    let out = aos(&dir, &db, &rec)
        .env(
            "BACKUP_HOOK_BEFORE",
            "echo the disk is not mounted >&2; exit 3",
        )
        .arg("backup")
        .run();
    out.assert_code(1);
    assert_stderr(
        &out,
        "error: the before hook failed (exit code 3: the disk is not mounted), so the backup was not started",
    );
    assert_stderr(&out, "hint: ");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(backups(&dir).is_empty(), "no backup was made: {out}");
    assert_eq!(rec.order(), ["on-failure", "finally"]);
    let failed = rec.vars_of("on-failure");
    assert_eq!(failed["STATUS"], "failure");
    assert_eq!(failed["EXIT_CODE"], "1");
    assert!(failed["ERROR"].contains("before hook failed"), "{failed:?}");
    assert_eq!(failed["FILE"], "(unset)");
}

#[test]
fn a_before_hook_past_its_timeout_is_killed_with_its_children() {
    let tmp = tempdir();
    let (dir, rec) = (tmp.path().join("b"), Recorder::new(tmp.path()));
    let pidfile = tmp.path().join("sleep.pid");
    let db = small_db("hooks_timeout");
    let started = Instant::now();
    let out = aos(&dir, &db, &rec)
        .env("BACKUP_HOOK_TIMEOUT", "1s")
        .env(
            "BACKUP_HOOK_BEFORE",
            format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
        )
        .arg("backup")
        .run();
    out.assert_code(1);
    assert!(started.elapsed() < Duration::from_secs(30), "{out}");
    assert_stderr(
        &out,
        "the before hook failed (timed out after 1.0s and was killed)",
    );
    assert_stderr(&out, "BACKUP_HOOK_TIMEOUT");
    assert!(backups(&dir).is_empty(), "{out}");
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    support::wait_until(
        "the hook's sleep is gone",
        Duration::from_secs(10),
        None,
        || !alive(pid),
    );
    assert_eq!(rec.order(), ["on-failure", "finally"]);
}

#[test]
fn a_hook_never_sees_the_connection_secrets() {
    let tmp = tempdir();
    let (dir, rec) = (tmp.path().join("b"), Recorder::new(tmp.path()));
    let db = small_db("hooks_secrets");
    let out = aos(&dir, &db, &rec)
        .env("PGPASSWORD", APP_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("APP_DB_PASSWORD", APP_PASSWORD)
        .env("KEEP_ME", "inherited")
        .env("AWS_SECRET_ACCESS_KEY", "HookMustNotSeeThisS3Key")
        .env("AWS_SESSION_TOKEN", "HookMustNotSeeThisToken")
        .arg("backup")
        .run();
    out.assert_success();
    for hook in ["before", "after", "finally"] {
        let env = rec.env_of(hook);
        assert!(
            !env.contains("HookMustNotSee"),
            "{hook} hook got the S3 secrets:\n{env}"
        );
        for line in env.lines() {
            let name = line.split('=').next().unwrap();
            assert!(
                name != "DATABASE_URL" && !name.starts_with("PG"),
                "{hook} hook got {name}:\n{env}"
            );
            assert!(name != "APP_DB_PASSWORD", "{hook} hook got {name}");
        }
        assert!(!env.contains(APP_PASSWORD), "{hook} hook env:\n{env}");
        assert!(!env.contains(&app_password_encoded()), "{hook}:\n{env}");
        assert!(env.contains("KEEP_ME=inherited"), "{hook}:\n{env}");
        assert!(
            env.contains("AOS_BACKUP_OPERATION=backup"),
            "{hook}:\n{env}"
        );
    }
    assert!(!out.stderr.contains(APP_PASSWORD), "{out}");
}

/// With the config file's `[[databases]]` and no `DATABASE_URL`, no hook sees a `url_env`
/// variable, nor any variable holding a listed database's password.
#[test]
fn a_hook_never_sees_the_configured_databases_urls() {
    let tmp = tempdir();
    let (dir, rec) = (tmp.path().join("b"), Recorder::new(tmp.path()));
    let (shop, blog) = (small_db("hooks_cfg_shop"), small_db("hooks_cfg_blog"));
    let url_file = tmp.path().join("blog.url");
    fs::write(&url_file, format!("{}\n", server().tcp_url(&blog))).unwrap();
    support::set_mode(&url_file, 0o600);
    let cfg = tmp.path().join("aos.toml");
    fs::write(
        &cfg,
        format!(
            "[[databases]]\nname = \"shop\"\nurl_env = \"SHOP_DATABASE_URL\"\n\n\
             [[databases]]\nname = \"blog\"\nurl_file = \"{}\"\n",
            url_file.display()
        ),
    )
    .unwrap();
    let out = Cmd::new()
        .env("BACKUP_DIR", &dir)
        .env("PG_BIN", &server().bindir)
        .env("AOS_BACKUP_CONFIG", &cfg)
        .env("SHOP_DATABASE_URL", server().tcp_url(&shop))
        .env("APP_DB_PASSWORD", APP_PASSWORD)
        .env("KEEP_ME", "inherited")
        .env("BACKUP_HOOK_BEFORE", &rec.command)
        .env("BACKUP_HOOK_AFTER", &rec.command)
        .env("BACKUP_HOOK_FINALLY", &rec.command)
        .arg("backup")
        .run();
    out.assert_success();
    assert_eq!(rec.order(), ["before", "after", "finally"]);
    for hook in ["before", "after", "finally"] {
        let env = rec.env_of(hook);
        for line in env.lines() {
            let name = line.split('=').next().unwrap();
            assert!(
                name != "SHOP_DATABASE_URL" && name != "APP_DB_PASSWORD",
                "{hook} hook got {name}:\n{env}"
            );
        }
        assert!(!env.contains(APP_PASSWORD), "{hook} hook env:\n{env}");
        assert!(!env.contains(&app_password_encoded()), "{hook}:\n{env}");
        assert!(env.contains("KEEP_ME=inherited"), "{hook}:\n{env}");
    }
    assert!(!out.stderr.contains(APP_PASSWORD), "{out}");
    let pg = server();
    pg.drop_db(&shop);
    pg.drop_db(&blog);
}

#[test]
fn a_failed_backup_runs_on_failure_with_the_error_and_not_after() {
    let tmp = tempdir();
    let (dir, rec) = (tmp.path().join("b"), Recorder::new(tmp.path()));
    let missing = format!("hooks_missing_db_{}", std::process::id());
    let out = aos(&dir, &missing, &rec).arg("backup").run();
    out.assert_code(7);
    assert_eq!(rec.order(), ["before", "on-failure", "finally"]);
    let failed = rec.vars_of("on-failure");
    assert_eq!(failed["STATUS"], "failure");
    assert_eq!(failed["EXIT_CODE"], "7");
    assert_eq!(failed["DATABASE"], missing);
    assert!(failed["ERROR"].contains("does not exist"), "{failed:?}");
    assert!(!failed["ERROR"].contains(APP_PASSWORD), "{failed:?}");
    assert_eq!(failed["FILE"], "(unset)");
    assert_eq!(rec.vars_of("finally")["STATUS"], "failure");
}

#[test]
fn a_failing_after_hook_is_a_warning_and_the_backup_stands() {
    let tmp = tempdir();
    let (dir, rec) = (tmp.path().join("b"), Recorder::new(tmp.path()));
    let db = small_db("hooks_after_fails");
    let out = aos(&dir, &db, &rec)
        .env(
            "BACKUP_HOOK_AFTER",
            "echo cannot reach the webhook >&2; exit 4",
        )
        .env("BACKUP_HOOK_TIMEOUT", "0")
        .arg("backup")
        .run();
    out.assert_success();
    assert!(PathBuf::from(out.stdout_trimmed()).is_file(), "{out}");
    assert_stderr(
        &out,
        "the after hook failed (exit code 4: cannot reach the webhook); the outcome of the run stands",
    );
    assert_eq!(rec.order(), ["before", "finally"]);
    assert_eq!(rec.vars_of("finally")["STATUS"], "success");
}

#[test]
fn hooks_come_from_the_config_file_and_config_shows_them() {
    let tmp = tempdir();
    let rec = Recorder::new(tmp.path());
    let db = small_db("hooks_toml");
    let project = tmp.path().join("project");
    fs::create_dir(&project).unwrap();
    fs::write(
        project.join("aos-backup.toml"),
        format!(
            "backup_dir = \"{}\"\n[hooks]\nafter = \"{}\"\ntimeout = \"30s\"\n",
            tmp.path().join("b").display(),
            rec.command
        ),
    )
    .unwrap();
    let cmd = || {
        Cmd::new()
            .current_dir(&project)
            .env("PG_BIN", &server().bindir)
            .env("DATABASE_URL", server().tcp_url(&db))
    };
    let out = cmd().arg("backup").run();
    out.assert_success();
    assert_eq!(rec.order(), ["after"]);
    let out = cmd().args(["config", "--json"]).run();
    out.assert_success();
    let top = out.json();
    assert_eq!(top["hooks.after"], rec.command.as_str());
    assert_eq!(top["hooks.before"], serde_json::Value::Null);
    assert_eq!(top["hooks.timeout"], 30);
    let out = cmd().args(["config"]).run();
    assert!(
        out.stdout
            .lines()
            .any(|l| l == format!("hooks.after = {}  (config file)", rec.command)),
        "{out}"
    );
    let out = cmd().env("BACKUP_HOOK_TIMEOUT", "soon").arg("backup").run();
    out.assert_code(2);
    assert_stderr(&out, "BACKUP_HOOK_TIMEOUT");
}

#[test]
fn a_running_hook_dies_with_aos_backup() {
    let tmp = tempdir();
    let rec = Recorder::new(tmp.path());
    let db = small_db("hooks_killed");
    for (signal, code) in [(libc::SIGTERM, Some(143)), (libc::SIGKILL, None)] {
        let pidfile = tmp.path().join(format!("sleep.{signal}.pid"));
        let cmd = aos(&tmp.path().join("b"), &db, &rec)
            .env(
                "BACKUP_HOOK_BEFORE",
                format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
            )
            .arg("backup");
        let child = cmd.spawn();
        support::wait_until(
            "the hook started",
            Duration::from_secs(30),
            Some(&child),
            || fs::read_to_string(&pidfile).is_ok_and(|t| t.ends_with('\n')),
        );
        let pid: i32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Only aos-backup is signalled, not its process group.
        crate::cmd::signal(&child, signal);
        let out = cmd.wait(child);
        assert_eq!(out.code, code, "{out}");
        support::wait_until(
            "the hook's sleep is gone",
            Duration::from_secs(10),
            None,
            || !alive(pid),
        );
    }
    assert!(
        rec.order().is_empty(),
        "no hook runs after a signal: {:?}",
        rec.order()
    );
}
