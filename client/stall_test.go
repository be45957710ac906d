package client_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/health"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// stallMargin is what a caller may wait past the Redis timeout in these
// tests: scheduling on a loaded machine (2 cores, the race detector, other
// test binaries running) can hold a goroutine for hundreds of
// milliseconds. The bug these tests guard against is a caller left to
// go-redis's own read timeout (3s by default) or to the whole stall, which
// a second of margin still catches; bbbench measures the real figure (see
// docs/performance.md).
const stallMargin = time.Second

// maxLatency records the longest call.
type maxLatency struct {
	mu    sync.Mutex
	max   time.Duration
	what  string
	calls int
}

func (m *maxLatency) time(what string, f func()) {
	start := time.Now()
	f()
	d := time.Since(start)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if d > m.max {
		m.max, m.what = d, what
	}
}

// TestCallersNeverWaitPastTheRedisTimeoutWhileRedisIsStalled stops a real
// redis-server with SIGSTOP for 3s under load, on a go-redis client with
// its defaults (ContextTimeoutEnabled false, a 3s read timeout): every
// Execute, Allow and Permit call returns within the Redis timeout plus a
// margin, the stall starts the outage policy, and the breakers use Redis
// again by themselves once it resumes. A breaker created during the stall
// waits no longer for its registration.
func TestCallersNeverWaitPastTheRedisTimeoutWhileRedisIsStalled(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr}) // go-redis defaults: context deadlines ignored
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	const timeout = 250 * time.Millisecond
	cfg := quickConfig()
	cfg.FailureThreshold = 1_000_000 // failures are reported, but the breakers stay closed
	fast := newBreaker(t, rdb, "stall-fast", cfg, client.WithRedisTimeout(timeout))
	strict := newBreaker(t, rdb, "stall-strict", cfg, client.WithRedisTimeout(timeout),
		client.WithAdmission(client.AdmitStrict))
	for _, b := range []*client.Breaker{fast, strict} {
		if err := b.Ready(ctx); err != nil {
			t.Fatal(err)
		}
	}
	h, err := health.New(rdb, health.WithNames("stall-fast", "stall-strict"), health.WithTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}

	var lat maxLatency
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		for _, b := range []*client.Breaker{fast, strict} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					fn := ok
					if i%7 == 3 {
						fn = fail
					}
					lat.time("Execute "+b.Name(), func() { _ = b.Execute(ctx, fn) })
					var p *client.Permit
					lat.time("Allow "+b.Name(), func() { p, _ = b.Allow(ctx) })
					if p != nil {
						lat.time("Permit.Failure "+b.Name(), func() { _ = p.Failure(ctx, errBoom) })
					}
					time.Sleep(time.Millisecond)
				}
			}()
		}
	}
	time.Sleep(200 * time.Millisecond)
	srv.Pause(t, 3*time.Second)
	stalled := time.Now()
	var late *client.Breaker
	lat.time("New+Execute during the stall", func() {
		late = newBreaker(t, rdb, "stall-late", quickConfig(), client.WithRedisTimeout(timeout))
		_ = late.Execute(ctx, ok)
	})
	var healthTook time.Duration
	var code int
	func() {
		start := time.Now()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
		healthTook, code = time.Since(start), rec.Code
	}()
	eventually(t, "the outage to start", func() bool { return fast.Stats().Outage && strict.Stats().Outage })
	for time.Since(stalled) < 3*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for (fast.Stats().Outage || strict.Stats().Outage) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()

	t.Logf("%d calls; longest %s (%s); health answered %d in %s", lat.calls, lat.max, lat.what, code, healthTook)
	if lat.max > timeout+stallMargin {
		t.Errorf("a call took %s (%s) while Redis was stalled, want at most the %s Redis timeout + %s",
			lat.max, lat.what, timeout, stallMargin)
	}
	if healthTook > 500*time.Millisecond+stallMargin || code != 503 {
		t.Errorf("health answered %d after %s during the stall, want 503 within its 500ms timeout", code, healthTook)
	}
	for _, b := range []*client.Breaker{fast, strict, late} {
		if b.Stats().Outage {
			t.Errorf("%s: still in an outage 5s after Redis resumed", b.Name())
		}
		if err := b.Execute(ctx, ok); err != nil {
			t.Errorf("%s after the stall: %v", b.Name(), err)
		}
		if err := b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st := status(t, late)
	if st.RecoveryTimeout != quickConfig().RecoveryTimeout {
		t.Errorf("the breaker created during the stall has %+v in Redis, want its seed stored once Redis answered", st)
	}
}

// TestHealthAnswersWithinItsTimeoutWhileRedisIsStalled: /health answers within its
// timeout while Redis is stalled, for every breaker (admin.List) too.
func TestHealthAnswersWithinItsTimeoutWhileRedisIsStalled(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	h, err := health.New(rdb, health.WithTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	srv.Pause(t, 5*time.Second) // resumed at cleanup: a health check left to the stall would wait seconds
	start := time.Now()
	resp, code := h.Check(context.Background())
	if d := time.Since(start); d > 300*time.Millisecond+stallMargin || code != 503 || resp.Status != health.StatusError {
		t.Errorf("health answered %d %+v after %s, want 503 error within 300ms", code, resp, d)
	}
	if !strings.Contains(resp.Error, "did not answer") {
		t.Errorf("health error %q, want it to say Redis did not answer", resp.Error)
	}
}
