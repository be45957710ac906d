package conformance

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/breakerbox/breakerbox"
)

// check returns what did not hold after step s, whose script operation
// kind replied reply or failed with err (a *ReplyError).
func (r *run) check(ctx context.Context, s Step, kind string, reply any, err error) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	e := s.Expect
	if e == nil {
		e = &Expect{}
	}

	var rerr *ReplyError
	switch {
	case e.Error != "":
		if !errors.As(err, &rerr) {
			fail("want an error reply %s, got %s", e.Error, show(reply))
		} else if e.Error == "BADKEYS" && strings.HasPrefix(rerr.Text, "CROSSSLOT") {
			// A cluster refuses keys of several slots before any script runs.
		} else if rerr.Text != e.Error && !strings.HasPrefix(rerr.Text, e.Error+" ") {
			fail("want an error reply starting with %s, got %q", e.Error, rerr.Text)
		}
	case errors.As(err, &rerr):
		fail("unexpected error reply %q", rerr.Text)
		return errs
	}

	if err == nil && kind != "" {
		fields, msg := namedReply(kind, reply)
		if msg != "" {
			fail("reply %s: %s", show(reply), msg)
		}
		for _, name := range sortedKeys(e.Reply) {
			got, ok := fields[name]
			if !ok {
				fail("reply.%s: missing", name)
				continue
			}
			if m := r.clock.match(name, e.Reply[name], got); m != nil {
				fail("reply.%s: %v", name, m)
			}
		}
	}
	if e.ReplyRaw != nil {
		want := make([]any, len(e.ReplyRaw))
		for i, w := range e.ReplyRaw {
			want[i] = number(w)
		}
		if !sameValue(want, reply) {
			fail("reply: want %s, got %s", show(want), show(reply))
		}
	}

	for _, m := range r.checkKeys(ctx, e) {
		fail("%s", m)
	}
	return errs
}

// namedReply names the elements of a reply of operation kind and checks
// its shape against the documented one (breakerbox.NamedReply): the
// length, integers and strings where documented, every status field.
func namedReply(kind string, reply any) (map[string]any, string) {
	fields, err := breakerbox.NamedReply(kind, reply)
	if err != nil {
		return fields, err.Error()
	}
	return fields, ""
}

