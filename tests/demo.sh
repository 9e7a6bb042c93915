#!/usr/bin/env bash
# make demo: backs up a real directory of this machine with the agent that
# goes into VMs, lists what was stored, restores it elsewhere and compares.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
attache=$root/target/release/attache
demo=$root/target/demo
src=${DEMO_SOURCE:-/usr/share/doc}
export ATTACHE_REPO=$demo/repo
export ATTACHE_PASSWORD=${ATTACHE_PASSWORD:-attache demo password}
export ATTACHE_CACHE_DIR=$demo/cache
export ATTACHE_STATE_DIR=$demo/state
unset ATTACHE_POLICY ATTACHE_SERVER ATTACHE_AGENT_DIR ATTACHE_TRUST ATTACHE_ALLOW_UNSIGNED

rm -rf "$demo"
mkdir -p "$demo"
echo "== encrypted repository"
"$attache" init
echo "== agent container, signed (make build's development key) and trusted"
"$attache" policy show | sed -n '/^trust in force/,$p'
"$attache" plugin info
echo
echo "== backup of $src"
id=$("$attache" backup local --plugin filesystem --include "$src")
echo "snapshot $id"
"$attache" snapshots
echo
echo "== a few items of the catalog"
"$attache" ls "$id" | head -n 12
echo "... $("$attache" ls "$id" | wc -l) items in all"
echo
echo "== restore of the whole snapshot to $demo/restore"
"$attache" restore "$id" --to "local:$demo/restore"
diff -r --no-dereference "$src" "$demo/restore$src" && echo "restored tree is identical to $src"
echo
echo "== a second, unchanged backup adds almost nothing"
"$attache" backup local --plugin filesystem --include "$src" --json
echo
echo "== verify every chunk"
"$attache" verify --read-data
echo
one=$("$attache" ls "$id" --json | python3 -c 'import json,sys; print(next(i["id"] for i in json.load(sys.stdin) if i["kind"]=="file"))')
echo "== restore of one item, $one, to $demo/single"
"$attache" restore "$id" --item "$one" --to "local:$demo/single"
cmp "$one" "$demo/single$one" && echo "identical"
echo
echo "== granular backup and restore inside a running VM (QEMU under TCG)"
vms=$demo/vms
mkdir -p "$vms/data"
cp -r "$src/." "$vms/data/" 2>/dev/null || true
trap '"$root/tests/vm/stop" demo "$vms" >/dev/null 2>&1 || true' EXIT
"$root/tests/vm/boot" demo "$vms" --data "$vms/data"
"$attache" hypervisor add hv1 --driver qemu --vm-dir "$vms" --datastore "$demo/datastore"
"$attache" vm list
vid=$("$attache" backup hv1/demo --plugin filesystem --include /data)
echo "snapshot $vid of hv1/demo: $("$attache" ls "$vid" | wc -l) items"
qga() { "$root/tests/vm/qga.py" "$vms/demo.qga" exec /bin/sh -c "$1"; }
victim=$("$attache" ls "$vid" --json | python3 -c 'import json,sys; print(next(i["id"] for i in json.load(sys.stdin) if i["kind"]=="file"))')
sum=$(qga "sha256sum '$victim' | cut -d' ' -f1")
qga "rm '$victim'"
echo "deleted $victim in the guest; restoring that one item"
"$attache" restore "$vid" --item "$victim" --to hv1/demo
[ "$(qga "sha256sum '$victim' | cut -d' ' -f1")" = "$sum" ] && echo "restored in the guest, identical"
"$attache" vm list
