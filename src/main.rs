//! The `aos-backup` binary: everything lives in the library; this only runs it and exits.

fn main() {
    std::process::exit(aos_backup::run());
}
