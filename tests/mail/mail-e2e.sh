#!/usr/bin/env bash
# End-to-end test of the mail plugin through attache and the real
# guest-runner (contract 0.2.0: the runner calls the plugin's plan, checks it
# against the policy and grants exactly it), against
# a throwaway Dovecot 2.3 (dovecot.sh) filled by gen-mail.py: 2,000 messages
# in 20 folders. Backup under a concurrent LMTP writer (exactly the messages
# below the recorded UIDNEXT), restore of one deleted message and one
# deleted folder byte-identical with flags and internal dates, --as another
# mailbox and another user, and the errors for a wrong password, a dead port,
# a missing mailbox and an address outside the policy. The repository, cache
# and state are the test's own. tests/mail.rs covers the rest (incremental
# bytes, ls and find) through the attache CLI.
#
#   RUNNER  the musl guest-runner   (target/x86_64-unknown-linux-musl/release/guest-runner)
#   ATTACHE the attache CLI         (target/release/attache)
#   PLUGIN  the mail plugin         ($CARGO_TARGET_DIR or target)/wasm32-wasip2/release/attache_plugin_mail.wasm
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PLUGIN_NAME=mail
# RUNNER, ATTACHE, DEV_KEY, ATTACHE_TRUST and PLUGIN.
. "$ROOT/tests/built.sh"
MESSAGES=${MESSAGES:-2000}

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
for f in "$RUNNER" "$ATTACHE" "$PLUGIN"; do [ -e "$f" ] || fail "missing $f (build it first)"; done

