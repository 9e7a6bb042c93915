#!/usr/bin/env bash
# End-to-end test of the SQL plugin's SQLite support: a consistent copy of a
# database file that another process (python3's sqlite3) keeps writing, in
# WAL mode and in rollback-journal mode, restored to another path and to an
# alternate root; the restored file passes PRAGMA integrity_check, holds
# exactly one committed state, and has the original's mode and owner. Also: refusal without overwrite, overwrite,
# a missing file, and a database outside what a --policy file lets the plugin read (refused before it runs).
#
# Paths can be overridden: RUNNER, ATTACHE, PLUGIN (see pg-e2e.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PLUGIN_NAME=sql
# RUNNER, ATTACHE, DEV_KEY, ATTACHE_TRUST and PLUGIN.
. "$ROOT/tests/built.sh"

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
for f in "$RUNNER" "$ATTACHE" "$PLUGIN"; do [ -e "$f" ] || fail "missing $f (build it first)"; done

WORK=$(mktemp -d /tmp/attache-sqlite-e2e.XXXXXX)
WRITER_PID=
cleanup() {
    [ -n "$WRITER_PID" ] && kill "$WRITER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"$ATTACHE" container assemble --sign "$DEV_KEY" --runner "$RUNNER" --plugin "sql=$PLUGIN" --out "$WORK/agent" >/dev/null
GR=("$WORK/agent/guest-runner" --agent-dir "$WORK/agent" --cache-dir "$WORK/cache" --log info)

# The writer (see its docstring): a consistent copy has count(ledger) = txn
# and a constant sum of balances.
WRITER=$(dirname "$0")/sqlite-writer.py
cat >"$WORK/check.py" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
ok = db.execute("PRAGMA integrity_check").fetchone()[0]
txn = db.execute("SELECT v FROM meta WHERE k = 'txn'").fetchone()[0]
rows = db.execute("SELECT count(*) FROM ledger").fetchone()[0]
total = db.execute("SELECT sum(balance) FROM accounts").fetchone()[0]
print(f"integrity_check={ok} txn={txn} ledger={rows} sum={total}")
sys.exit(0 if ok == "ok" and txn == rows and total == 100 * 1000000 else 1)
PY

run_mode() {  # run_mode JOURNAL_MODE BULK_MIB PAUSE_SECONDS
    local mode=$1 bulk=$2 pause=$3 dir=$WORK/$1-$2
    say "$mode: backup under a concurrent writer"
    mkdir -p "$dir/data"
    python3 "$WRITER" "$dir/data/app.db" "$mode" 2 "$bulk"   # a few MB to start with, or more
    chmod 600 "$dir/data/app.db" && chown 4321:4322 "$dir/data/app.db"   # restored with the file
    python3 "$WRITER" "$dir/data/app.db" "$mode" 300 0 "$pause" &
    WRITER_PID=$!
    sleep 1
    local stream t0 t1
    txn() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1], timeout=30).execute("SELECT v FROM meta").fetchone()[0])' "$1"; }
    t0=$(txn "$dir/data/app.db")
    for i in 1 2 3; do
        stream=$dir/app.$i.stream
        "${GR[@]}" backup --plugin sql --select "sqlite://$dir/data/app.db" --output "$stream" 2>"$dir/backup.$i.err" \
            || fail "backup failed: $(cat "$dir/backup.$i.err")"
        echo "copy $i: $(grep -o '[0-9]* bytes of database and [0-9]* committed WAL frame(s), attempt [0-9]*' "$dir/backup.$i.err")"
    done
    t1=$(txn "$dir/data/app.db")
    [ "$t1" -gt "$t0" ] || fail "the writer made no progress during the backups"
    echo "the writer committed transactions $t0 to $t1 meanwhile"
    touch "$dir/data/app.db.stop"
    wait "$WRITER_PID" || fail "the writer failed"; WRITER_PID=
    rm "$dir/data/app.db.stop"
    python3 "$WORK/check.py" "$dir/data/app.db" >/dev/null || fail "the live database itself is inconsistent"

    # What a restore's plan is made for: the top item and its kind, as the
    # server passes them from the catalog.
    local top=(--select "sqlite://$dir/data/app.db" --select-kind "sqlite://$dir/data/app.db=database")
    say "$mode: restore each copy to another path"
    for i in 1 2 3; do
        "${GR[@]}" restore --plugin sql --input "$dir/app.$i.stream" --target / "${top[@]}" \
            --rename "sqlite://$dir/data/app.db=sqlite://$dir/restored/copy$i.db" >/dev/null 2>"$dir/err" \
            || fail "restore failed: $(cat "$dir/err")"
        [ ! -e "$dir/restored/copy$i.db-wal" ] || fail "a WAL was left beside the restored file"
        python3 "$WORK/check.py" "$dir/restored/copy$i.db" || fail "copy $i is not one consistent committed state"
        [ "$(stat -c '%a %u %g' "$dir/restored/copy$i.db")" = "600 4321 4322" ] || fail "mode or owner not restored: $(stat -c '%a %u %g' "$dir/restored/copy$i.db")"
    done

    say "$mode: restore to an alternate root, then refusal and overwrite"
    mkdir -p "$dir/alt"
    "${GR[@]}" restore --plugin sql --input "$stream" --target "$dir/alt" "${top[@]}" >/dev/null 2>"$dir/err" || fail "$(cat "$dir/err")"
    python3 "$WORK/check.py" "$dir/alt$dir/data/app.db" >/dev/null || fail "alternate restore inconsistent"
    if "${GR[@]}" restore --plugin sql --input "$stream" --target "$dir/alt" "${top[@]}" >/dev/null 2>"$dir/err"; then
        fail "restore over an existing database succeeded without overwrite"
    fi
    grep -q "exists; nothing was restored" "$dir/err" || fail "unclear error: $(cat "$dir/err")"
    echo "refused: $(grep -o 'app.db exists; nothing was restored' "$dir/err" | head -1)"
    printf 'junk' >"$dir/alt$dir/data/app.db-wal"
    "${GR[@]}" restore --plugin sql --overwrite --input "$stream" --target "$dir/alt" "${top[@]}" >/dev/null 2>"$dir/err" || fail "$(cat "$dir/err")"
    [ ! -e "$dir/alt$dir/data/app.db-wal" ] || fail "overwrite left the old WAL behind"
    python3 "$WORK/check.py" "$dir/alt$dir/data/app.db" >/dev/null || fail "overwritten database inconsistent"
    echo "overwrite replaced the database and removed its stale WAL"
}

