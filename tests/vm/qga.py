#!/usr/bin/env python3
"""Talks to qemu-guest-agent over its unix socket (tests/vm/boot's NAME.qga).

usage:
  qga.py [--timeout S] SOCKET ping                 sync + guest-ping
  qga.py [--timeout S] SOCKET exec CMD [ARGS...]   guest-exec with captured
        output; prints the command's stdout/stderr, exits with its exit code
        (128+N when killed by signal N)
  qga.py [--timeout S] SOCKET put LOCAL REMOTE     copy a host file into the guest
  qga.py [--timeout S] SOCKET get REMOTE LOCAL     copy a guest file to the host
  qga.py [--timeout S] SOCKET call COMMAND [JSON]  any agent command; prints the
        "return" value as JSON

Every connection starts with guest-sync-delimited and a random id, and ignores
whatever arrives before the matching reply, as qemu-ga asks clients to do.
Exit status 2 for usage errors, 3 when the agent does not answer or fails.
Usable as a module too: Agent(path).exec(["ls", "/"]).
"""

import base64
import json
import os
import random
import sys
import time

from jsonsock import JsonSocket, JsonSocketError

CHUNK = 48 * 1024  # guest-file-read/write chunk, well under qemu-ga's limits


class AgentError(JsonSocketError):
    pass


class Agent(JsonSocket):
    peer = "the guest agent"
    error = AgentError
    command_error = AgentError

    def __init__(self, path, timeout=10.0):
        super().__init__(path, timeout)
        self.sync()

    def parse(self, line):
        # 0xFF: sentinel before guest-sync-delimited's reply
        line = line.rsplit(b"\xff", 1)[-1].strip()
        if not line:
            return None
        try:
            return json.loads(line)
        except ValueError:
            return None  # stale or partial data from before the sync

    def sync(self):
        sync_id = random.randint(1, 2**31 - 1)
        # 0xFF makes the agent drop any partial JSON left by a previous client
        self.sock.sendall(b"\xff")
        self.send({"execute": "guest-sync-delimited", "arguments": {"id": sync_id}})
        deadline = time.monotonic() + self.timeout
        for msg in self.messages(deadline):
            if msg.get("return") == sync_id:
                return
        raise AgentError("no reply to guest-sync-delimited")  # not reached

    def ping(self):
        self.call("guest-ping")

    def exec(self, argv, timeout=300.0, input_data=None):
        """Runs argv in the guest: returns (exitcode, stdout, stderr)."""
        args = {"path": argv[0], "arg": list(argv[1:]), "capture-output": True}
        if input_data is not None:
            args["input-data"] = base64.b64encode(input_data).decode()
        pid = self.call("guest-exec", args)["pid"]
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            st = self.call("guest-exec-status", {"pid": pid})
            if st.get("exited"):
                break
            if time.monotonic() > deadline:
                raise AgentError(f"{argv[0]} still running after {timeout}s (guest pid {pid})")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        out = base64.b64decode(st.get("out-data", ""))
        err = base64.b64decode(st.get("err-data", ""))
        if st.get("out-truncated") or st.get("err-truncated"):
            err += b"\nqga.py: output truncated by the guest agent\n"
        if "signal" in st:
            code = 128 + st["signal"]
        else:
            code = st.get("exitcode", 0)
        return code, out, err

    def put(self, local, remote):
        with open(local, "rb") as f:
            data = f.read()
        h = self.call("guest-file-open", {"path": remote, "mode": "w"})
        try:
            for i in range(0, len(data), CHUNK):
                chunk = data[i:i + CHUNK]
                r = self.call("guest-file-write",
                              {"handle": h, "buf-b64": base64.b64encode(chunk).decode()})
                if r.get("count") != len(chunk):
                    raise AgentError(f"short write to {remote}")
        finally:
            self.call("guest-file-close", {"handle": h})
        return len(data)

    def get(self, remote, local):
        h = self.call("guest-file-open", {"path": remote, "mode": "r"})
        parts = []
        try:
            while True:
                r = self.call("guest-file-read", {"handle": h, "count": CHUNK})
                parts.append(base64.b64decode(r.get("buf-b64", "")))
                if r.get("eof") or r.get("count", 0) == 0:
                    break
        finally:
            self.call("guest-file-close", {"handle": h})
        data = b"".join(parts)
        with open(local, "wb") as f:
            f.write(data)
        return len(data)


def usage(msg=None):
    if msg:
        print(f"qga.py: {msg}", file=sys.stderr)
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    sys.exit(2)


def main(argv):
    timeout = 10.0
    if len(argv) >= 2 and argv[0] == "--timeout":
        try:
            timeout = float(argv[1])
        except ValueError:
            usage(f"bad --timeout {argv[1]!r}")
        argv = argv[2:]
    if len(argv) < 2:
        usage()
    path, cmd, rest = argv[0], argv[1], argv[2:]
    try:
        with Agent(path, timeout) as agent:
            if cmd == "ping":
                if rest:
                    usage("ping takes no argument")
                agent.ping()
                return 0
            if cmd == "exec":
                if not rest:
                    usage("exec needs a command")
                code, out, err = agent.exec(rest, timeout=max(timeout, 300.0))
                sys.stdout.buffer.write(out)
                sys.stdout.flush()
                sys.stderr.buffer.write(err)
                sys.stderr.flush()
                return code
            if cmd == "put":
                if len(rest) != 2:
                    usage("put needs LOCAL REMOTE")
                agent.put(rest[0], rest[1])
                return 0
            if cmd == "get":
                if len(rest) != 2:
                    usage("get needs REMOTE LOCAL")
                agent.get(rest[0], rest[1])
                return 0
            if cmd == "call":
                if not 1 <= len(rest) <= 2:
                    usage("call needs COMMAND [JSON-ARGUMENTS]")
                arguments = json.loads(rest[1]) if len(rest) == 2 else None
                print(json.dumps(agent.call(rest[0], arguments), indent=2))
                return 0
            usage(f"unknown command {cmd!r}")
    except (AgentError, OSError, ValueError) as e:
        print(f"qga.py: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
