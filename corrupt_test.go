package breakerbox_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/luaengine"
)

func TestCorruptedKeysAreRepaired(t *testing.T) {
	cases := []struct {
		name    string
		corrupt func(b *bb)
		want    []string // status fields after one allow and one failure
		events  []string
	}{
		{"state banana", func(b *bb) { b.e.Set(b.keys[0], "banana") },
			[]string{"state", "closed", "current_failures", "1", "generation", "1"}, []string{"repaired"}},
		{"failures -7", func(b *bb) { b.e.Set(b.keys[1], "-7") },
			[]string{"state", "closed", "current_failures", "1"}, nil},
		{"failures abc", func(b *bb) { b.e.Set(b.keys[1], "abc") },
			[]string{"state", "closed", "current_failures", "1"}, nil},
		{"failures 2.5", func(b *bb) { b.e.Set(b.keys[1], "2.5") },
			[]string{"current_failures", "1"}, nil},
		{"generation abc", func(b *bb) { b.e.SetHash(b.keys[3], map[string]string{"generation": "abc"}) },
			[]string{"generation", "0", "current_failures", "1"}, nil},
		{"mode sideways", func(b *bb) { b.e.SetHash(b.keys[3], map[string]string{"mode": "sideways"}) },
			[]string{"mode", "normal", "current_failures", "1"}, nil},
		{"state is a hash", func(b *bb) { b.e.SetHash(b.keys[0], map[string]string{"x": "y"}) },
			[]string{"state", "closed", "current_failures", "1"}, nil},
		{"metrics is a string", func(b *bb) { b.e.Set(b.keys[3], "garbage") },
			[]string{"total_failures", "1", "current_failures", "1"}, nil},
		{"history is a string", func(b *bb) { b.e.Set(b.keys[4], "garbage") },
			[]string{"state", "closed"}, nil},
		{"probes is a string", func(b *bb) { b.e.Set(b.keys[6], "garbage") },
			[]string{"probes", "0"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBB(t)
			c.corrupt(b)
			if st := b.status(); st["state"] != "closed" {
				t.Errorf("status before repair reads state %q, want closed", st["state"])
			}
			b.failure(b.allow(), "boom")
			b.want(c.want...)
			if got := b.eventNames(); len(got) != len(c.events) || (len(got) > 0 && got[0] != c.events[0]) {
				t.Errorf("events %v, want %v", got, c.events)
			}
			b.trip(2) // and it still works: two more failures open it
		})
	}
}

func TestRepairRecordsWhatWasFound(t *testing.T) {
	b := newBB(t)
	b.e.Set(b.keys[0], "banana")
	b.allow()
	ev := b.events()
	if len(ev) != 1 || ev[0]["from"] != "banana" || ev[0]["to"] != "closed" || ev[0]["actor"] != "breakerbox" {
		t.Errorf("repair entry %v", ev)
	}
	if got, _ := b.e.Get(b.keys[0]); got != "closed" {
		t.Errorf("state after repair %q", got)
	}
}

func TestCorruptedStreamIsReplaced(t *testing.T) {
	b := newBB(t)
	b.e.Set(b.keys[7], "not a stream")
	b.trip(3)
	if got := b.eventNames(); len(got) != 1 || got[0] != "opened" {
		t.Errorf("events %v, want the opening in a new stream", got)
	}
}

func scriptErr(t *testing.T, e *luaengine.Engine, keys []string, args ...string) error {
	t.Helper()
	script := breakerbox.BreakerScript
	if len(args) > 0 && args[0] == "status" {
		script = breakerbox.StatusScript
	}
	_, err := e.Eval(script.Source, keys, args...)
	if err == nil {
		t.Fatalf("%v: no error", args)
	}
	var se luaengine.ScriptError
	if !errors.As(err, &se) {
		t.Fatalf("%v: %v is a Lua runtime error, want an error reply", args, err)
	}
	return err
}

