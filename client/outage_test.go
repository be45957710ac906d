package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
)

const redisTimeout = 100 * time.Millisecond

// downRedis returns a breaker whose Redis was reachable, then stopped.
func downRedis(t *testing.T, policy client.OutagePolicy, logs *logBuffer) (*client.Breaker, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	b := newBreaker(t, rdb, "svc", quickConfig(), client.WithOutagePolicy(policy),
		client.WithRedisTimeout(redisTimeout), client.WithLogger(logs.logger()))
	if err := b.Ready(context.Background()); err != nil { // registered (the first call would wait at most 100ms)
		t.Fatal(err)
	}
	if err := run(t, b, ok); err != nil {
		t.Fatal(err)
	}
	mr.Close()
	// A Fast worker admits from its view until it learns of the outage: from
	// its subscription dropping, or a call or batch failing. Wait for that.
	eventually(t, "the outage to be noticed", func() bool {
		_ = b.Execute(context.Background(), ok)
		_ = b.Flush(context.Background())
		return b.Stats().Outage
	})
	return b, mr
}

// timed runs one Execute and fails the test if it blocked past the Redis
// timeout (plus stallMargin, for a loaded machine: a call left to
// go-redis's dial or read timeouts takes seconds).
func timed(t *testing.T, b *client.Breaker, fn func(context.Context) error) error {
	t.Helper()
	start := time.Now()
	err := b.Execute(context.Background(), fn)
	if d := time.Since(start); d > redisTimeout+stallMargin {
		t.Errorf("call took %s while Redis was down, want at most about the %s Redis timeout", d, redisTimeout)
	}
	return err
}

func TestOutagePolicies(t *testing.T) {
	t.Run("admit-all admits every call", func(t *testing.T) {
		var logs logBuffer
		b, _ := downRedis(t, client.OutageAdmitAll, &logs)
		for i := 0; i < 5; i++ {
			if err := timed(t, b, fail); !errors.Is(err, errBoom) {
				t.Fatalf("call %d: %v, want the call to run", i, err)
			}
		}
	})
	t.Run("refuse-all refuses every call from the last view", func(t *testing.T) {
		var logs logBuffer
		b, _ := downRedis(t, client.OutageRefuseAll, &logs)
		ran := false
		err := timed(t, b, func(context.Context) error { ran = true; return nil })
		if ran || !errors.Is(err, client.ErrOpen) || !errors.Is(err, client.ErrRedisUnavailable) {
			t.Fatalf("ran=%v err=%v, want ErrOpen and ErrRedisUnavailable", ran, err)
		}
		var oe *client.OpenError
		if !errors.As(err, &oe) || !oe.Outage || oe.State != b.State() || oe.Mode != breakerbox.ModeNormal {
			t.Errorf("refusal %#v, want Outage set and the worker's last view (%s, normal)", oe, b.State())
		}
	})
	t.Run("refuse-all does not claim closed for a breaker last seen open", func(t *testing.T) {
		mr := miniredis.RunT(t)
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { rdb.Close() })
		b := newBreaker(t, rdb, "svc", quickConfig(), client.WithOutagePolicy(client.OutageRefuseAll),
			client.WithAdmission(client.AdmitStrict), client.WithRedisTimeout(redisTimeout))
		if err := b.Ready(context.Background()); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			_ = run(t, b, fail)
		}
		if b.State() != breakerbox.StateOpen {
			t.Fatalf("worker's view after 3 failures: %s", b.State())
		}
		mr.Close()
		_ = b.Execute(context.Background(), ok) // learns of the outage
		err := timed(t, b, ok)
		var oe *client.OpenError
		if !errors.As(err, &oe) || !oe.Outage || oe.State != breakerbox.StateOpen {
			t.Errorf("refusal %v, want Outage and the last view, open", err)
		}
	})
	t.Run("local breaker trips on this worker's failures", func(t *testing.T) {
		var logs logBuffer
		b, _ := downRedis(t, client.OutageDecideLocally, &logs)
		for i := 0; i < 3; i++ {
			if err := timed(t, b, fail); !errors.Is(err, errBoom) {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		err := timed(t, b, ok)
		var oe *client.OpenError
		if !errors.As(err, &oe) || !oe.Outage || oe.State != breakerbox.StateOpen || oe.Cause != nil {
			t.Fatalf("after 3 local failures: %v, want an ErrOpen decided during the outage", err)
		}
		if b.State() != breakerbox.StateOpen {
			t.Errorf("State() = %s during a local opening, want open", b.State())
		}
		for i := 0; i < 20; i++ {
			_ = timed(t, b, ok)
		}
		if n := logs.count("circuit breaker cannot reach redis; following outage policy"); n != 1 {
			t.Errorf("outage logged %d times over 24 calls, want once", n)
		}
		if !b.Stats().Outage {
			t.Error("Stats().Outage is false during the outage")
		}
	})
}

// TestBreakerWorksAgainWithinSecondsOfRedisReturning: with no caller
// asking, the Hub finds out by itself that Redis answers again (it asks
// every 200ms, so within about half a second on an idle machine; 2s here,
// for a loaded one) and the breaker uses Redis again.
func TestBreakerWorksAgainWithinSecondsOfRedisReturning(t *testing.T) {
	var logs logBuffer
	b, mr := downRedis(t, client.OutageDecideLocally, &logs)
	if err := mr.Restart(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	eventually(t, "the outage to end", func() bool { return !b.Stats().Outage })
	if d := time.Since(back); d > 2*time.Second {
		t.Errorf("outage ended %s after Redis returned, want within 2s", d)
	}
	for i := 0; i < 3; i++ {
		_ = run(t, b, fail)
	}
	if st := status(t, b); st.State != breakerbox.StateOpen || st.TotalFailures != 3 {
		t.Errorf("status after recovery %+v, want the failures in Redis", st)
	}
	if n := logs.count("circuit breaker reaches redis again"); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
}

func TestUnreachableRedisIsAClearErrorForOperators(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	_, err := admin.Status(context.Background(), rdb, "svc")
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), `breaker "svc": status`) {
		t.Errorf("status against a closed port: %v, want a connection error", err)
	}
}
