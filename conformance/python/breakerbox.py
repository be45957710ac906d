"""A breakerbox worker in Python, standard library only.

It speaks RESP2 over a socket, loads lua/breaker-8.lua with SCRIPT LOAD,
calls it with EVALSHA (EVAL once on NOSCRIPT), and shares a breaker with Go
workers exactly as docs/protocol.md describes:

    rdb = Redis("127.0.0.1", 6379)
    br = Breaker(rdb, "payments", script_path="lua/breaker-8.lua")
    br.configure("py:worker", failure_threshold=3, recovery_timeout_ms=30000)
    ok = br.allow()
    if ok.admitted:
        try:
            call_upstream()
            br.record("s", ok.generation, ok.lease)
        except Exception as e:
            br.record("f", ok.generation, ok.lease, str(e)[:500])
"""

import hashlib
import socket

KEY_SUFFIXES = ("state", "failures", "last_failure_time", "metrics",
                "history", "config", "probes", "events")


class ReplyError(Exception):
    """An error reply from Redis or from the script (BADARGS ...)."""

    @property
    def code(self):
        return str(self).split(" ", 1)[0]


class Redis:
    """A minimal RESP2 client: one socket, one command at a time."""

    def __init__(self, host, port, password=None, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        if password is not None:
            self.call("AUTH", password)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, bytes):
                b = a
            elif isinstance(a, str):
                b = a.encode("utf-8")
            elif isinstance(a, int) and not isinstance(a, bool):
                b = str(a).encode()
            else:
                raise TypeError("command arguments are str, bytes or int, not %r" % (a,))
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))

    def call(self, *args):
        """Sends one command and returns its reply; an error reply raises ReplyError."""
        self.send(*args)
        reply = self.read()
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        """Reads one reply: int, str, None, list, or a ReplyError (not raised)."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "surrogateescape")
        if kind == b"-":
            return ReplyError(rest.decode("utf-8", "surrogateescape"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            return self._exact(n).decode("utf-8", "surrogateescape")
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read() for _ in range(n)]
        raise ConnectionError("unexpected RESP type byte %r" % kind)

    def time_ms(self):
        sec, usec = self.call("TIME")
        return int(sec) * 1000 + int(usec) // 1000


class Allowed:
    """The reply of allow: [admitted, state, generation, mode, retry_after_ms, lease]."""

    def __init__(self, reply):
        self.admitted = reply[0] == 1
        self.state, self.generation, self.mode = reply[1], reply[2], reply[3]
        self.retry_after_ms, self.lease = reply[4], reply[5]


def keys(name):
    """The eight keys of breaker name, in the order breaker-8.lua takes them."""
    return ["circuit_breaker:{%s}:%s" % (name, s) for s in KEY_SUFFIXES]


def channel(name):
    return "circuit_breaker:{%s}:changed" % name


class Script:
    """lua/breaker-8.lua: its source and SHA1 (the SHA1 of the file's bytes)."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.source = f.read()
        self.sha1 = hashlib.sha1(self.source).hexdigest()

    def load(self, rdb):
        sha = rdb.call("SCRIPT", "LOAD", self.source)
        if sha != self.sha1:
            raise RuntimeError("SCRIPT LOAD returned %s, want %s" % (sha, self.sha1))
        return sha

    def run(self, rdb, keys, *args):
        """EVALSHA, and on NOSCRIPT (restart, SCRIPT FLUSH) EVAL once, which caches it."""
        try:
            return rdb.call("EVALSHA", self.sha1, len(keys), *keys, *args)
        except ReplyError as e:
            if e.code != "NOSCRIPT":
                raise
        return rdb.call("EVAL", self.source, len(keys), *keys, *args)


class Breaker:
    """One breaker shared through Redis; every decision is the script's."""

    def __init__(self, rdb, name, script=None, script_path=None):
        self.rdb, self.name = rdb, name
        self.script = script or Script(script_path)
        self.keys = keys(name)

    def eval(self, *args):
        return self.script.run(self.rdb, self.keys, *args)

    def allow(self):
        return Allowed(self.eval("allow"))

    def record(self, outcome, generation, lease="", error="", refused=0):
        """Reports one outcome: s, f or r. Returns [state, generation, mode, retry_after_ms, counted, stale]."""
        return self.eval("record", refused, outcome, generation, lease, error)

    def control(self, action, actor):
        return self.eval("control", action, actor)

    def configure(self, actor, **fields):
        args = []
        for k, v in fields.items():
            args += [k, v]
        return self.eval("configure", actor, *args)

    def status(self):
        r = self.eval("status")
        return dict(zip(r[0::2], r[1::2]))
