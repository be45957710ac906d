package bench

import (
	"context"
	"io"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestMain lets the test binary serve as the benchmark's re-executed
// worker and watcher processes.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv(workerEnv) != "":
		os.Exit(WorkerMain(context.Background(), os.Stdin, os.Stdout, os.Stderr))
	case os.Getenv(watchEnv) != "":
		os.Exit(WatchMain(context.Background(), os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func startRedis(t *testing.T) (*Server, *redis.Client) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("BREAKERBOX_REQUIRE_REDIS") == "1" {
			t.Fatal("redis-server not found")
		}
		t.Skip("redis-server not found: ", err)
	}
	srv, err := StartServer(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	ctl := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { ctl.Close() })
	return srv, ctl
}

func TestStartServerRunsOnAFreeLoopbackPortWithoutPersistenceAndStopKillsIt(t *testing.T) {
	srv, ctl := startRedis(t)
	ctx := context.Background()
	if srv.Port == reservedPort || !strings.HasPrefix(srv.Addr, "127.0.0.1:") || srv.Version == "" {
		t.Fatalf("server %+v", srv)
	}
	for param, want := range map[string]string{"save": "", "appendonly": "no", "bind": "127.0.0.1"} {
		got, err := ctl.ConfigGet(ctx, param).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got[param] != want {
			t.Errorf("CONFIG GET %s = %q, want %q", param, got[param], want)
		}
	}
	srv.Stop()
	srv.Stop() // idempotent
	if err := ctl.Ping(ctx).Err(); err == nil {
		t.Error("server still answers after Stop")
	}
}

func testEnv(t *testing.T, srv *Server, ctl *redis.Client) *env {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &env{opts: Options{Dur: 60 * time.Millisecond, Warm: 10 * time.Millisecond, Reps: 1, Exe: exe},
		addr: srv.Addr, ctl: ctl, log: io.Discard}
}

// The harness's counting is checked where the answer is known exactly:
// a PING is one round trip, Strict is allow + record, Fast closed and Fast
// open make none on the caller's path, gobreaker's distributed Execute
// makes four sequentially (GET, SET NX, SET, unlock script).
func TestCellsCountRoundTripsAndCheckCounts(t *testing.T) {
	srv, ctl := startRedis(t)
	e := testEnv(t, srv, ctl)
	ctx := context.Background()
	for _, c := range []struct {
		cs       string
		mode     Mode
		callerRT float64
		scripts  float64 // -1: not checked (batched)
		checked  bool
	}{
		{"ping", Mode{Conc: 1}, 1, 0, false},
		{"ping", Mode{Procs: 2, Conc: 2}, 1, 0, false},
		{"bb-strict-closed", Mode{Conc: 1}, 2, 2, true},
		{"bb-strict-open", Mode{Conc: 4}, 1, 1, true}, // at most: concurrent Strict calls share pipelines
		{"bb-strict-open-unbatched", Mode{Conc: 4}, 1, 1, true},
		{"bb-strict-halfopen", Mode{Conc: 1}, 2, 2, true},
		{"bb-fast-closed", Mode{Conc: 1}, 0, -1, true},
		{"bb-fast-closed", Mode{Procs: 2, Conc: 2}, 0, -1, true},
		{"bb-fast-open", Mode{Conc: 4}, 0, -1, true},
		{"bb-fast-halfopen", Mode{Conc: 1}, 1, -1, true},
		{"gobreaker-local", Mode{Conc: 4}, 0, 0, true},
		{"gobreaker-redis", Mode{Conc: 1}, 4, 1, true},
	} {
		t.Run(c.cs+"/"+c.mode.Label(), func(t *testing.T) {
			cs, err := CaseByName(c.cs)
			if err != nil {
				t.Fatal(err)
			}
			m, err := e.runCell(ctx, cs, c.mode, 0)
			if err != nil {
				t.Fatal(err)
			}
			if m.Calls == 0 || m.Errs != 0 {
				t.Fatalf("%d calls, %d errors (%s)", m.Calls, m.Errs, m.Err)
			}
			shared := c.cs == "bb-strict-open" && c.mode.Conc > 1
			if m.CallerRTPerCall != c.callerRT && !(shared && m.CallerRTPerCall <= c.callerRT) {
				t.Errorf("caller round trips per call %v, want %v", m.CallerRTPerCall, c.callerRT)
			}
			if c.scripts >= 0 && m.ScriptsPerCall != c.scripts {
				t.Errorf("script calls per call %v, want %v (server: %s)", m.ScriptsPerCall, c.scripts, m.ServerCmds)
			}
			if c.cs == "ping" && m.ServerCmds["ping"].Calls != m.Calls {
				t.Errorf("server ran %d PINGs for %d calls", m.ServerCmds["ping"].Calls, m.Calls)
			}
			if m.Checked != c.checked || (c.checked && !m.Exact) {
				t.Errorf("checked %v exact %v (%s), want checked %v and exact", m.Checked, m.Exact, m.Note, c.checked)
			}
			if m.P50 <= 0 || m.P99 < m.P50 || m.PerSec <= 0 || math.IsNaN(m.NsPerOp) {
				t.Errorf("latency p50 %v p99 %v, %v calls/s", m.P50, m.P99, m.PerSec)
			}
		})
	}
}

func TestPropagationTripsReachTheOtherWorkerWhichRefusesLocally(t *testing.T) {
	srv, ctl := startRedis(t)
	ctx := context.Background()
	exe, _ := os.Executable()
	for _, where := range []string{"local", "process"} {
		t.Run(where, func(t *testing.T) {
			var w *watcher
			var err error
			if where == "local" {
				w, err = startLocalWatcher(ctx, srv.Addr, "p-"+where)
			} else {
				w, err = startProcessWatcher(ctx, exe, srv.Addr, "p-"+where)
			}
			if err != nil {
				t.Fatal(err)
			}
			p, err := measurePropagation(ctx, ctl, srv.Addr, "p-"+where, 5, where, w)
			if err != nil {
				t.Fatal(err)
			}
			if p.Trips != 5 || p.LocalRefus != 5 || p.P50 <= 0 || p.P99 < p.P50 || p.Max < p.P99 {
				t.Errorf("propagation %+v", p)
			}
		})
	}
}

func TestMeasureMemoryBuildsTheNamedKeys(t *testing.T) {
	_, ctl := startRedis(t)
	ms, err := MeasureMemory(context.Background(), ctl, false)
	if err != nil {
		t.Fatal(err)
	}
	withDaemon, err := MeasureMemory(context.Background(), ctl, true)
	if err != nil {
		t.Fatal(err)
	}
	ms = append(ms, withDaemon...)
	want := []string{
		"state, metrics (hash, 1), config (hash, 5)",
		"state, failures, last_failure_time, metrics (hash, 6), history (list, 1), config (hash, 5), events (stream, 1)",
		"state, last_failure_time, metrics (hash, 6), history (list, 100), config (hash, 5), events (stream, 100)",
		"state, last_failure_time, metrics (hash, 6), history (list, 100), config (hash, 5), events (stream, 100)",
		"state, last_failure_time, metrics (hash, 6), history (list, 100), config (hash, 5), events (stream, 100)",
		// The daemon created no stream for the breaker that never changed,
		// and trimmed every delivered entry; its delivery record remains.
		"state, metrics (hash, 1), config (hash, 5)",
		"state, failures, last_failure_time, metrics (hash, 6), history (list, 1), config (hash, 5), events (stream, 0), alerts:breakerbox-alerts (hash, 3)",
		"state, last_failure_time, metrics (hash, 6), history (list, 100), config (hash, 5), events (stream, 0), alerts:breakerbox-alerts (hash, 2)",
		"state, last_failure_time, metrics (hash, 6), history (list, 100), config (hash, 5), events (stream, 0), alerts:breakerbox-alerts (hash, 2)",
		"state, last_failure_time, metrics (hash, 6), history (list, 100), config (hash, 5), events (stream, 0), alerts:breakerbox-alerts (hash, 2)",
	}
	if len(ms) != len(want) {
		t.Fatalf("%d scenarios, want %d", len(ms), len(want))
	}
	for i, m := range ms {
		if got := m.KeyList(); got != want[i] {
			t.Errorf("%s: keys %q, want %q", m.Scenario, got, want[i])
		}
		var sum int64
		for _, k := range m.Keys {
			if k.Bytes <= 0 {
				t.Errorf("%s: key %s has %d bytes", m.Scenario, k.Key, k.Bytes)
			}
			sum += k.Bytes
		}
		if sum != m.Total || m.Bytes("nope") != 0 {
			t.Errorf("%s: total %d, keys sum to %d", m.Scenario, m.Total, sum)
		}
	}
}

func TestMeasureScaleListsEveryBreaker(t *testing.T) {
	_, ctl := startRedis(t)
	for _, daemon := range []bool{false, true} {
		s, err := MeasureScale(context.Background(), ctl, 300, 2, daemon)
		if err != nil {
			t.Fatal(err)
		}
		// Readings at 0, 1, 100 and 300 breakers.
		if s.Listed != 300 || len(s.Points) != 4 || s.Points[1][0] != 1 || s.Points[3][0] != 300 || len(s.ListTimes) != 2 {
			t.Errorf("scale %+v", s)
		}
		if s.PerBreaker <= 0 || len(s.Samples) != 2 || s.Samples[0].Total <= 0 || s.Samples[1].Total <= s.Samples[0].Total {
			t.Errorf("per breaker %v bytes, samples %+v", s.PerBreaker, s.Samples)
		}
	}
}

func TestTripUnderLoadIsSeenByTheOtherProcess(t *testing.T) {
	srv, ctl := startRedis(t)
	ctx := context.Background()
	exe, _ := os.Executable()
	w, err := startProcessWatcher(ctx, exe, srv.Addr, "p-load")
	if err != nil {
		t.Fatal(err)
	}
	p, err := measureTripUnderLoad(ctx, ctl, srv.Addr, "p-load", 2, 2, 30*time.Millisecond, "load", w)
	if err != nil {
		t.Fatal(err)
	}
	if p.Trips != 2 || p.LocalRefus != 2 || p.P50 <= 0 {
		t.Errorf("propagation under load %+v", p)
	}
	st, err := ctl.HGet(ctx, "circuit_breaker:{p-load}:metrics", "transitions").Int()
	if err != nil || st != 3 { // opened, reset, opened
		t.Errorf("transitions %d (%v), want 3: two trips and a reset", st, err)
	}
}
