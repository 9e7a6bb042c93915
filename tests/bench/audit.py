#!/usr/bin/env python3
"""What the audit log costs a job (issue 13: under 1%).

Each job measures the time it waits for the audit log (appends under the
log's lock, and the fdatasyncs: one before its first effect, overlapped
with opening the repository, and one for its end) and logs it (`audit log
cost`, target attache::audit: entries and microseconds). Here, in the same run, local backups and a restore of a
tree of small files (4096 files of 16 KiB, 64 MiB, on the page cache): for
each, the job's wall time and its audit time, and their ratio. The
unchanged re-run is the shortest job, so the worst case for the ratio.
A VM job adds an entry per attach, detach and guest command, but takes
seconds (tests/bench/vm.py), so its ratio is lower still.

Usage: tests/bench/audit.py   (make bench builds first; RUNS=N rounds,
default 5; BENCH_DIR keeps the data set)
"""
import json, os, re, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ATTACHE = os.environ.get("ATTACHE_BIN") or os.path.join(ROOT, "target/release/attache")
RUNS = int(os.environ.get("RUNS", "5"))
COST = re.compile(r"audit log cost.*?entries=(\d+).*?micros=(\d+)")


def job(args, env):
    t0 = time.monotonic()
    p = subprocess.run([ATTACHE] + args, env=env, capture_output=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"attache {' '.join(args)} failed: {p.stderr.decode()[-2000:]}")
    m = COST.search(p.stderr.decode())
    if not m:
        sys.exit(f"attache {' '.join(args)} logged no audit cost: {p.stderr.decode()[-2000:]}")
    return wall, int(m.group(1)), int(m.group(2)) / 1e6, p.stdout


def main():
    keep = os.environ.get("BENCH_DIR")
    work = keep or tempfile.mkdtemp(prefix="attache-audit-bench.", dir="/var/tmp")
    try:
        data = os.path.join(work, "audit-tree")
        if not os.path.isdir(os.path.join(data, "d63")):
            for d in range(64):
                p = os.path.join(data, f"d{d}")
                os.makedirs(p, exist_ok=True)
                for f in range(64):
                    with open(os.path.join(p, f"f{f}"), "wb") as fh:
                        fh.write(os.urandom(16384))
        rows = {}
        for r in range(RUNS):
            base = tempfile.mkdtemp(prefix="round.", dir=work)
            env = dict(os.environ, ATTACHE_PASSWORD="bench", ATTACHE_LOG="warn,attache::audit=info",
                       ATTACHE_CACHE_DIR=os.path.join(base, "cache"),
                       ATTACHE_STATE_DIR=os.path.join(base, "state"))
            for k in ("ATTACHE_SERVER", "ATTACHE_POLICY", "ATTACHE_REPO"):
                env.pop(k, None)
            repo = os.path.join(base, "repo")
            subprocess.run([ATTACHE, "--repo", repo, "init"], env=env, check=True, capture_output=True)
            # The state directory's first job anchors the log and records
            # the policy in force (once, not per job): done before timing.
            warm = os.path.join(base, "warm")
            os.makedirs(warm)
            job(["--repo", os.path.join(base, "warm-repo"), "backup", "local", "--plugin", "filesystem", "--include", warm], env)
            backup = ["--repo", repo, "backup", "local", "--plugin", "filesystem", "--include", data, "--json"]
            steps = [("first backup", backup), ("unchanged re-run", backup)]
            for name, args in steps:
                wall, n, audit, out = job(args, env)
                rows.setdefault(name, []).append((wall, n, audit))
                snap = json.loads(out)["id"]
            wall, n, audit, _ = job(["--repo", repo, "restore", snap, "--to", "local:" + os.path.join(base, "dest")], env)
            rows.setdefault("full restore", []).append((wall, n, audit))
            shutil.rmtree(base)
        print("audit log cost per job, median of %d rounds (4096 files, 64 MiB)" % RUNS)
        print(f"{'job':<18} {'job time':>10} {'entries':>8} {'audit time':>11} {'share':>7}  worst round")
        med = lambda xs: sorted(xs)[len(xs) // 2]
        for name, rs in rows.items():
            wall, n, audit = med([r[0] for r in rs]), rs[0][1], med([r[2] for r in rs])
            share = med([a / w for w, _, a in rs])
            worst = max(a / w for w, _, a in rs)
            print(f"{name:<18} {wall*1000:>8.1f}ms {n:>8} {audit*1000:>9.2f}ms {share*100:>6.2f}%  {worst*100:.2f}%")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


main()
