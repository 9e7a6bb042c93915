#!/usr/bin/env bash
# Runs a command (the test suite, from `make test`) with HOME pointing at a
# home where `attache` has been used with its defaults and left stale: a
# registered hypervisor whose VM directory has since been removed, a cache
# of compiled plugins and catalogs holding garbage, and an `attache-repo`
# beside it. A test that reads the user's own ~/.local/state/attache or
# ~/.cache/attache instead of its own directories (tests/support) fails
# here, as it would on a machine where attache had been used before
# (issue 16, item 7).
#
# Why a throwaway HOME rather than the real one: the real HOME may hold a
# user's registered hypervisors, which a test must neither read nor touch,
# and other checkouts on the machine may share it; a prepared home is the
# same stale state every run, and is removed afterwards.
#
# Usage: tests/stale-home.sh COMMAND [ARG...]
# ATTACHE (default target/release/attache) is the CLI used to make the state.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ATTACHE=${ATTACHE:-$ROOT/target/release/attache}
fail() { echo "stale-home: $*" >&2; exit 1; }
[ $# -gt 0 ] || fail "usage: $0 COMMAND [ARG...]"
[ -x "$ATTACHE" ] || fail "missing $ATTACHE (make build first)"

# Cargo and rustup keep finding the real toolchain once HOME moves.
export CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
export RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}

STALE=$(mktemp -d "${TMPDIR:-/tmp}/attache-stale-home.XXXXXX")
trap 'rm -rf "$STALE"' EXIT

# attache with its defaults only: nothing from the caller's environment
# names a repository, state, cache, agent, server or policy.
defaults() {
    env -u ATTACHE_REPO -u ATTACHE_STATE_DIR -u ATTACHE_CACHE_DIR -u ATTACHE_AGENT_DIR \
        -u ATTACHE_SERVER -u ATTACHE_POLICY -u XDG_STATE_HOME -u XDG_CACHE_HOME \
        HOME="$STALE" "$@"
}

mkdir -p "$STALE/vms" "$STALE/datastore"
(cd "$STALE" && defaults ATTACHE_PASSWORD=stale "$ATTACHE" init >/dev/null)
(cd "$STALE" && defaults "$ATTACHE" hypervisor add stale --driver qemu \
    --vm-dir "$STALE/vms" --datastore "$STALE/datastore" >/dev/null 2>&1)
state=$STALE/.local/state/attache
[ -d "$state" ] || fail "attache with its defaults wrote no state under $STALE/.local/state"
grep -rqs stale "$state" || fail "the hypervisor was not registered in $state"
# The VM directory goes away; the registration stays.
rm -rf "$STALE/vms"
# A cache a crashed or older attache left: unreadable catalogs and modules.
mkdir -p "$STALE/.cache/attache/catalog" "$STALE/.cache/attache/modules"
echo garbage >"$STALE/.cache/attache/catalog/stale"
echo garbage >"$STALE/.cache/attache/modules/stale"
# The stale state is really in the way of a test that does not isolate
# itself: `container build` with the defaults trips over the hypervisor
# whose VM directory is gone (what issue 16 saw).
if (cd "$STALE" && defaults "$ATTACHE" container build >/dev/null 2>&1); then
    fail "container build with the stale defaults succeeded: the state is not stale"
fi

echo "stale-home: running with HOME=$STALE (stale attache state)" >&2
HOME=$STALE "$@"