WORK=$(mktemp -d /tmp/attache-mail-e2e.XXXXXX)
WRITER_PID=
cleanup() {
    local rc=$?
    if [ -n "$WRITER_PID" ]; then kill "$WRITER_PID" 2>/dev/null || true; fi
    if [ "$rc" != 0 ] && [ -f "$WORK/dovecot/dovecot.log" ]; then
        echo "--- the end of Dovecot's log" >&2; tail -n 15 "$WORK/dovecot/dovecot.log" >&2
    fi
    "$ROOT/tests/mail/dovecot.sh" stop "$WORK/dovecot"
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/dovecot"
say "starting Dovecot"
PORT=$("$ROOT/tests/mail/dovecot.sh" start "$WORK/dovecot" alice bob)
. "$WORK/dovecot/env"
DA=(doveadm -c "$CONF")
DEAD=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
say "delivering $MESSAGES messages into 20 folders over LMTP"
python3 "$ROOT/tests/mail/gen-mail.py" "$WORK/dovecot" alice --messages "$MESSAGES" >/dev/null

say "assembling the agent container; a repository of the test's own"
"$ATTACHE" container assemble --sign "$DEV_KEY" --runner "$RUNNER" --plugin "mail=$PLUGIN" --out "$WORK/agent" >/dev/null
# A policy tighter than the shipped one: the mail plugin may reach loopback
# servers only, and nothing else may connect anywhere.
cat >"$WORK/policy.toml" <<TOML
[default]
read = ["/"]
write = ["/"]
connect = []
[plugins.mail]
connect = ["127.0.0.1/32:1-65535"]
TOML
export ATTACHE_AGENT_DIR=$WORK/agent ATTACHE_REPO=$WORK/repo ATTACHE_CACHE_DIR=$WORK/cache \
    ATTACHE_STATE_DIR=$WORK/state ATTACHE_POLICY=$WORK/policy.toml ATTACHE_PASSWORD=e2e-repo-password
# The IMAP password reaches the plugin through the runner's environment.
export ATTACHE_APP_PASSWORD=$PW
"$ATTACHE" init >/dev/null
USER_ID="imap://alice@127.0.0.1:$PORT"

say "plan (the runner asks the plugin, then checks it against the policy)"
"$WORK/agent/guest-runner" --agent-dir "$WORK/agent" --policy "$WORK/policy.toml" \
    plan --plugin mail --operation backup --select "$USER_ID" --check >"$WORK/plan.json"
grep -q "\"127.0.0.1:$PORT\"" "$WORK/plan.json" || fail "plan lacks the server: $(cat "$WORK/plan.json")"
echo "plan: $(tr -d '\n ' <"$WORK/plan.json" | cut -c1-200)"

# A digest of messages (bytes, flags but \Recent, received date), in any order.
digest() {  # digest USER MAILBOX SEARCH...  (MAILBOX '*': every mailbox, named)
    local fields='flags date.received text'; [ "$2" = '*' ] && fields="mailbox $fields"
    "${DA[@]}" -f json fetch -u "$1" "$fields" mailbox "$2" "${@:3}" | python3 -c '
import hashlib, json, sys
ms = json.load(sys.stdin)
for m in ms:
    m["flags"] = " ".join(sorted(f for f in m["flags"].split() if f != "\\Recent"))
print(hashlib.sha256("".join(sorted(hashlib.sha256(json.dumps(m, sort_keys=True).encode()).hexdigest() for m in ms)).encode()).hexdigest()[:16])'
}
count() { "${DA[@]}" search -u "$1" mailbox "$2" "${@:3}" | wc -l; }
# attribute SNAPSHOT ID KEY: a catalog attribute of an item, from `attache ls --json`.
attribute() {
    "$ATTACHE" ls "$1" "$2" --json | python3 -c '
import json, sys
want, key = sys.argv[1], sys.argv[2]
for i in json.load(sys.stdin):
    if i["id"] == want:
        print(dict(i.get("attributes", [])).get(key, "")); break' "$2" "$3"
}
snapshot_count() { "$ATTACHE" snapshots --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

say "backup of alice while a writer delivers into INBOX"
python3 - "$LMTP_PORT" <<'PY' &
import smtplib, sys
s = smtplib.LMTP("127.0.0.1", int(sys.argv[1]))
i = 0
while True:
    s.sendmail("w@example.org", ["alice"], f"Subject: live {i}\r\nMessage-ID: <live{i}@w>\r\n\r\n{'x' * (i % 5000)}\r\n".encode())
    i += 1
PY
WRITER_PID=$!
sleep 1
start_next=$("${DA[@]}" -f tab mailbox status -u alice uidnext INBOX | tail -1 | awk -F'\t' '{print $NF}')
"$ATTACHE" backup local --plugin mail --include "$USER_ID" --json >"$WORK/full.json" 2>"$WORK/err" \
    || fail "backup failed: $(cat "$WORK/err")"
kill "$WRITER_PID"; wait "$WRITER_PID" 2>/dev/null || true; WRITER_PID=
SNAP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/full.json")
echo "snapshot ${SNAP:0:8}: $(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["items"], "items,", j["read_bytes"], "bytes read")' "$WORK/full.json")"

say "restore of INBOX --as Restored/INBOX holds exactly the messages below the recorded UIDNEXT"
# UIDNEXT as the backup recorded it: an attribute of INBOX in the catalog.
uidnext=$(attribute "$SNAP" "$USER_ID/INBOX" uidnext)
[ -n "$uidnext" ] || fail "no uidnext recorded on $USER_ID/INBOX"
live_next=$("${DA[@]}" -f tab mailbox status -u alice uidnext INBOX | tail -1 | awk -F'\t' '{print $NF}')
[ "$uidnext" -gt "$start_next" ] && [ "$live_next" -gt "$uidnext" ] \
    || fail "the writer did not deliver before and after the backup's view (UIDNEXT $start_next at start, $uidnext recorded, $live_next now)"
"$ATTACHE" restore "$SNAP" --item "$USER_ID/INBOX" --as "$USER_ID/Restored/INBOX" --to local >/dev/null 2>"$WORK/err" \
    || fail "$(cat "$WORK/err")"
below=$(digest alice INBOX uid "1:$((uidnext - 1))")
restored=$(digest alice Restored/INBOX all)
echo "INBOX: UIDNEXT $start_next when the backup started, $uidnext recorded, $live_next now; below it: $(count alice INBOX uid "1:$((uidnext - 1))") messages; restored: $(count alice Restored/INBOX all)"
[ "$below" = "$restored" ] || fail "Restored/INBOX is not exactly the messages below UIDNEXT $uidnext (bytes, flags, internal dates)"

say "delete one message and one folder, restore each alone"
before_all=$(digest alice '*' all)
beta=$(digest alice Projects/Beta all)
uid=$("${DA[@]}" search -u alice mailbox Archive/2024 FLAGGED | head -1 | awk '{print $2}')
one=$(digest alice Archive/2024 uid "$uid")
mid=$("${DA[@]}" -f tab fetch -u alice hdr.message-id mailbox Archive/2024 uid "$uid" | tail -1 | awk -F'\t' '{print $NF}')
uv=$("${DA[@]}" -f tab mailbox status -u alice uidvalidity Archive/2024 | tail -1 | awk -F'\t' '{print $NF}')
"${DA[@]}" expunge -u alice mailbox Archive/2024 uid "$uid"
"${DA[@]}" expunge -u alice mailbox Projects/Beta all && "${DA[@]}" mailbox delete -u alice Projects/Beta
"$ATTACHE" restore "$SNAP" --item "$USER_ID/Archive/2024/;UIDVALIDITY=$uv/;UID=$uid" --to local >/dev/null 2>"$WORK/err" || fail "$(cat "$WORK/err")"
"$ATTACHE" restore "$SNAP" --item "$USER_ID/Projects/Beta" --to local >/dev/null 2>"$WORK/err" || fail "$(cat "$WORK/err")"
[ "$(digest alice Archive/2024 HEADER Message-ID "$mid")" = "$one" ] \
    || fail "the restored message differs (bytes, flags or internal date)"
[ "$(digest alice Projects/Beta all)" = "$beta" ] || fail "Projects/Beta differs after its restore"
[ "$(digest alice '*' all)" = "$before_all" ] || fail "the store differs from before the deletions"
echo "message and folder back, byte-identical with flags and internal dates; nothing else changed"

say "--as another user"
"$ATTACHE" restore "$SNAP" --item "$USER_ID/Work" --as "imap://bob@127.0.0.1:$PORT/Work" --to local >/dev/null 2>"$WORK/err" \
    || fail "$(cat "$WORK/err")"
[ "$(digest bob Work all)" = "$(digest alice Work all)" ] || fail "bob's Work differs from alice's"
echo "bob's Work: $(count bob Work all) messages, as alice's"

expect_error() {  # expect_error PATTERN COMMAND...
    local pattern=$1; shift
    if "$@" >"$WORK/out" 2>"$WORK/err"; then fail "succeeded, expected an error matching '$pattern'"; fi
    grep -qi -- "$pattern" "$WORK/err" || fail "error does not match '$pattern': $(cat "$WORK/err")"
    echo "ok: $(grep -i -- "$pattern" "$WORK/err" | head -1 | cut -c1-200)"
}
say "clear errors; the repository and the mailbox unchanged"
snaps=$(snapshot_count); store=$(digest alice '*' all)
ATTACHE_APP_PASSWORD=wrong expect_error "wrong user name or password" "$ATTACHE" backup local --plugin mail --include "$USER_ID"
expect_error "connection refused" "$ATTACHE" backup local --plugin mail --include "imap://alice@127.0.0.1:$DEAD"
expect_error "does not exist" "$ATTACHE" backup local --plugin mail --include "$USER_ID/Nope"
expect_error "not an IP address" "$ATTACHE" backup local --plugin mail --include "imap://alice@localhost:$PORT"
ATTACHE_APP_PASSWORD=wrong expect_error "wrong user name or password" "$ATTACHE" restore "$SNAP" --item "$USER_ID/Work" --to local
expect_error "refused" "$ATTACHE" restore "$SNAP" --item "$USER_ID/Work" --as "imap://bob@10.9.9.9:$PORT/Work" --to local
[ "$(snapshot_count)" = "$snaps" ] || fail "a failed backup left a snapshot"
[ "$(digest alice '*' all)" = "$store" ] || fail "a failed job changed the mailbox"
"$ATTACHE" verify >/dev/null || fail "the repository does not verify"
echo "repository: $snaps snapshot(s), verified; mailbox unchanged"

say "PASS: mail end to end"
