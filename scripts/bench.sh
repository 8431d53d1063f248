#!/usr/bin/env bash
# Benchmarks aos-backup against bare pg_dump/pg_restore and what users run today, side by side
# in one hyperfine run each, on ../shared/bench/realistic.sql (or DATASET=...).
#
#   scripts/bench.sh            # build, start a throwaway server, load the dataset once, run all
#   RUNS=5 scripts/bench.sh     # more runs per command
#
# Needs: hyperfine, /usr/bin/time (package `time`), zstd, gzip, age-keygen, PostgreSQL server
# binaries (Debian: apt-get install postgresql hyperfine time zstd age).
set -euo pipefail
source "$(dirname "$0")/bench-env.sh"

echo "== system: $(nproc) cores, $("$BIN/pg_dump" --version), $(hyperfine --version)"
echo "== database size: $($PSQL -d bench -Atc "select pg_size_pretty(pg_database_size('bench'))")"

clean="rm -rf $OUT/aos $OUT/*.dump $OUT/*.gz $OUT/*.zst"
echo
echo "== backup (lower is better)"
hyperfine --runs "$RUNS" --warmup 1 --prepare "$clean" --export-markdown "$WORK/backup.md" --export-json "$WORK/backup.json" \
  -n 'pg_dump -Fc (its default gzip)' "$BIN/pg_dump -Fc -f $OUT/bare.dump" \
  -n 'aos-backup backup --compression pg_dump (same work as pg_dump -Fc)' "$AOS -q backup --compression pg_dump" \
  -n 'aos-backup backup (default: zstd)' "$AOS -q backup" \
  -n 'aos-backup backup, age-encrypted' "BACKUP_ENCRYPTION=age BACKUP_AGE_RECIPIENTS=$RECIPIENT $AOS -q backup" \
  -n 'pg_dump -Fc -Z0 > /dev/null (pg_dump own rate)' "$BIN/pg_dump -Fc -Z0 > /dev/null" \
  -n 'pg_dump | gzip (plain SQL)' "$BIN/pg_dump | gzip > $OUT/plain.sql.gz" \
  -n 'pg_dump -Fc + sha256sum (pg_back style)' "$BIN/pg_dump -Fc -f $OUT/pgback.dump && sha256sum $OUT/pgback.dump"

echo
echo "== sizes"
$clean
"$BIN/pg_dump" -Fc -f "$OUT/bare.dump"
"$AOS" -q backup --compression pg_dump --name pgdump >/dev/null
"$AOS" -q backup --name zstd >/dev/null
"$BIN/pg_dump" | gzip > "$OUT/plain.sql.gz"
ls -l "$OUT"/bare.dump "$OUT"/plain.sql.gz "$OUT"/aos/*.dump* | grep -v meta.json | awk '{printf "%12d  %s\n", $5, $9}'

echo
echo "== peak memory (max RSS of the aos-backup process, KiB)"
for c in "backup --compression pg_dump" "backup" "backup --compression gzip"; do
  rss=$( { /usr/bin/time -v "$AOS" -q $c >/dev/null; } 2>&1 | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}')
  echo "aos-backup $c: $rss"
done

echo
echo "== restore (into a fresh database each run)"
ZST=$(ls "$OUT"/aos/*-zstd.dump.zst)
PGD=$(ls "$OUT"/aos/*-pgdump.dump)
reset="$PSQL -d postgres -c 'drop database if exists target' -c 'create database target'"
restore_flags="--clean --if-exists --no-owner --no-acl --exit-on-error --single-transaction"
hyperfine --runs "$RUNS" --prepare "$reset" --export-markdown "$WORK/restore.md" --export-json "$WORK/restore.json" \
  -n 'pg_restore -1 of pg_dump -Fc file' "$BIN/pg_restore $restore_flags -d target $OUT/bare.dump" \
  -n 'aos-backup restore of the same kind of file' "DATABASE_URL=postgresql://postgres@/target?host=$WORK\&port=$PORT $AOS -q restore --yes --from-database bench $PGD" \
  -n 'aos-backup restore of the default .dump.zst' "DATABASE_URL=postgresql://postgres@/target?host=$WORK\&port=$PORT $AOS -q restore --yes --from-database bench $ZST"

echo
echo "== list of 10,000 backups"
LIST=$WORK/list
rm -rf "$LIST"; mkdir -p "$LIST"
meta=$(ls "$OUT"/aos/*-zstd.dump.zst.meta.json)
python3 - "$meta" "$LIST" <<'PY'
import json, sys, os, datetime
src, dst = sys.argv[1], sys.argv[2]
m = json.load(open(src))
t0 = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
for i in range(10000):
    t = t0 + datetime.timedelta(hours=i)
    id_ = t.strftime("%Y%m%d-%H%M%S")
    name = f"aos-backup-{id_}.dump.zst"
    m.update(id=id_, file=name, started_at=t.isoformat().replace("+00:00", "Z"), finished_at=t.isoformat().replace("+00:00", "Z"))
    open(os.path.join(dst, name), "w").write("x")
    json.dump(m, open(os.path.join(dst, name + ".meta.json"), "w"))
PY
hyperfine --runs 10 --warmup 1 -n 'aos-backup list (10,000 backups)' "$AOS -q --backup-dir $LIST list >/dev/null" \
  -n 'aos-backup list --json (10,000 backups)' "$AOS -q --backup-dir $LIST list --json >/dev/null"

echo
echo "results: $WORK/backup.md $WORK/restore.md"
