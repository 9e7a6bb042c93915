#!/usr/bin/env bash
# Backup throughput of guest-runner + the filesystem plugin, beside a native
# read of the same data by tar, in the same run: 1 GiB as one large file, and
# 1 GiB as a tree of small files. Both read from the page cache (each data set
# is read once before timing) and write to a pipe counted by `wc -c`.
# Then the plugin start time, from the cargo bench.
#
# Usage: tests/bench/backup.sh        (make bench builds first)
# BENCH_DIR=DIR keeps the data sets there; RUNS=N timed runs each (default 3).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
agent=$root/target/release/agent
runs=${RUNS:-3}
[ -x "$agent/guest-runner" ] || { echo "run make build first" >&2; exit 1; }

work=${BENCH_DIR:-}
if [ -z "$work" ]; then
  work=$(mktemp -d /var/tmp/attache-bench.XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
cache=$work/cache
mkdir -p "$work" "$cache"

if [ ! -f "$work/large/file.bin" ]; then
  echo "generating 1 GiB file..." >&2
  mkdir -p "$work/large"
  head -c $((1 << 30)) /dev/urandom > "$work/large/file.bin"
fi
if [ ! -d "$work/small/d255" ]; then
  echo "generating 16384 files of 64 KiB..." >&2
  python3 - "$work/small" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(256):
    p = os.path.join(root, f"d{d}")
    os.makedirs(p, exist_ok=True)
    for f in range(64):
        with open(os.path.join(p, f"f{f}"), "wb") as fh:
            fh.write(os.urandom(65536))
PY
fi

# seconds taken by a command (stdout discarded after counting)
timed() {
  local t0 t1 bytes
  t0=$(date +%s.%N)
  bytes=$("$@" | wc -c)
  t1=$(date +%s.%N)
  echo "$(echo "$t1 - $t0" | bc -l) $bytes"
}

native() { tar -cf - -C "$1" .; }
attache() {
  "$agent/guest-runner" --agent-dir "$agent" --cache-dir "$cache" \
    --trust "$root/target/release/trust.toml" backup --plugin filesystem --select "$1" --output -
}

best() { sort -n | head -1; }

printf '%-28s %10s %10s %12s %12s %8s\n' "data set" "tar s" "attache s" "tar MB/s" "attache MB/s" "ratio"
for set in large small; do
  dir=$work/$set
  native "$dir" > /dev/null   # warm the page cache
  attache "$dir" > /dev/null  # and the compiled-plugin cache
  tn=(); ta=()
  for _ in $(seq "$runs"); do
    read -r s b_n < <(timed native "$dir"); tn+=("$s")
    read -r s b_a < <(timed attache "$dir"); ta+=("$s")
  done
  t_n=$(printf '%s\n' "${tn[@]}" | best)
  t_a=$(printf '%s\n' "${ta[@]}" | best)
  mb_n=$(echo "$b_n / $t_n / 1000000" | bc -l)
  mb_a=$(echo "$b_a / $t_a / 1000000" | bc -l)
  printf '%-28s %10.3f %10.3f %12.0f %12.0f %8.2f\n' "$set ($(du -sh "$dir" | cut -f1))" "$t_n" "$t_a" "$mb_n" "$mb_a" \
    "$(echo "$t_n / $t_a" | bc -l)"
done
echo "ratio = tar time / attache time on the same data (target: at least 0.80)"
echo
cd "$root" && cargo bench -q --target x86_64-unknown-linux-musl -p guest-runner --bench plugin_start 2>/dev/null
