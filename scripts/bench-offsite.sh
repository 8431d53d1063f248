#!/usr/bin/env bash
# Benchmarks of off-site copies (#10) on ../shared/bench/realistic.sql against a local S3 server
# (s3s-fs, the one the tests use), side by side in one hyperfine run each: a backup with one
# destination against the same backup without, the peak memory of `--remote-only`, and a
# restore from the bucket against a local restore.
#
#   scripts/bench-offsite.sh             # RUNS=5 for more runs per command
#
# Needs what scripts/bench.sh needs, and s3s-fs (scripts/test.sh installs it into
# ~/.cache/aos-backup-test/bin; or set AOS_TEST_S3S_FS).
set -euo pipefail
source "$(dirname "$0")/bench-env.sh"
S3S=${AOS_TEST_S3S_FS:-$HOME/.cache/aos-backup-test/bin/s3s-fs}
[ -x "$S3S" ] || { echo "s3s-fs is missing: run scripts/test.sh once, or cargo install s3s-fs --version 0.14.1 --locked --features binary"; exit 1; }
echo "== system: $(nproc) cores, $("$BIN/pg_dump" --version), $(hyperfine --version)"

O=$OUT/offsite
S3PORT=${BENCH_S3_PORT:-55433}
export AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret-123 AWS_ENDPOINT_URL=http://127.0.0.1:$S3PORT
export BACKUP_DIR=$O/aos
S3PID=
trap 'kill $S3PID 2>/dev/null || true' EXIT
# Starts s3s-fs with its objects in $1.
s3_at() {
  [ -n "$S3PID" ] && { kill "$S3PID"; wait "$S3PID" 2>/dev/null || true; }
  rm -rf "$1"; mkdir -p "$1/bench"
  "$S3S" --host 127.0.0.1 --port "$S3PORT" --access-key bench-key --secret-key bench-secret-123 "$1" >"$O.s3.log" 2>&1 &
  S3PID=$!
  sleep 1
  S3ROOT=$1
}
rm -rf "$O"; mkdir -p "$O"

# Twice: the store's objects on a tmpfs (a remote store does not write to this host's disk),
# then on this host's disk (the store's writes then compete with the backup's own).
for where in tmpfs disk; do
  if [ $where = tmpfs ]; then s3_at "${BENCH_S3_TMPFS:-/dev/shm/aos-bench-s3}"; else s3_at "$O/s3"; fi
  clean="rm -rf $O/aos $S3ROOT/bench/*"
  echo
  echo "== backup with one destination against without, store on $where (lower is better)"
  hyperfine --runs "$RUNS" --warmup 1 --prepare "$clean" --export-markdown "$WORK/offsite-$where.md" \
    -n 'backup (local only)' "$AOS -q backup --no-prune" \
    -n "backup + one s3:// destination (store on $where)" "BACKUP_REMOTE=s3://bench/p $AOS -q backup --no-prune"
done

echo
echo "== peak memory (max RSS of aos-backup, KiB)"
for c in "backup --no-prune" "backup --no-prune --remote-only"; do
  eval "$clean"
  rss=$( { BACKUP_REMOTE=s3://bench/p /usr/bin/time -v "$AOS" -q $c >/dev/null; } 2>&1 | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}')
  echo "aos-backup $c (one destination): $rss"
done
ls -l "$S3ROOT"/bench/p/ | awk '{print $5, $9}'

echo
echo "== restore from the bucket against a local restore (into a fresh database each run)"
eval "$clean"
BACKUP_REMOTE=s3://bench/p "$AOS" -q backup --no-prune >/dev/null
reset="$PSQL -d postgres -c 'drop database if exists target' -c 'create database target'"
TARGET_URL="postgresql://postgres@/target?host=$WORK&port=$PORT"
hyperfine --runs "$RUNS" --prepare "$reset" --export-markdown "$WORK/offsite-restore.md" \
  -n 'restore latest (local)' "DATABASE_URL='$TARGET_URL' $AOS -q restore --yes --no-safety-backup --no-validate --from-database bench latest" \
  -n 'restore --remote latest (from s3://)' "DATABASE_URL='$TARGET_URL' BACKUP_REMOTE=s3://bench/p $AOS -q restore --yes --no-safety-backup --no-validate --from-database bench --remote latest"

echo
rm -rf "${BENCH_S3_TMPFS:-/dev/shm/aos-bench-s3}"
echo "results: $WORK/offsite-tmpfs.md $WORK/offsite-disk.md $WORK/offsite-restore.md"