# WAL: a writer that never pauses (copies race the checkpoints and restarts).
run_mode wal 0 0
# Rollback journal: without locks a copy must fit between two write
# transactions (the journal is hot during each), so this writer pauses 2 ms
# between transactions, a few hundred a second.
run_mode delete 0 0.002
# Larger than the plugin's in-memory limit (64 MiB): copies stream straight
# into the item, and one that does not check out is aborted in the stream.
# Without locks (WASI has none) a copy must fit between two restarts of the
# WAL; this writer pauses 2 ms between transactions, a few hundred a second.
run_mode wal 80 0.002

say "clear errors"
expect_error() {
    local pattern=$1; shift
    if "$@" >"$WORK/out" 2>"$WORK/err"; then fail "succeeded, expected '$pattern'"; fi
    grep -qi -- "$pattern" "$WORK/err" || fail "error does not match '$pattern': $(cat "$WORK/err")"
    echo "ok: $(grep -i -- "$pattern" "$WORK/err" | head -1 | cut -c1-200)"
}
expect_error "does not exist" "${GR[@]}" backup --plugin sql --select "sqlite://$WORK/wal-0/data/nosuch.db" --output "$WORK/x"
printf 'not a database at all, no sir' >"$WORK/wal-0/data/junk.db"
expect_error "not an SQLite" "${GR[@]}" backup --plugin sql --select "sqlite://$WORK/wal-0/data/junk.db" --output "$WORK/x"

say "a database outside what the policy lets the plugin read"
# The plan asks to read the database's directory; a policy that lets the
# plugin read only wal-0 refuses a backup of delete-0's before it runs,
# naming the plugin, the path and the rule, and writes no stream.
cat >"$WORK/policy.toml" <<TOML
[default]
read = []
write = []

[plugins.sql]
read = ["$WORK/wal-0"]
TOML
rm -f "$WORK/x"
"${GR[@]}" --policy "$WORK/policy.toml" backup --plugin sql --select "sqlite://$WORK/wal-0/data/app.db" --output "$WORK/x" 2>"$WORK/err" \
    || fail "a backup the policy allows failed: $(cat "$WORK/err")"
echo "ok: the policy allows sqlite://$WORK/wal-0/data/app.db"
rm -f "$WORK/x"
expect_error "refused by the policy" "${GR[@]}" --policy "$WORK/policy.toml" backup --plugin sql --select "sqlite://$WORK/delete-0/data/app.db" --output "$WORK/x"
for want in '"sql"' "asks to read $WORK/delete-0/data" "plugins.sql.read"; do
    grep -qF -- "$want" "$WORK/err" || fail "the refusal does not name $want: $(cat "$WORK/err")"
done
[ ! -s "$WORK/x" ] || fail "a refused backup wrote a stream"
# The same check as the server makes it before attaching anything.
expect_error "plugins.sql.read" "${GR[@]}" --policy "$WORK/policy.toml" plan --plugin sql --operation backup --check --select "sqlite://$WORK/delete-0/data/app.db"
# A restore writes: the policy allows no write, so it is refused as well.
expect_error "asks to read-write" "${GR[@]}" --policy "$WORK/policy.toml" restore --plugin sql --input "$WORK/wal-0/app.3.stream" --target "$WORK/wal-0/alt" \
    --select "sqlite://$WORK/wal-0/data/app.db" --select-kind "sqlite://$WORK/wal-0/data/app.db=database"

say "PASS: SQLite end to end"
