"""A JSON-lines client on a unix socket: what QMP and qemu-guest-agent share.

Subclasses say what the peer is called, which errors to raise, and how a line
becomes a message (or is skipped); connecting, the deadline-bound reading and
the execute/return/error exchange are here.
"""

import json
import socket
import time


class JsonSocketError(Exception):
    pass


class JsonSocket:
    #: How errors name the other side.
    peer = "the peer"
    #: Raised for connection problems and time-outs.
    error = JsonSocketError
    #: Raised when the peer answers a command with an error.
    command_error = JsonSocketError

    def __init__(self, path, timeout=10.0):
        self.timeout = timeout
        self.buf = b""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise self.error(f"cannot connect to {path}: {e}") from e

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def parse(self, line):
        """The message a line carries, or None to skip it."""
        return json.loads(line)

    def messages(self, deadline, allow_eof=False):
        """Yields the messages received until the deadline; with allow_eof a
        closed connection ends the messages instead of failing."""
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                msg = self.parse(line)
                if msg is not None:
                    yield msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise self.error(f"timed out waiting for {self.peer}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout as e:
                raise self.error(f"timed out waiting for {self.peer}") from e
            except OSError as e:
                raise self.error(f"connection to {self.peer}: {e}") from e
            if not data:
                if allow_eof:
                    return
                raise self.error(f"{self.peer} closed the connection")
            self.buf += data

    def call(self, command, arguments=None, timeout=None, allow_eof=False):
        """Executes a command and returns its "return" value ({} when the
        peer closed the connection and allow_eof was given)."""
        req = {"execute": command}
        if arguments is not None:
            req["arguments"] = arguments
        self.send(req)
        deadline = time.monotonic() + (timeout or self.timeout)
        for msg in self.messages(deadline, allow_eof):
            if "error" in msg:
                err = msg["error"]
                raise self.command_error(f"{command}: {err.get('class')}: {err.get('desc')}")
            if "return" in msg:
                return msg["return"]
        return {}
