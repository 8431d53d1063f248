# Sourced by the benchmark scripts: builds the release binary, starts (once) a throwaway server
# on a private socket, loads the dataset (once), and exports what the commands need.
# Sets: ROOT WORK RUNS PORT BIN OUT AOS (or takes AOS_BIN) PSQL RECIPIENT DATABASE_URL PG* PG_BIN BACKUP_DIR.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
DATASET=${DATASET:-$ROOT/../shared/bench/realistic.sql}
WORK=${BENCH_DIR:-/tmp/aos-bench}
RUNS=${RUNS:-3}
PORT=${BENCH_PORT:-55432}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
OUT=$WORK/out
mkdir -p "$WORK" "$OUT"

# AOS_BIN: a release binary built already (e.g. a copy of target/release/aos-backup of the
# commit being measured); without it, the current tree is built.
if [ -n "${AOS_BIN:-}" ]; then
  AOS=$AOS_BIN
else
  cargo build --release --quiet
  AOS=$ROOT/target/release/aos-backup
fi

as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
if [ ! -d "$WORK/data" ]; then
  [ "$(id -u)" = 0 ] && chown postgres "$WORK"
  as_pg "$BIN/initdb -D $WORK/data -U postgres -A trust -N >/dev/null"
fi
if ! "$BIN/pg_isready" -q -h "$WORK" -p "$PORT"; then
  as_pg "$BIN/pg_ctl -D $WORK/data -l $WORK/server.log -w -o '-k $WORK -p $PORT -c listen_addresses= -c max_wal_size=4GB' start >/dev/null"
fi
PSQL="$BIN/psql -X -q -h $WORK -p $PORT -U postgres"
if ! $PSQL -d bench -c 'select 1 from blobs limit 1' >/dev/null 2>&1; then
  echo "loading $DATASET (takes a minute)..."
  $PSQL -d postgres -c 'drop database if exists bench' -c 'create database bench'
  $PSQL -d bench -f "$DATASET"
fi
export DATABASE_URL="postgresql://postgres@/bench?host=$WORK&port=$PORT"
export PGHOST=$WORK PGPORT=$PORT PGUSER=postgres PGDATABASE=bench
export PG_BIN=$BIN BACKUP_DIR=$OUT/aos
age-keygen -o "$WORK/key.txt" 2>/dev/null || true
RECIPIENT=$(grep -o 'age1[0-9a-z]*' "$WORK/key.txt")
