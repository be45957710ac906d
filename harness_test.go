package breakerbox_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/luaengine"
)

// bb runs lua/breaker-8.lua for one breaker in gopher-lua with a clock the
// test moves.
type bb struct {
	t    *testing.T
	e    *luaengine.Engine
	now  time.Time
	keys []string
}

func newBB(t *testing.T, config ...string) *bb {
	t.Helper()
	b := &bb{t: t, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), keys: breakerbox.Keys("svc")}
	b.e = luaengine.New(func() time.Time { return b.now })
	if len(config) > 0 {
		b.run(append([]string{"configure", "test"}, config...)...)
	}
	return b
}

func (b *bb) advance(d time.Duration) { b.now = b.now.Add(d) }

// run calls the script and fails the test on an error reply.
func (b *bb) run(args ...string) []any {
	b.t.Helper()
	script := breakerbox.BreakerScript
	if len(args) > 0 && args[0] == "status" {
		script = breakerbox.StatusScript // read-only snapshot
	}
	res, err := b.e.Eval(script.Source, b.keys, args...)
	if err != nil {
		b.t.Fatalf("%v: %v", args, err)
	}
	arr, ok := res.([]any)
	if !ok {
		b.t.Fatalf("%v: reply %T, want array", args, res)
	}
	return arr
}

// permit is an admission: its generation and lease.
type permit struct {
	gen   string
	lease string
}

// allow expects an admission and returns it.
func (b *bb) allow() permit {
	b.t.Helper()
	r := b.run("allow")
	if r[0] != int64(1) {
		b.t.Fatalf("allow refused: %v", r)
	}
	return permit{gen: fmt.Sprint(r[2]), lease: r[5].(string)}
}

// refused expects a refusal and returns retry_after_ms.
func (b *bb) refused() int64 {
	b.t.Helper()
	r := b.run("allow")
	if r[0] != int64(0) {
		b.t.Fatalf("allow admitted, want refused: %v", r)
	}
	return r[4].(int64)
}

func (b *bb) success(p permit) []any {
	b.t.Helper()
	return b.run("record", "0", "s", p.gen, p.lease, "", "", "")
}
func (b *bb) failure(p permit, msg string) []any {
	b.t.Helper()
	return b.run("record", "0", "f", p.gen, p.lease, msg, "", "")
}

// status returns the status operation as a map.
func (b *bb) status() map[string]string {
	b.t.Helper()
	r := b.run("status")
	m := map[string]string{}
	for i := 0; i+1 < len(r); i += 2 {
		m[r[i].(string)] = fmt.Sprint(r[i+1])
	}
	return m
}

// ord maps a generation (an int64 or a decimal string) to its ordinal
// among the generations in the stream: "0" before the first transition,
// then "1", "2", ... Generations are max(gen+1, now_ms), so tests compare
// their order, not their values.
func (b *bb) ord(v any) string {
	raw := fmt.Sprint(v)
	if raw == "0" {
		return "0"
	}
	for i, e := range b.events() {
		if e["generation"] == raw {
			return strconv.Itoa(i + 1)
		}
	}
	return "raw:" + raw
}

// want checks status fields (a generation by its ordinal, see ord).
func (b *bb) want(fields ...string) {
	b.t.Helper()
	st := b.status()
	st["generation"] = b.ord(st["generation"])
	for i := 0; i+1 < len(fields); i += 2 {
		if got := st[fields[i]]; got != fields[i+1] {
			b.t.Errorf("status %s = %q, want %q (status %v)", fields[i], got, fields[i+1], st)
		}
	}
}

// events returns the stream's entries as maps, oldest first.
func (b *bb) events() []map[string]string {
	var out []map[string]string
	for _, e := range b.e.XRange(b.keys[7]) {
		m := map[string]string{"id": e.ID}
		for i := 0; i+1 < len(e.Fields); i += 2 {
			m[e.Fields[i]] = e.Fields[i+1]
		}
		out = append(out, m)
	}
	return out
}

// eventNames returns the stream's event names, oldest first.
func (b *bb) eventNames() []string {
	var out []string
	for _, e := range b.events() {
		out = append(out, e["event"])
	}
	return out
}

type historyEntry struct {
	TS         int64  `json:"ts"`
	Event      string `json:"event"`
	From       string `json:"from"`
	To         string `json:"to"`
	Generation int64  `json:"generation"`
	Actor      string `json:"actor"`
	Error      string `json:"error"`
	Detail     string `json:"detail"`
}

func (b *bb) history() []historyEntry {
	b.t.Helper()
	var out []historyEntry
	for _, raw := range b.e.LRange(b.keys[4]) {
		var h historyEntry
		if err := json.Unmarshal([]byte(raw), &h); err != nil {
			b.t.Fatalf("history entry %q: %v", raw, err)
		}
		out = append(out, h)
	}
	return out
}

// trip opens a closed breaker with threshold failures.
func (b *bb) trip(threshold int) {
	b.t.Helper()
	for i := 0; i < threshold; i++ {
		b.failure(b.allow(), "boom "+strconv.Itoa(i+1))
	}
	b.want("state", "open")
}
