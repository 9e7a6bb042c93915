#!/usr/bin/env bash
# Benchmark (not a timed test): 10,000 messages in 20 folders; backup and
# restore of the whole user through the mail plugin (guest-runner, stream
# file) beside `doveadm backup` into a Maildir and back, in the same run.
# Prints seconds and ratios (plugin / doveadm).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNNER=${RUNNER:-$ROOT/target/x86_64-unknown-linux-musl/release/guest-runner}
ATTACHE=${ATTACHE:-$ROOT/target/release/attache}
PLUGIN=${PLUGIN:-${CARGO_TARGET_DIR:-$ROOT/target}/wasm32-wasip2/release/attache_plugin_mail.wasm}
MESSAGES=${MESSAGES:-10000}
WORK=$(mktemp -d /tmp/attache-mail-bench.XXXXXX)
trap '"$ROOT/tests/mail/dovecot.sh" stop "$WORK/d"; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/d"
PORT=$("$ROOT/tests/mail/dovecot.sh" start "$WORK/d" alice bob carol)
. "$WORK/d/env"; export MAIL_PW=$PW
DA=(doveadm -c "$CONF")
python3 "$ROOT/tests/mail/gen-mail.py" "$WORK/d" alice --messages "$MESSAGES" >/dev/null
"$ATTACHE" container assemble --runner "$RUNNER" --plugin "mail=$PLUGIN" --out "$WORK/agent" >/dev/null
printf '[default]\nread = ["/"]\nwrite = ["/"]\nconnect = []\n[plugins.mail]\nconnect = ["127.0.0.1/32:1-65535"]\n' >"$WORK/policy.toml"
GR=("$WORK/agent/guest-runner" --agent-dir "$WORK/agent" --cache-dir "$WORK/cache" --policy "$WORK/policy.toml")
t() { local s=$(date +%s.%N); "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; exit 1; }; echo "$(date +%s.%N) - $s" | bc; }
size=$(du -sb "$WORK/d/mail/alice" | cut -f1)
echo "store: $MESSAGES messages, $((size / 1048576)) MiB"
pb=$(t "${GR[@]}" backup --plugin mail --select "imap://alice@127.0.0.1:$PORT" --option-env password=MAIL_PW --output "$WORK/s")
pr=$(t "${GR[@]}" restore --plugin mail --input "$WORK/s" --option-env password=MAIL_PW --rename "imap://alice@127.0.0.1:$PORT=imap://bob@127.0.0.1:$PORT")
mkdir -p "$WORK/dsync" && chmod 777 "$WORK/dsync"
db=$(t "${DA[@]}" backup -u alice "maildir:$WORK/dsync/Maildir")
dr=$(t "${DA[@]}" backup -R -u carol "maildir:$WORK/dsync/Maildir")
printf 'backup:  plugin %.2f s, doveadm backup %.2f s, ratio %.2f\n' "$pb" "$db" "$(echo "$pb / $db" | bc -l)"
printf 'restore: plugin %.2f s, doveadm backup -R %.2f s, ratio %.2f\n' "$pr" "$dr" "$(echo "$pr / $dr" | bc -l)"
