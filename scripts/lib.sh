# Shared by scripts/demo.sh and scripts/test.sh (sourced, not run): say what happens, install the
# Debian/Ubuntu packages that are missing, and find the PostgreSQL server binaries.

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The newest /usr/lib/postgresql/<major>/bin that has initdb, or nothing.
pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ]; then echo "$d"; fi
  done | sort -V | tail -1
}

# install_missing PACKAGE... : apt-get installs the named packages, as root directly, else with
# sudo if there is one; otherwise it says what to install and fails. Nothing to do: says nothing.
install_missing() {
  [ "$#" -gt 0 ] || return 0
  local run=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      run=(sudo)
    else
      die "missing: $*; install them as root (apt-get install $*) and run this again"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "missing: $*, and this is not a Debian/Ubuntu machine (no apt-get); install them and run this again"
  say "installing $* (apt-get${run:+ with sudo})"
  "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # Debian's postgresql package tries to start a cluster; where there is no init system that step
  # fails although the binaries are installed, so judge by the binaries, not by apt-get's status.
  "${run[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" || {
    [ -n "$(pg_bindir)" ] || die "apt-get install $* failed"
  }
}

# The packages missing for the PostgreSQL server, its client tools, zstd and age.
missing_packages() {
  [ -n "$(pg_bindir)" ] || echo postgresql
  ls /usr/lib/postgresql/*/bin/pg_dump >/dev/null 2>&1 || echo postgresql-client
  command -v zstd >/dev/null 2>&1 || echo zstd
  command -v age >/dev/null 2>&1 || echo age
}
