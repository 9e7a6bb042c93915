#!/usr/bin/env python3
"""Issue 12's table: attache beside restic (and rustic, when installed) on a
real tree and on 1 GiB of random data, in the same run.

The real tree is a copy of the crates under ~/.cargo/registry/src (copied
once into the work directory, so that a build running meanwhile does not
change it). For each data set and each tool, RUNS rounds (default 3), the
tools alternating within a round: a fresh repository, the first backup, an
unchanged re-run, and a full restore into an empty directory. The best wall
time and the highest peak memory (the whole process tree, sampled every
20 ms) of each step are kept. The page cache is warm, and nothing is left
to write back when a step starts. Printed: the table,
the ratios (other tool's time / attache's: above 1 means attache is
faster), and `dd if=/dev/zero bs=1M count=1024 conv=fsync` of the same run.

A third data set, the scale test: a generated tree of SCALE_FILES small
files (default 1,000,000; 0 skips it), 1,000 to a directory, 1 to 2,048
bytes of random content each, run once per tool (SCALE_RUNS), since one
round takes minutes.

Each tool's round (its repository, cache and restore) runs on a fresh ext4
file system of its own, a loop device made for the round and removed after
it (run as root; FRESH_FS=0 not to). This machine's root file system runs
without a journal: there, ext4 looks at the deletion time of every freed
inode it passes when it picks one for a new file, so a round that follows
the deletion of the previous round's trees paid for that deletion. A 200,000
file restore took 35 s on the root file system against 7 s in tmpfs, almost
all of it in the kernel's inode search, and the 1 GiB random first backup
took half as long again inside the bench as alone.

Usage: tests/bench/real.py   (make bench builds first; BENCH_DIR keeps data;
TOOLS=attache,restic limits the tools; REAL_TREE=DIR another real tree;
SETS=real,random,scale picks the data sets)
"""
import os, shutil, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import tree_rss  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ATTACHE = os.environ.get("ATTACHE_BIN") or os.path.join(ROOT, "target/release/attache")
PASSWORD = "bench password"
STEPS = ("first backup", "unchanged re-run", "full restore")
SCALE = f"{int(os.environ.get('SCALE_FILES', '1000000')):,} small files"


def run(cmd, env):
    # Output goes to files, not pipes: a pipe nobody reads until the end
    # stops a tool that writes more than its buffer (a failed restore of a
    # million files once wrote 41 MB of errors, and the bench waited on it).
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        peak = 0
        while p.poll() is None:
            peak = max(peak, tree_rss(p.pid))
            time.sleep(0.02)
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0, os.SEEK_END)
        err.seek(max(0, err.tell() - 2000))
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed: {err.read().decode(errors='replace')}")
        return wall, peak * 1024, out.read()


def timed_steps(t, tool, name, r, steps, best, widths):
    """Runs steps with t in round r of data set name, keeping in best the
    least wall time and the most peak memory of each (name, step, tool);
    widths: of the tool and step columns of the log line.

    Before each step, untimed, what earlier steps left to write goes to the
    disk (`sync`): a restore that does not fsync leaves up to a GiB being
    written, which whatever step came next, of whichever tool, would pay
    for."""
    for step in steps:
        cmd = t.restore() if step == "full restore" else t.backup()
        os.sync()
        wall, peak, _ = run(cmd, t.env)
        w, p = best.get((name, step, tool), (wall, peak))
        best[(name, step, tool)] = (min(w, wall), max(p, peak))
        print(f"  round {r + 1} {tool:<{widths[0]}} {step:<{widths[1]}} {wall:7.2f} s "
              f"{peak / 2**20:7.0f} MiB", file=sys.stderr)


def count(path):
    n, size = 0, 0
    for d, dirs, files in os.walk(path):
        n += len(dirs) + len(files)
        for f in files:
            try:
                size += os.lstat(os.path.join(d, f)).st_size
            except OSError:
                pass
    return n, size


def random_file(work):
    """1 GiB of random bytes in one file."""
    big = os.path.join(work, "random")
    if not os.path.exists(os.path.join(big, "random.bin")):
        os.makedirs(big, exist_ok=True)
        with open(os.path.join(big, "random.bin"), "wb") as f:
            for _ in range(1024):
                f.write(os.urandom(1 << 20))
    return big


def real_tree(work):
    """REAL_TREE, else a copy of the cargo registry's crates."""
    real = os.environ.get("REAL_TREE")
    if not real:
        real = os.path.join(work, "real")
        if not os.path.exists(os.path.join(real, ".done")):
            src = os.path.expanduser("~/.cargo/registry/src")
            shutil.rmtree(real, ignore_errors=True)
            subprocess.run(["cp", "-a", src, real], check=True)
            open(os.path.join(real, ".done"), "w").close()
    return real


