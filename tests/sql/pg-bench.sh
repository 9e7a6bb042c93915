#!/usr/bin/env bash
# Throughput of the SQL plugin against pg_dump -Fc / pg_restore on the same
# database in the same run (a benchmark, not a timed test).
#
#   SIZE_MB=1024 tests/sql/pg-bench.sh     (as root; RUNNER, ATTACHE, PLUGIN as in pg-e2e.sh)
#
# The database: one table of SIZE_MB (roughly, heap and primary key) with
# text, integer and timestamp columns. Prints seconds and MB/s (of
# pg_database_size) for each run: pg_dump -Fc and pg_restore; attache
# backup into an encrypted repository and attache restore --as (the
# product's path); and the runner alone writing and reading a stream file;
# then the same-run ratios against pg_dump and pg_restore.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PLUGIN_NAME=sql
# RUNNER, ATTACHE, DEV_KEY, ATTACHE_TRUST and PLUGIN.
. "$ROOT/tests/built.sh"
SIZE_MB=${SIZE_MB:-1024}

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
for f in "$RUNNER" "$ATTACHE" "$PLUGIN"; do [ -e "$f" ] || fail "missing $f (build it first)"; done
. "$(dirname "$0")/pg-cluster.sh"
WORK=$(mktemp -d /tmp/attache-pg-bench.XXXXXX)
cleanup() { pg_cluster_stop; rm -rf "$WORK"; }
trap cleanup EXIT
pg_cluster_start "$WORK"

say "filling a database of about $SIZE_MB MB"
rows=$((SIZE_MB * 1024 * 1024 / 140))
psql_ postgres -c "CREATE DATABASE bench"
psql_ bench -c "CREATE TABLE big (id bigint PRIMARY KEY, n integer NOT NULL, note text, at timestamptz DEFAULT now())" \
    -c "INSERT INTO big SELECT g, g % 1000, md5(g::text) || ' ' || md5((g * 7)::text), '2024-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, $rows) g" \
    -c "VACUUM ANALYZE big"
bytes=$(psql_ bench -c "SELECT pg_database_size('bench')")
echo "$rows rows, $((bytes / 1048576)) MB"

"$ATTACHE" container assemble --sign "$DEV_KEY" --runner "$RUNNER" --plugin "sql=$PLUGIN" --out "$WORK/agent" >/dev/null
GR=("$WORK/agent/guest-runner" --agent-dir "$WORK/agent" --cache-dir "$WORK/cache")
SERVER="postgresql://postgres@127.0.0.1:$PORT"
# Compile the plugin once, outside the timings.
"${GR[@]}" info >/dev/null

declare -A SECS
timed() {  # timed LABEL COMMAND... : prints LABEL seconds MB/s, keeps SECS[LABEL]
    local label=$1 t0 t1
    shift
    t0=$(date +%s.%N)
    "$@" >"$WORK/out" 2>"$WORK/err" || fail "$label: $(tail -5 "$WORK/err")"
    t1=$(date +%s.%N)
    python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'{sys.argv[3]:<34} {s:8.2f} s {int(sys.argv[4])/s/1048576:8.1f} MB/s')" "$t0" "$t1" "$label" "$bytes"
    SECS[$label]=$(python3 -c "import sys; print(float(sys.argv[2])-float(sys.argv[1]))" "$t0" "$t1")
}

say "results ($((bytes / 1048576)) MB database)"
timed "pg_dump -Fc" "$PGBIN/pg_dump" -h 127.0.0.1 -p "$PORT" -U postgres -Fc -f "$WORK/bench.dump" bench
psql_ postgres -c "CREATE DATABASE bench_pgrestore"
timed "pg_restore" "$PGBIN/pg_restore" -h 127.0.0.1 -p "$PORT" -U postgres -d bench_pgrestore "$WORK/bench.dump"
export ATTACHE_PASSWORD=bench ATTACHE_CACHE_DIR=$WORK/attache-cache ATTACHE_STATE_DIR=$WORK/attache-state ATTACHE_APP_PASSWORD=$PW
unset ATTACHE_POLICY ATTACHE_SERVER ATTACHE_REPO
"$ATTACHE" --repo "$WORK/repo" --agent-dir "$WORK/agent" init >/dev/null
timed "attache backup (repository)" "$ATTACHE" --repo "$WORK/repo" --agent-dir "$WORK/agent" \
    backup local --plugin sql --include "$SERVER/bench" --json
snap=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/out")
timed "attache restore --as" "$ATTACHE" --repo "$WORK/repo" --agent-dir "$WORK/agent" \
    restore "$snap" --item "$SERVER/bench" --as "$SERVER/bench_attache" --to local
timed "plugin backup (guest-runner)" "${GR[@]}" backup --plugin sql --select "$SERVER/bench" --option "password=$PW" --output "$WORK/bench.stream"
timed "plugin restore (guest-runner)" "${GR[@]}" restore --plugin sql --input "$WORK/bench.stream" --option "password=$PW" \
    --select "$SERVER/bench" --select-kind "$SERVER/bench=database" \
    --rename "$SERVER/bench=$SERVER/bench_plugin"
echo "sizes: pg_dump -Fc $(($(stat -c %s "$WORK/bench.dump") / 1048576)) MB, plugin stream $(($(stat -c %s "$WORK/bench.stream") / 1048576)) MB (uncompressed; the repository compresses)"
python3 - "${SECS[pg_dump -Fc]}" "${SECS[attache backup (repository)]}" "${SECS[pg_restore]}" "${SECS[attache restore --as]}" <<'PY'
import sys
d, b, r, a = map(float, sys.argv[1:])
print(f"same run: attache backup is {d / b:.2f}x pg_dump -Fc's speed; attache restore is {r / a:.2f}x pg_restore's (above 1: faster)")
PY
for db in bench_pgrestore bench_plugin bench_attache; do
    [ "$(psql_ "$db" -c "SELECT count(*) FROM big")" = "$rows" ] || fail "$db lacks rows"
done
echo "row counts match"
