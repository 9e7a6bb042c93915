#!/usr/bin/env python3
"""The web console's first render, in server time (issue 15: under 300 ms
for each page or fragment).

A repository with a snapshot of 40,000 items (1,000 directories of 40
files, nested three levels) and one of 40,000 files in a single directory
is served by `attache serve`; each request the console makes to render a
view is timed by the server itself (its `request` log line: micros, from
the request to the head of the answer, whole body built for JSON) and by
this client (the wall time on loopback). Each figure is the median of
RUNS requests after one warm-up.

- overview: `/`, `/ui/console.js`, `/ui/console.css`, then `/snapshots`
  and `/jobs` (the page's data); the page total is their sum.
- a snapshot: `/snapshots/ID`, then the tree's top level
  (`/snapshots/ID/children`); the lazy tree loads a directory when it is
  opened: one level deep, and the first page (500) of the flat directory.

Usage: tests/bench/console.py   (make bench builds first; RUNS=N, default
9; BENCH_DIR keeps the data set)
"""
import json, os, re, shutil, socket, statistics, subprocess, sys, tempfile, time
import urllib.parse, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ATTACHE = os.environ.get("ATTACHE_BIN") or os.path.join(ROOT, "target/release/attache")
RUNS = int(os.environ.get("RUNS", "9"))
TOKEN = "bench-console-token-0123456789"
LINE = re.compile(r"request method=\S+ path=\"?([^\"\s]+)\"? status=(\d+) micros=(\d+)")


def make_nested(root):
    n = 0
    for a in range(10):
        for b in range(10):
            for c in range(10):
                d = os.path.join(root, f"a{a}", f"b{b}", f"c{c}")
                os.makedirs(d, exist_ok=True)
                for f in range(40):
                    with open(os.path.join(d, f"file{f:02}.txt"), "w") as fh:
                        fh.write(f"{a}{b}{c}{f}\n")
                    n += 1
    return n


def make_flat(root):
    os.makedirs(root, exist_ok=True)
    for f in range(40000):
        with open(os.path.join(root, f"m{f:05}.eml"), "w") as fh:
            fh.write(f"{f}\n")


def main():
    keep = os.environ.get("BENCH_DIR")
    work = keep or tempfile.mkdtemp(prefix="attache-console-bench.", dir="/var/tmp")
    server = None
    try:
        nested, flat = os.path.join(work, "nested"), os.path.join(work, "flat")
        if not os.path.isdir(os.path.join(nested, "a9/b9/c9")):
            make_nested(nested)
        if not os.path.exists(os.path.join(flat, "m39999.eml")):
            make_flat(flat)
        base = tempfile.mkdtemp(prefix="round.", dir=work)
        env = dict(os.environ, ATTACHE_PASSWORD="bench", ATTACHE_LOG="warn,attache::server=info",
                   ATTACHE_CACHE_DIR=os.path.join(base, "cache"),
                   ATTACHE_STATE_DIR=os.path.join(base, "state"), ATTACHE_TOKEN=TOKEN)
        for k in ("ATTACHE_SERVER", "ATTACHE_POLICY", "ATTACHE_REPO"):
            env.pop(k, None)
        repo = os.path.join(base, "repo")
        subprocess.run([ATTACHE, "--repo", repo, "init"], env=env, check=True, capture_output=True)
        snaps = {}
        for name, src in (("nested", nested), ("flat", flat)):
            out = subprocess.run([ATTACHE, "--repo", repo, "backup", "local", "--plugin", "filesystem",
                                  "--json", "--include", src], env=env, check=True, capture_output=True)
            snaps[name] = json.loads(out.stdout)["id"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(os.path.join(base, "serve.log"), "w+")
        server = subprocess.Popen([ATTACHE, "--repo", repo, "serve", "--listen", f"127.0.0.1:{port}"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=log)
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("the server did not come up")

        def get(path):
            req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + TOKEN})
            t0 = time.monotonic()
            with urllib.request.urlopen(req) as r:
                body = r.read()
            return time.monotonic() - t0, body

        def server_times(path):
            """The server's micros for each logged request of `path`."""
            log.flush()
            log.seek(0)
            want = urllib.parse.urlsplit(path).path
            return [int(m.group(3)) for m in LINE.finditer(log.read()) if m.group(1) == want]

        def measure(path):
            get(path)
            before = len(server_times(path))
            walls = [get(path)[0] for _ in range(RUNS)]
            srv = server_times(path)[before:]
            if len(srv) != RUNS:
                sys.exit(f"{path}: {len(srv)} server log lines, not {RUNS}")
            return statistics.median(srv) / 1000, statistics.median(walls) * 1000

        nested_top = nested.strip("/").split("/")
        first = "/" + nested.strip("/")
        pages = {
            "overview": ["/", "/ui/console.js", "/ui/console.css", "/snapshots", "/jobs"],
            "snapshot of 40,000 items (nested): top level": [
                f"/snapshots/{snaps['nested']}", f"/snapshots/{snaps['nested']}/children"],
            "  open a directory (10 subdirectories)": [
                f"/snapshots/{snaps['nested']}/children?dir={urllib.parse.quote(first)}"],
            "  open a leaf directory (40 files)": [
                f"/snapshots/{snaps['nested']}/children?dir={urllib.parse.quote(first + '/a9/b9/c9')}"],
            "snapshot of 40,000 items (one directory): top level": [
                f"/snapshots/{snaps['flat']}", f"/snapshots/{snaps['flat']}/children"],
            "  open the directory: first 500 of 40,000": [
                f"/snapshots/{snaps['flat']}/children?limit=500&dir={urllib.parse.quote('/' + flat.strip('/'))}"],
        }
        # The listings must be what the console shows.
        _, body = get(pages["  open the directory: first 500 of 40,000"][0])
        page = json.loads(body)
        assert page["total"] == 40000 and len(page["children"]) == 500, (page["total"], len(page["children"]))
        print(f"Console first render, server time (median of {RUNS}; target < 300 ms a page or fragment)")
        print(f"{'view / request':58} {'server ms':>10} {'wall ms':>9}")
        worst = 0.0
        for view, paths in pages.items():
            total_s = total_w = 0.0
            for p in paths:
                srv, wall = measure(p)
                total_s += srv
                total_w += wall
                worst = max(worst, srv)
                print(f"  {p[:56]:56} {srv:10.1f} {wall:9.1f}")
            print(f"{view:58} {total_s:10.1f} {total_w:9.1f}")
        print(f"slowest single request: {worst:.1f} ms (target < 300 ms): {'ok' if worst < 300 else 'OVER'}")
    finally:
        if server:
            server.terminate()
            server.wait()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
