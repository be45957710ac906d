package alerts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
)

// logBuffer collects a test's daemon logs; they are printed when the test
// fails, and searched for leaked secrets.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testConfig returns short intervals for tests: folding off, nothing
// stale, dead consumers taken over after 300ms. Logs go to the returned
// buffer, printed if the test fails.
func testConfig(t *testing.T, consumer string) (Config, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon %s logs:\n%s", consumer, logs)
		}
	})
	return Config{
		Consumer:          consumer,
		FlapWindow:        -1,
		StaleAfter:        time.Hour,
		ClaimMinIdle:      300 * time.Millisecond,
		RetryMin:          10 * time.Millisecond,
		RetryMax:          40 * time.Millisecond,
		DiscoveryInterval: 100 * time.Millisecond,
		Block:             200 * time.Millisecond,
		ShutdownGrace:     time.Second,
		Logger:            slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, logs
}

// running is a daemon started by startDaemon.
type running struct {
	*Daemon
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startDaemon runs a daemon until stop or the end of the test.
func startDaemon(t *testing.T, rdb redis.UniversalClient, cfg Config, sink Sink) *running {
	t.Helper()
	d, err := New(rdb, cfg, sink)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Daemon: d, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the daemon and waits for Run to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10s of cancellation")
		}
	})
}

// waitFor polls cond every 10ms until it holds, failing the test after
// timeout. It waits for an event; it asserts nothing about speed.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitDrained waits until the daemon reads at least breakers streams and
// the group has nothing pending or undelivered on any of them: every
// alert is posted and acknowledged, so no further alert can come.
func waitDrained(t *testing.T, d *running, breakers int) {
	t.Helper()
	var last Health
	deadline := time.Now().Add(30 * time.Second)
	for {
		last = d.Health(context.Background())
		if last.OK && last.Breakers >= breakers && last.Pending == 0 && last.Lag == 0 && last.LagUnknown == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 30s waiting for the group to drain; last health: %+v", last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitAlerts waits for n alerts on rec.
func waitAlerts(t *testing.T, rec *Recorder, n int) []Alert {
	t.Helper()
	// A bound for a loaded machine, not a speed test: the full race run once
	// took longer than 10s here while every other package ran beside it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := rec.Wait(ctx, n)
	if err != nil {
		t.Fatalf("%v; got:\n%s", err, rec)
	}
	return got
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newBreaker returns a Strict-admission handle (every call asks the
// script), closed at the end of the test.
func newBreaker(t *testing.T, rdb redis.UniversalClient, name string, cfg client.Config) *client.Breaker {
	t.Helper()
	b, err := client.New(rdb, name, cfg, client.WithAdmission(client.AdmitStrict), client.WithLogger(quiet),
		client.WithActor("test"))
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	return b
}

// trip records failures until the breaker opens.
func trip(t *testing.T, b *client.Breaker, errText string) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		p, err := b.Allow(ctx)
		if errors.Is(err, client.ErrOpen) {
			return
		}
		if err != nil {
			t.Fatalf("Allow: %v", err)
		}
		if err := p.Failure(ctx, errors.New(errText)); err != nil {
			t.Fatalf("Failure: %v", err)
		}
		if b.State() == breakerbox.StateOpen { // a Strict worker's view: the record reply's state
			return
		}
	}
	t.Fatalf("breaker %s did not open", b.Name())
}

// recoverBreaker waits out the recovery timeout by asking until a probe is
// admitted (counting the refusals), then reports probe successes until the
// breaker is closed. It returns how many calls were refused.
func recoverBreaker(t *testing.T, b *client.Breaker) int {
	t.Helper()
	ctx := context.Background()
	refused := 0
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p, err := b.Allow(ctx)
		if errors.Is(err, client.ErrOpen) {
			refused++
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("Allow: %v", err)
		}
		if err := p.Success(ctx); err != nil {
			t.Fatalf("Success: %v", err)
		}
		if b.State() == breakerbox.StateClosed {
			return refused
		}
	}
	t.Fatalf("breaker %s did not close", b.Name())
	return 0
}

// control applies an operator action as actor.
func control(t *testing.T, rdb redis.UniversalClient, name string, a breakerbox.Action, actor string) {
	t.Helper()
	if _, err := admin.Control(context.Background(), rdb, name, a, actor); err != nil {
		t.Fatalf("Control(%s, %s): %v", name, a, err)
	}
}

// titles lists alerts' titles, for failure messages.
func titles(alerts []Alert) string {
	var b strings.Builder
	for _, a := range alerts {
		fmt.Fprintf(&b, "  %s (%d transitions)\n", a.Title(), len(a.Transitions))
	}
	return b.String()
}

// fastConfig opens after one failure and closes after one probe success.
func fastConfig(recovery time.Duration) client.Config {
	return client.Config{FailureThreshold: 1, SuccessThreshold: 1, RecoveryTimeout: recovery,
		RequestTimeout: 5 * time.Second}
}
