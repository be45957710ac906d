package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
)

// tripAndWait opens b and lets its recovery timeout pass on the server.
func tripAndWait(t *testing.T, e engine, b *client.Breaker) {
	t.Helper()
	for i := 0; i < b.Config().FailureThreshold; i++ {
		_ = run(t, b, fail)
	}
	if st := status(t, b); st.State != breakerbox.StateOpen {
		t.Fatalf("not open after %d failures: %+v", b.Config().FailureThreshold, st)
	}
	e.wait(b.Config().RecoveryTimeout + 5*time.Millisecond)
}

func TestHalfOpenAdmitsLimitedProbesThenCloses(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		ctx := context.Background()
		b := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a))
		tripAndWait(t, e, b)
		p1, err := b.Allow(ctx)
		if err != nil || !p1.Probe() {
			t.Fatalf("first call after the timeout: %v, probe=%v", err, p1 != nil && p1.Probe())
		}
		p2, err := b.Allow(ctx)
		if err != nil || !p2.Probe() {
			t.Fatalf("second probe: %v", err)
		}
		if _, err := b.Allow(ctx); !errors.Is(err, client.ErrOpen) {
			t.Fatalf("third call while 2 probes run: %v, want ErrOpen", err)
		}
		if st := status(t, b); st.State != breakerbox.StateHalfOpen || st.Probes != 2 {
			t.Fatalf("status %+v, want half-open with 2 probes", st)
		}
		_ = p1.Success(ctx)
		_ = p2.Success(ctx)
		_ = b.Flush(ctx)
		st := status(t, b)
		if st.State != breakerbox.StateClosed || st.Transitions != 3 || st.CurrentFailures != 0 {
			t.Fatalf("status %+v, want closed in generation 3", st)
		}
		eventually(t, "an admission after closing", func() bool { return run(t, b, ok) == nil })
		h, err := admin.History(ctx, rdbOf(t, b), b.Name(), 10)
		// Newest first; the oldest is the registration of quickConfig, whose
		// timeouts differ from the defaults in force before it.
		if err != nil || len(h) != 4 || h[0].Event != "closed" || h[1].Event != "half_opened" ||
			h[2].Event != "opened" || h[3].Event != "config_changed" {
			t.Errorf("history %+v, %v", h, err)
		}
	})
}

func TestHalfOpenProbeFailureReopens(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		ctx := context.Background()
		cfg := quickConfig()
		cfg.RecoveryTimeout = time.Second // the checks below run within it, even on a loaded machine
		b := newBreaker(t, e.rdb(t), name, cfg, client.WithAdmission(a))
		tripAndWait(t, e, b)
		if err := run(t, b, fail); !errors.Is(err, errBoom) {
			t.Fatalf("probe: %v", err)
		}
		st := status(t, b)
		if st.State != breakerbox.StateOpen || st.Transitions != 3 || st.RetryAfter <= 500*time.Millisecond {
			t.Errorf("status %+v, want re-opened with a fresh timer", st)
		}
		if _, err := b.Allow(ctx); !errors.Is(err, client.ErrOpen) {
			t.Errorf("after a failed probe: %v, want ErrOpen", err)
		}
	})
}

func TestIgnoredProbeFreesItsSlot(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		ctx := context.Background()
		cfg := quickConfig()
		cfg.HalfOpenMaxCalls = 1
		b := newBreaker(t, e.rdb(t), name, cfg, client.WithAdmission(a))
		tripAndWait(t, e, b)
		p, err := b.Allow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = p.Ignore(ctx)
		_ = b.Flush(ctx)
		if st := status(t, b); st.Probes != 0 || st.State != breakerbox.StateHalfOpen {
			t.Fatalf("status %+v, want half-open with the slot free", st)
		}
		if _, err := b.Allow(ctx); err != nil {
			t.Errorf("after an ignored probe: %v, want a new probe", err)
		}
	})
}
