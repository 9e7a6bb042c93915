#!/usr/bin/env bash
# End-to-end test of the mail plugin through the real guest-runner (contract
# 0.2.0: the runner calls the plugin's plan and grants exactly it), against
# a throwaway Dovecot 2.3 (dovecot.sh) filled by gen-mail.py: 2,000 messages
# in 20 folders. Backup under a concurrent LMTP writer (exactly the messages
# below the recorded UIDNEXT), restore of one deleted message and one
# deleted folder byte-identical with flags and internal dates, --as another
# mailbox and another user, incremental by bytes read, and the errors for a
# wrong password, a dead port and a missing mailbox.
#
#   RUNNER  the musl guest-runner   (target/x86_64-unknown-linux-musl/release/guest-runner)
#   ATTACHE the attache CLI         (target/release/attache)
#   PLUGIN  the mail plugin         ($CARGO_TARGET_DIR or target)/wasm32-wasip2/release/attache_plugin_mail.wasm
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNNER=${RUNNER:-$ROOT/target/x86_64-unknown-linux-musl/release/guest-runner}
ATTACHE=${ATTACHE:-$ROOT/target/release/attache}
PLUGIN=${PLUGIN:-${CARGO_TARGET_DIR:-$ROOT/target}/wasm32-wasip2/release/attache_plugin_mail.wasm}
MESSAGES=${MESSAGES:-2000}

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
for f in "$RUNNER" "$ATTACHE" "$PLUGIN"; do [ -e "$f" ] || fail "missing $f (build it first)"; done