func TestBadInputGetsACodedErrorAndChangesNothing(t *testing.T) {
	cases := []struct {
		name  string
		setup func(b *bb)
		keys  func(b *bb) []string
		args  []string
		code  string
	}{
		{"unknown op", nil, nil, []string{"explode"}, "BADARGS"},
		{"no op", nil, nil, nil, "BADARGS"},
		{"unknown action", nil, nil, []string{"control", "explode", "me"}, "BADARGS"},
		{"odd record", nil, nil, []string{"record", "0", "f", "0", ""}, "BADARGS"},
		{"bad outcome", nil, nil, []string{"record", "0", "x", "0", "", "", "", ""}, "BADARGS"},
		{"bad generation", nil, nil, []string{"record", "0", "f", "abc", "", "", "", ""}, "BADARGS"},
		{"bad refused", nil, nil, []string{"record", "-1"}, "BADARGS"},
		{"config zero", nil, nil, []string{"configure", "me", "failure_threshold", "0"}, "BADARGS"},
		{"config unknown", nil, nil, []string{"configure", "me", "colour", "3"}, "BADARGS"},
		{"config text", nil, nil, []string{"configure", "me", "success_threshold", "two"}, "BADARGS"},
		{"stored config abc", func(b *bb) {
			b.e.SetHash(b.keys[5], map[string]string{"failure_threshold": "abc"})
		}, nil, []string{"record", "0", "f", "0", "", "x", "", ""}, "BADCONFIG failure_threshold"},
		{"stored config negative", func(b *bb) {
			b.e.SetHash(b.keys[5], map[string]string{"recovery_timeout_ms": "-5"})
		}, nil, []string{"control", "reset", "ops"}, "BADCONFIG recovery_timeout_ms"},
		{"config not a hash", func(b *bb) { b.e.Set(b.keys[5], "x") }, nil, []string{"status"}, "BADCONFIG"},
		{"seven keys", nil, func(b *bb) []string { return b.keys[:7] }, []string{"allow"}, "BADKEYS"},
		{"keys out of order", nil, func(b *bb) []string {
			return append([]string{b.keys[1], b.keys[0]}, b.keys[2:]...)
		}, []string{"allow"}, "BADKEYS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBB(t)
			if c.setup != nil {
				c.setup(b)
			}
			before := b.e.Keys()
			keys := b.keys
			if c.keys != nil {
				keys = c.keys(b)
			}
			err := scriptErr(t, b.e, keys, c.args...)
			if !strings.HasPrefix(err.Error(), c.code) {
				t.Errorf("error %q, want code %s", err, c.code)
			}
			if after := b.e.Keys(); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("keys changed from %v to %v", before, after)
			}
		})
	}
}

func TestHistoryAndStreamAreCappedAt100(t *testing.T) {
	b := newBB(t)
	var gens []int64
	for i := 0; i < 205; i++ {
		gens = append(gens, b.run("control", "reset", "loop")[1].(int64))
	}
	if n := len(b.e.LRange(b.keys[4])); n != 100 {
		t.Errorf("history length %d, want 100", n)
	}
	ev := b.events()
	if len(ev) != 100 || ev[0]["generation"] != fmt.Sprint(gens[105]) || ev[99]["generation"] != fmt.Sprint(gens[204]) {
		t.Errorf("stream has %d entries from generation %s, want 100 from the 106th (%d)", len(ev), ev[0]["generation"], gens[105])
	}
	if h := b.history(); h[0].Generation != gens[204] || h[99].Generation != gens[105] {
		t.Errorf("history spans generations %d..%d, want the 205th..106th", h[0].Generation, h[99].Generation)
	}
}

func TestOnlyTheOpeningCarriesTheErrorText(t *testing.T) {
	b := newBB(t, "recovery_timeout_ms", "10")
	b.trip(3)
	b.advance(10 * time.Millisecond)
	b.success(b.allow())
	b.success(b.allow())
	for _, e := range b.events() {
		if want := map[bool]string{true: "boom 3", false: ""}[e["event"] == "opened"]; e["last_error"] != want {
			t.Errorf("%s entry last_error %q, want %q", e["event"], e["last_error"], want)
		}
	}
	for _, h := range b.history() {
		if (h.Event == "opened") != (h.Error == "boom 3") {
			t.Errorf("%s history entry error %q", h.Event, h.Error)
		}
	}
	b.want("last_failure_error", "boom 3")
}

