package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// TestVectorsCoverTheProtocol checks that the vector set exercises every
// operation, every event of docs/protocol.md (expected in a stream or
// history entry), every operator action out of every state, every error
// code, announcements, and a corrupted value of every key.
func TestVectorsCoverTheProtocol(t *testing.T) {
	ops := map[string]bool{}
	events := map[string]bool{}
	controlFrom := map[string]bool{}
	errCodes := map[string]bool{}
	corrupted := map[string]bool{}
	published := false
	rules := map[string]bool{}   // the rules an opening's detail names
	configs := map[string]bool{} // the trip-rule fields configured
	for _, v := range loadVectors(t) {
		if v.KnownBug != "" && !strings.HasPrefix(v.KnownBug, "BUG-") {
			t.Errorf("%s: known_bug must start with its BUG-n id: %q", v.Name, v.KnownBug)
		}
		for _, s := range append(Flatten(v.Steps), v.Steps...) {
			ops[s.Op] = true
			if s.Op == "configure" || s.Op == "seed" {
				for i := 0; i+1 < len(s.Fields); i += 2 {
					configs[fmt.Sprint(s.Fields[i])] = true
				}
			}
			if s.Op == "redis" {
				for _, a := range s.Command[1:] {
					if suffix, ok := strings.CutPrefix(a, "$"); ok {
						corrupted[suffix] = true
					}
				}
			}
			e := s.Expect
			if e == nil {
				continue
			}
			if e.Error != "" {
				errCodes[e.Error] = true
			}
			published = published || (e.Published != nil && len(*e.Published) > 0)
			var entries []map[string]any
			for _, list := range []*[]map[string]any{e.Stream, e.History} {
				if list != nil {
					entries = append(entries, *list...)
				}
			}
			entries = append(append(append(entries, e.StreamHead...), e.StreamTail...), e.HistoryHead...)
			for _, en := range entries {
				ev, _ := en["event"].(string)
				events[ev] = true
				if from, ok := en["from"].(string); ok {
					controlFrom[ev+" from "+from] = true
				}
				if d, ok := en["detail"].(string); ok && ev == "opened" {
					for _, rule := range []string{"consecutive failures", "failure rate", "slow calls", "retry-after", "probe failed"} {
						rules[rule] = rules[rule] || strings.Contains(d, rule)
					}
				}
			}
		}
	}
	for op := range opKind {
		if !ops[op] {
			t.Errorf("no vector uses op %s", op)
		}
	}
	for _, ev := range []string{"opened", "half_opened", "closed", "reset", "forced_open", "disabled", "released", "repaired", "config_changed"} {
		if !events[ev] {
			t.Errorf("no vector expects a %s event", ev)
		}
	}
	for _, ev := range []string{"reset", "forced_open", "disabled"} {
		for _, from := range []string{"closed", "open", "half_open"} {
			if !controlFrom[ev+" from "+from] {
				t.Errorf("no vector expects %s from %s", ev, from)
			}
		}
	}
	for _, tr := range []string{"opened from closed", "opened from half_open", "half_opened from open", "closed from half_open", "released from open", "released from closed"} {
		if !controlFrom[tr] {
			t.Errorf("no vector expects %s", tr)
		}
	}
	for _, code := range []string{"BADKEYS", "BADARGS", "BADCONFIG"} {
		if !errCodes[code] {
			t.Errorf("no vector expects %s", code)
		}
	}
	for _, suffix := range breakerbox.KeySuffixes {
		if !corrupted[suffix] {
			t.Errorf("no vector corrupts the %s key", suffix)
		}
	}
	if !published {
		t.Error("no vector expects an announcement")
	}
	for _, rule := range []string{"consecutive failures", "failure rate", "slow calls", "retry-after", "probe failed"} {
		if !rules[rule] {
			t.Errorf("no vector expects an opening by the rule %q", rule)
		}
	}
	for _, f := range breakerbox.ConfigFields() {
		if f.Rule && !configs[f.Field] {
			t.Errorf("no vector configures %s", f.Field)
		}
	}
}

// mutations break one expectation of closed_threshold_exactly_opens_timed
// each; every runner must then report the vector as failed.
var mutations = []struct {
	name   string
	mutate func(v *Vector)
}{
	{"generation", func(v *Vector) { stepAt(v, 4, "failure").Expect.Reply["generation"] = json.Number("2") }},
	{"state", func(v *Vector) { stepAt(v, 4, "failure").Expect.Reply["state"] = "closed" }},
	{"instant", func(v *Vector) { stepAt(v, 4, "failure").Expect.Metrics["opened_at"] = "@2" }},
	{"duration", func(v *Vector) { stepAt(v, 7, "status").Expect.Reply["retry_after_ms"] = json.Number("1") }},
	{"stream entry", func(v *Vector) { (*stepAt(v, 4, "failure").Expect.Stream)[0]["failures"] = "2" }},
	{"announcement", func(v *Vector) { (*stepAt(v, 4, "failure").Expect.Published)[0]["generation"] = json.Number("3") }},
	{"integer versus string", func(v *Vector) { stepAt(v, 1, "failure").Expect.Keys["failures"] = json.Number("1") }},
}

