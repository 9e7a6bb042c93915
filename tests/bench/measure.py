"""What the benchmarks share: the peak memory of a command and its children,
running a command, a free port, and waiting for a server to answer."""

import os, socket, subprocess, sys, time, urllib.request


def sh(cmd, env=None, capture=True):
    """Runs cmd; a failure ends the benchmark with its output."""
    r = subprocess.run(cmd, env=env, capture_output=capture, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{r.stdout}\n{r.stderr}")
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url, what, tries):
    """Waits for url's /health (tries × 50 ms); a silence ends the benchmark."""
    for _ in range(tries):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not come up")


def tree_rss(pid):
    """Sum of VmRSS (KiB) of pid and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        stack.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total
