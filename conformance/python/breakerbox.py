"""A breakerbox worker in Python, standard library only.

It speaks RESP2 over a socket, loads lua/breaker-8.lua with SCRIPT LOAD,
calls it with EVALSHA (EVAL once on NOSCRIPT), reads status with the
read-only lua/status-8.lua (EVALSHA_RO), and shares a breaker with Go
workers exactly as docs/protocol.md describes:

    rdb = Redis("127.0.0.1", 6379)
    br = Breaker(rdb, "payments", script_path="lua/breaker-8.lua")
    br.seed("py:worker", failure_threshold=3, recovery_timeout_ms=30000)
    ok = br.allow()
    if ok.admitted:
        try:
            call_upstream()
            br.record("s", ok.generation, ok.lease)
        except Exception as e:
            br.record("f", ok.generation, ok.lease, str(e)[:500])
"""

import hashlib
import json
import os
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
    """A script of lua/: its source and SHA1 (the SHA1 of the file's bytes).

    A script whose first line is "#!lua flags=no-writes" is read-only and
    runs with EVALSHA_RO. A server that cannot compile the shebang line
    (Redis 6) gets the body without it; one without EVALSHA_RO gets EVALSHA."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.source = f.read()
        self.sha1 = hashlib.sha1(self.source).hexdigest()
        first, nl, rest = self.source.partition(b"\n")
        self.read_only = first.startswith(b"#!") and b"no-writes" in first
        self.body = b"\n" + rest if first.startswith(b"#!") else self.source
        self.body_sha1 = hashlib.sha1(self.body).hexdigest()
        self.no_shebang = False
        self.no_ro = False

    def load(self, rdb):
        try:
            sha = rdb.call("SCRIPT", "LOAD", self.body if self.no_shebang else self.source)
        except ReplyError as e:
            if "near '#'" not in str(e) or self.body == self.source:
                raise
            self.no_shebang = True
            sha = rdb.call("SCRIPT", "LOAD", self.body)
        want = self.body_sha1 if self.no_shebang else self.sha1
        if sha != want:
            raise RuntimeError("SCRIPT LOAD returned %s, want %s" % (sha, want))
        return sha

    def run(self, rdb, keys, *args):
        """EVALSHA, and on NOSCRIPT (restart, SCRIPT FLUSH) EVAL once, which caches it."""
        for _ in range(3):
            src, sha = (self.body, self.body_sha1) if self.no_shebang else (self.source, self.sha1)
            ro = "_RO" if self.read_only and not self.no_ro else ""
            try:
                try:
                    return rdb.call("EVALSHA" + ro, sha, len(keys), *keys, *args)
                except ReplyError as e:
                    if e.code != "NOSCRIPT":
                        raise
                return rdb.call("EVAL" + ro, src, len(keys), *keys, *args)
            except ReplyError as e:
                if ro and str(e).lower().startswith("err unknown command"):
                    self.no_ro = True
                elif "near '#'" in str(e) and not self.no_shebang and self.body != self.source:
                    self.no_shebang = True
                else:
                    raise
        raise RuntimeError("script %s: no way to run it on this server" % self.sha1)


class Breaker:
    """One breaker shared through Redis; every decision is the script's.

    script_path names lua/breaker-8.lua; status-8.lua is read beside it."""

    def __init__(self, rdb, name, script=None, script_path=None, status_script=None):
        self.rdb, self.name = rdb, name
        self.script = script or Script(script_path)
        if status_script is None:
            path = script_path or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "..", "..", "lua", "breaker-8.lua")
            status_script = Script(os.path.join(os.path.dirname(path), "status-8.lua"))
        self.status_script = status_script
        self.keys = keys(name)

    def eval(self, *args):
        return self.script.run(self.rdb, self.keys, *args)

    def allow(self):
        return Allowed(self.eval("allow"))

    def record(self, outcome, generation, lease="", error="", refused=0, duration_ms="", retry_after_ms=""):
        """Reports one outcome: s, f or r. Returns [state, generation, mode, retry_after_ms, counted, stale]."""
        return self.eval("record", refused, outcome, generation, lease, error, duration_ms, retry_after_ms)

    def tally(self, successes, failures, refused):
        """Adds outcomes decided while Redis was unreachable to the totals."""
        return self.eval("tally", successes, failures, refused)

    def control(self, action, actor):
        return self.eval("control", action, actor)

    def configure(self, actor, **fields):
        """Stores the fields, overwriting what is stored."""
        args = []
        for k, v in fields.items():
            args += [k, v]
        return self.eval("configure", actor, *args)

    def seed(self, actor, **fields):
        """Stores the fields only if the breaker has no config yet."""
        args = []
        for k, v in fields.items():
            args += [k, v]
        return self.eval("seed", actor, *args)

    def status(self):
        r = self.status_script.run(self.rdb, self.keys, "status")
        return dict(zip(r[0::2], r[1::2]))

    def history(self, limit=10):
        """The newest history entries, newest first, as dicts. A stored entry
        leaves out its generation when it equals its ts: it is filled in here.
        An entry that is not JSON reads as {"event": "unreadable", "detail": text}."""
        out = []
        for text in self.rdb.call("LRANGE", self.keys[4], 0, limit - 1):
            try:
                e = json.loads(text)
            except ValueError:
                e = None
            if not isinstance(e, dict):
                e = {"event": "unreadable", "detail": text}
            elif "generation" not in e and "ts" in e:
                e["generation"] = e["ts"]
            out.append(e)
        return out