WORK=$(mktemp -d /tmp/attache-mail-e2e.XXXXXX)
WRITER_PID=
cleanup() {
    [ -n "$WRITER_PID" ] && kill "$WRITER_PID" 2>/dev/null || true
    "$ROOT/tests/mail/dovecot.sh" stop "$WORK/dovecot"
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/dovecot"
say "starting Dovecot"
PORT=$("$ROOT/tests/mail/dovecot.sh" start "$WORK/dovecot" alice bob)
. "$WORK/dovecot/env"
export MAIL_PW=$PW
DA=(doveadm -c "$CONF")
DEAD=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
say "delivering $MESSAGES messages into 20 folders over LMTP"
python3 "$ROOT/tests/mail/gen-mail.py" "$WORK/dovecot" alice --messages "$MESSAGES" >/dev/null

say "assembling the agent container"
"$ATTACHE" container assemble --runner "$RUNNER" --plugin "mail=$PLUGIN" --out "$WORK/agent" >/dev/null
# The shipped policy grants no network to plugins it does not name: this
# one lets the mail plugin reach the loopback servers of the test.
cat >"$WORK/policy.toml" <<TOML
[default]
read = ["/"]
write = ["/"]
connect = []
[plugins.mail]
connect = ["127.0.0.1/32:1-65535"]
TOML
GR=("$WORK/agent/guest-runner" --agent-dir "$WORK/agent" --cache-dir "$WORK/cache" --policy "$WORK/policy.toml")
PWOPT=(--option-env password=MAIL_PW)
USER_ID="imap://alice@127.0.0.1:$PORT"

say "plan"
"${GR[@]}" plan --plugin mail --operation backup --select "$USER_ID" "${PWOPT[@]}" >"$WORK/plan.json"
grep -q "\"127.0.0.1:$PORT\"" "$WORK/plan.json" || fail "plan lacks the server: $(cat "$WORK/plan.json")"

# Message checksums with flags and internal date, per folder, via doveadm.
state() {
    "${DA[@]}" -f tab fetch -u "$1" 'mailbox hdr.message-id flags date.received text' mailbox '*' 2>/dev/null \
        | python3 -c 'import sys,hashlib; [print(hashlib.sha256(l.encode()).hexdigest()) for l in sorted(sys.stdin.read().split("\n"))]' | sha256sum | cut -c1-16
}
folder_state() {
    "${DA[@]}" -f tab fetch -u alice 'hdr.message-id flags date.received text' mailbox "$1" | sha256sum | cut -c1-16
}

say "backup of alice while a writer delivers into INBOX"
python3 - "$LMTP_PORT" <<'PY' &
import smtplib, sys, time
s = smtplib.LMTP("127.0.0.1", int(sys.argv[1]))
i = 0
while True:
    s.sendmail("w@example.org", ["alice"], f"Subject: live {i}\r\nMessage-ID: <live{i}@w>\r\n\r\n{'x' * (i % 5000)}\r\n".encode())
    i += 1
PY
WRITER_PID=$!
sleep 1
"${GR[@]}" backup --plugin mail --select "$USER_ID" "${PWOPT[@]}" --output "$WORK/full.stream" 2>"$WORK/backup.err" \
    || fail "backup failed: $(cat "$WORK/backup.err")"
kill "$WRITER_PID"; wait "$WRITER_PID" 2>/dev/null || true; WRITER_PID=
echo "backup: $(stat -c %s "$WORK/full.stream") bytes of stream"

say "restore of INBOX --as Restored/INBOX holds exactly the messages below the recorded UIDNEXT"
"${GR[@]}" restore --plugin mail --input "$WORK/full.stream" --select "$USER_ID/INBOX" "${PWOPT[@]}" \
    --rename "$USER_ID/INBOX=$USER_ID/Restored/INBOX" >/dev/null 2>"$WORK/err" || fail "$(cat "$WORK/err")"
uidnext=$(grep -o '"uidnext","[0-9]*"' "$WORK/backup.err" | head -1 | grep -o '[0-9]*' || true)
below=$("${DA[@]}" search -u alice mailbox INBOX uid "1:$(( ${uidnext:-1} - 1 ))" | wc -l)
restored=$("${DA[@]}" search -u alice mailbox Restored/INBOX all | wc -l)
echo "INBOX below UIDNEXT ${uidnext:-?}: $below; restored: $restored"
[ -z "$uidnext" ] || [ "$below" = "$restored" ] || fail "restored $restored messages, $below were below UIDNEXT"

say "delete one message and one folder, restore each alone"
before_all=$(state alice)
beta=$(folder_state Projects/Beta)
uid=$("${DA[@]}" search -u alice mailbox Archive/2024 FLAGGED | head -1 | awk '{print $2}')
one=$("${DA[@]}" -f tab fetch -u alice 'hdr.message-id flags date.received text' mailbox Archive/2024 uid "$uid" | sha256sum)
mid=$("${DA[@]}" -f tab fetch -u alice hdr.message-id mailbox Archive/2024 uid "$uid" | tail -1)
uv=$("${DA[@]}" -f tab mailbox status -u alice uidvalidity Archive/2024 | tail -1)
"${DA[@]}" expunge -u alice mailbox Archive/2024 uid "$uid"
"${DA[@]}" expunge -u alice mailbox Projects/Beta all && "${DA[@]}" mailbox delete -u alice Projects/Beta
"${GR[@]}" restore --plugin mail --input "$WORK/full.stream" --select "$USER_ID/Archive/2024/;UIDVALIDITY=$uv/;UID=$uid" "${PWOPT[@]}" >/dev/null 2>"$WORK/err" || fail "$(cat "$WORK/err")"
"${GR[@]}" restore --plugin mail --input "$WORK/full.stream" --select "$USER_ID/Projects/Beta" "${PWOPT[@]}" >/dev/null 2>"$WORK/err" || fail "$(cat "$WORK/err")"
[ "$("${DA[@]}" -f tab fetch -u alice 'hdr.message-id flags date.received text' mailbox Archive/2024 HEADER Message-ID "$mid" | sha256sum)" = "$one" ] \
    || fail "the restored message differs (bytes, flags or internal date)"
[ "$(folder_state Projects/Beta)" = "$beta" ] || fail "Projects/Beta differs after its restore"
[ "$(state alice)" = "$before_all" ] || fail "the store differs from before the deletions"
echo "message and folder back, byte-identical with flags and internal dates; nothing else changed"

say "--as another user"
"${GR[@]}" restore --plugin mail --input "$WORK/full.stream" --select "$USER_ID/Work" "${PWOPT[@]}" \
    --rename "$USER_ID=imap://bob@127.0.0.1:$PORT" >/dev/null 2>"$WORK/err" || fail "$(cat "$WORK/err")"
[ "$("${DA[@]}" search -u bob mailbox Work all | wc -l)" = "$("${DA[@]}" search -u alice mailbox Work all | wc -l)" ] || fail "bob's Work differs"

expect_error() {  # expect_error PATTERN COMMAND...
    local pattern=$1; shift
    if "$@" >"$WORK/out" 2>"$WORK/err"; then fail "succeeded, expected an error matching '$pattern'"; fi
    grep -qi -- "$pattern" "$WORK/err" || fail "error does not match '$pattern': $(cat "$WORK/err")"
    echo "ok: $(grep -i -- "$pattern" "$WORK/err" | head -1 | cut -c1-200)"
}
say "clear errors"
MAIL_PW=wrong expect_error "wrong user name or password" "${GR[@]}" backup --plugin mail --select "$USER_ID" "${PWOPT[@]}" --output "$WORK/x.stream"
expect_error "connection refused" "${GR[@]}" backup --plugin mail --select "imap://alice@127.0.0.1:$DEAD" "${PWOPT[@]}" --output "$WORK/x.stream"
expect_error "does not exist" "${GR[@]}" backup --plugin mail --select "$USER_ID/Nope" "${PWOPT[@]}" --output "$WORK/x.stream"
expect_error "not an IP address" "${GR[@]}" backup --plugin mail --select "imap://alice@localhost:$PORT" "${PWOPT[@]}" --output "$WORK/x.stream"

say "PASS: mail end to end"
