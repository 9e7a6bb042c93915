#!/usr/bin/env python3
"""Fleet backups: 1, 2, 4 and 8 test VMs (on two hypervisors, half on
each) backed up by one `attache policy run` through `attache serve`,
against the same backups run one after another: by `attache backup HV/VM`
(a process per backup, no server), and through a second server
(`attache --server URL backup HV/VM`, each to the end before the next),
which isolates what running them at once wins from what a warm server
saves. Figures, not pass/fail.

Printed per N: the wall times, the sequential ones against the policy run,
the policy run's time against one VM's (target: 4 VMs in under 2x the time
of one), and the per-VM cost (wall / N). Each mode has its own repository
and the same history (N=1, then 2, ...), so all see the same full and
incremental backups.

The server runs with --max-jobs 8 --max-jobs-per-hypervisor 4
--max-jobs-per-datastore 4 (MAX_PER_HV to change the last two). Under TCG
every guest is emulated on the host's cores: with few cores the VMs
compete for them, which bounds what concurrency can win.

Usage: tests/bench/fleet.py   (make bench builds first; SIZES=1,2,4,8)
"""
import json, os, random, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import free_port, sh, wait_healthy  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ATTACHE = os.path.join(ROOT, "target/release/attache")
SIZES = [int(n) for n in os.environ.get("SIZES", "1,2,4,8").split(",")]
PER_HV = os.environ.get("MAX_PER_HV", "4")
TOKEN = "a-fleet-bench-token-of-enough-length"


def env_for(work, name):
    env = dict(os.environ, ATTACHE_PASSWORD="bench", ATTACHE_REPO=f"{work}/{name}/repo",
               ATTACHE_CACHE_DIR=f"{work}/{name}/cache", ATTACHE_STATE_DIR=f"{work}/{name}/state",
               ATTACHE_TOKEN=TOKEN, NO_COLOR="1")
    for k in ("ATTACHE_POLICY", "ATTACHE_SERVER", "ATTACHE_AGENT_DIR", "ATTACHE_TRUST"):
        env.pop(k, None)
    return env


def setup(work, name, vms):
    env = env_for(work, name)
    sh([ATTACHE, "init"], env)
    for hv in ("hv1", "hv2"):
        sh([ATTACHE, "hypervisor", "add", hv, "--driver", "qemu", "--vm-dir", f"{work}/{hv}",
            "--datastore", f"{work}/{name}/ds-{hv}"], env)
    return env


def main():
    work = tempfile.mkdtemp(prefix="fleet-bench", dir="/tmp")
    n_max = max(SIZES)
    vms = [("hv1" if i % 2 == 0 else "hv2", f"vm{i}") for i in range(n_max)]
    booted = []
    servers = []
    try:
        rng = random.Random(7)
        for hv, vm in vms:
            data = f"{work}/data-{vm}"
            os.makedirs(data)
            with open(f"{data}/one.txt", "w") as f:
                f.write(f"{hv}/{vm}\n")
            with open(f"{data}/blob.bin", "wb") as f:
                f.write(rng.randbytes(1 << 20))
            sh([f"{ROOT}/tests/vm/boot", vm, f"{work}/{hv}", "--data", data], capture=False)
            booted.append((hv, vm))
        seq_env = setup(work, "seq", vms)
        pol_env = setup(work, "pol", vms)
        one_env = setup(work, "one", vms)

        def serve(env):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            servers.append(subprocess.Popen(
                [ATTACHE, "serve", "--listen", f"127.0.0.1:{port}", "--max-jobs", "8",
                 "--max-jobs-per-hypervisor", PER_HV, "--max-jobs-per-datastore", PER_HV],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_healthy(url, "the server", 200)
            return dict(env, ATTACHE_SERVER=url)

        client = serve(pol_env)
        one_client = serve(one_env)
        rows = []
        for n in SIZES:
            targets = [f"{hv}/{vm}" for hv, vm in vms[:n]]
            t0 = time.monotonic()
            for t in targets:
                sh([ATTACHE, "backup", t, "--plugin", "filesystem", "--include", "/data"], seq_env)
            seq = time.monotonic() - t0
            t0 = time.monotonic()
            for t in targets:
                sh([ATTACHE, "backup", t, "--plugin", "filesystem", "--include", "/data"], one_client)
            seq_served = time.monotonic() - t0
            sh([ATTACHE, "policy", "add", f"n{n}", "--vms", *targets, "--plugin", "filesystem",
                "--include", "/data", "--schedule", "0 0 3 1 1 *"], client)
            t0 = time.monotonic()
            out = sh([ATTACHE, "policy", "run", f"n{n}", "--json"], client).stdout
            pol = time.monotonic() - t0
            jobs = json.loads(out)
            assert len(jobs) == n and all(j["status"] == "succeeded" for j in jobs), out
            rows.append((n, seq, seq_served, pol))
        one = rows[0][3] if rows[0][0] == 1 else None
        print(f"\n== fleet: one policy run through attache serve vs the same backups one after another")
        print(f"   (under TCG, {os.cpu_count()} cores shared with whatever else runs; "
              f"limits: 8 jobs, {PER_HV} per hypervisor and per datastore; /data of 2 files, 1 MiB)")
        print(f"{'VMs':>4} {'sequential, CLI':>16} {'sequential, server':>19} {'policy run':>11} "
              f"{'ratios':>12} {'vs 1 VM':>8} {'per VM':>8}")
        for n, seq, seq_served, pol in rows:
            vs1 = f"{pol / one:.2f}x" if one else "-"
            print(f"{n:>4} {seq:>14.2f} s {seq_served:>17.2f} s {pol:>9.2f} s "
                  f"{seq / pol:>5.2f}x {seq_served / pol:>5.2f}x {vs1:>8} {pol / n:>6.2f} s")
        print("ratios: each sequential time / the policy run's; vs 1 VM: the policy run's time "
              "against one VM's (target for 4: under 2x)")
    finally:
        for server in servers:
            server.kill()
            server.wait()
        for hv, vm in booted:
            subprocess.run([f"{ROOT}/tests/vm/stop", vm, f"{work}/{hv}"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
