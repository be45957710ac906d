#!/usr/bin/env python3
"""Runs breakerbox's conformance vectors against a real Redis, in Python.

    python3 conformance.py run --addr 127.0.0.1:6379 [--scale 20] [--jobs 8] [vector ...]
    python3 conformance.py worker --addr 127.0.0.1:6379 --name NAME --calls 300 --seed 1

Standard library only. "run" prints one JSON line per vector
({"vector", "passed", "errors", "attempts", "late", "known_bug"}) and a
final {"summary": ...} line; it exits 0 when every vector passed or failed
only as its known_bug says, 1 otherwise. "worker" hammers one breaker (the
concurrency test runs it beside Go workers) and prints what it reported.

Time works as in the Go runner (conformance/doc.go): a real server's clock
cannot be moved, so a timed vector runs stretched by --scale, each step
waiting on Redis's TIME until it is at least scale x (its offset - an
earlier step's offset) after that step ended; afterwards the run is
discarded and retried on a fresh breaker if a step ran so late that it
crossed a configured duration it had to stay below.
"""

import argparse
import bisect
import concurrent.futures
import glob
import json
import os
import random
import sys
import time

sys.dont_write_bytecode = True  # keep the repository clean of __pycache__
import breakerbox as bb  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_SCRIPT = os.path.join(ROOT, "lua", "breaker-8.lua")
DEFAULT_VECTORS = os.path.join(ROOT, "conformance", "vectors")

REPLY_FIELDS = {
    "allow": ["admitted", "state", "generation", "mode", "retry_after_ms", "lease"],
    "record": ["state", "generation", "mode", "retry_after_ms", "counted", "stale"],
    "control": ["state", "generation", "mode", "retry_after_ms"],
    "configure": ["written", "overwritten"],
    "seed": ["written", "overwritten"],
    "tally": ["total_successes", "total_failures", "total_refused"],
}
STATUS_FIELDS = ["state", "mode", "generation", "transitions", "current_failures", "failure_threshold",
                 "success_threshold", "half_open_max_calls", "recovery_timeout_ms",
                 "request_timeout_ms", "total_successes", "total_failures", "total_refused",
                 "total_requests", "success_rate", "half_open_successes", "probes", "opened_at",
                 "retry_after_ms", "last_failure_time", "last_failure_error", "time_ms", "corrupt"]
STATUS_STRINGS = {"state", "mode", "success_rate", "last_failure_error", "corrupt"}
STREAM_FIELDS = ["event", "from", "to", "mode", "generation", "time_ms", "failures",
                 "failure_threshold", "recovery_timeout_ms", "last_error", "outage_ms",
                 "refused", "actor", "transitions", "detail"]
HISTORY_FIELDS = ["ts", "event"]  # generation is left out when it equals ts
OP_KIND = {"allow": "allow", "success": "record", "failure": "record", "release": "record",
           "record": "record", "tally": "tally", "control": "control", "reset": "control",
           "force_open": "control", "disable": "control", "release_override": "control",
           "configure": "configure", "seed": "seed", "status": "status"}
CONTROL_SUGAR = {"reset": "reset", "force_open": "force_open", "disable": "disable",
                 "release_override": "release"}
DURATION_CONFIG = {"recovery_timeout_ms", "request_timeout_ms", "window_ms", "slow_call_ms",
                   "max_retry_after_ms", "max_recovery_timeout_ms", "current_recovery_timeout_ms"}
DURATIONS = {"retry_after_ms", "outage_ms"}
DEFAULT_DURATIONS = [30000, 45000]


class Engine(Exception):
    """The engine (server, connection) failed: not a judgement on the script."""


class Late(Exception):
    """A real-clock run landed too late to judge its deadlines."""


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def show(v):
    if isinstance(v, str):
        return json.dumps(v)
    if is_int(v):
        return "%d (integer)" % v
    if v is None:
        return "nil"
    return json.dumps(v, sort_keys=True)


def as_int(v):
    if is_int(v):
        return v
    if isinstance(v, str):
        try:
            return int(v, 10)
        except ValueError:
            return None
    return None


