package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/client/metrics"
)

var quiet = slog.New(slog.DiscardHandler)

func setup(t *testing.T) (*miniredis.Miniredis, *redis.Client) {
	t.Helper()
	mr := miniredis.RunT(t)
	mr.SetTime(time.Date(2025, 10, 25, 11, 30, 0, 0, time.UTC))
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	return mr, rdb
}

// run registers breaker name and records outcomes: s success, f failure,
// x a call the breaker refuses.
func run(t *testing.T, rdb *redis.Client, name, outcomes string) *client.Breaker {
	t.Helper()
	ctx := context.Background()
	b, err := client.New(rdb, name, client.DefaultConfig(), client.WithAdmission(client.AdmitStrict), client.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	if _, err := admin.Control(ctx, rdb, name, breakerbox.ActionReset, "test"); err != nil { // makes the breaker exist even without outcomes
		t.Fatal(err)
	}
	for i, o := range outcomes {
		p, err := b.Allow(ctx)
		if o == 'x' {
			if !errors.Is(err, client.ErrOpen) {
				t.Fatalf("outcome %d: want a refusal, got %v", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("outcome %d: %v", i, err)
		}
		if o == 's' {
			_ = p.Success(ctx)
		} else {
			_ = p.Failure(ctx, errors.New("timeout"))
		}
	}
	return b
}

func collector(t *testing.T, rdb redis.UniversalClient, opts ...metrics.Option) *metrics.Collector {
	t.Helper()
	c, err := metrics.NewCollector(rdb, append([]metrics.Option{metrics.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLintClean(t *testing.T) {
	_, rdb := setup(t)
	run(t, rdb, "svc", "sff")
	problems, err := testutil.CollectAndLint(collector(t, rdb))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// breakerSeries are the per-breaker series, the duration left out (it varies).
var breakerSeries = []string{"circuit_breaker_state", "circuit_breaker_mode", "circuit_breaker_failures",
	"circuit_breaker_failure_threshold", "circuit_breaker_total_requests", "circuit_breaker_success_rate",
	"circuit_breaker_successes_total", "circuit_breaker_failures_total", "circuit_breaker_refused_total",
	"circuit_breaker_transitions_total", "circuit_breaker_scrape_error"}

func TestSeriesOfBreakersInEveryStateAndMode(t *testing.T) {
	mr, rdb := setup(t)
	ctx := context.Background()
	run(t, rdb, "openai_transcription", "sfffx") // reset, success, 3 failures open it, 1 refused
	run(t, rdb, "anthropic_api", "ss")
	run(t, rdb, "s3", "")
	if _, err := admin.Control(ctx, rdb, "s3", breakerbox.ActionForceOpen, "test"); err != nil {
		t.Fatal(err)
	}
	run(t, rdb, "legacy", "f")
	if _, err := admin.Control(ctx, rdb, "legacy", breakerbox.ActionDisable, "test"); err != nil {
		t.Fatal(err)
	}
	rec := run(t, rdb, "recovering", "fff")
	mr.SetTime(time.Date(2025, 10, 25, 11, 31, 0, 0, time.UTC)) // past the 30s recovery timeout
	p, err := rec.Allow(ctx)                                    // the first half-open probe
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Success(ctx) // one of the two successes that close it

	want := `
# HELP circuit_breaker_failure_threshold Consecutive failures that open the breaker.
# TYPE circuit_breaker_failure_threshold gauge
circuit_breaker_failure_threshold{service="anthropic_api"} 3
circuit_breaker_failure_threshold{service="legacy"} 3
circuit_breaker_failure_threshold{service="openai_transcription"} 3
circuit_breaker_failure_threshold{service="recovering"} 3
circuit_breaker_failure_threshold{service="s3"} 3
# HELP circuit_breaker_failures Current consecutive failures.
# TYPE circuit_breaker_failures gauge
circuit_breaker_failures{service="anthropic_api"} 0
circuit_breaker_failures{service="legacy"} 0
circuit_breaker_failures{service="openai_transcription"} 3
circuit_breaker_failures{service="recovering"} 0
circuit_breaker_failures{service="s3"} 0
# HELP circuit_breaker_failures_total Calls recorded as failures.
# TYPE circuit_breaker_failures_total counter
circuit_breaker_failures_total{service="anthropic_api"} 0
circuit_breaker_failures_total{service="legacy"} 1
circuit_breaker_failures_total{service="openai_transcription"} 3
circuit_breaker_failures_total{service="recovering"} 3
circuit_breaker_failures_total{service="s3"} 0
# HELP circuit_breaker_mode Operator override: 0 normal, 1 forced_open, 2 disabled.
# TYPE circuit_breaker_mode gauge
circuit_breaker_mode{service="anthropic_api"} 0
circuit_breaker_mode{service="legacy"} 2
circuit_breaker_mode{service="openai_transcription"} 0
circuit_breaker_mode{service="recovering"} 0
circuit_breaker_mode{service="s3"} 1
# HELP circuit_breaker_refused_total Calls the breaker refused (open, probes taken, forced open).
# TYPE circuit_breaker_refused_total counter
circuit_breaker_refused_total{service="anthropic_api"} 0
circuit_breaker_refused_total{service="legacy"} 0
circuit_breaker_refused_total{service="openai_transcription"} 1
circuit_breaker_refused_total{service="recovering"} 0
circuit_breaker_refused_total{service="s3"} 0
# HELP circuit_breaker_scrape_error 1 when the last scrape could not read the breakers from Redis, else 0.
# TYPE circuit_breaker_scrape_error gauge
circuit_breaker_scrape_error 0
# HELP circuit_breaker_state Breaker state: 0 closed, 1 open, 2 half_open.
# TYPE circuit_breaker_state gauge
circuit_breaker_state{service="anthropic_api"} 0
circuit_breaker_state{service="legacy"} 0
circuit_breaker_state{service="openai_transcription"} 1
circuit_breaker_state{service="recovering"} 2
circuit_breaker_state{service="s3"} 1
# HELP circuit_breaker_success_rate Percent of recorded outcomes that succeeded (100 before any).
# TYPE circuit_breaker_success_rate gauge
circuit_breaker_success_rate{service="anthropic_api"} 100
circuit_breaker_success_rate{service="legacy"} 0
circuit_breaker_success_rate{service="openai_transcription"} 25
circuit_breaker_success_rate{service="recovering"} 25
circuit_breaker_success_rate{service="s3"} 100
# HELP circuit_breaker_successes_total Calls recorded as successes.
# TYPE circuit_breaker_successes_total counter
circuit_breaker_successes_total{service="anthropic_api"} 2
circuit_breaker_successes_total{service="legacy"} 0
circuit_breaker_successes_total{service="openai_transcription"} 1
circuit_breaker_successes_total{service="recovering"} 1
circuit_breaker_successes_total{service="s3"} 0
# HELP circuit_breaker_total_requests Calls seen by the breaker: successes, failures and refused calls.
# TYPE circuit_breaker_total_requests gauge
circuit_breaker_total_requests{service="anthropic_api"} 2
circuit_breaker_total_requests{service="legacy"} 1
circuit_breaker_total_requests{service="openai_transcription"} 5
circuit_breaker_total_requests{service="recovering"} 4
circuit_breaker_total_requests{service="s3"} 0
# HELP circuit_breaker_transitions_total Changes of state or mode: every transition and every operator action (the breaker's generation).
# TYPE circuit_breaker_transitions_total counter
circuit_breaker_transitions_total{service="anthropic_api"} 1
circuit_breaker_transitions_total{service="legacy"} 2
circuit_breaker_transitions_total{service="openai_transcription"} 2
circuit_breaker_transitions_total{service="recovering"} 3
circuit_breaker_transitions_total{service="s3"} 2
`
	if err := testutil.CollectAndCompare(collector(t, rdb), strings.NewReader(want), breakerSeries...); err != nil {
		t.Error(err)
	}
}

func TestWithNamesExportsOnlyThose(t *testing.T) {
	_, rdb := setup(t)
	run(t, rdb, "a", "fff")
	run(t, rdb, "b", "")
	want := `
# HELP circuit_breaker_state Breaker state: 0 closed, 1 open, 2 half_open.
# TYPE circuit_breaker_state gauge
circuit_breaker_state{service="a"} 1
circuit_breaker_state{service="never_used"} 0
`
	c := collector(t, rdb, metrics.WithNames("a", "never_used"))
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "circuit_breaker_state"); err != nil {
		t.Error(err)
	}
}

func TestValuesAreReadAtScrapeTime(t *testing.T) {
	_, rdb := setup(t)
	b := run(t, rdb, "svc", "")
	c := collector(t, rdb)
	state := func() float64 {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(c)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "circuit_breaker_state" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no circuit_breaker_state")
		return -1
	}
	if got := state(); got != 0 {
		t.Errorf("before: %v", got)
	}
	if _, err := admin.Control(context.Background(), rdb, b.Name(), breakerbox.ActionForceOpen, "test"); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != 1 {
		t.Errorf("after force open: %v", got)
	}
}

func TestRedisDownGivesScrapeErrorAndNoBreakerSeries(t *testing.T) {
	mr, rdb := setup(t)
	run(t, rdb, "svc", "s")
	c := collector(t, rdb, metrics.WithTimeout(time.Second))
	mr.Close()
	want := `
# HELP circuit_breaker_scrape_error 1 when the last scrape could not read the breakers from Redis, else 0.
# TYPE circuit_breaker_scrape_error gauge
circuit_breaker_scrape_error 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), breakerSeries...); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c); n != 2 {
		t.Errorf("%d series while Redis is down, want 2 (error and duration)", n)
	}
	// The scrape itself succeeds, so Prometheus keeps the error series.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if _, err := reg.Gather(); err != nil {
		t.Errorf("gather failed: %v", err)
	}
}

// roundTrips counts the commands and pipelines sent through a client.
type roundTrips struct {
	cmds []string // command names; "pipeline of N" for a pipeline
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.cmds = append(r.cmds, cmd.Name())
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.cmds = append(r.cmds, fmt.Sprintf("pipeline of %d", len(cmds)))
		return next(ctx, cmds)
	}
}

func TestAScrapeOfAThousandBreakersIsAFewRoundTrips(t *testing.T) {
	_, rdb := setup(t)
	ctx := context.Background()
	names := make([]string, 1000)
	pipe := rdb.Pipeline()
	for i := range names {
		names[i] = fmt.Sprintf("svc-%04d", i)
		pipe.SAdd(ctx, "circuit_breaker:registry", names[i])
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// The status script has been read once on this client, which loads it
	// and learns what the server needs (miniredis: no shebang, no usable
	// EVALSHA_RO). On a server that lost it, the first scrape sends the
	// pipeline again after one SCRIPT LOAD.
	if err := breakerbox.StatusScript.Run(ctx, rdb, breakerbox.Keys(names[0]), "status").Err(); err != nil {
		t.Fatal(err)
	}
	rt := &roundTrips{}
	rdb.AddHook(rt)
	for _, tt := range []struct {
		name string
		opts []metrics.Option
	}{
		{"fixed names", []metrics.Option{metrics.WithNames(names...)}},
		{"all breakers", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rt.cmds = nil
			if n := testutil.CollectAndCount(collector(t, rdb, tt.opts...), "circuit_breaker_state"); n != 1000 {
				t.Fatalf("%d breakers exported, want 1000", n)
			}
			// Connection set-up (hello, client setinfo) aside, the statuses
			// travel in one pipeline: no EVALSHA of its own per breaker.
			pipelines, single := 0, 0
			for _, c := range rt.cmds {
				switch c {
				case "pipeline of 1000":
					pipelines++
				case "evalsha", "eval":
					single++
				}
			}
			if pipelines != 1 || single != 0 {
				t.Errorf("round trips %v: want one pipeline of 1000 status reads", rt.cmds)
			}
		})
	}
}

func TestNewCollectorRejectsBadOptions(t *testing.T) {
	_, rdb := setup(t)
	for name, opts := range map[string][]metrics.Option{
		"bad name":     {metrics.WithNames("x{y}")},
		"no names":     {metrics.WithNames()},
		"zero timeout": {metrics.WithTimeout(0)},
	} {
		if _, err := metrics.NewCollector(rdb, opts...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := metrics.NewCollector(nil); err == nil {
		t.Error("nil client accepted")
	}
}

func TestABreakerWithAnInvalidConfigDoesNotHideTheOthers(t *testing.T) {
	_, rdb := setup(t)
	run(t, rdb, "good", "fff")
	run(t, rdb, "broken", "")
	if err := rdb.HSet(context.Background(), "circuit_breaker:{broken}:config", "failure_threshold", "0").Err(); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP circuit_breaker_scrape_error 1 when the last scrape could not read the breakers from Redis, else 0.
# TYPE circuit_breaker_scrape_error gauge
circuit_breaker_scrape_error 1
# HELP circuit_breaker_state Breaker state: 0 closed, 1 open, 2 half_open.
# TYPE circuit_breaker_state gauge
circuit_breaker_state{service="good"} 1
`
	err := testutil.CollectAndCompare(collector(t, rdb), strings.NewReader(want), "circuit_breaker_state", "circuit_breaker_scrape_error")
	if err != nil {
		t.Error(err)
	}
}

func TestWindowRatesOfBreakersWithAWindow(t *testing.T) {
	_, rdb := setup(t)
	ctx := context.Background()
	run(t, rdb, "plain", "sf")
	cfg := breakerbox.DefaultConfig()
	cfg.FailureThreshold, cfg.WindowCalls, cfg.FailureRateThreshold, cfg.MinimumCalls = 100, 100, 90, 50
	cfg.SlowCallDuration = time.Hour // no call here is slow
	b, err := client.New(rdb, "windowed", cfg, client.WithAdmission(client.AdmitStrict), client.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(ctx)
	if err := b.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for _, fail := range []bool{false, false, true, false, true, false, false, false} { // 2 of 8 fail
		_ = b.Execute(ctx, func(context.Context) error {
			if fail {
				return errors.New("503")
			}
			return nil
		})
	}
	want := `
# HELP circuit_breaker_failure_rate Percent of the window's calls that failed (the failure-rate rule's measure).
# TYPE circuit_breaker_failure_rate gauge
circuit_breaker_failure_rate{service="windowed"} 25
# HELP circuit_breaker_slow_call_rate Percent of the window's calls at or over slow_call_ms (the slow-call rule's measure).
# TYPE circuit_breaker_slow_call_rate gauge
circuit_breaker_slow_call_rate{service="windowed"} 0
# HELP circuit_breaker_window_calls Calls in the trip rules' window (current outcomes recorded in closed).
# TYPE circuit_breaker_window_calls gauge
circuit_breaker_window_calls{service="windowed"} 8
`
	if err := testutil.CollectAndCompare(collector(t, rdb), strings.NewReader(want),
		"circuit_breaker_failure_rate", "circuit_breaker_slow_call_rate", "circuit_breaker_window_calls"); err != nil {
		t.Error(err)
	}
}
