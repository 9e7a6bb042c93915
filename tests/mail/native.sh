#!/usr/bin/env bash
# The mail plugin's IMAP client, backup and restore, natively (no runner)
# against a throwaway Dovecot: 2,000 messages in 20 folders, one message and
# one folder deleted and restored byte-identical with flags and internal
# dates, --as another mailbox and user, incremental byte counts, errors.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/attache-mail-native.XXXXXX)
trap '"$ROOT/tests/mail/dovecot.sh" stop "$WORK"; rm -rf "$WORK"' EXIT
port=$("$ROOT/tests/mail/dovecot.sh" start "$WORK" alice bob)
echo "Dovecot $(dovecot --version | cut -d' ' -f1) on 127.0.0.1:$port"
python3 "$ROOT/tests/mail/gen-mail.py" "$WORK" alice --messages "${MESSAGES:-2000}" >/dev/null
cd "$ROOT" && MAIL_DOVECOT_DIR=$WORK cargo test --release -p attache-plugin-mail --test dovecot -- --nocapture 2>&1 \
    | grep -v 'left alone (overwrite'
