package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// mixWorker is one process of TestFailureRateOpensExactlyWhenTheFleetCrossesIt.
type mixWorker struct {
	lang   string // go-fast, go-strict or python
	plan   string
	report workerReport
}

// runMix runs every worker's plan at once, each in its own process, and
// waits for them all.
func runMix(t *testing.T, spec workerSpec, py string, workers []*mixWorker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, w := range workers {
		var cmd *exec.Cmd
		if w.lang == "python" {
			cmd = exec.CommandContext(ctx, py, filepath.Join(pythonDir, "conformance.py"), "mix", "--addr", spec.Addr,
				"--name", spec.Name, "--plan", w.plan, "--script", filepath.Join("..", "lua", breakerbox.BreakerScript.File))
		} else {
			s := spec
			s.ID, s.Plan, s.Strict = i+1, w.plan, w.lang == "go-strict"
			data, _ := json.Marshal(s)
			cmd = exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), workerEnv+"="+string(data))
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", w.lang, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := cmd.Wait()
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &w.report)
			if err != nil || jerr != nil || w.report.Error != "" || w.report.Unrecorded != 0 {
				mu.Lock()
				t.Errorf("%s worker: exit %v, decode %v, report %+v\nstderr:\n%s", w.lang, err, jerr, w.report, stderr.String())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// TestFailureRateOpensExactlyWhenTheFleetCrossesIt: Go workers (Fast and
// Strict admission, through the client package) and the standard-library
// Python worker report a known mix of outcomes to one breaker on a real
// redis-server, at the same time, and the breaker opens on exactly the
// outcome that brings the fleet-wide failure rate to the threshold.
//
// The breaker: "open at 50% failures over the last 1000 calls, with at
// least 100 calls" (consecutive failures out of the way). Phase 1: the
// workers report 70 successes and 30 failures, interleaved in every
// process: 100 calls at 30%, under the threshold at the minimum, so the
// breaker stays closed whatever order the processes' outcomes arrive in.
// Phase 2: they report 14, 13 and 13 failures at once. 69 failures of 139
// calls is 49.6%, so the breaker opens on exactly the 40th of them (70 of
// 140), whichever process sends it last, and not before: every one of
// them is admitted and counted. Phase 3: more failures are refused, or
// stale when admitted before a worker learnt of the opening (totals only,
// never the window).
func TestFailureRateOpensExactlyWhenTheFleetCrossesIt(t *testing.T) {
	py, err := pythonPath()
	if err != nil {
		if os.Getenv("BREAKERBOX_REQUIRE_REDIS") == "1" {
			t.Fatalf("python3 is required for the Python worker: %v", err)
		}
		t.Skipf("python3 not found: %v", err)
	}
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	spec := workerSpec{Addr: srv.Addr, Name: "fleet-rate", Threshold: 1_000_000, Recovery: 60_000, Successes: 2,
		MaxProbes: 2, Request: 5000, WindowCalls: 1000, FailureRate: 50, MinCalls: 100}
	if _, err := admin.Configure(ctx, rdb, spec.Name, spec.config(), "conformance"); err != nil {
		t.Fatal(err)
	}
	status := func(phase string) breakerbox.Status {
		st, err := admin.Status(ctx, rdb, spec.Name)
		if err != nil {
			t.Fatalf("%s: %v", phase, err)
		}
		return st
	}
	const rule = "failure rate 50% >= 50% over the last 1000 calls, 140 calls"

	phase1 := []*mixWorker{
		{lang: "go-strict", plan: strings.Repeat("ssf", 15)},         // 30 s, 15 f
		{lang: "go-fast", plan: strings.Repeat("sfs", 10) + "sssss"}, // 25 s, 10 f
		{lang: "python", plan: strings.Repeat("sssf", 5)},            // 15 s, 5 f
	}
	runMix(t, spec, py, phase1)
	if st := status("phase 1"); st.State != breakerbox.StateClosed || st.CallsInWindow != 100 || st.FailuresInWindow != 30 {
		t.Fatalf("after phase 1: %s, window %d calls, %d failures; want closed, 100, 30", st.State, st.CallsInWindow, st.FailuresInWindow)
	}

	phase2 := []*mixWorker{
		{lang: "go-strict", plan: strings.Repeat("f", 14)},
		{lang: "go-fast", plan: strings.Repeat("f", 13)},
		{lang: "python", plan: strings.Repeat("f", 13)},
	}
	runMix(t, spec, py, phase2)
	for _, w := range phase2 {
		if w.report.Refused != 0 || w.report.Failures != int64(len(w.plan)) {
			t.Errorf("phase 2, %s: %d of %d failures admitted, %d refused: the breaker opened early",
				w.lang, w.report.Failures, len(w.plan), w.report.Refused)
		}
	}
	st := status("phase 2")
	if st.State != breakerbox.StateOpen || st.CallsInWindow != 140 || st.FailuresInWindow != 70 {
		t.Errorf("after phase 2: %s, window %d calls and %d failures; want open at exactly 140 and 70", st.State,
			st.CallsInWindow, st.FailuresInWindow)
	}
	xs, err := rdb.XRange(ctx, breakerbox.Key(spec.Name, "events"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(xs) != 1 || xs[0].Values["event"] != "opened" || xs[0].Values["detail"] != rule {
		t.Fatalf("stream %v: want exactly one opening, by the failure rate at 140 calls", xs)
	}

	phase3 := []*mixWorker{
		{lang: "go-strict", plan: "fffff"}, {lang: "go-fast", plan: "fffff"}, {lang: "python", plan: "fffff"},
	}
	runMix(t, spec, py, phase3)
	var reported, refused int64
	for _, w := range append(append(phase1, phase2...), phase3...) {
		reported += w.report.Failures
	}
	for _, w := range phase3 {
		refused += w.report.Refused
	}
	st = status("phase 3")
	if st.CallsInWindow != 140 || st.FailuresInWindow != 70 || st.TotalFailures != reported || st.TotalSuccesses != 70 ||
		st.TotalRefused < refused {
		t.Errorf("after phase 3: window %d/%d, totals %d failures (workers reported %d), %d successes, %d refused (workers %d)",
			st.CallsInWindow, st.FailuresInWindow, st.TotalFailures, reported, st.TotalSuccesses, st.TotalRefused, refused)
	}
	// The Python worker read the opening back through its history reader:
	// compact entries leave out a generation equal to ts, it fills it in.
	if h := phase3[2].report.History; len(h) != 1 || h[0]["event"] != "opened" || h[0]["generation"] != h[0]["ts"] ||
		h[0]["detail"] != rule {
		t.Errorf("the Python worker read the history as %v", h)
	}
	summary.note("trip rules: Go (Fast, Strict) and Python worker processes; the fleet's failure rate opened the breaker at exactly call 140 (70 failures of 140; 69 of 139 stayed closed); %d later failures admitted before workers learnt of it (stale), %d refused",
		reported-70, refused)
}