def flatten(steps):
    out = []
    for s in steps:
        if s["op"] != "repeat":
            out.append(s)
            continue
        for _ in range(s["times"]):
            for sub in s["steps"]:
                sub = dict(sub)
                sub["at"] = s.get("at", 0)
                out.append(sub)
        if "expect" in s:
            out.append({"at": s.get("at", 0), "op": "check", "expect": s["expect"]})
    return out


def time_window(steps):
    """Whether a configure or seed step sets window_ms: its buckets leave with Redis's clock."""
    for s in steps:
        if s["op"] in ("configure", "seed"):
            f = s.get("fields", [])
            for i in range(0, len(f) - 1, 2):
                if str(f[i]) == "window_ms" and str(f[i + 1]) != "0":
                    return True
    return False


def config_durations(steps):
    durs = set(DEFAULT_DURATIONS)

    def add(field, value):
        n = as_int(str(value))
        if field in DURATION_CONFIG and n is not None and n > 0:
            durs.add(n)
    for s in steps:
        if s["op"] in ("configure", "seed"):
            f = s.get("fields", [])
            buckets, window = 10, 0
            for i in range(0, len(f) - 1, 2):
                add(str(f[i]), f[i + 1])
                if str(f[i]) == "window_buckets":
                    buckets = as_int(str(f[i + 1])) or 0
                elif str(f[i]) == "window_ms":
                    window = as_int(str(f[i + 1])) or 0
            # A time window: an outcome leaves it between window_ms minus one bucket and window_ms later.
            if window > 0 and buckets > 0 and window - (window + buckets - 1) // buckets > 0:
                durs.add(window - (window + buckets - 1) // buckets)
        elif s["op"] == "record":
            for o in s.get("outcomes", []):  # an upstream's retry-after is a deadline too
                add("max_retry_after_ms", o.get("retry_after_ms", ""))
        elif s["op"] == "redis" and s["command"][0].upper() == "HSET" and s["command"][1] == "$config":
            c = s["command"]
            for i in range(2, len(c) - 1, 2):
                add(c[i], c[i + 1])
    return sorted(durs)


class Run:
    """One vector on one fresh breaker."""

    def __init__(self, addr, script, status_script, vector, name, scale, tol):
        host, port = addr.rsplit(":", 1)
        self.rdb = bb.Redis(host, int(port))
        self.sub = bb.Redis(host, int(port))
        self.breaker = bb.Breaker(self.rdb, name, script=script, status_script=status_script)
        self.gens = [0]  # the engine's generations in order: gens[k] is ordinal k
        self.name, self.v = name, vector
        self.steps = flatten(vector["steps"])
        self.timed = any(s.get("at", 0) > 0 for s in vector["steps"])
        self.time_window = time_window(self.steps)
        self.scale = scale if self.timed else 1
        self.tol = tol
        self.permits = {}
        self.ats, self.before, self.after, self.timer = [], [], [], []
        self.last_gen = -1
        self.pings = 0
        self.duration_missed = False
        self.sub.call("SUBSCRIBE", bb.channel(name))

    def close(self):
        self.rdb.close()
        self.sub.close()

    def key(self, k):
        """A suffix of the breaker's keys, or a key in full ("$name" is the breaker's name)."""
        if ":" in k:
            return k.replace("$name", self.name)
        return "circuit_breaker:{%s}:%s" % (self.name, k)

    # ------------------------------------------------------------ generations
    def ordinal(self, v):
        """Maps an engine's generation (int, or decimal string) to its ordinal,
        looking unseen values up in the stream (every transition is there)."""
        is_str = isinstance(v, str)
        raw = as_int(v)
        if raw is None or raw < 0:
            return v
        out = (lambda k: str(k)) if is_str else (lambda k: k)
        if raw in self.gens:
            return out(self.gens.index(raw))
        try:
            xs = self.rdb.call("XRANGE", self.key("events"), "-", "+")
        except bb.ReplyError:
            xs = []
        for _, flat in xs or []:
            g = as_int(dict(zip(flat[0::2], flat[1::2])).get("generation"))
            if g is not None and g > self.gens[-1]:
                self.gens.append(g)
        if raw in self.gens:
            return out(self.gens.index(raw))
        if raw > self.gens[-1]:
            self.gens.append(raw)
            return out(len(self.gens) - 1)
        raise Engine("generation %d is neither known nor after the last one (%d): generations went backwards"
                     % (raw, self.gens[-1]))

    def observe(self, kind, reply):
        if not isinstance(reply, list):
            return
        if kind == "allow" and len(reply) == 6:
            self.ordinal(reply[2])
        elif kind in ("record", "control") and len(reply) >= 4:
            self.ordinal(reply[1])
        elif kind == "status":
            st = dict(zip(reply[0::2], reply[1::2]))
            if "generation" in st:
                self.ordinal(st["generation"])

    def raw_gen(self, k):
        if k < 0 or k >= len(self.gens):
            raise Engine("the vector names generation %d, but only %d generations were seen" % (k, len(self.gens) - 1))
        return self.gens[k]

    # ------------------------------------------------------------ time
    def now(self):
        return self.rdb.time_ms()

    def wait(self, at):
        if not self.timed:
            return
        target = self.mark + self.scale * at
        while True:
            now = self.now()
            if now >= target:
                self.ats.append(at)
                self.before.append(now)
                return
            time.sleep((target - now) / 1000.0)

    def starts_timer(self, kind, reply):
        """Whether a step may have set a time later steps are measured
        against: a change of generation (an opening sets opened_at) or an
        admitted probe (its lease expires request_timeout_ms later); with a
        time window, any record (its outcomes leave the window later)."""
        timer = self.time_window and kind == "record"
        if not isinstance(reply, list):
            return timer
        gen = None
        if kind == "allow" and len(reply) == 6:
            if reply[0] == 1 and reply[5]:
                self.last_gen = reply[2]
                return True
            gen = reply[2]
        elif kind in ("record", "control") and len(reply) >= 4:
            gen = reply[1]
            # A failure recorded while open may move the deadline (a retry-after).
            timer = timer or (kind == "record" and reply[0] == "open")
        if not is_int(gen):
            return timer
        changed = gen != self.last_gen
        self.last_gen = gen
        return changed or timer

    def stamp(self, at, timer):
        if not self.timed:
            return
        now = self.now()
        self.after.append(now)
        self.timer.append(timer)
        if timer:
            self.mark = max(self.mark, now - self.scale * at)

    def window(self, at):
        if not self.timed:
            return self.start, self.now()
        lo = hi = None
        for i, a in enumerate(self.ats):
            if a != at or i >= len(self.after):
                continue
            lo = self.before[i] if lo is None else min(lo, self.before[i])
            hi = self.after[i] if hi is None else max(hi, self.after[i])
        if lo is None:
            raise ValueError("no step at offset %d has run" % at)
        return lo, hi

    def validate_timing(self):
        durs = config_durations(self.steps)
        for i in range(len(self.after)):
            for j in range(i):
                if not self.timer[j]:
                    continue
                dt = self.ats[i] - self.ats[j]
                k = bisect.bisect_right(durs, dt)
                if k == len(durs):
                    continue
                span = self.after[i] - self.before[j]
                if span >= self.scale * durs[k]:
                    raise Late("steps %d (at %d) and %d (at %d) are %d vector ms apart but ran %d real ms apart, reaching the %d ms deadline (x%d)"
                               % (j + 1, self.ats[j], i + 1, self.ats[i], dt, span, durs[k], self.scale))

    # ------------------------------------------------------------ matching
    def scale_value(self, v):
        n = as_int(v)
        if n is None or n <= 0:
            return v
        return n * self.scale if is_int(v) else str(n * self.scale)

    def scale_detail(self, s):
        if self.scale == 1:
            return s
        f = s.split(" ")
        for i in range(len(f) - 1):
            if f[i] in DURATION_CONFIG:
                f[i + 1] = str(self.scale_value(f[i + 1]))
        return " ".join(f)

    def match(self, field, want, got):
        """Returns None when got matches want, else a message."""
        if isinstance(want, dict):
            if len(want) != 1:
                return "matcher %r: want exactly one of contains, nonempty" % (want,)
            if "nonempty" in want:
                if isinstance(got, str) and got != "":
                    return None
                return "want a non-empty string, got %s" % show(got)
            subs = want.get("contains")
            subs = [subs] if isinstance(subs, str) else subs
            if not isinstance(subs, list):
                return "unknown matcher %r" % (want,)
            for sub in subs:
                if field == "detail":
                    sub = self.scale_detail(sub)
                if not isinstance(got, str) or sub not in got:
                    return "want a string containing %s, got %s" % (json.dumps(sub), show(got))
            return None
        if field == "generation" and not (isinstance(want, str) and want.startswith("@")):
            got = self.ordinal(got)
        if isinstance(want, str) and want.startswith("@"):
            return self.match_instant(want, got)
        if field in DURATION_CONFIG:
            want = self.scale_value(want)
        elif field in DURATIONS:
            return self.match_duration(want, got)
        elif field == "detail" and isinstance(want, str):
            want = self.scale_detail(want)
        if type(want) is not type(got) or want != got:
            return "want %s, got %s" % (show(want), show(got))
        return None

    def match_instant(self, spec, got):
        body = spec[1:]
        at, _, plus = body.partition("+")
        at, plus = int(at), int(plus or 0)
        n = as_int(got)
        if n is None:
            return "want the instant %s, got %s" % (spec, show(got))
        try:
            lo, hi = self.window(at)
        except ValueError as e:
            return "%s: %s" % (spec, e)
        lo, hi = lo + self.scale * plus, hi + self.scale * plus
        if not lo <= n <= hi:
            return "want %s: within [%d, %d] on Redis's clock, got %d" % (spec, lo, hi, n)
        return None

    def match_duration(self, want, got):
        w, g = as_int(want), as_int(got)
        if w is None or g is None or isinstance(want, str) != isinstance(got, str):
            return "want %s, got %s" % (show(want), show(got))
        if w <= 0:
            return None if w == g else "want %s, got %s" % (show(want), show(got))
        if abs(g - self.scale * w) > self.tol:
            self.duration_missed = True
            return "want %d ms (%d x scale %d, tolerance %d), got %d" % (self.scale * w, w, self.scale, self.tol, g)
        return None

    # ------------------------------------------------------------ steps
    def exec(self, s):
        op = s["op"]
        if op == "check":
            return "", None
        if op == "allow":
            r = self.breaker.eval("allow")
            if s.get("as") and isinstance(r, list) and len(r) == 6:
                self.permits[s["as"]] = (r[2], r[5])
            return "allow", r
        if op in ("success", "failure", "release"):
            kind = {"success": "s", "failure": "f", "release": "r"}[op]
            args = self.outcome_args([{"outcome": kind, "permit": s["permit"], "error": s.get("error", "")}])
            return "record", self.breaker.eval("record", "0", *args)
        if op == "record":
            args = self.outcome_args(s.get("outcomes", []))
            return "record", self.breaker.eval("record", str(s.get("refused", 0)), *args)
        if op == "tally":
            return "tally", self.breaker.eval("tally", str(s.get("successes", 0)), str(s.get("failures", 0)),
                                              str(s.get("refused", 0)))
        if op in ("control",) or op in CONTROL_SUGAR:
            action = CONTROL_SUGAR.get(op, s.get("action"))
            return "control", self.breaker.eval("control", action, s.get("actor", ""))
        if op in ("configure", "seed"):
            args = [op, s.get("actor", "")]
            f = s.get("fields", [])
            for i in range(0, len(f) - 1, 2):
                field, value = str(f[i]), str(f[i + 1])
                if field in DURATION_CONFIG:
                    value = str(self.scale_value(value))
                args += [field, value]
            return op, self.breaker.eval(*args)
        if op == "status":
            return "status", self.breaker.status_script.run(self.rdb, self.breaker.keys, "status")
        if op == "eval":
            keys = self.breaker.keys
            if "keys" in s:
                keys = [self.key(k) for k in s["keys"]]
            args = [str(a) for a in s["args"]]
            kind = args[0] if args[0] in REPLY_FIELDS or args[0] == "status" else ""
            script = self.breaker.status_script if s.get("script") == "status" else self.breaker.script
            return kind, script.run(self.rdb, keys, *args)
        if op == "redis":
            args = [self.key(a[1:]) if a.startswith("$") else (self.key(a) if "{$name" in a else a)
                    for a in s["command"]]
            if args[0].upper() == "HSET" and s["command"][1] == "$config":
                for i in range(2, len(args) - 1, 2):
                    if args[i] in DURATION_CONFIG:
                        args[i + 1] = str(self.scale_value(args[i + 1]))
            return "", self.rdb.call(*args)
        raise Engine("unknown op %r" % op)

    def outcome_args(self, outcomes):
        args = []
        for o in outcomes:
            gen, lease = 0, ""
            if o.get("permit"):
                if o["permit"] not in self.permits:
                    raise Engine("permit %r was not admitted by an earlier allow" % o["permit"])
                gen, lease = self.permits[o["permit"]]
            if "gen" in o:
                gen = self.raw_gen(o["gen"])
            lease = o.get("lease", lease)
            args += [o["outcome"], str(gen), lease, o.get("error", ""), str(self.scale_value(o.get("duration_ms", ""))),
                     str(self.scale_value(o.get("retry_after_ms", "")))]
        return args

    # ------------------------------------------------------------ checks
    def named(self, kind, reply):
        if not isinstance(reply, list):
            return None, "not an array"
        if kind == "status":
            if len(reply) % 2:
                return None, "odd length"
            out = dict(zip(reply[0::2], reply[1::2]))
            missing = [f for f in STATUS_FIELDS if f not in out]
            if missing:
                return out, "missing fields " + ", ".join(missing)
            for f in STATUS_FIELDS:
                if (f in STATUS_STRINGS) != isinstance(out[f], str) or (f not in STATUS_STRINGS and not is_int(out[f])):
                    return out, "%s is %s" % (f, show(out[f]))
            return out, ""
        names = REPLY_FIELDS[kind]
        if len(reply) != len(names):
            return None, "%d elements, want %d" % (len(reply), len(names))
        out = dict(zip(names, reply))
        for n in names:
            want_str = n in ("state", "mode", "lease")
            if (want_str and not isinstance(out[n], str)) or (not want_str and not is_int(out[n])):
                return out, "%s is %s" % (n, show(out[n]))
        return out, ""

    def check(self, s, kind, reply, err):
        errs = []
        e = s.get("expect", {})
        if "error" in e:
            if err is None:
                errs.append("want an error reply %s, got %s" % (e["error"], show(reply)))
            elif not (str(err) == e["error"] or str(err).startswith(e["error"] + " ")):
                errs.append("want an error reply starting with %s, got %s" % (e["error"], json.dumps(str(err))))
        elif err is not None:
            return ["unexpected error reply %s" % json.dumps(str(err))]
        if err is None and kind:
            fields, msg = self.named(kind, reply)
            if msg:
                errs.append("reply %s: %s" % (show(reply), msg))
            for name in sorted(e.get("reply", {})):
                if fields is None or name not in fields:
                    errs.append("reply.%s: missing" % name)
                    continue
                m = self.match(name, e["reply"][name], fields[name])
                if m:
                    errs.append("reply.%s: %s" % (name, m))
        if "reply_raw" in e and e["reply_raw"] != reply:
            errs.append("reply: want %s, got %s" % (show(e["reply_raw"]), show(reply)))
        errs += self.check_keys(e)
        return errs

    def read(self, *args):
        try:
            return self.rdb.call(*args), None
        except bb.ReplyError as err:
            return None, err

    def check_keys(self, e):
        errs = []
        for suffix in sorted(e.get("keys", {})):
            got, err = self.read("GET", self.key(suffix))
            if err:
                errs.append("keys.%s: GET: %s" % (suffix, err))
                continue
            m = self.match(suffix, e["keys"][suffix], got)
            if m:
                errs.append("keys.%s: %s" % (suffix, m))
        for suffix in sorted(e.get("types", {})):
            got = self.rdb.call("TYPE", self.key(suffix))
            if got != e["types"][suffix]:
                errs.append("types.%s: want %s, got %s" % (suffix, e["types"][suffix], got))
        for part in ("metrics", "config"):
            if part not in e:
                continue
            flat, err = self.read("HGETALL", self.key(part))
            if err:
                errs.append("%s: HGETALL: %s" % (part, err))
                continue
            h = dict(zip(flat[0::2], flat[1::2]))
            for f in sorted(e[part]):
                m = self.match(f, e[part][f], h.get(f))
                if m:
                    errs.append("%s.%s: %s" % (part, f, m))
        if "probes" in e or "probe_count" in e:
            flat, err = self.read("ZRANGE", self.key("probes"), "0", "-1", "WITHSCORES")
            if err:
                errs.append("probes: ZRANGE: %s" % err)
            else:
                got = {m: int(float(sc)) for m, sc in zip(flat[0::2], flat[1::2])}
                if "probe_count" in e and len(got) != e["probe_count"]:
                    errs.append("probe_count: want %d, got %d (%s)" % (e["probe_count"], len(got), got))
                if "probes" in e:
                    for lease in sorted(e["probes"]):
                        if lease not in got:
                            errs.append("probes: lease %s missing (have %s)" % (lease, got))
                            continue
                        m = self.match("probe_expiry", e["probes"][lease], got[lease])
                        if m:
                            errs.append("probes.%s: %s" % (lease, m))
                    if len(got) != len(e["probes"]):
                        errs.append("probes: want %d leases, got %s" % (len(e["probes"]), got))
        if any(k in e for k in ("history", "history_len", "history_head")):
            raw, err = self.read("LRANGE", self.key("history"), "0", "-1")
            if err:
                errs.append("history: LRANGE: %s" % err)
            else:
                entries = []
                for i, text in enumerate(raw):
                    try:
                        m = json.loads(text)
                    except ValueError:
                        m = None
                    if not isinstance(m, dict):
                        m = {"raw": text}
                    else:
                        for f in HISTORY_FIELDS:
                            if f not in m:
                                errs.append("history[%d]: JSON entry without %s: %s" % (i, f, text))
                    entries.append(m)
                if "history_len" in e and len(entries) != e["history_len"]:
                    errs.append("history_len: want %d, got %d" % (e["history_len"], len(entries)))
                if "history" in e:
                    errs += self.match_entries("history", e["history"], entries)
                if "history_head" in e:
                    errs += self.match_entries("history_head", e["history_head"], entries[:len(e["history_head"])])
        if any(k in e for k in ("stream", "stream_len", "stream_head", "stream_tail")):
            xs, err = self.read("XRANGE", self.key("events"), "-", "+")
            if err:
                errs.append("stream: XRANGE: %s" % err)
            else:
                entries = []
                for i, (xid, flat) in enumerate(xs):
                    m = dict(zip(flat[0::2], flat[1::2]))
                    for f in STREAM_FIELDS:
                        if f not in m:
                            errs.append("stream[%d] (%s): no field %s" % (i, xid, f))
                    entries.append(m)
                if "stream_len" in e and len(entries) != e["stream_len"]:
                    errs.append("stream_len: want %d, got %d" % (e["stream_len"], len(entries)))
                if "stream" in e:
                    errs += self.match_entries("stream", e["stream"], entries)
                if "stream_head" in e:
                    errs += self.match_entries("stream_head", e["stream_head"], entries[:len(e["stream_head"])])
                if "stream_tail" in e:
                    n = len(e["stream_tail"])
                    errs += self.match_entries("stream_tail", e["stream_tail"], entries[-n:] if len(entries) > n else entries)
        if "published" in e:
            entries = [announcement(p) for p in self.published()]
            errs += self.match_entries("published", e["published"], entries)
        return errs

    def match_entries(self, what, want, got):
        errs = []
        if len(want) != len(got):
            errs.append("%s: want %d entries, got %d: %s" % (what, len(want), len(got), show(got)))
        for i, (w, g) in enumerate(zip(want, got)):
            for f in sorted(w):
                if f not in g and f == "generation" and what.startswith("history") and w[f] is not None and "ts" in g:
                    g = dict(g, generation=g["ts"])  # a generation equal to ts is left out: read it as a reader does
                if f not in g:
                    if w[f] is None:
                        continue  # null: the field is absent
                    errs.append("%s[%d].%s: missing in %s" % (what, i, f, show(g)))
                    continue
                m = self.match(f, w[f], g[f])
                if m:
                    errs.append("%s[%d].%s: %s" % (what, i, f, m))
        return errs

    def published(self):
        """Messages on the breaker's channel since the last call: PING the
        subscription and read up to its PONG (messages published by scripts
        that already finished are queued ahead of it)."""
        self.pings += 1
        token = "barrier-%d" % self.pings
        self.sub.send("PING", token)
        out = []
        while True:
            msg = self.sub.read()
            if isinstance(msg, list) and len(msg) == 3 and msg[0] == "message":
                out.append(msg[2])
            elif isinstance(msg, list) and len(msg) == 2 and msg[0] == "pong" and msg[1] == token:
                return out

    # ------------------------------------------------------------ the run
    def run(self):
        """Returns the list of what did not hold; raises Late or Engine."""
        errs = []
        self.start = self.mark = self.now()
        for i, s in enumerate(self.steps):
            at = s.get("at", 0)
            label = "step %d (%s at %d)" % (i + 1, s["op"], at)
            self.wait(at)
            kind, reply, err = "", None, None
            try:
                kind, reply = self.exec(s)
            except bb.ReplyError as e:
                kind, err = OP_KIND.get(s["op"], ""), e
            self.stamp(at, err is None and self.starts_timer(kind, reply))
            if err is None:
                self.observe(kind, reply)
            errs += [label + ": " + m for m in self.check(s, kind, reply, err)]
            if len(errs) > 20:
                errs.append("stopped after 20 errors")
                break
        if self.timed:
            self.validate_timing()
            # A reported duration measures real time between two steps: when
            # the run fell behind its schedule by more than the tolerance, a
            # duration off by as much says nothing about the script.
            late = max([b - (self.start + self.scale * a) for a, b in zip(self.ats, self.after)] or [0])
            if self.duration_missed and late > self.tol:
                raise Late("reported durations are off after the run fell %d ms behind its schedule (tolerance %d ms, x%d)"
                           % (late, self.tol, self.scale))
        return errs


def announcement(payload):
    f = payload.split(" ")
    if len(f) == 4 and as_int(f[1]) is not None and as_int(f[3]) is not None:
        return {"state": f[0], "generation": int(f[1]), "mode": f[2], "retry_after_ms": int(f[3])}
    return {"raw": payload}


def run_vector(addr, script, status_script, vector, prefix, scale, tol, attempts):
    """Runs one vector; a real-clock run that landed too late is retried on a
    fresh breaker with twice the scale (and, unless given, tolerance)."""
    res = {"vector": vector["name"], "passed": False, "errors": [], "attempts": 0, "late": [],
           "known_bug": vector.get("known_bug", "")}
    for attempt in range(1, attempts + 1):
        res["attempts"] = attempt
        name = "%s:%s.%d" % (prefix, vector["name"], attempt)
        sc = scale << (attempt - 1)
        t = tol if tol > 0 else 2 * sc + 25
        try:
            r = Run(addr, script, status_script, vector, name, sc, t)
        except (OSError, ConnectionError) as e:
            res["errors"] = ["engine failed: connect: %s" % e]
            return res
        try:
            res["errors"] = r.run()
            res["passed"] = not res["errors"]
            return res
        except Late as e:
            res["late"].append(str(e))
        except (Engine, OSError, ConnectionError) as e:
            res["errors"] = ["engine failed: %s" % e]
            return res
        finally:
            r.close()
    res["errors"] = ["every attempt ran too late on the real clock to judge the deadlines: " + "; ".join(res["late"])]
    return res


def cmd_run(args):
    script = bb.Script(args.script)
    status_script = bb.Script(os.path.join(os.path.dirname(args.script), "status-8.lua"))
    files = sorted(glob.glob(os.path.join(args.vectors, "*.json")))
    vectors = []
    for f in files:
        with open(f) as fh:
            v = json.load(fh)
        if not args.names or v["name"] in args.names:
            vectors.append(v)
    if not vectors:
        print("no vectors", file=sys.stderr)
        return 2
    host, port = args.addr.rsplit(":", 1)
    rdb = bb.Redis(host, int(port))
    script.load(rdb)
    status_script.load(rdb)
    rdb.close()
    tol = args.tolerance
    passed = failed = known = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_vector, args.addr, script, status_script, v, args.prefix, args.scale, tol,
                               args.attempts) for v in vectors]
        for fut in futures:
            res = fut.result()
            print(json.dumps(res), flush=True)
            if res["passed"]:
                passed += 1
            elif res["known_bug"]:
                known += 1
            else:
                failed += 1
    print(json.dumps({"summary": {"passed": passed, "failed": failed, "known_bug": known, "total": len(vectors),
                                  "script_sha1": script.sha1}}), flush=True)
    return 1 if failed else 0


