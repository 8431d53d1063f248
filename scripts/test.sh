#!/usr/bin/env bash
# The whole check suite, from a fresh Debian/Ubuntu machine with Rust: installs the packages the
# tests need when they are missing (apt-get; as root, or with sudo), then runs the format check,
# clippy with warnings as errors, and every test. Exits non-zero when anything fails.
#
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v cargo >/dev/null 2>&1 || die "cargo is missing: install Rust (https://rustup.rs) and run this again"

# The integration tests start their own PostgreSQL server and use age, zstd, openssl (TLS tests)
# script(1) from bsdutils (tests that need a terminal) and aiosmtpd (the notification tests).
need=($(missing_packages))
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v script >/dev/null 2>&1 || need+=(bsdutils)
# The notification tests run a real SMTP server: aiosmtpd (Debian's python3-aiosmtpd).
{ /usr/bin/python3 -c 'import aiosmtpd' || python3 -c 'import aiosmtpd'; } >/dev/null 2>&1 || need+=(python3-aiosmtpd)
# The Azure tests run the Azurite emulator, from npm.
AZURITE_ROOT="${HOME}/.cache/aos-backup-test/npm"
if [ -z "${AOS_TEST_AZURITE:-}" ] && [ ! -x "$AZURITE_ROOT/node_modules/.bin/azurite-blob" ]; then
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi
install_missing "${need[@]}"
if [ -z "${AOS_TEST_AZURITE:-}" ] && [ ! -x "$AZURITE_ROOT/node_modules/.bin/azurite-blob" ]; then
  say "installing the Azure test server: npm install --prefix $AZURITE_ROOT azurite@3.35.0"
  npm install --prefix "$AZURITE_ROOT" --no-audit --no-fund --loglevel=error azurite@3.35.0
fi

# The off-site tests start their own S3 server, s3s-fs (crates.io), which checks request
# signatures. Built once into a cache folder (a few minutes), reused afterwards.
S3S_FS_ROOT="${HOME}/.cache/aos-backup-test"
if [ -z "${AOS_TEST_S3S_FS:-}" ] && [ ! -x "$S3S_FS_ROOT/bin/s3s-fs" ]; then
  say "installing the S3 test server: cargo install s3s-fs --version 0.14.1 --locked --features binary --root $S3S_FS_ROOT"
  cargo install s3s-fs --version 0.14.1 --locked --features binary --root "$S3S_FS_ROOT" --quiet
fi

say "PostgreSQL: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
say "$(cargo --version)"
say "format check: cargo fmt --all -- --check"
cargo fmt --all -- --check
say "lints: cargo clippy --all-targets --locked -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
say "tests: cargo test --locked"
cargo test --locked
say "all checks passed"
