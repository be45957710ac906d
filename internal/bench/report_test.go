package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestAggregateTakesRatiosPerRepetitionThenTheMedian(t *testing.T) {
	seq := Mode{Conc: 1}
	cases := []*Case{{Name: "ping"}, {Name: "bb-fast-closed"}}
	// PING is slow in repetition 1 only; the case's ratios are 0.5, 0.1, 0.5.
	pingNs := []float64{100, 1000, 100}
	caseNs := []float64{50, 100, 50}
	var ms []Measure
	for rep := 0; rep < 3; rep++ {
		ms = append(ms,
			Measure{Case: "ping", Mode: seq, Rep: rep, Calls: 10, NsPerOp: pingNs[rep], PerSec: 1e9 / pingNs[rep], P50: time.Duration(pingNs[rep])},
			Measure{Case: "bb-fast-closed", Mode: seq, Rep: rep, Calls: 10, NsPerOp: caseNs[rep], PerSec: 1e9 / caseNs[rep],
				P50: time.Duration(caseNs[rep]), Checked: true, Exact: rep != 2, Note: map[bool]string{true: "", false: "recorded 9 of 10 calls"}[rep != 2]})
	}
	rows := Aggregate(ms, cases, []Mode{seq, {Conc: 8}})
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2 (no row for a mode without measures)", len(rows))
	}
	r, ok := FindRow(rows, "bb-fast-closed", seq)
	if !ok {
		t.Fatal("row missing")
	}
	if r.NsRatio != 0.5 || r.P50Ratio != 0.5 || r.TputRatio != 2 {
		t.Errorf("ratios %v %v %v, want the median of per-repetition ratios 0.5, 0.5, 2", r.NsRatio, r.P50Ratio, r.TputRatio)
	}
	if r.NsPerOp != 50 || r.Calls != 30 || r.Reps != 3 {
		t.Errorf("row %+v", r)
	}
	if r.Exact || r.Note != "recorded 9 of 10 calls" {
		t.Errorf("one inexact repetition must make the row inexact: %v %q", r.Exact, r.Note)
	}
	if p, _ := FindRow(rows, "ping", seq); p.Checked || p.NsRatio != 1 {
		t.Errorf("ping row %+v", p)
	}
}

func TestAggregateWithoutPingHasNoRatios(t *testing.T) {
	rows := Aggregate([]Measure{{Case: "x", Mode: Mode{Conc: 1}, NsPerOp: 5}}, []*Case{{Name: "x"}}, []Mode{{Conc: 1}})
	if len(rows) != 1 || !math.IsNaN(rows[0].NsRatio) || ratioText(rows[0].NsRatio) != "–" {
		t.Errorf("rows %+v", rows)
	}
}

func TestSummarizeComputesPerCallCostsAndExactness(t *testing.T) {
	h := NewHistogram()
	h.Record(time.Microsecond)
	results := []cellResult{
		{Calls: 60, Hist: h, Elapsed: 30 * time.Millisecond, Client: Counts{RoundTrips: 130, Commands: 150, CallerRoundTrips: 120}, Local: -1},
		{Calls: 40, Hist: NewHistogram(), Elapsed: 50 * time.Millisecond, Client: Counts{RoundTrips: 80, Commands: 90, CallerRoundTrips: 80}, Local: -1},
	}
	s0 := ServerSnapshot{Cmds: CommandStats{"evalsha": {10, 100}, "info": {1, 50}}, CPUSec: 1}
	s1 := ServerSnapshot{Cmds: CommandStats{"evalsha": {210, 2100}, "get": {300, 300}, "info": {2, 100}}, CPUSec: 1.001}
	m := summarize(&Case{Name: "c"}, Mode{Conc: 1}, 0, results, s0, s1, true, 99)
	want := Measure{Calls: 100, NsPerOp: 5e5, RTPerCall: 2.1, CallerRTPerCall: 2, CmdsPerCall: 2.4,
		SrvCmdsPerCall: 5, ScriptsPerCall: 2, ScriptUsPerCall: 20}
	if m.Calls != want.Calls || m.NsPerOp != want.NsPerOp || m.RTPerCall != want.RTPerCall ||
		m.CallerRTPerCall != want.CallerRTPerCall || m.CmdsPerCall != want.CmdsPerCall ||
		m.SrvCmdsPerCall != want.SrvCmdsPerCall || m.ScriptsPerCall != want.ScriptsPerCall ||
		m.ScriptUsPerCall != want.ScriptUsPerCall {
		t.Errorf("got %+v", m)
	}
	if math.Abs(m.CPUUsPerCall-10) > 1e-6 || math.Abs(m.PerSec-2000) > 1e-9 {
		t.Errorf("cpu µs/call %v (want 10), calls/s %v (want 2000: slowest worker's elapsed)", m.CPUUsPerCall, m.PerSec)
	}
	if !m.Checked || m.Exact || m.Note != "recorded 99 of 100 calls" {
		t.Errorf("exactness %v %v %q", m.Checked, m.Exact, m.Note)
	}
	results[0].Local, results[1].Local = 60, 40
	if m := summarize(&Case{}, Mode{}, 0, results, s0, s1, false, 0); !m.Checked || !m.Exact || m.Recorded != 100 {
		t.Errorf("local counts summed over workers: %+v", m)
	}
	results[0].Local, results[1].Local = -1, -1
	if m := summarize(&Case{}, Mode{}, 0, results, s0, s1, false, 0); m.Checked {
		t.Error("nothing to check, yet checked")
	}
}