// checkKeys checks the parts of e that read the breaker's keys.
func (r *run) checkKeys(ctx context.Context, e *Expect) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	key := func(suffix string) string { return breakerbox.Key(r.t.Name(), suffix) }

	for _, suffix := range sortedKeys(e.Keys) {
		v, ok, err := r.t.Get(ctx, key(suffix))
		if err != nil {
			fail("keys.%s: GET: %v", suffix, err)
			continue
		}
		var got any
		if ok {
			got = v
		}
		if m := r.clock.match(suffix, e.Keys[suffix], got); m != nil {
			fail("keys.%s: %v", suffix, m)
		}
	}
	for _, suffix := range sortedKeys(e.Types) {
		got, err := r.t.Type(ctx, r.key(suffix))
		if err != nil {
			fail("types.%s: TYPE: %v", suffix, err)
		} else if got != e.Types[suffix] {
			fail("types.%s: want %s, got %s", suffix, e.Types[suffix], got)
		}
	}
	for _, part := range []struct {
		name   string
		suffix string
		want   map[string]any
	}{{"metrics", "metrics", e.Metrics}, {"config", "config", e.Config}} {
		if part.want == nil {
			continue
		}
		h, err := r.t.HGetAll(ctx, key(part.suffix))
		if err != nil {
			fail("%s: HGETALL: %v", part.name, err)
			continue
		}
		for _, f := range sortedKeys(part.want) {
			var got any
			if v, ok := h[f]; ok {
				got = v
			}
			if m := r.clock.match(f, part.want[f], got); m != nil {
				fail("%s.%s: %v", part.name, f, m)
			}
		}
	}
	if e.Probes != nil || e.ProbeCount != nil {
		zs, err := r.t.ZRange(ctx, key("probes"))
		if err != nil {
			fail("probes: ZRANGE: %v", err)
		} else {
			if e.ProbeCount != nil && len(zs) != *e.ProbeCount {
				fail("probe_count: want %d, got %d (%v)", *e.ProbeCount, len(zs), zs)
			}
			if e.Probes != nil {
				got := map[string]any{}
				for _, z := range zs {
					got[z.Member] = int64(z.Score)
				}
				for _, lease := range sortedKeys(e.Probes) {
					g, ok := got[lease]
					if !ok {
						fail("probes: lease %q missing (have %v)", lease, zs)
						continue
					}
					if m := r.clock.match("probe_expiry", e.Probes[lease], g); m != nil {
						fail("probes.%s: %v", lease, m)
					}
				}
				if len(got) != len(e.Probes) {
					fail("probes: want %d leases, got %v", len(e.Probes), zs)
				}
			}
		}
	}
	if e.History != nil || e.HistoryLen != nil || e.HistoryHead != nil {
		raw, err := r.t.LRange(ctx, key("history"))
		if err != nil {
			fail("history: LRANGE: %v", err)
		} else {
			entries := make([]map[string]any, len(raw))
			for i, text := range raw {
				m, ok := decodeJSON(text)
				if !ok {
					m = map[string]any{"raw": text}
				} else {
					for _, f := range breakerbox.EventFields() {
						if _, has := m[f]; !has {
							fail("history[%d]: JSON entry without %q: %s", i, f, text)
						}
					}
				}
				entries[i] = m
			}
			if e.HistoryLen != nil && len(entries) != *e.HistoryLen {
				fail("history_len: want %d, got %d", *e.HistoryLen, len(entries))
			}
			if e.History != nil {
				errs = append(errs, r.matchEntries("history", *e.History, entries, true)...)
			}
			if e.HistoryHead != nil {
				errs = append(errs, r.matchEntries("history_head", e.HistoryHead, headOf(entries, len(e.HistoryHead)), true)...)
			}
		}
	}
	if e.Stream != nil || e.StreamLen != nil || e.StreamHead != nil || e.StreamTail != nil {
		xs, err := r.t.XRange(ctx, key("events"))
		if err != nil {
			fail("stream: XRANGE: %v", err)
		} else {
			entries := make([]map[string]any, len(xs))
			for i, x := range xs {
				m := map[string]any{}
				for f, v := range x.Fields {
					m[f] = v
				}
				for _, f := range breakerbox.TransitionFields() {
					if _, has := m[f]; !has {
						fail("stream[%d] (%s): no field %q", i, x.ID, f)
					}
				}
				entries[i] = m
			}
			if e.StreamLen != nil && len(entries) != *e.StreamLen {
				fail("stream_len: want %d, got %d", *e.StreamLen, len(entries))
			}
			if e.Stream != nil {
				errs = append(errs, r.matchEntries("stream", *e.Stream, entries, true)...)
			}
			if e.StreamHead != nil {
				errs = append(errs, r.matchEntries("stream_head", e.StreamHead, headOf(entries, len(e.StreamHead)), true)...)
			}
			if e.StreamTail != nil {
				n := len(e.StreamTail)
				tail := entries
				if len(tail) > n {
					tail = tail[len(tail)-n:]
				}
				errs = append(errs, r.matchEntries("stream_tail", e.StreamTail, tail, true)...)
			}
		}
	}
	if e.Published != nil {
		msgs, err := r.t.Published(ctx)
		if err != nil {
			fail("published: %v", err)
		} else {
			entries := make([]map[string]any, len(msgs))
			for i, p := range msgs {
				entries[i] = parseAnnouncement(p)
			}
			errs = append(errs, r.matchEntries("published", *e.Published, entries, true)...)
		}
	}
	return errs
}

// matchEntries compares lists of partial expectations with entries.
func (r *run) matchEntries(what string, want, got []map[string]any, exactLen bool) []string {
	var errs []string
	if exactLen && len(want) != len(got) {
		errs = append(errs, fmt.Sprintf("%s: want %d entries, got %d: %s", what, len(want), len(got), show(got)))
	}
	for i := 0; i < len(want) && i < len(got); i++ {
		for _, f := range sortedKeys(want[i]) {
			g, ok := got[i][f]
			if !ok && want[i][f] == nil {
				continue // null: the field is absent
			}
			if !ok && f == "generation" && strings.HasPrefix(what, "history") {
				// A history entry leaves out a generation equal to its ts:
				// read it as a reader does (docs/protocol.md, Events).
				g, ok = got[i]["ts"]
			}
			if !ok {
				errs = append(errs, fmt.Sprintf("%s[%d].%s: missing in %s", what, i, f, show(got[i])))
				continue
			}
			if m := r.clock.match(f, want[i][f], g); m != nil {
				errs = append(errs, fmt.Sprintf("%s[%d].%s: %v", what, i, f, m))
			}
		}
	}
	return errs
}

func headOf(entries []map[string]any, n int) []map[string]any {
	if len(entries) > n {
		return entries[:n]
	}
	return entries
}

// parseAnnouncement reads an announcement (breakerbox.ParseAnnouncement)
// into its fields by wire name; a malformed one is kept under "raw".
func parseAnnouncement(payload string) map[string]any {
	a, err := breakerbox.ParseAnnouncement(payload)
	if err != nil {
		return map[string]any{"raw": payload}
	}
	return map[string]any{"state": a.State.String(), "generation": a.Generation,
		"mode": string(a.Mode), "retry_after_ms": a.RetryAfterMs()}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