func TestCorruptedCountersReadAsZero(t *testing.T) {
	for _, v := range []string{"abc", "-7", "1.5"} {
		t.Run(v, func(t *testing.T) {
			b := newBB(t, "recovery_timeout_ms", "1000")
			b.trip(3)
			b.e.SetHash(b.keys[3], map[string]string{"generation": "1", "mode": "normal",
				"opened_at": strconv.FormatInt(b.now.UnixMilli(), 10), "total_successes": v,
				"total_failures": v, "total_refused": v, "lease_seq": v})
			b.refused()
			b.advance(time.Second)
			p := b.allow()
			if p.lease != "1" {
				t.Errorf("lease %q, want 1 from a lease counter read as 0", p.lease)
			}
			b.success(p)
			b.want("total_successes", "1", "total_failures", "0", "total_refused", "1")
		})
	}
}

func TestProbesOfWrongTypeInHalfOpenReadAsEmpty(t *testing.T) {
	b := newBB(t, "recovery_timeout_ms", "1000")
	b.trip(3)
	b.advance(time.Second)
	b.allow()
	b.e.Set(b.keys[6], "garbage")
	if st := b.status(); st["probes"] != "0" || st["retry_after_ms"] != "0" {
		t.Errorf("status with a corrupted probes key: %v", st)
	}
	if got, _ := b.e.Get(b.keys[6]); got != "garbage" {
		t.Error("status repaired the key; it is read-only")
	}
	p := b.allow()
	b.success(p)
	b.want("half_open_successes", "1", "probes", "0")
}

func TestConfigureRepairsABadStoredConfig(t *testing.T) {
	b := newBB(t)
	b.e.SetHash(b.keys[5], map[string]string{"failure_threshold": "abc", "success_threshold": "3"})
	scriptErr(t, b.e, b.keys, "status")
	if r := b.run("configure", "ops", "failure_threshold", "4"); r[0] != int64(1) || r[1] != int64(1) {
		t.Fatalf("configure reply %v, want 1 written, 1 overwritten", r)
	}
	b.want("failure_threshold", "4", "success_threshold", "3")

	b.e.Set(b.keys[5], "not a hash")
	scriptErr(t, b.e, b.keys, "status")
	b.run("configure", "ops", "failure_threshold", "2")
	b.want("failure_threshold", "2", "success_threshold", "2")
}

func TestBadRecordGroupAfterAValidOneChangesNothing(t *testing.T) {
	b := newBB(t, "failure_threshold", "1")
	before := b.e.Keys()
	err := scriptErr(t, b.e, b.keys, "record", "0", "f", "0", "", "boom", "", "", "x", "0", "", "", "", "")
	if !strings.HasPrefix(err.Error(), "BADARGS outcome 2") {
		t.Errorf("error %q, want BADARGS naming outcome 2", err)
	}
	if after := b.e.Keys(); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("keys changed from %v to %v", before, after)
	}
	b.want("state", "closed", "total_failures", "0")
}

func TestBadArgumentsRepairNothing(t *testing.T) {
	for _, args := range [][]string{{"explode"}, {"control", "explode", "me"},
		{"record", "0", "x", "0", "", "", "", ""}, {"configure", "me", "colour", "3"}} {
		b := newBB(t)
		b.e.Set(b.keys[0], "banana")
		b.e.Set(b.keys[1], "abc")
		scriptErr(t, b.e, b.keys, args...)
		if got, _ := b.e.Get(b.keys[0]); got != "banana" {
			t.Errorf("%v: state repaired to %q before the error", args, got)
		}
		if n := len(b.events()); n != 0 {
			t.Errorf("%v: %d stream entries written before the error", args, n)
		}
	}
}
