#!/usr/bin/env bash
# Issue 12: the PostgreSQL store with leased workers, against the file store.
#
# For W = 1, 2, 4, 8: W runs of a 1,000-step loop of trivial shell actions (`true`), driven by
# W `dloop worker -j 1` processes on a fresh database (PostgreSQL store), then by W `dloop run`
# processes at once (file store). Prints per W: aggregate steps/s for each store, and commits
# per step for PostgreSQL (xact_commit of pg_stat_database, before and after). Then the claim
# statement's latency (pgbench running CLAIM_SQL against 2,000 queued rows, 1 and 8 clients)
# and the failover time (SIGKILL a worker holding a run with a 2 s lease; time until another
# worker's claim takes the run).
#
# Usage: benches/pg_workers.sh [STEPS]      (default 1000)
# Needs: a release build (`cargo build --release -p dloop-cli`) and Debian's postgresql
# (initdb, pg_ctl, psql, pgbench under /usr/lib/postgresql/*/bin). The server is a throwaway
# one in a temp folder, on a unix socket only, fsync on (PG_FSYNC=off to compare), stopped at
# the end.
set -euo pipefail

steps="${1:-1000}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dloop="${CARGO_TARGET_DIR:-$root/target}/release/dloop"
[ -x "$dloop" ] || { echo "build it first: cargo build --release -p dloop-cli" >&2; exit 2; }
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
[ -x "$bin/initdb" ] || { echo "PostgreSQL not found: apt-get install postgresql" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/dloop-pgbench.XXXXXX")"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$work"
  as_pg=(runuser -u postgres --)
fi
cleanup() {
  "${as_pg[@]}" "$bin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"${as_pg[@]}" "$bin/initdb" -A trust -U postgres -D "$work/data" >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -D "$work/data" -w -l "$work/server.log" -o \
  "-c listen_addresses='' -c unix_socket_directories='$work' -c fsync=${PG_FSYNC:-on} -c max_connections=200" \
  start >/dev/null

psql_db() { "$bin/psql" -h "$work" -U postgres -d "$1" -qtAX -c "$2"; }
url() { echo "postgres:///$1?host=$work&user=postgres"; }
now_ms() { date +%s%3N; }

project="$work/project"
mkdir -p "$project/.loops" "$project/.git"
cat > "$project/.loops/steps.yaml" <<YAML
initial: step
limits:
  max_steps: $steps
states:
  step:
    shell: "true"
    on: { success: step, failure: done }
  done:
    terminal: success
YAML

commits() { psql_db "$1" "SELECT xact_commit FROM pg_stat_database WHERE datname = '$1'"; }

echo "| workers | PostgreSQL steps/s | commits per step | file store steps/s (W dloop run) |"
echo "|---|---|---|---|"
for w in 1 2 4 8; do
  db="w$w"
  psql_db postgres "CREATE DATABASE $db"
  export DLOOP_STORE
  DLOOP_STORE="$(url "$db")"
  (cd "$project" && "$dloop" -q db migrate)
  for _ in $(seq "$w"); do (cd "$project" && "$dloop" -q submit steps >/dev/null); done
  sleep 1 # let the statistics of the setup's sessions reach pg_stat_database
  c0=$(commits "$db")
  t0=$(now_ms)
  pids=()
  for i in $(seq "$w"); do
    (cd "$project" && "$dloop" -q worker -j 1 --poll 50ms --exit-when-idle --name "b$i" 2>/dev/null) &
    pids+=($!)
  done
  wait "${pids[@]}"
  t1=$(now_ms)
  sleep 1
  c1=$(commits "$db")
  done_steps=$(psql_db "$db" "SELECT count(*) FROM events WHERE record LIKE '%\"type\":\"action_finished\"%'")
  unset DLOOP_STORE
  pg_rate=$(( done_steps * 1000 / (t1 - t0) ))
  per_step=$(awk -v c=$((c1 - c0)) -v s="$done_steps" 'BEGIN { printf "%.2f", c / s }')

  # The file store: W foreground runs at once in the same project.
  t0=$(now_ms)
  pids=()
  for _ in $(seq "$w"); do
    (cd "$project" && "$dloop" -q run steps >/dev/null 2>&1 || [ $? -eq 3 ]) &
    pids+=($!)
  done
  wait "${pids[@]}"
  t1=$(now_ms)
  rm -rf "$project/.loops/.dloop"
  file_rate=$(( w * steps * 1000 / (t1 - t0) ))
  echo "| $w | $pg_rate | $per_step | $file_rate |"
done

# Claim latency: the worker's claim statement against a deep queue, one and eight clients.
psql_db postgres "CREATE DATABASE claims"
DLOOP_STORE="$(url claims)" "$dloop" -q db migrate -C "$project"
psql_db claims "INSERT INTO runs (id, meta, meta_sha256, queue, queued_at)
  SELECT 'r' || g, '{}', '', 'queued', clock_timestamp() FROM generate_series(1, 2000) g"
claim_sql="$(sed -n '/^pub const CLAIM_SQL: &str = "/,/";$/p' "$root/crates/dloop-store-pg/src/queue.rs" \
  | sed '1s/.*= "//; $s/";$//; s/\\"/"/g')"
printf '%s;\n' "$(echo "$claim_sql" | sed "s/\\\$1/1/; s/\\\$2/'bench'/; s/\\\$3/1/; s/\\\$4/'h'/; s/\\\$5::bigint/60000/")" \
  | tr '\n' ' ' > "$work/claim.sql"
echo
for clients in 1 8; do
  psql_db claims "UPDATE runs SET lease_expires_at = NULL"
  lat=$("$bin/pgbench" -h "$work" -U postgres -n -f "$work/claim.sql" -c "$clients" -t 200 claims 2>/dev/null \
    | awk '/latency average/ {print $4}')
  echo "claim latency, $clients client(s), 2,000 queued rows: ${lat} ms average"
done

# Failover: a worker holding a long run is SIGKILLed; another worker (already polling) takes
# the run once the 2 s lease expires.
psql_db postgres "CREATE DATABASE failover"
export DLOOP_STORE
DLOOP_STORE="$(url failover)"
cat > "$project/.loops/slow.yaml" <<'YAML'
initial: wait
states:
  wait:
    shell: sleep 30
    next: done
  done:
    terminal: success
YAML
(cd "$project" && "$dloop" -q db migrate && "$dloop" -q submit slow >/dev/null)
(cd "$project" && exec "$dloop" -q worker --lease-ttl 2s --poll 50ms --name victim 2>/dev/null) &
victim=$!
until [ "$(psql_db failover "SELECT count(*) FROM runs WHERE lease_owner = 'victim'")" = 1 ]; do sleep 0.02; done
(cd "$project" && exec "$dloop" -q worker --lease-ttl 2s --poll 50ms --name heir 2>/dev/null) &
heir=$!
sleep 0.5
t0=$(now_ms)
kill -KILL "$victim"
wait "$victim" 2>/dev/null || true
until [ "$(psql_db failover "SELECT count(*) FROM runs WHERE lease_owner = 'heir'")" = 1 ]; do sleep 0.02; done
t1=$(now_ms)
kill -TERM "$heir"; wait "$heir" 2>/dev/null || true
echo "failover (lease TTL 2 s, heir polling every 50 ms): $((t1 - t0)) ms from SIGKILL to the heir's claim"
