#!/usr/bin/env bash
# Benchmark (not a timed test): 10,000 messages in 20 folders; backup and
# restore of the whole user through the mail plugin, beside `doveadm backup`
# into a Maildir and back, in the same run.
#
# The plugin runs twice: under the guest-runner alone (a stream file), and
# under attache into an encrypted repository (chunking, compression,
# encryption and the catalog included). doveadm runs twice too: as
# configured by default, where dsync between two Maildirs on one filesystem
# hard-links message files instead of copying them, and with
# maildir_copy_with_hardlinks=no, where it copies the bytes as the plugin
# must (through IMAP into the repository and back).
#
# Every measurement is taken ROUNDS times (default 3), interleaved, each
# restore into a new user and each attache backup into a new repository;
# the median is reported, with ratios plugin / doveadm.
#
# Run as root, the mail store lives on a fresh ext4 file system (a loop
# device in the work directory, FRESH_FS=0 to not): on a file system that
# has seen millions of files created and deleted, ext4's search for a free
# inode made Dovecot's own work two to three times dearer, for both sides
# alike but differently from run to run, which drowned the comparison.
# The device works as tests/bench/real.py's do: over an image whose every
# byte is written first, with direct I/O. Through the page cache, the loop
# device's own threads copied each written page again, and took a third of
# both cores in a restore (perf), time charged to whichever side wrote more
# at that moment.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PLUGIN_NAME=mail
# RUNNER, ATTACHE, DEV_KEY, ATTACHE_TRUST and PLUGIN.
. "$ROOT/tests/built.sh"
MESSAGES=${MESSAGES:-10000}
ROUNDS=${ROUNDS:-3}
BASE=$(mktemp -d /tmp/attache-mail-bench.XXXXXX)
WORK=$BASE
FS=
DEV=
cleanup() {
    "$ROOT/tests/mail/dovecot.sh" stop "$WORK/d" || true
    if [ -n "$FS" ]; then umount "$FS" || umount -l "$FS" || true; fi
    if [ -n "$DEV" ]; then losetup -d "$DEV" || true; fi
    rm -rf "$BASE"
}
trap cleanup EXIT
if [ "${FRESH_FS:-1}" = 1 ] && [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then
    # Room for the store, one round's copies and repository, and slack.
    dd if=/dev/zero of="$BASE/fs.img" bs=64M count=$(( (MESSAGES / 1000 + 1) * 600 / 64 + 1 )) conv=fsync status=none
    DEV=$(losetup --find --show --direct-io=on "$BASE/fs.img")
    mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$DEV"
    mkdir "$BASE/fs" && mount "$DEV" "$BASE/fs" && FS=$BASE/fs
    WORK=$FS
fi
mkdir -p "$WORK/d"
users=(alice)
for i in $(seq "$ROUNDS"); do users+=("runner$i" "attache$i" "dsync$i" "copy$i"); done
PORT=$("$ROOT/tests/mail/dovecot.sh" start "$WORK/d" "${users[@]}")
. "$WORK/d/env"
export MAIL_PW=$PW ATTACHE_APP_PASSWORD=$PW
DA=(doveadm -c "$CONF")
python3 "$ROOT/tests/mail/gen-mail.py" "$WORK/d" alice --messages "$MESSAGES" >/dev/null
"$ATTACHE" container assemble --sign "$DEV_KEY" --runner "$RUNNER" --plugin "mail=$PLUGIN" --out "$WORK/agent" >/dev/null
printf '[default]\nread = ["/"]\nwrite = ["/"]\nconnect = []\n[plugins.mail]\nconnect = ["127.0.0.1/32:1-65535"]\n' >"$WORK/policy.toml"
GR=("$WORK/agent/guest-runner" --agent-dir "$WORK/agent" --cache-dir "$WORK/cache" --policy "$WORK/policy.toml")
export ATTACHE_AGENT_DIR=$WORK/agent ATTACHE_CACHE_DIR=$WORK/acache ATTACHE_STATE_DIR=$WORK/state \
    ATTACHE_POLICY=$WORK/policy.toml ATTACHE_PASSWORD=bench
t() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }; echo "$(date +%s.%N) - $s" | bc; }
U="imap://alice@127.0.0.1:$PORT"
NOLINK=(-o maildir_copy_with_hardlinks=no)
size=$(du -sb "$WORK/d/mail/alice" | cut -f1)
echo "store: $MESSAGES messages, $((size / 1048576)) MiB${FS:+, on a fresh ext4}; $ROUNDS rounds; load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
n() { "${DA[@]}" mailbox status -u "$1" -t messages '*' | tr -dc 0-9; }
declare -A T
for i in $(seq "$ROUNDS"); do
    rm -f "$WORK/s"
    T[pb]+=" $(t "${GR[@]}" backup --plugin mail --select "$U" --option-env password=MAIL_PW --output "$WORK/s")"
    T[pr]+=" $(t "${GR[@]}" restore --plugin mail --input "$WORK/s" --option-env password=MAIL_PW --rename "$U=imap://runner$i@127.0.0.1:$PORT")"
    export ATTACHE_REPO=$WORK/repo$i
    "$ATTACHE" init >/dev/null
    T[ab]+=" $(t "$ATTACHE" backup local --plugin mail --include "$U")"
    snap=$("$ATTACHE" snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
    T[ar]+=" $(t "$ATTACHE" restore "$snap" --item "$U" --as "imap://attache$i@127.0.0.1:$PORT" --to local)"
    mkdir -p "$WORK/dsync$i" "$WORK/copy$i" && chmod 777 "$WORK/dsync$i" "$WORK/copy$i"
    T[db]+=" $(t "${DA[@]}" backup -u alice "maildir:$WORK/dsync$i/Maildir")"
    T[dr]+=" $(t "${DA[@]}" backup -R -u "dsync$i" "maildir:$WORK/dsync$i/Maildir")"
    T[cb]+=" $(t "${DA[@]}" "${NOLINK[@]}" backup -u alice "maildir:$WORK/copy$i/Maildir")"
    T[cr]+=" $(t "${DA[@]}" "${NOLINK[@]}" backup -R -u "copy$i" "maildir:$WORK/copy$i/Maildir")"
    # Each restored user holds every message; then its mail goes, so that
    # the next round has room.
    for u in "runner$i" "attache$i" "dsync$i" "copy$i"; do
        got=$(n "$u")
        [ "$got" = "$MESSAGES" ] || { echo "user $u holds $got messages, not $MESSAGES" >&2; exit 1; }
        rm -rf "$WORK/d/mail/$u"
    done
    rm -rf "$WORK/repo$i" "$WORK/copy$i" "$WORK/dsync$i"
done
echo "every restored user held $MESSAGES messages"
med() { tr ' ' '\n' <<<"${T[$1]}" | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
r() { echo "$(med "$1") / $(med "$2")" | bc -l; }
printf 'all rounds (s): runner backup%s | restore%s\n' "${T[pb]}" "${T[pr]}"
printf '                attache backup%s | restore%s\n' "${T[ab]}" "${T[ar]}"
printf '                doveadm links backup%s | -R%s; copies backup%s | -R%s\n' "${T[db]}" "${T[dr]}" "${T[cb]}" "${T[cr]}"
printf 'backup (median):  runner %.2f s, attache %.2f s; doveadm backup %.2f s (hard links), %.2f s (copies)\n' "$(med pb)" "$(med ab)" "$(med db)" "$(med cb)"
printf '   ratios runner/doveadm %.2f (links), %.2f (copies); attache/doveadm %.2f (links), %.2f (copies)\n' "$(r pb db)" "$(r pb cb)" "$(r ab db)" "$(r ab cb)"
printf 'restore (median): runner %.2f s, attache %.2f s; doveadm backup -R %.2f s (hard links), %.2f s (copies)\n' "$(med pr)" "$(med ar)" "$(med dr)" "$(med cr)"
printf '   ratios runner/doveadm %.2f (links), %.2f (copies); attache/doveadm %.2f (links), %.2f (copies)\n' "$(r pr dr)" "$(r pr cr)" "$(r ar dr)" "$(r ar cr)"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
