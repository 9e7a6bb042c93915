#!/usr/bin/env python3
"""Job throughput of 1, 2 and 3 `attache serve` workers sharing one
PostgreSQL state database and one repository (issue 17), over three test
VMs on one QEMU hypervisor. Figures, not pass/fail.

For each N, a fresh database and repository, the hypervisor registered once
in the shared registry with one datastore, N workers (each its own state
directory and cache, as on N machines, default limits: at most
2 jobs at once per hypervisor and worker), JOBS backups of /data posted to
the workers in turn over the VMs in turn, timed from the first post to the
last job's end. Printed: the wall time, jobs per minute, and how the jobs
fell to the workers. A VM runs one job at a time whoever runs it, so with
three VMs three jobs at most run at once; under TCG the guests share the
host's cores, which bounds what more workers win.

Usage: tests/bench/workers.py   (make build and the test guest first;
WORKERS=1,2,3 JOBS=30)
"""
import json, os, random, shutil, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import free_port, sh, wait_healthy  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ATTACHE = os.path.join(ROOT, "target/release/attache")
SIZES = [int(n) for n in os.environ.get("WORKERS", "1,2,3").split(",")]
JOBS = int(os.environ.get("JOBS", "30"))
TOKEN = "a-workers-bench-token-of-enough-length"
VMS = ["vm0", "vm1", "vm2"]


def call(url, method, path, body=None):
    req = urllib.request.Request(f"{url}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def main():
    work = tempfile.mkdtemp(prefix="workers-bench", dir="/tmp")
    os.makedirs(f"{work}/pg")
    os.chmod(work, 0o755)
    script = f"{ROOT}/tests/sql/pg-cluster.sh"
    pg = sh(["bash", "-c", f'set -e; . "{script}"; pg_cluster_start "{work}/pg" >&2; '
             'printf "%s\\n%s\\n%s\\n" "$PGBIN" "$PORT" "$PW"']).stdout.split("\n")
    pgbin, port, pw = pg[0], pg[1], pg[2]
    booted, procs = [], []
    try:
        rng = random.Random(3)
        for vm in VMS:
            data = f"{work}/data-{vm}"
            os.makedirs(data)
            with open(f"{data}/one.txt", "w") as f:
                f.write(f"{vm}\n")
            with open(f"{data}/blob.bin", "wb") as f:
                f.write(rng.randbytes(256 << 10))
            sh([f"{ROOT}/tests/vm/boot", vm, f"{work}/vms", "--data", data])
            booted.append(vm)
        rows = []
        for n in SIZES:
            db = f"w{n}"
            sh([f"{pgbin}/psql", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-qAtX",
                "-c", f"CREATE DATABASE {db}", "postgres"], dict(os.environ, PGPASSWORD=pw))
            state_db = f"host=127.0.0.1 port={port} user=postgres password={pw} dbname={db}"
            repo = f"{work}/repo{n}"
            urls = []
            for i in range(n):
                env = dict(os.environ, ATTACHE_PASSWORD="bench", ATTACHE_REPO=repo,
                           ATTACHE_CACHE_DIR=f"{work}/n{n}w{i}/cache",
                           ATTACHE_STATE_DIR=f"{work}/n{n}w{i}/state",
                           ATTACHE_TOKEN=TOKEN, NO_COLOR="1")
                for k in ("ATTACHE_POLICY", "ATTACHE_SERVER", "ATTACHE_AGENT_DIR",
                          "ATTACHE_TRUST", "ATTACHE_STATE_DB"):
                    env.pop(k, None)
                if i == 0:
                    # The repository, and the hypervisor in the shared
                    # registry, with one datastore for every worker.
                    sh([ATTACHE, "init"], env)
                    sh([ATTACHE, "--state-db", state_db, "hypervisor", "add", "hv1", "--driver",
                        "qemu", "--vm-dir", f"{work}/vms", "--datastore", f"{work}/n{n}/ds"], env)
                p = free_port()
                procs.append(subprocess.Popen(
                    [ATTACHE, "--state-db", state_db, "serve", "--listen", f"127.0.0.1:{p}"],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                urls.append(f"http://127.0.0.1:{p}")
                wait_healthy(urls[-1], "a worker", 400)
            t0 = time.monotonic()
            ids = []
            for j in range(JOBS):
                body = {"kind": "backup", "backup": {"target": f"hv1/{VMS[j % len(VMS)]}",
                                                     "plugin": "filesystem", "include": ["/data"]}}
                ids.append(call(urls[j % n], "POST", "/jobs", body)["id"])
            left = set(ids)
            while left:
                for id_ in list(left):
                    j = call(urls[0], "GET", f"/jobs/{id_}")
                    if j["status"] not in ("queued", "running"):
                        if j["status"] != "succeeded":
                            sys.exit(f"job {id_} {j['status']}: {j.get('error')}")
                        left.discard(id_)
                time.sleep(0.2)
            wall = time.monotonic() - t0
            split = sh([f"{pgbin}/psql", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-qAtX",
                        "-c", "SELECT string_agg(n::text, '/' ORDER BY n DESC) FROM "
                              "(SELECT count(*) n FROM jobs GROUP BY worker) x", db],
                       dict(os.environ, PGPASSWORD=pw)).stdout.strip()
            rows.append((n, wall, JOBS / wall * 60, split))
            for p in procs:
                p.kill()
                p.wait()
            procs.clear()
        print(f"{'workers':>7} {'jobs':>5} {'wall s':>8} {'jobs/min':>9}  jobs by worker")
        for n, wall, rate, split in rows:
            print(f"{n:>7} {JOBS:>5} {wall:>8.1f} {rate:>9.1f}  {split}")
    finally:
        for p in procs:
            p.kill()
        for vm in booted:
            subprocess.run([f"{ROOT}/tests/vm/stop", vm, f"{work}/vms"], capture_output=True)
        subprocess.run(["bash", "-c", f'. "{script}"; PGBIN="{pgbin}"; PGDATA="{work}/pg/data"; '
                        'pg_cluster_stop'], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
