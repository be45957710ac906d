package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// workerEnv, when set, makes the test binary run one worker (workerMain)
// instead of the tests: the concurrency test re-executes itself this way.
const workerEnv = "BREAKERBOX_CONFORMANCE_WORKER"

// workerSpec tells a worker process what to do.
type workerSpec struct {
	Addr      string `json:"addr"`
	Name      string `json:"name"`
	ID        int    `json:"id"`
	Calls     int    `json:"calls"`
	Seed      uint64 `json:"seed"`
	Strict    bool   `json:"strict"`
	WindowMs  int64  `json:"window_ms"`
	Threshold int    `json:"failure_threshold"`
	Recovery  int64  `json:"recovery_timeout_ms"`
	Successes int    `json:"success_threshold"`
	MaxProbes int    `json:"half_open_max_calls"`
	Request   int64  `json:"request_timeout_ms"`
	// Plan, when set, is a known mix to report instead of the simulated
	// upstream: one call per letter, s a success, f a failure (see
	// TestFailureRateOpensExactlyWhenTheFleetCrossesIt); the trip rules
	// below are the breaker's.
	Plan        string `json:"plan,omitempty"`
	WindowCalls int    `json:"window_calls,omitempty"`
	FailureRate int    `json:"failure_rate_threshold,omitempty"`
	MinCalls    int    `json:"minimum_calls,omitempty"`
}

// config is the breaker's config a spec describes.
func (s workerSpec) config() client.Config {
	cfg := client.Config{FailureThreshold: s.Threshold, RecoveryTimeout: time.Duration(s.Recovery) * time.Millisecond,
		SuccessThreshold: s.Successes, HalfOpenMaxCalls: s.MaxProbes, RequestTimeout: time.Duration(s.Request) * time.Millisecond,
		WindowCalls: s.WindowCalls, FailureRateThreshold: s.FailureRate, MinimumCalls: s.MinCalls}
	return cfg
}

// workerReport is what a worker (Go or Python) says it did.
type workerReport struct {
	Worker     string  `json:"worker"`
	Successes  int64   `json:"successes"`
	Failures   int64   `json:"failures"`
	Releases   int64   `json:"releases"`
	Refused    int64   `json:"refused"`
	Admitted   int64   `json:"admitted"`
	Unrecorded int64   `json:"unrecorded"`
	Probes     [][]any `json:"probes"` // [generation, lease, admitted unix ns, reporting unix ns]
	Error      string  `json:"error,omitempty"`
	// History is the breaker's newest history entry as the Python worker
	// reads it (mix mode).
	History []map[string]any `json:"history,omitempty"`
}

// outcomeFor is the simulated upstream shared by every worker process: down
// (failing 90% of calls) during alternate windows of the machine's wall
// clock, up (failing 10%) otherwise; 5% of calls never run (release).
func outcomeFor(rng *rand.Rand, windowMs int64) string {
	down := (time.Now().UnixMilli()/windowMs)%2 == 0
	roll := rng.Float64()
	switch {
	case roll < 0.05:
		return "r"
	case (down && roll < 0.9) || (!down && roll < 0.1):
		return "f"
	}
	return "s"
}

