#!/usr/bin/env python3
"""attache beside restic on the same data, in the same run.

Data sets: a 1 GiB file of random bytes, and a tree of 10,000 small files
(1 to 16 KiB of random bytes each). Each is backed up twice by each tool:
the first backup, then an incremental one of the unchanged data. Printed per
run: wall time, peak memory (summed over the tool's whole process tree,
sampled every 20 ms), and repository size; then the ratios restic/attache
(above 1 means attache is better). Each tool runs RUNS times (default 3) on a
fresh repository: the best wall time and the highest peak memory are kept,
since this machine's disk varies from run to run.

Usage: tests/bench/restic.py   (make bench builds first; BENCH_DIR keeps data)
"""
import os, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import tree_rss  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ATTACHE = os.path.join(ROOT, "target/release/attache")
PASSWORD = "bench password"


def run(cmd, env):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while p.poll() is None:
        peak = max(peak, tree_rss(p.pid))
        time.sleep(0.02)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {p.stderr.read().decode()}")
    return wall, peak * 1024


def du(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_size
            except OSError:
                pass
    return total


def make_data(work):
    big = os.path.join(work, "large")
    if not os.path.exists(os.path.join(big, "random.bin")):
        os.makedirs(big, exist_ok=True)
        with open(os.path.join(big, "random.bin"), "wb") as f:
            for _ in range(1024):
                f.write(os.urandom(1 << 20))
    small = os.path.join(work, "small")
    if not os.path.exists(os.path.join(small, "d99")):
        import random
        rnd = random.Random(7)
        for d in range(100):
            os.makedirs(os.path.join(small, f"d{d}"), exist_ok=True)
            for i in range(100):
                with open(os.path.join(small, f"d{d}", f"f{i}"), "wb") as f:
                    f.write(os.urandom(rnd.randint(1024, 16384)))
    return [("1 GiB random file", big), ("10,000 small files", small)]


def main():
    work = os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="attache-restic-", dir="/var/tmp")
    keep = "BENCH_DIR" in os.environ
    try:
        sets = make_data(work)
        rows = []
        for name, data in sets:
            subprocess.run(["cat"] + [os.path.join(d, f) for d, _, fs in os.walk(data) for f in fs][:1], stdout=subprocess.DEVNULL)
            subprocess.run(["tar", "-cf", "/dev/null", data])  # warm the page cache
            for tool in ("restic", "attache"):
              best = {}
              for _ in range(int(os.environ.get("RUNS", "3"))):
                repo = os.path.join(work, f"repo-{tool}-{os.path.basename(data)}")
                shutil.rmtree(repo, ignore_errors=True)
                env = dict(os.environ)
                if tool == "restic":
                    env.update(RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=repo, RESTIC_CACHE_DIR=os.path.join(work, "restic-cache"))
                    subprocess.run(["restic", "init", "-q"], env=env, check=True, stdout=subprocess.DEVNULL)
                    cmd = ["restic", "backup", "-q", data]
                else:
                    env.update(ATTACHE_PASSWORD=PASSWORD, ATTACHE_REPO=repo, ATTACHE_CACHE_DIR=os.path.join(work, "attache-cache"),
                               ATTACHE_STATE_DIR=os.path.join(work, "attache-state"))
                    for k in ("ATTACHE_POLICY", "ATTACHE_SERVER", "ATTACHE_AGENT_DIR"):
                        env.pop(k, None)
                    subprocess.run([ATTACHE, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
                    cmd = [ATTACHE, "backup", "local", "--plugin", "filesystem", "--include", data]
                for run_name in ("first", "incremental"):
                    wall, peak = run(cmd, env)
                    w, p, _ = best.get(run_name, (wall, peak, 0))
                    best[run_name] = (min(w, wall), max(p, peak), du(repo))
              for run_name in ("first", "incremental"):
                rows.append((name, run_name, tool) + best[run_name])
        print(f"{'data set':<20} {'run':<12} {'tool':<8} {'wall s':>8} {'MB/s':>8} {'peak MiB':>9} {'repo MiB':>9}")
        sizes = {name: du(data) for name, data in sets}
        for name, run_name, tool, wall, peak, repo in rows:
            print(f"{name:<20} {run_name:<12} {tool:<8} {wall:8.2f} {sizes[name] / wall / 1e6:8.0f} {peak / 2**20:9.0f} {repo / 2**20:9.1f}")
        print()
        print("ratios restic / attache (above 1: attache faster, smaller, leaner):")
        by = {(n, r, t): (w, p, s) for n, r, t, w, p, s in rows}
        for name, _ in sets:
            for run_name in ("first", "incremental"):
                rw, rp, rs = by[(name, run_name, "restic")]
                aw, ap, as_ = by[(name, run_name, "attache")]
                print(f"  {name:<20} {run_name:<12} time {rw / aw:5.2f}   peak memory {rp / ap:5.2f}   repository {rs / as_:5.2f}")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