func TestTargetsAreMetOrMissedByTheNumbers(t *testing.T) {
	seq, c64 := Mode{Conc: 1}, Mode{Conc: 64}
	r := &Report{Modes: []Mode{seq, c64}, Rows: []Row{
		{Case: "bb-fast-closed", Mode: seq, P50Ratio: 0.03, NsRatio: 1.3, Checked: true, Exact: true},
		{Case: "bb-fast-closed", Mode: c64, TputRatio: 0.69, Checked: true, Exact: true},
		{Case: "bb-fast-open", Mode: seq, CallerRTPerCall: 0, RTPerCall: 0.0001, Checked: true, Exact: true},
		{Case: "bb-strict-closed", Mode: seq, CallerRTPerCall: 2, Checked: true, Exact: false, Note: "recorded 1 of 2 calls", ScriptUsPerCall: 19},
		{Case: "bb-strict-closed", Mode: c64, CallerRTPerCall: 2, Checked: true, Exact: true, ScriptUsPerCall: 25, TputRatio: 0.4},
	},
		Propagation: []Propagation{{Where: "x", P50: 100 * time.Microsecond, P99: 2 * time.Millisecond, Trips: 9}},
		Memory: []BreakerMemory{{Scenario: "full history: 100 transitions (50 trips + 50 resets), 41-byte errors (no alert daemon)", Total: 9000},
			{Scenario: "registered, 20 successes, never failed (no alert daemon)", Total: 700}},
		Scales: []Scale{{Breakers: 10, R2: 0.9999, ListMedian: 2 * time.Second, Listed: 10, Points: [][2]float64{{0, 0}}}},
	}
	targets := r.Targets()
	for prefix, want := range map[string]bool{
		"closed, sequential, default (Fast) mode":             false, // ns/op ratio 1.3 > 1.2
		"closed, 64 callers, Fast":                            false,
		"open, Fast":                                          true,
		"Strict":                                              true,
		"counts exact in every mode":                          false,
		"trip reaches another worker (x)":                     false,
		"issue 10: a full 100-event history, ~40-byte errors": true,
		"issue 10: a registered breaker":                      false,
		"issue 10: the script's Redis CPU per Strict call (allow + record, commandstats), 1 ": true,
		"issue 10: the script's Redis CPU per Strict call (allow + record, commandstats), 64": false,
		"issue 10: Strict, closed, 64 callers":                                                false,
		"10 breakers, no alert daemon: memory grows linearly":                                 true,
		"10 breakers, no alert daemon: admin.List < 1 s":                                      false,
	} {
		found := false
		for _, tg := range targets {
			if strings.HasPrefix(tg.Goal, prefix) {
				found = true
				if tg.Met != want {
					t.Errorf("%s: met %v, want %v (%s)", tg.Goal, tg.Met, want, tg.Measured)
				}
			}
		}
		if !found {
			t.Errorf("no target starting %q", prefix)
		}
	}
	var b strings.Builder
	r.Write(&b)
	for _, s := range []string{"### Speed", "### Cost per call", "### Trip propagation", "### Memory per breaker", "### Targets", "| **no** |"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("report lacks %q", s)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		731: "731ns", 26751: "26.8µs", 136191: "136µs", 1_204_000: "1.20ms", 52_700_000: "52.7ms", 2 * time.Second: "2.00s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%d) = %q, want %q", d, got, want)
		}
	}
}