// workerMain runs one Go worker through the client package and prints its
// report as JSON. It is the whole program of a re-executed test binary.
func workerMain(specJSON string) int {
	var spec workerSpec
	rep := workerReport{Worker: "go"}
	emit := func(code int) int {
		data, _ := json.Marshal(rep)
		fmt.Println(string(data))
		return code
	}
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		rep.Error = "bad spec: " + err.Error()
		return emit(2)
	}
	rep.Worker = fmt.Sprintf("go-%d", spec.ID)
	rdb := redis.NewClient(&redis.Options{Addr: spec.Addr})
	defer rdb.Close()
	cfg := spec.config()
	adm := client.AdmitFast
	if spec.Strict {
		adm = client.AdmitStrict
		rep.Worker += "-strict"
	}
	b, err := client.New(rdb, spec.Name, cfg, client.WithAdmission(adm), client.WithActor(rep.Worker),
		client.WithRedisTimeout(2*time.Second), client.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		rep.Error = err.Error()
		return emit(2)
	}
	ctx := context.Background()
	if spec.Plan != "" {
		return emit(runPlan(ctx, b, spec.Plan, &rep))
	}
	rng := rand.New(rand.NewPCG(spec.Seed, uint64(spec.ID)))
	for i := 0; i < spec.Calls; i++ {
		p, err := b.Allow(ctx)
		if errors.Is(err, client.ErrOpen) {
			rep.Refused++
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			rep.Error = "allow: " + err.Error()
			return emit(1)
		}
		rep.Admitted++
		tAdmit := time.Now().UnixNano()
		time.Sleep(200 * time.Microsecond) // the protected call
		kind := outcomeFor(rng, spec.WindowMs)
		tReport := time.Now().UnixNano()
		switch kind {
		case "s":
			err = p.Success(ctx)
			rep.Successes++
		case "f":
			err = p.Failure(ctx, errors.New("go worker failure"))
			rep.Failures++
		default:
			err = p.Ignore(ctx)
			rep.Releases++
		}
		if err != nil {
			rep.Error = "outcome: " + err.Error()
			return emit(1)
		}
		if p.Probe() {
			rep.Probes = append(rep.Probes, []any{p.Generation(), "", tAdmit, tReport})
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.Shutdown(cctx); err != nil {
		rep.Error = "close: " + err.Error()
		return emit(1)
	}
	rep.Unrecorded = b.Stats().Unrecorded
	return emit(0)
}

// runPlan reports a known mix through b, one call per letter of plan (s a
// success, f a failure), and shuts b down (its outcomes delivered).
func runPlan(ctx context.Context, b *client.Breaker, plan string, rep *workerReport) int {
	for _, c := range plan {
		p, err := b.Allow(ctx)
		if errors.Is(err, client.ErrOpen) {
			rep.Refused++
			continue
		}
		if err != nil {
			rep.Error = "allow: " + err.Error()
			return 1
		}
		rep.Admitted++
		if c == 'f' {
			err = p.Failure(ctx, errors.New("go mix failure"))
			rep.Failures++
		} else {
			err = p.Success(ctx)
			rep.Successes++
		}
		if err != nil {
			rep.Error = "outcome: " + err.Error()
			return 1
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.Shutdown(cctx); err != nil {
		rep.Error = "shutdown: " + err.Error()
		return 1
	}
	rep.Unrecorded = b.Stats().Unrecorded
	return 0
}

// concurrencyConfig is the shared config of the concurrency trials: short
// recovery so that a trial goes through many cycles; probe leases that
// outlive any call, so that the probe limit is the only thing that frees
// a slot.
var concurrencyConfig = workerSpec{Threshold: 3, Recovery: 30, Successes: 2, MaxProbes: 2, Request: 5000,
	Calls: 150, WindowMs: 40} // about 25 transitions a trial: the stream keeps the last 100

// TestConcurrencyExactAcrossProcesses runs Go worker processes (half with
// Fast admission, half Strict) and the Python worker against one breaker
// on a real redis-server, -trials times (default 2; -trials=100 for the
// long run), and checks after each trial that every reported outcome was
// counted exactly once, that the breaker opened on exactly the
// failure_threshold-th consecutive failure, that half-open never held more
// probes at once than half_open_max_calls, and that every transition wrote
// exactly one stream entry.
func TestConcurrencyExactAcrossProcesses(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	py := ""
	if p, err := pythonPath(); err == nil {
		py = p
	} else if os.Getenv("BREAKERBOX_REQUIRE_REDIS") == "1" {
		t.Fatalf("python3 is required for the Python worker: %v", err)
	} else {
		t.Logf("no python3 (%v): running Go workers only", err)
	}
	const goWorkers = 4
	var totals struct{ successes, failures, refused, transitions, opened, closed int64 }
	for trial := 1; trial <= *flagTrials; trial++ {
		spec := concurrencyConfig
		spec.Addr, spec.Name = srv.Addr, "concurrency-"+strconv.Itoa(trial)
		reports := runWorkers(t, spec, goWorkers, py, uint64(trial))
		st := checkTrial(t, rdb, spec, reports)
		totals.successes += st.successes
		totals.failures += st.failures
		totals.refused += st.refused
		totals.transitions += st.transitions
		totals.opened += st.opened
		totals.closed += st.closed
		t.Logf("trial %d: %d workers, %d successes, %d failures, %d refused, %d transitions (%d opened, %d closed), at most %d probes at once",
			trial, len(reports), st.successes, st.failures, st.refused, st.transitions, st.opened, st.closed, st.maxProbes)
		if t.Failed() {
			break
		}
	}
	summary.note("concurrency: %d trials on real Redis, %d Go + %d Python workers each: %d successes, %d failures, %d refused, %d transitions (%d openings, %d closings), all exact",
		*flagTrials, goWorkers, map[bool]int{true: 1, false: 0}[py != ""], totals.successes, totals.failures, totals.refused,
		totals.transitions, totals.opened, totals.closed)
}

func pythonPath() (string, error) {
	if p := os.Getenv("BREAKERBOX_PYTHON"); p != "" {
		return p, nil
	}
	return exec.LookPath("python3")
}

// runWorkers starts every worker process at once and collects their reports.
func runWorkers(t *testing.T, spec workerSpec, goWorkers int, py string, seed uint64) []workerReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cmds []*exec.Cmd
	for i := 0; i < goWorkers; i++ {
		s := spec
		s.ID, s.Seed, s.Strict = i+1, seed, i%2 == 1
		data, _ := json.Marshal(s)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), workerEnv+"="+string(data))
		cmds = append(cmds, cmd)
	}
	if py != "" {
		cmds = append(cmds, exec.CommandContext(ctx, py, filepath.Join(pythonDir, "conformance.py"), "worker",
			"--addr", spec.Addr, "--name", spec.Name, "--calls", strconv.Itoa(spec.Calls),
			"--seed", strconv.FormatUint(seed, 10), "--window-ms", strconv.FormatInt(spec.WindowMs, 10),
			"--script", filepath.Join("..", "lua", breakerbox.BreakerScript.File)))
	}
	// The Go workers register the config on first use; the Python worker
	// does not, so store it first.
	if _, err := admin.Configure(ctx, redis.NewClient(&redis.Options{Addr: spec.Addr}), spec.Name, spec.config(), "conformance"); err != nil {
		t.Fatal(err)
	}
	reports := make([]workerReport, len(cmds))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, cmd := range cmds {
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatalf("start worker %d: %v", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := cmd.Wait()
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			var rep workerReport
			jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &rep)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil || jerr != nil || rep.Error != "":
				t.Errorf("worker %d (%s): exit %v, report error %q, decode %v\nstdout:\n%s\nstderr:\n%s",
					i, cmd.Path, err, rep.Error, jerr, stdout.String(), stderr.String())
			default:
				reports[i] = rep
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return reports
}

type trialStats struct {
	successes, failures, refused, transitions, opened, closed int64
	maxProbes                                                 int
}

// checkTrial compares what the workers reported with what Redis recorded.
func checkTrial(t *testing.T, rdb *redis.Client, spec workerSpec, reports []workerReport) trialStats {
	t.Helper()
	ctx := context.Background()
	var st trialStats
	type interval struct{ start, end int64 }
	probes := map[int64][]interval{}
	for _, r := range reports {
		st.successes += r.Successes
		st.failures += r.Failures
		st.refused += r.Refused
		if r.Unrecorded != 0 {
			t.Errorf("%s: %d outcomes unrecorded (Redis was up the whole time)", r.Worker, r.Unrecorded)
		}
		for _, p := range r.Probes {
			gen, _ := asInt64(number(p[0]))
			a, _ := asInt64(number(p[2]))
			b, _ := asInt64(number(p[3]))
			probes[gen] = append(probes[gen], interval{a, b})
		}
	}
	status, err := admin.Status(ctx, rdb, spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	if status.TotalSuccesses != st.successes || status.TotalFailures != st.failures || status.TotalRefused != st.refused {
		t.Errorf("Redis recorded %d successes, %d failures, %d refused; workers reported %d, %d, %d",
			status.TotalSuccesses, status.TotalFailures, status.TotalRefused, st.successes, st.failures, st.refused)
	}

	// Probes certainly held at the same time, per half-open generation: a
	// probe's lease is held from before Allow returned until after its
	// outcome was sent, so the open intervals [admitted, reporting] are
	// inside the real holding times; more than half_open_max_calls of them
	// overlapping is a proven violation.
	for gen, ivs := range probes {
		type edge struct {
			at    int64
			delta int
		}
		var edges []edge
		for _, iv := range ivs {
			edges = append(edges, edge{iv.start, +1}, edge{iv.end, -1})
		}
		sort.Slice(edges, func(i, j int) bool {
			if edges[i].at != edges[j].at {
				return edges[i].at < edges[j].at
			}
			return edges[i].delta < edges[j].delta // closing before opening at the same instant
		})
		n := 0
		for _, e := range edges {
			n += e.delta
			st.maxProbes = max(st.maxProbes, n)
			if n > spec.MaxProbes {
				t.Errorf("generation %d: %d probes held at once, half_open_max_calls is %d", gen, n, spec.MaxProbes)
				break
			}
		}
	}

	xs, err := rdb.XRange(ctx, breakerbox.Key(spec.Name, "events"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	st.transitions = int64(len(xs))
	if status.Transitions > 100 {
		t.Fatalf("%d transitions: more than the stream keeps; shorten the trial", status.Transitions)
	}
	if int64(len(xs)) != status.Transitions {
		t.Errorf("stream holds %d entries, status says %d transitions: want exactly one entry per transition", len(xs), status.Transitions)
	}
	prevTo, prevGen := "closed", int64(0)
	for i, x := range xs {
		f := func(k string) string { s, _ := x.Values[k].(string); return s }
		g, _ := strconv.ParseInt(f("generation"), 10, 64)
		if g <= prevGen || f("transitions") != strconv.Itoa(i+1) {
			t.Errorf("stream entry %d (%s) has generation %s after %d and transitions %s, want increasing generations and transitions %d",
				i, x.ID, f("generation"), prevGen, f("transitions"), i+1)
			break
		}
		prevGen = g
		if f("from") != prevTo {
			t.Errorf("stream entry %d (%s): from %s, but the previous transition went to %s", i, x.ID, f("from"), prevTo)
		}
		prevTo = f("to")
		switch f("event") {
		case "opened":
			st.opened++
			if f("from") == "closed" && f("failures") != strconv.Itoa(spec.Threshold) {
				t.Errorf("stream entry %d (%s): opened from closed with failures %s, want exactly %d", i, x.ID, f("failures"), spec.Threshold)
			}
		case "closed":
			st.closed++
			if f("from") != "half_open" {
				t.Errorf("stream entry %d (%s): closed from %s", i, x.ID, f("from"))
			}
		case "half_opened":
			if f("from") != "open" {
				t.Errorf("stream entry %d (%s): half_opened from %s", i, x.ID, f("from"))
			}
		default:
			t.Errorf("stream entry %d (%s): unexpected event %s (no operator acted)", i, x.ID, f("event"))
		}
	}
	if st.opened == 0 || st.closed == 0 {
		t.Errorf("the trial never went through a full cycle (opened %d, closed %d): it proved little", st.opened, st.closed)
	}
	return st
}
