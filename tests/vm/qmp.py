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
import sys
import time

from jsonsock import JsonSocket, JsonSocketError


class QmpError(JsonSocketError):
    pass


class QmpCommandError(QmpError):
    """QEMU answered with an error."""


class Qmp(JsonSocket):
    peer = "QEMU"
    error = QmpError
    command_error = QmpCommandError

    def __init__(self, path, timeout=10.0):
        super().__init__(path, timeout)
        greeting = next(self.messages(time.monotonic() + timeout))
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {greeting}")
        self.call("qmp_capabilities")

    def parse(self, line):
        msg = json.loads(line)
        return None if "event" in msg else msg

    def call(self, command, arguments=None, timeout=None, allow_eof=False):
        # 'quit' may close the connection right after (or before) replying
        return super().call(command, arguments, timeout, allow_eof or command == "quit")


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
