#!/usr/bin/env bash
# The main job, end to end, on a throwaway PostgreSQL server, from a fresh Debian/Ubuntu machine
# with Rust: installs what is missing, builds aos-backup, starts a private server, fills a small
# database, backs it up, verifies the backup, restores it into a second database, compares the two,
# then stops and removes the server (also when a step fails or on Ctrl-C). Exits non-zero when any
# step fails.
#
#   scripts/demo.sh
#
# The server lives in a temp folder, listens only on a socket in that folder (no TCP), and runs
# with fsync=off: it is for this demo only. As root it runs as the `postgres` OS user (initdb
# refuses root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

step=starting
trap 'status=$?; [ "$status" = 0 ] || printf "demo: FAILED during: %s (exit %s)\n" "$step" "$status" >&2' ERR

# 1. What is missing.
step="installing what is missing"
command -v cargo >/dev/null 2>&1 || die "cargo is missing: install Rust (https://rustup.rs) and run this again"
need=($(missing_packages))
if [ "${#need[@]}" -gt 0 ]; then
  install_missing "${need[@]}"
else
  say "PostgreSQL, its client tools, zstd and age are installed"
fi
PGBIN=$(pg_bindir)
[ -n "$PGBIN" ] || die "no PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin"

# 2. Build.
step="building (cargo build --release)"
say "building aos-backup: cargo build --release (the first build takes a few minutes)"
cargo build --release --locked
AOS=${CARGO_TARGET_DIR:-$PWD/target}/release/aos-backup
[ -x "$AOS" ] || die "the build did not produce $AOS"

# 3. A private server.
step="starting a throwaway PostgreSQL server"
WORK=$(mktemp -d /tmp/aos-demo.XXXXXX)
as_server() { "$@"; }
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root needs the postgres OS user (package postgresql)"
  chown postgres: "$WORK"
  as_server() { runuser -u postgres -- "$@"; }
fi
server_started=
cleanup() {
  status=$?
  trap - EXIT INT TERM
  if [ -n "$server_started" ]; then
    say "stopping the server"
    as_server "$PGBIN/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  say "removing $WORK"
  rm -rf "$WORK"
  if [ "$status" = 0 ]; then say "demo finished: every step succeeded"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

# A TCP port nobody listens on, although the server listens only on its socket: the port names the
# socket file, and a free one keeps the demo clear of any server on this machine.
PORT=
for p in $(seq 54320 54420); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then PORT=$p; break; fi
done
[ -n "$PORT" ] || die "no free port between 54320 and 54420"

say "initdb in $WORK/data ($("$PGBIN/postgres" --version))"
as_server "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -N >"$WORK/initdb.log" 2>&1 ||
  { cat "$WORK/initdb.log" >&2; false; }
say "starting the server on the private socket $WORK, port $PORT, fsync=off"
as_server "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w -s \
  -o "-k $WORK -p $PORT -c listen_addresses= -c fsync=off" start ||
  { cat "$WORK/server.log" >&2; false; }
server_started=yes
psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U postgres "$@"; }
url() { echo "postgresql://postgres@/$1?host=$WORK&port=$PORT"; }

# 4. A small database.
step="filling the database shop"
say "creating database shop: customers, orders (foreign key, index), a view, 10,000 orders"
psql -d postgres -c 'create database shop'
psql -d shop <<'SQL'
create table customers (id serial primary key, name text not null, email text unique);
create table orders (
  id bigserial primary key,
  customer_id int not null references customers(id),
  amount numeric(10,2) not null check (amount >= 0),
  placed_at timestamptz not null
);
create index orders_customer on orders (customer_id);
create view big_spenders as
  select c.name, sum(o.amount) as total from customers c join orders o on o.customer_id = c.id
  group by c.name having sum(o.amount) > 1000;
insert into customers (name, email)
  select 'customer ' || g, 'c' || g || '@example.com' from generate_series(1, 500) g;
insert into orders (customer_id, amount, placed_at)
  select 1 + g % 500, (g % 997) / 10.0, timestamptz '2024-01-01' + g * interval '7 minutes'
  from generate_series(1, 10000) g;
SQL

# 5. Back up.
step="backing up (aos-backup backup)"
export BACKUP_DIR=$WORK/backups
say "aos-backup backup of shop into $BACKUP_DIR"
backup=$(DATABASE_URL=$(url shop) "$AOS" backup)
say "the backup: $backup"
DATABASE_URL=$(url shop) "$AOS" list

# 6. Verify.
step="verifying (aos-backup verify)"
say "aos-backup verify: checksum, and every byte read back"
DATABASE_URL=$(url shop) "$AOS" verify "$backup"

# 7. Restore into a second database.
step="restoring into shop_copy (aos-backup restore)"
say "creating the empty database shop_copy and restoring the backup into it (--from-database shop)"
psql -d postgres -c 'create database shop_copy'
# No --yes: the target is empty, so nothing is asked; stdin is closed so that nothing can wait.
DATABASE_URL=$(url shop_copy) "$AOS" restore --from-database shop "$backup" </dev/null

# 8. Compare.
step="comparing shop and shop_copy"
contents() {
  psql -d "$1" -At <<'SQL'
select 'customers', count(*), md5(string_agg(c::text, ',' order by c.id)) from customers c;
select 'orders', count(*), md5(string_agg(o::text, ',' order by o.id)) from orders o;
select 'big_spenders', count(*), md5(string_agg(b::text, ',' order by b.name)) from big_spenders b;
select 'orders_id_seq', last_value from orders_id_seq;
SQL
}
# pg_dump of the latest minor releases writes a random \restrict key into every dump: drop it.
schema() { "$PGBIN/pg_dump" -h "$WORK" -p "$PORT" -U postgres --schema-only "$1" | grep -v '^\\\(un\)\?restrict '; }
contents shop >"$WORK/shop.rows"
contents shop_copy >"$WORK/copy.rows"
schema shop >"$WORK/shop.schema"
schema shop_copy >"$WORK/copy.schema"
say "row counts and content checksums (table|rows|md5):"
sed 's/^/    /' "$WORK/shop.rows" >&2
diff -u "$WORK/shop.rows" "$WORK/copy.rows" >&2 || die "shop_copy's rows differ from shop's (diff above)"
say "same rows in shop_copy"
diff -u "$WORK/shop.schema" "$WORK/copy.schema" >&2 || die "shop_copy's schema differs from shop's (diff above)"
say "same schema in shop_copy (pg_dump --schema-only, $(grep -c . "$WORK/shop.schema") lines)"
step="cleaning up"
