#!/usr/bin/env python3
"""What a VM job costs beyond its data, and how fast a rebuilt container
reaches many hypervisors. Figures, not pass/fail: printed for the issue's
closing note, each beside a peer measured in the same run.

1. Overhead per VM (target: under 2 s under TCG). The test guest is booted
   and a one-file backup of it runs RUNS times (default 10): wall time of the
   whole `attache backup hv1/vm1`, and the session's own phases from its log
   (attach + mount, runner start to its hello, the run, unmount + detach).
   Peer: the same one-file backup with the same runner on this machine
   (`attache backup local`), which has everything but the VM.
2. Push to 100 hypervisors (HYPERVISORS to change it) whose datastores are
   directories: `attache container build` of a changed agent (a plugin added)
   with the container already built, so that the time is the push. Peer:
   `cp` + `sync` of the same ISO into 100 directories, one after the other.

Usage: tests/bench/vm.py   (make bench builds first)
"""
import json, os, re, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ATTACHE = os.path.join(ROOT, "target/release/attache")
AGENT = os.path.join(ROOT, "target/release/agent")
RUNS = int(os.environ.get("RUNS", "10"))
HYPERVISORS = int(os.environ.get("HYPERVISORS", "100"))


def sh(cmd, env=None, capture=True):
    r = subprocess.run(cmd, env=env, capture_output=capture, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{r.stdout}\n{r.stderr}")
    return r


def timed(cmd, env):
    t0 = time.monotonic()
    r = sh(cmd, env)
    return time.monotonic() - t0, r


PHASES = [
    ("attach + mount", r"container attached and mounted .*ms=(\d+)"),
    ("runner start → hello", None),
    ("runner run, total", r"runner done .*ms=(\d+)"),
    ("unmount + detach", r"cleaned up .*ms=(\d+)"),
]


def phases(log):
    out = {}
    for name, pat in PHASES:
        if pat:
            m = re.search(pat, log)
            out[name] = int(m.group(1)) if m else None
    m = re.search(r"runner's hello .*ms=(\d+)", log)
    out["runner start → hello"] = int(m.group(1)) if m else None
    return out


def overhead(work):
    env = dict(os.environ, ATTACHE_PASSWORD="bench", ATTACHE_REPO=f"{work}/repo",
               ATTACHE_CACHE_DIR=f"{work}/cache", ATTACHE_STATE_DIR=f"{work}/state",
               ATTACHE_LOG="attache::hypervisor=info", NO_COLOR="1")
    for k in ("ATTACHE_POLICY", "ATTACHE_SERVER", "ATTACHE_AGENT_DIR"):
        env.pop(k, None)
    data = f"{work}/data"
    os.makedirs(data)
    with open(f"{data}/one.txt", "w") as f:
        f.write("one small file\n")
    vms = f"{work}/vms"
    sh([f"{ROOT}/tests/vm/boot", "bench", vms, "--data", data], capture=False)
    try:
        sh([ATTACHE, "init"], env)
        sh([ATTACHE, "hypervisor", "add", "hv1", "--driver", "qemu", "--vm-dir", vms,
            "--datastore", f"{work}/ds"], env)
        walls, logs = [], []
        for _ in range(RUNS):
            wall, r = timed([ATTACHE, "backup", "hv1/bench", "--plugin", "filesystem",
                             "--include", "/data/one.txt"], env)
            walls.append(wall)
            logs.append(phases(re.sub(r"\x1b\[[0-9;]*m", "", r.stderr)))
        local = []
        for _ in range(RUNS):
            wall, _ = timed([ATTACHE, "backup", "local", "--plugin", "filesystem",
                             "--include", f"{data}/one.txt"], env)
            local.append(wall)
    finally:
        sh([f"{ROOT}/tests/vm/stop", "bench", vms], capture=False)
    vm_med, local_med = statistics.median(walls), statistics.median(local)
    print(f"\n== overhead of a VM job, excluding data ({RUNS} runs, medians)")
    print(f"attache backup hv1/vm (one 15-byte file):    {vm_med:.3f} s  (min {min(walls):.3f}, max {max(walls):.3f})")
    print(f"attache backup local, same file and runner:  {local_med:.3f} s")
    print(f"VM / local: {vm_med / local_med:.2f}x; the VM's share: {vm_med - local_med:.3f} s (target: under 2 s in all)")
    for name, _ in PHASES:
        vals = [p[name] for p in logs if p.get(name) is not None]
        if vals:
            print(f"  {name:<24} {statistics.median(vals):6.0f} ms")
    return vm_med


def push(work):
    n = HYPERVISORS
    env = dict(os.environ, ATTACHE_STATE_DIR=f"{work}/state", ATTACHE_CACHE_DIR=f"{work}/cache")
    for k in ("ATTACHE_POLICY", "ATTACHE_SERVER", "ATTACHE_REPO"):
        env.pop(k, None)
    agent = f"{work}/agent"
    shutil.copytree(AGENT, agent)
    env["ATTACHE_AGENT_DIR"] = agent
    for i in range(n):
        os.makedirs(f"{work}/vms/{i}")
        sh([ATTACHE, "hypervisor", "add", f"hv{i}", "--driver", "qemu", "--vm-dir",
            f"{work}/vms/{i}", "--datastore", f"{work}/ds/{i}"], env)
    # The changed agent: the test plugin `probe` added beside filesystem.
    probe = os.path.join(ROOT, "target/wasm32-wasip2/release/attache_test_plugin_probe.wasm")
    if not os.path.exists(probe):
        sys.exit("the probe test plugin is missing: run `make test-plugins`")
    sh([ATTACHE, "container", "assemble", "--runner", f"{agent}/guest-runner", "--out", agent,
        "--sign", os.path.join(ROOT, "target/dev-keys/dev.key"), "--plugin", f"filesystem={agent}/plugins/filesystem.wasm", "--plugin", f"probe={probe}"], env)
    # Build it where nothing is registered, so the timed run only pushes.
    t0 = time.monotonic()
    sh([ATTACHE, "--state-dir", f"{work}/nostate", "container", "build"], env)
    build = time.monotonic() - t0
    wall, r = timed([ATTACHE, "container", "build", "--json"], env)
    out = json.loads(r.stdout)
    iso = out["iso"]
    assert len(out["pushed"]) == n, "every hypervisor got it"
    for i in range(n):
        files = os.listdir(f"{work}/ds/{i}")
        assert files == [f"attache-agent-{out['version']}.iso"], files
    size = os.path.getsize(iso)
    t0 = time.monotonic()
    for i in range(n):
        d = f"{work}/cp/{i}"
        os.makedirs(d)
        sh(["cp", iso, d])
    sh(["sync"])
    cp = time.monotonic() - t0
    print(f"\n== push of a rebuilt container ({size / 2**20:.1f} MiB ISO) to {n} hypervisors")
    print(f"container build (the ISO and 4 disk images):  {build:.2f} s")
    print(f"push to {n} hypervisors (attache, durable):   {wall:.2f} s  ({wall / n * 1000:.0f} ms each; old containers removed)")
    print(f"cp + sync to {n} directories (peer):           {cp:.2f} s")
    print(f"attache / cp: {wall / cp:.2f}x")


def main():
    for p in (ATTACHE, AGENT):
        if not os.path.exists(p):
            sys.exit(f"{p} missing: run `make build`")
    work = tempfile.mkdtemp(prefix="attache-vm-bench-", dir="/tmp")
    try:
        overhead(f"{work}/overhead")
        push(f"{work}/push")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