def data_sets(work):
    """The chosen data sets (SETS), each made only when chosen: the scale
    tree takes minutes."""
    sets = [("real tree", real_tree), ("1 GiB random", random_file)]
    files = int(os.environ.get("SCALE_FILES", "1000000"))
    if files > 0:
        sets.append((SCALE, lambda w: scale_tree(w, files)))
    chosen = os.environ.get("SETS")
    if chosen:
        keys = {"real": "real tree", "random": "1 GiB random", "scale": SCALE}
        wanted = {keys[k] for k in chosen.split(",") if k in keys}
        sets = [s for s in sets if s[0] in wanted]
    return [(name, make(work)) for name, make in sets]


def scale_tree(work, files):
    """SCALE_FILES small files of random sizes and bytes, 1,000 a directory."""
    tree = os.path.join(work, "scale")
    done = os.path.join(tree, f".done-{files}")
    if os.path.exists(done):
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    rand = os.urandom(1 << 20)
    for i in range(files):
        d = os.path.join(tree, f"d{i // 1000:04}")
        if i % 1000 == 0:
            os.makedirs(d)
        n = 1 + (int.from_bytes(rand[(i * 3) % 1000000:(i * 3) % 1000000 + 2], "little") % 2048)
        off = (i * 7919) % (len(rand) - n)
        with open(os.path.join(d, f"f{i % 1000:03}"), "wb") as f:
            f.write(i.to_bytes(8, "little") + rand[off:off + n])
    open(done, "w").close()
    return tree


class Scratch:
    """Where one tool's round writes: a fresh ext4 file system of its own,
    room for the repository and the restored tree (each file in 4 KiB
    blocks) plus 2 GiB, and two inodes for every item; or, when that cannot
    be had, a plain directory in work.

    The file system is made anew for each round on a loop device over one
    file in work that every round shares (`disk.img`). It behaves as a
    disk would:
    - the file is written with zeros once, when first needed, so that its
      space is allocated before any round (with space allocated on first
      write, or only reserved by fallocate, a durable 1 GiB dd through the
      device took 1.1 to 3.1 s here, against 0.86 s);
    - the device reads and writes it with direct I/O, so no page cache
      lies twice between a tool and the disk, and an fsync reaches it;
    - mkfs discards nothing (that would punch holes in the file) and
      writes the inode tables at once, so no lazy initialisation runs
      during the round."""

    def __init__(self, work, name, items, size):
        self.path = os.path.join(work, f"fs-{name}")
        self.device = None
        self.mounted = False
        os.makedirs(self.path, exist_ok=True)
        if os.environ.get("FRESH_FS", "1") != "1" or os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
            return
        # The repository, the restored tree with each file in blocks of
        # 4 KiB (a million files of 1 KiB take 4 GB, not 1 GB: the first
        # million-file round ran out of room), the inode tables, and slack.
        need = max(4 << 30, size + max(size, 4096 * items) + 512 * items + (2 << 30))
        try:
            image = disk_image(work, need)
            self.device = subprocess.run(
                ["losetup", "--find", "--show", "--direct-io=on", "--sizelimit", str(need), image],
                check=True, capture_output=True, text=True).stdout.strip()
            subprocess.run(["mkfs.ext4", "-q", "-F", "-N", str(2 * items + 65536), "-E",
                            "nodiscard,lazy_itable_init=0,lazy_journal_init=0", self.device],
                           check=True)
            subprocess.run(["mount", self.device, self.path], check=True)
            self.mounted = True
        except BaseException:
            self.remove()
            raise

    def remove(self):
        if self.mounted:
            subprocess.run(["umount", self.path], check=True)
            self.mounted = False
        if self.device:
            subprocess.run(["losetup", "-d", self.device], check=True)
            self.device = None
        shutil.rmtree(self.path, ignore_errors=True)


def disk_image(work, size):
    """work's `disk.img`, at least size bytes, every byte of it written."""
    path = os.path.join(work, "disk.img")
    with open(path, "ab") as f:
        have = f.seek(0, os.SEEK_END)
        zeros = bytes(64 << 20)
        while have < size:
            have += f.write(zeros[:min(len(zeros), size - have)])
        os.fsync(f.fileno())
    return path


