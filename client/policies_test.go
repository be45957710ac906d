package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
)

// The Go client measures every call and passes an upstream's retry-after
// through, so the script's trip rules (docs/protocol.md) see them.

func TestCallsAreMeasuredForTheSlowCallRule(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		ctx := context.Background()
		rdb := e.rdb(t)
		cfg := client.DefaultConfig()
		cfg.WindowCalls, cfg.SlowCallDuration = 100, 40*time.Millisecond
		b, err := client.New(rdb, name, cfg, client.WithAdmission(a), quietLogs)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Shutdown(ctx)
		if err := b.SetConfig(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		// Execute, Do and Wrap: fn's run time.
		_ = b.Execute(ctx, func(context.Context) error { time.Sleep(60 * time.Millisecond); return nil })
		_ = b.Execute(ctx, func(context.Context) error { return nil })
		_, _ = client.Do(ctx, b, func(context.Context) (int, error) { time.Sleep(50 * time.Millisecond); return 1, nil })
		// A Permit: from Allow to its outcome.
		p, err := b.Allow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(45 * time.Millisecond)
		_ = p.Success(ctx)
		if err := b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := admin.Status(ctx, rdb, name)
		if err != nil {
			t.Fatal(err)
		}
		if st.CallsInWindow != 4 || st.SlowInWindow != 3 || st.TotalSuccesses != 4 {
			t.Errorf("window %d calls, %d slow, %d successes; want 4, 3 slow, 4", st.CallsInWindow, st.SlowInWindow, st.TotalSuccesses)
		}
	})
}

func TestARetryAfterFromAnyErrorOpensTheBreaker(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		ctx := context.Background()
		rdb := e.rdb(t)
		b, err := client.New(rdb, name, client.DefaultConfig(), client.WithAdmission(a), quietLogs)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Shutdown(ctx)
		// A retry-after anywhere in the error's chain: one failure opens the
		// breaker (the consecutive rule would need 3), for the retry-after.
		limited := fmt.Errorf("openai: %w", &client.RetryAfterError{Err: errors.New("429 Too Many Requests"), After: 90 * time.Second})
		if err := b.Execute(ctx, func(context.Context) error { return limited }); !errors.Is(err, limited) {
			t.Fatalf("Execute = %v", err)
		}
		if err := b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := admin.Status(ctx, rdb, name)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != breakerbox.StateOpen || st.RetryAfter < 85*time.Second || st.RetryUntil.IsZero() {
			t.Errorf("after one failure with a 90s retry-after: state %s, retry after %s, retry until %v", st.State, st.RetryAfter, st.RetryUntil)
		}
		var oe *client.OpenError
		if err := b.Execute(ctx, func(context.Context) error { return nil }); !errors.As(err, &oe) {
			t.Errorf("the next call: %v, want refused", err)
		}
		evs, _ := admin.History(ctx, rdb, name, 1)
		if len(evs) != 1 || evs[0].Detail != "retry-after 90s from upstream" || evs[0].Error != "openai: 429 Too Many Requests" {
			t.Errorf("history %+v", evs)
		}
	})
}

func TestRetryAfterErrorUnwraps(t *testing.T) {
	base := errors.New("rate limited")
	err := error(&client.RetryAfterError{Err: base, After: time.Second})
	var ra interface{ RetryAfter() time.Duration }
	if !errors.Is(err, base) || !errors.As(err, &ra) || ra.RetryAfter() != time.Second || err.Error() != "rate limited" {
		t.Errorf("RetryAfterError: %v", err)
	}
}

// The outage's local fallback runs the same script on the worker's calls:
// a failure carrying a retry-after reaches it too and opens it at once (the
// consecutive rule would need 3 failures).
func TestARetryAfterOpensTheOutagesLocalBreaker(t *testing.T) {
	var logs logBuffer
	b, _ := downRedis(t, client.OutageDecideLocally, &logs)
	limited := &client.RetryAfterError{Err: errBoom, After: time.Minute}
	if err := timed(t, b, func(context.Context) error { return limited }); !errors.Is(err, errBoom) {
		t.Fatalf("Execute = %v, want the call to run", err)
	}
	err := timed(t, b, ok)
	var oe *client.OpenError
	if !errors.As(err, &oe) || !oe.Outage || oe.RetryAfter < 50*time.Second {
		t.Fatalf("the next call: %v (%+v), want refused by the local breaker for about the minute asked", err, oe)
	}
}
