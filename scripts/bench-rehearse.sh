#!/usr/bin/env bash
# Benchmarks of restore rehearsal (#9) on ../shared/bench/realistic.sql, side by side in one
# hyperfine run each: the cost of row counts at backup time, a drill against a bare
# `pg_restore -1` into a fresh database, `restore --dry-run`, `validate`, and
# `restore --swap --jobs 2` against a serial restore.
#
#   scripts/bench-rehearse.sh            # RUNS=5 for more runs per command
#
# Needs what scripts/bench.sh needs (hyperfine, PostgreSQL server binaries).
set -euo pipefail
source "$(dirname "$0")/bench-env.sh"
echo "== system: $(nproc) cores, $("$BIN/pg_dump" --version), $(hyperfine --version)"
echo "== database size: $($PSQL -d bench -Atc "select pg_size_pretty(pg_database_size('bench'))")"

R=$OUT/rehearse
rm -rf "$R"; mkdir -p "$R"
export BACKUP_DIR=$R/aos
TARGET_URL="postgresql://postgres@/target?host=$WORK&port=$PORT"
reset="$PSQL -d postgres -c 'drop database if exists target' -c 'drop database if exists target__old' -c 'create database target'"
sweep="$PSQL -d postgres -Atc \"select 'drop database ' || quote_ident(datname) || ';' from pg_database where datname like 'target\\_\\_aos\\_%'\" | $PSQL -d postgres"

echo
echo "== row counts at backup time (lower is better)"
hyperfine --runs "$RUNS" --warmup 1 --prepare "rm -rf $R/rc" --export-markdown "$WORK/rowcounts.md" \
  -n 'backup, row counts on (default)' "BACKUP_DIR=$R/rc $AOS -q backup --no-prune" \
  -n 'backup, BACKUP_ROW_COUNTS=false' "BACKUP_ROW_COUNTS=false BACKUP_DIR=$R/rc $AOS -q backup --no-prune"

"$AOS" -q backup --no-prune --compression pg_dump --name pgdump >/dev/null
PGD=$(ls "$BACKUP_DIR"/*-pgdump.dump)
restore_flags="--clean --if-exists --no-owner --no-acl --exit-on-error --single-transaction"

echo
echo "== drill against pg_restore -1 into a fresh database (same file)"
hyperfine --runs "$RUNS" --prepare "$reset" --export-markdown "$WORK/drill.md" \
  -n 'pg_restore -1 into a fresh database' "$BIN/pg_restore $restore_flags -d target $PGD" \
  -n 'aos-backup drill (restore, row counts, validate, drop)' "$AOS -q drill $PGD"

echo
echo "== restore --dry-run over the populated database (goal: under 2 s)"
hyperfine --runs "$RUNS" --warmup 1 --export-markdown "$WORK/dryrun.md" \
  -n 'aos-backup restore --dry-run' "$AOS -q restore --dry-run $PGD >/dev/null"

echo
echo "== validate on the realistic database"
hyperfine --runs "$RUNS" --warmup 1 --export-markdown "$WORK/validate.md" \
  -n 'aos-backup validate' "$AOS -q validate >/dev/null"

echo
echo "== restore --swap --jobs 2 against a serial restore (both validate afterwards)"
hyperfine --runs "$RUNS" --prepare "$sweep; $reset" --export-markdown "$WORK/swap.md" \
  -n 'restore (serial, one transaction)' "DATABASE_URL='$TARGET_URL' $AOS -q restore --yes --no-safety-backup --from-database bench $PGD" \
  -n 'restore --swap --jobs 2 --drop-old' "DATABASE_URL='$TARGET_URL' $AOS -q restore --yes --no-safety-backup --from-database bench --swap --jobs 2 --drop-old $PGD"

echo
echo "results: $WORK/rowcounts.md $WORK/drill.md $WORK/dryrun.md $WORK/validate.md $WORK/swap.md"