class Tool:
    def __init__(self, name, work, data):
        self.name, self.work, self.data = name, work, data
        self.repo = os.path.join(work, f"repo-{name}")
        self.dest = os.path.join(work, f"restore-{name}")
        self.env = dict(os.environ)

    def fresh(self):
        for d in (self.repo, self.dest):
            shutil.rmtree(d, ignore_errors=True)
        e = self.env
        if self.name == "restic":
            e.update(RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=self.repo,
                     RESTIC_CACHE_DIR=os.path.join(self.work, "restic-cache"))
            subprocess.run(["restic", "init", "-q"], env=e, check=True, stdout=subprocess.DEVNULL)
        elif self.name == "rustic":
            e.update(RUSTIC_PASSWORD=PASSWORD, RUSTIC_REPOSITORY=self.repo, RUSTIC_NO_PROGRESS="true",
                     RUSTIC_CACHE_DIR=os.path.join(self.work, "rustic-cache"))
            subprocess.run(["rustic", "init"], env=e, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        else:
            e.update(ATTACHE_PASSWORD=PASSWORD, ATTACHE_REPO=self.repo,
                     ATTACHE_CACHE_DIR=os.path.join(self.work, "attache-cache"),
                     ATTACHE_STATE_DIR=os.path.join(self.work, "attache-state"))
            subprocess.run([ATTACHE, "init"], env=e, check=True, stdout=subprocess.DEVNULL)

    def backup(self):
        if self.name == "restic":
            return ["restic", "backup", "-q", self.data]
        if self.name == "rustic":
            return ["rustic", "backup", self.data]
        return [ATTACHE, "backup", "local", "--plugin", "filesystem", "--include", self.data]

    def restore(self):
        if self.name == "restic":
            return ["restic", "restore", "-q", "latest", "--target", self.dest]
        if self.name == "rustic":
            return ["rustic", "restore", "latest", self.dest]
        out = subprocess.run([ATTACHE, "snapshots", "--json"], env=self.env, check=True,
                             capture_output=True).stdout
        import json
        snaps = json.loads(out)
        snaps = snaps.get("snapshots", snaps) if isinstance(snaps, dict) else snaps
        latest = max(snaps, key=lambda s: (s["time"], s.get("nanos", 0)))
        return [ATTACHE, "restore", latest["id"], "--to", f"local:{self.dest}"]


def dd(work):
    """`dd` of 1 GiB, durably, onto a fresh file system as the tools get."""
    scratch = Scratch(work, "dd", 0, 1 << 30)
    try:
        return dd_into(scratch.path)
    finally:
        scratch.remove()


def dd_into(work):
    path = os.path.join(work, "dd.bin")
    t0 = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=1024", "conv=fsync"],
                   check=True, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    os.unlink(path)
    return wall


def main():
    # A TERM (a bench stopped by hand) unwinds like an error, so that the
    # file systems of the round are unmounted and removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    work = os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="attache-real-", dir="/var/tmp")
    keep = "BENCH_DIR" in os.environ
    os.makedirs(work, exist_ok=True)
    tools = [t for t in os.environ.get("TOOLS", "attache,restic,rustic").split(",")
             if t == "attache" or shutil.which(t)]
    runs = int(os.environ.get("RUNS", "3"))
    try:
        sets = data_sets(work)
        best = {}
        dd_best = None
        for name, data in sets:
            n, size = count(data)
            print(f"{name}: {data}, {n} items, {size / 1e6:.0f} MB", file=sys.stderr)
            rounds = int(os.environ.get("SCALE_RUNS", "1")) if name == SCALE else runs
            for r in range(rounds):
                for tool in (tools if r % 2 == 0 else tools[::-1]):
                    scratch = Scratch(work, tool, n, size)
                    try:
                        # The source in the page cache for every tool alike:
                        # warmed once per data set, it was partly pushed out
                        # by the first round's disk image and the restores
                        # before the next tool's backup (a million-file
                        # backup took 48 s warm and 136 s after that).
                        subprocess.run(["tar", "-cf", "/dev/null", data], stderr=subprocess.DEVNULL)
                        t = Tool(tool, scratch.path, data)
                        t.fresh()
                        timed_steps(t, tool, name, r, STEPS, best, (8, 17))
                    finally:
                        scratch.remove()
                wall = dd(work)
                dd_best = wall if dd_best is None else min(dd_best, wall)
        others = [t for t in tools if t != "attache"]
        head = "| data | step | " + " | ".join(others + ["attache"]) + " | " + " | ".join(
            f"attache vs {o}" for o in others) + " |"
        print(head)
        print("|" + "---|" * (2 + len(tools) + len(others)))
        for name, _ in sets:
            for step in STEPS:
                cells = [f"{best[(name, step, t)][0]:.2f} s" for t in others + ["attache"]]
                a = best[(name, step, "attache")][0]
                ratios = [f"{best[(name, step, o)][0] / a:.2f}×" for o in others]
                print(f"| {name} | {step} | " + " | ".join(cells + ratios) + " |")
        print()
        print("peak memory (MiB):")
        for name, _ in sets:
            for step in STEPS:
                cells = "  ".join(f"{t} {best[(name, step, t)][1] / 2**20:6.0f}" for t in tools)
                print(f"  {name:<13} {step:<17} {cells}")
        print()
        if ("1 GiB random", "first backup", "attache") not in best:
            return
        a = best[("1 GiB random", "first backup", "attache")][0]
        print(f"dd if=/dev/zero bs=1M count=1024 conv=fsync: {dd_best:.2f} s "
              f"({1024 / dd_best:.0f} MiB/s); attache's first backup of 1 GiB random runs at "
              f"{100 * dd_best / a:.0f}% of it")
        if "rustic" not in tools:
            print("(rustic is not installed: `cargo install rustic-rs --no-default-features --locked`)")
    finally:
        image = os.path.join(work, "disk.img")
        if os.path.exists(image):
            os.unlink(image)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
