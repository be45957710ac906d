package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// engine is a Redis the client tests run against.
type engine struct {
	name string
	rdb  func(t *testing.T) redis.UniversalClient // a new connection pool: one worker
	// wait lets d pass on the server's clock: SetTime on miniredis, a real
	// wait on redis-server (whose clock cannot be moved).
	wait func(d time.Duration)
	// admissions are the modes this engine can run: moving miniredis's
	// clock leaves a Fast worker's local timer behind, so it runs Strict.
	admissions []client.Admission
}

// engines returns miniredis and a redis-server started for the test.
func engines(t *testing.T) []engine {
	mr := miniredis.RunT(t)
	var mu sync.Mutex
	now := time.Now()
	mr.SetTime(now)
	mini := engine{
		name: "miniredis",
		rdb: func(t *testing.T) redis.UniversalClient {
			c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
			t.Cleanup(func() { c.Close() })
			return c
		},
		wait: func(d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			now = now.Add(d)
			mr.SetTime(now)
		},
		admissions: []client.Admission{client.AdmitStrict},
	}
	srv := redistest.Start(t)
	real := engine{
		name: "redis-server",
		rdb: func(t *testing.T) redis.UniversalClient {
			c := redis.NewClient(&redis.Options{Addr: srv.Addr})
			t.Cleanup(func() { c.Close() })
			return c
		},
		wait:       time.Sleep,
		admissions: []client.Admission{client.AdmitFast, client.AdmitStrict},
	}
	return []engine{mini, real}
}

// each runs f once per engine and admission mode, each run on its own
// breaker name so runs do not share state.
func each(t *testing.T, f func(t *testing.T, e engine, a client.Admission, name string)) {
	for _, e := range engines(t) {
		for _, a := range e.admissions {
			t.Run(e.name+"/"+a.String(), func(t *testing.T) {
				f(t, e, a, strings.NewReplacer("/", "-").Replace(t.Name()))
			})
		}
	}
}

// quickConfig opens after 3 failures, probes after 200ms, closes after 2 successes.
func quickConfig() client.Config {
	c := client.DefaultConfig()
	c.RecoveryTimeout = 200 * time.Millisecond
	c.RequestTimeout = time.Second
	return c
}

// newBreaker returns a Breaker closed at the end of the test, logging to log.
func newBreaker(t *testing.T, rdb redis.UniversalClient, name string, cfg client.Config, opts ...client.Option) *client.Breaker {
	t.Helper()
	quiet := client.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	b, err := client.New(rdb, name, cfg, append([]client.Option{quiet}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	redisOf.Store(b, rdb)
	return b
}

// redisOf maps each Breaker of newBreaker to its Redis client, for the
// operator calls of status and control.
var redisOf sync.Map

func rdbOf(t *testing.T, b *client.Breaker) redis.UniversalClient {
	t.Helper()
	rdb, ok := redisOf.Load(b)
	if !ok {
		t.Fatal("breaker not made by newBreaker")
	}
	return rdb.(redis.UniversalClient)
}

// control applies an operator action to b's breaker (as cbctl would) and,
// when b admits from its view, waits until the view has caught up.
func control(t *testing.T, b *client.Breaker, a breakerbox.Action) breakerbox.Status {
	t.Helper()
	st, err := admin.Control(context.Background(), rdbOf(t, b), b.Name(), a, "tester")
	if err != nil {
		t.Fatal(err)
	}
	if client.AdmitsFromView(b) {
		eventually(t, "the worker's view follows "+string(a), func() bool { return client.ViewGeneration(b) >= st.Generation })
	}
	return st
}

var errBoom = errors.New("upstream said no")

func fail(context.Context) error { return errBoom }
func ok(context.Context) error   { return nil }

// run calls Execute and flushes, so the outcome is recorded before the next step.
func run(t *testing.T, b *client.Breaker, fn func(context.Context) error) error {
	t.Helper()
	err := b.Execute(context.Background(), fn)
	if ferr := b.Flush(context.Background()); ferr != nil {
		t.Fatal(ferr)
	}
	return err
}

// eventually retries cond until it holds or 5s pass (a wait, not a
// measure: tests that bound how long something takes check it themselves).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func status(t *testing.T, b *client.Breaker) breakerbox.Status {
	t.Helper()
	st, err := admin.Status(context.Background(), rdbOf(t, b), b.Name())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), "msg=\""+msg+"\"")
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