def cmd_worker(args):
    """Hammers one breaker: allow, then report a success or a failure that
    follows an upstream that is down during alternate windows of the wall
    clock (shared by every worker process on the machine) plus noise."""
    host, port = args.addr.rsplit(":", 1)
    rdb = bb.Redis(host, int(port))
    br = bb.Breaker(rdb, args.name, script_path=args.script)
    rng = random.Random(args.seed)
    out = {"worker": "python", "successes": 0, "failures": 0, "releases": 0, "refused": 0, "admitted": 0,
           "probes": []}
    for _ in range(args.calls):
        a = br.allow()
        if not a.admitted:
            out["refused"] += 1
            time.sleep(args.sleep_ms / 1000.0)
            continue
        out["admitted"] += 1
        t_admit = time.time_ns()
        down = (time.time_ns() // 1_000_000 // args.window_ms) % 2 == 0
        roll = rng.random()
        if roll < 0.05:
            kind = "r"
        elif (down and roll < 0.9) or (not down and roll < 0.1):
            kind = "f"
        else:
            kind = "s"
        t_report = time.time_ns()
        br.record(kind, a.generation, a.lease, "python worker failure" if kind == "f" else "")
        out[{"s": "successes", "f": "failures", "r": "releases"}[kind]] += 1
        if a.lease:
            out["probes"].append([a.generation, a.lease, t_admit, t_report])
    rdb.close()
    print(json.dumps(out), flush=True)
    return 0


def cmd_mix(args):
    """Reports a known mix of outcomes, one call per letter of --plan (s a
    success, f a failure, S a slow success, F a slow failure), each after
    an allow; prints what it did and the breaker's newest history entry as
    the worker reads it (generation filled in from ts)."""
    host, port = args.addr.rsplit(":", 1)
    rdb = bb.Redis(host, int(port))
    br = bb.Breaker(rdb, args.name, script_path=args.script)
    out = {"worker": "python", "successes": 0, "failures": 0, "releases": 0, "refused": 0, "admitted": 0,
           "probes": [], "stale": 0}
    for c in args.plan:
        a = br.allow()
        if not a.admitted:
            out["refused"] += 1
            continue
        out["admitted"] += 1
        kind = "f" if c in "fF" else "s"
        duration = str(args.slow_ms) if c in "SF" else "1"
        reply = br.record(kind, a.generation, a.lease, "python mix failure" if kind == "f" else "", duration_ms=duration)
        out["stale"] += reply[5]
        out["successes" if kind == "s" else "failures"] += 1
    out["history"] = br.history(1)
    rdb.close()
    print(json.dumps(out), flush=True)
    return 0


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the vectors")
    r.add_argument("--addr", required=True, help="host:port of a real redis-server")
    r.add_argument("--script", default=DEFAULT_SCRIPT)
    r.add_argument("--vectors", default=DEFAULT_VECTORS)
    r.add_argument("--scale", type=int, default=20)
    r.add_argument("--tolerance", type=int, default=0)
    r.add_argument("--attempts", type=int, default=4)
    r.add_argument("--jobs", type=int, default=4)
    r.add_argument("--prefix", default="conf:python:%x" % time.time_ns(),
                   help="breaker names start with this (default: unique per run)")
    r.add_argument("names", nargs="*", help="only these vectors")
    w = sub.add_parser("worker", help="hammer one breaker")
    w.add_argument("--addr", required=True)
    w.add_argument("--script", default=DEFAULT_SCRIPT)
    w.add_argument("--name", required=True)
    w.add_argument("--calls", type=int, default=300)
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--sleep-ms", type=float, default=1.0)
    w.add_argument("--window-ms", type=int, default=40)
    m = sub.add_parser("mix", help="report a known mix of outcomes")
    m.add_argument("--addr", required=True)
    m.add_argument("--script", default=DEFAULT_SCRIPT)
    m.add_argument("--name", required=True)
    m.add_argument("--plan", required=True, help="one letter per call: s, f, S (slow success), F (slow failure)")
    m.add_argument("--slow-ms", type=int, default=1000)
    args = p.parse_args(argv)
    return {"run": cmd_run, "worker": cmd_worker, "mix": cmd_mix}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
