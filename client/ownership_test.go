package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// TestTheStoredConfigIsTheFleetsTruth: an operator changes
// failure_threshold (as cbctl config does); a worker whose subscription
// reconnects, a worker that ends an outage and a worker that restarts all
// keep the stored value, and every one of them follows it.
func TestTheStoredConfigIsTheFleetsTruth(t *testing.T) {
	srv := redistest.Start(t)
	ops := srv.Client(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	const name = "owned"
	seed := quickConfig() // failure_threshold 3
	b := newBreaker(t, rdb, name, seed, client.WithRedisTimeout(100*time.Millisecond))
	if err := b.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	operator := seed
	operator.FailureThreshold = 10
	if _, err := admin.Configure(ctx, ops, name, operator, "ops"); err != nil {
		t.Fatal(err)
	}
	follows := func(what string) {
		t.Helper()
		eventually(t, what+": the worker follows the stored threshold", func() bool { return b.Config().FailureThreshold == 10 })
		if st := status(t, b); st.FailureThreshold != 10 {
			t.Fatalf("%s: stored failure_threshold %d, want the operator's 10 kept", what, st.FailureThreshold)
		}
	}
	follows("after the operator's change")

	// The worker's connections are killed: it reconnects, resubscribes and
	// refreshes (with a seed, which stores nothing when a config exists).
	if err := ops.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	if err := ops.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the view to be trusted again", func() bool { return b.Ready(ctx) == nil })
	_ = run(t, b, ok)
	follows("after a reconnection")

	// An outage: Redis stalls past the Redis timeout, then resumes.
	resume := srv.Pause(t, 2*time.Second)
	eventually(t, "the outage", func() bool { _ = b.Execute(ctx, ok); return b.Stats().Outage })
	resume()
	eventually(t, "the end of the outage", func() bool { return !b.Stats().Outage })
	_ = run(t, b, ok)
	follows("after an outage")

	// The worker restarts with its old seed.
	_ = b.Shutdown(ctx)
	b = newBreaker(t, rdb, name, seed)
	if err := b.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	follows("after a restart of the worker")
	for i := 0; i < 3; i++ {
		_ = run(t, b, fail)
	}
	if st := status(t, b); st.State != breakerbox.StateClosed {
		t.Errorf("3 failures opened a breaker whose stored threshold is 10: %+v", st)
	}
}

// TestExecuteFollowsTheStoredRequestTimeout: Execute's deadline is the
// request_timeout_ms in force in Redis, changed by an operator after the
// worker started.
func TestExecuteFollowsTheStoredRequestTimeout(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		ctx := context.Background()
		seed := quickConfig()
		seed.RequestTimeout = 10 * time.Second
		b := newBreaker(t, e.rdb(t), name, seed, client.WithAdmission(a))
		if err := b.Ready(ctx); err != nil {
			t.Fatal(err)
		}
		changed := seed
		changed.RequestTimeout = 50 * time.Millisecond
		if _, err := admin.Configure(ctx, rdbOf(t, b), name, changed, "ops"); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the new request timeout", func() bool {
			_ = b.Execute(ctx, ok) // a Strict worker learns of it from a status read its next call asks for
			return b.Config().RequestTimeout == 50*time.Millisecond
		})
		start := time.Now()
		err := b.Execute(ctx, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
		if d := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || d > 2*time.Second {
			t.Errorf("Execute of a call that waits for its deadline: %v after %s, want DeadlineExceeded after the stored 50ms", err, d)
		}
	})
}