func stepAt(v *Vector, at int64, op string) *Step {
	for i := range v.Steps {
		if v.Steps[i].At == at && v.Steps[i].Op == op {
			return &v.Steps[i]
		}
	}
	panic("no such step")
}

func mutated(t *testing.T, mutate func(*Vector)) Vector {
	t.Helper()
	v, err := ReadVector(filepath.Join(vectorDir, "closed_threshold_exactly_opens_timed.json"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(v) // deep copy through JSON
	v, err = ParseVector(data)
	if err != nil {
		t.Fatal(err)
	}
	mutate(&v)
	return v
}

// TestRunnersCatchWrongExpectations proves the checks bite: each mutation
// of a passing vector fails on an exact clock, on a real server, and in
// the Python runner.
func TestRunnersCatchWrongExpectations(t *testing.T) {
	mutantsFail := func(t *testing.T, e Engine) {
		for _, m := range mutations {
			res := RunVector(context.Background(), e, mutated(t, m.mutate), "mutant:"+e.Name+":"+m.name, Options{Scale: *flagScale})
			if res.Passed() {
				t.Errorf("%s: the vector with a wrong %s passed", e.Name, m.name)
			}
		}
	}
	t.Run("gopher-lua", func(t *testing.T) { mutantsFail(t, LuaEngine()) })
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		mutantsFail(t, RedisEngine("redis", srv.Client(t)))
	})
	t.Run("python", func(t *testing.T) {
		py := requirePython(t)
		srv := redistest.Start(t)
		dir := t.TempDir()
		for _, m := range mutations {
			v := mutated(t, m.mutate)
			v.Name = "mutant_" + strings.ReplaceAll(m.name, " ", "_")
			data, _ := json.Marshal(v)
			if err := os.WriteFile(filepath.Join(dir, v.Name+".json"), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, py, filepath.Join(pythonDir, "conformance.py"), "run", "--addr", srv.Addr,
			"--script", filepath.Join("..", "lua", breakerbox.BreakerScript.File), "--vectors", dir).Output()
		if code := exitCode(err); code != 1 {
			t.Fatalf("python runner on mutants: exit %d (%v), want 1\n%s", code, err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var r pythonResult
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			if r.Summary != nil {
				if r.Summary.Failed != len(mutations) {
					t.Errorf("python runner failed %d of %d mutants", r.Summary.Failed, len(mutations))
				}
			} else if r.Passed {
				t.Errorf("python: %s passed", r.Vector)
			}
		}
	})
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var exit *exec.ExitError
	if errorsAs(err, &exit) {
		return exit.ExitCode()
	}
	return -1
}

// TestTimingValidation checks the rule that discards a real-clock run:
// a step may not end scale*D after a timer step it is less than D after
// in the vector.
func TestTimingValidation(t *testing.T) {
	v := Vector{Steps: []Step{{Op: "configure", Fields: []any{"recovery_timeout_ms", json.Number("10"), "request_timeout_ms", json.Number("5")}}}}
	cases := []struct {
		name   string
		ats    []int64
		before []int64
		after  []int64
		timer  []bool
		late   bool
	}{
		{"in time", []int64{0, 9}, []int64{0, 180}, []int64{1, 199}, []bool{true, false}, false},
		{"reaches the deadline", []int64{0, 9}, []int64{0, 190}, []int64{1, 200}, []bool{true, false}, true},
		{"late after a step that starts no timer", []int64{0, 9}, []int64{0, 190}, []int64{1, 250}, []bool{false, false}, false},
		{"at or after the deadline is the wait rule's job", []int64{0, 10}, []int64{0, 200}, []int64{1, 400}, []bool{true, false}, false},
		{"shorter deadline between", []int64{0, 4}, []int64{0, 80}, []int64{1, 100}, []bool{true, false}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &run{v: v, scale: 20, ats: tc.ats, before: tc.before, after: tc.after, timer: tc.timer}
			if err := r.validateTiming(); (err != nil) != tc.late {
				t.Errorf("validateTiming() = %v, want late %v", err, tc.late)
			}
		})
	}
}
