//! The set-up scripts the README opens with (`scripts/demo.sh`, `scripts/test.sh`) and CI's entry
//! point: they parse, they can be run as commands, and CI runs the same script as a developer.
//! demo.sh itself is not run here: it builds in release mode (LTO, minutes); it is run by hand.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_setup_scripts_parse_and_are_executable() {
    for script in [
        "scripts/demo.sh",
        "scripts/test.sh",
        "scripts/lib.sh",
        ".ci/run",
    ] {
        let path = repo_file(script);
        let out = Command::new("bash")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "{script} does not parse: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if script != "scripts/lib.sh" {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert!(mode & 0o111 != 0, "{script} is not executable ({mode:o})");
        }
    }
}

#[test]
fn ci_runs_the_developers_test_script() {
    let ci = std::fs::read_to_string(repo_file(".ci/run")).unwrap();
    assert!(ci.contains("set -euo pipefail"), "{ci}");
    assert!(ci.contains("scripts/test.sh"), "{ci}");
    let test = std::fs::read_to_string(repo_file("scripts/test.sh")).unwrap();
    for step in [
        "cargo fmt --all -- --check",
        "cargo clippy --all-targets --locked -- -D warnings",
        "cargo test --locked",
    ] {
        assert!(test.contains(step), "scripts/test.sh lacks {step:?}");
    }
}
