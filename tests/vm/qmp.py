#!/usr/bin/env python3
"""Sends one QMP command to QEMU's monitor socket (tests/vm/boot's NAME.qmp).

usage: qmp.py [--timeout S] SOCKET COMMAND [JSON-ARGUMENTS]
  e.g. qmp.py vm.qmp query-block
       qmp.py vm.qmp blockdev-add '{"driver":"raw","node-name":"iso0",
              "file":{"driver":"file","filename":"/tmp/x.iso","read-only":true},
              "read-only":true}'
       qmp.py vm.qmp device_add '{"driver":"scsi-cd","bus":"scsi0.0","drive":"iso0","id":"cd0"}'

Does the qmp_capabilities handshake, prints the command's "return" value as
JSON and exits 0; on an error reply prints it and exits 1; 3 when QEMU does
not answer. Events are skipped. Usable as a module: Qmp(path).call("quit").
"""

import json
import socket
import sys
import time


class QmpError(Exception):
    pass


class QmpCommandError(QmpError):
    """QEMU answered with an error."""


class Qmp:
    def __init__(self, path, timeout=10.0):
        self.timeout = timeout
        self.buf = b""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise QmpError(f"cannot connect to {path}: {e}") from e
        greeting = self._next(time.monotonic() + timeout)
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {greeting}")
        self.call("qmp_capabilities")

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _next(self, deadline, allow_eof=False):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QmpError("timed out waiting for QEMU")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout as e:
                raise QmpError("timed out waiting for QEMU") from e
            if not data:
                if allow_eof:
                    return None
                raise QmpError("QEMU closed the monitor connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, command, arguments=None):
        req = {"execute": command}
        if arguments is not None:
            req["arguments"] = arguments
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        deadline = time.monotonic() + self.timeout
        while True:
            # 'quit' may close the connection right after (or before) replying
            msg = self._next(deadline, allow_eof=(command == "quit"))
            if msg is None:
                return {}
            if "event" in msg:
                continue
            if "error" in msg:
                err = msg["error"]
                raise QmpCommandError(f"{command}: {err.get('class')}: {err.get('desc')}")
            if "return" in msg:
                return msg["return"]


def main(argv):
    timeout = 10.0
    if len(argv) >= 2 and argv[0] == "--timeout":
        timeout = float(argv[1])
        argv = argv[2:]
    if not 2 <= len(argv) <= 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        arguments = json.loads(argv[2]) if len(argv) == 3 else None
    except ValueError as e:
        print(f"qmp.py: bad JSON arguments: {e}", file=sys.stderr)
        return 2
    try:
        with Qmp(argv[0], timeout) as qmp:
            print(json.dumps(qmp.call(argv[1], arguments), indent=2))
    except QmpCommandError as e:
        print(f"qmp.py: {e}", file=sys.stderr)
        return 1
    except (QmpError, OSError, ValueError) as e:
        print(f"qmp.py: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
