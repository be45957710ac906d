package client_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
)

// TestDurableTransitionsWithoutReplicasAreCountedNotReplicated: on a
// server with no replica WAIT answers 0, so each of a cycle's three
// transitions (opened, half_opened, closed) counts in NotReplicated, none
// in Replicated; no call waits past the Redis timeout for it, and the
// breaker moves as it does without the option.
func TestDurableTransitionsWithoutReplicasAreCountedNotReplicated(t *testing.T) {
	const redisTimeout = 150 * time.Millisecond
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		b := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a),
			client.WithRedisTimeout(redisTimeout), client.WithDurableTransitions(1, time.Second))
		if err := b.Ready(context.Background()); err != nil {
			t.Fatal(err)
		}
		var slowest time.Duration
		timed := func(fn func(context.Context) error) error {
			start := time.Now()
			err := run(t, b, fn)
			slowest = max(slowest, time.Since(start))
			return err
		}
		for i := 0; i < 3; i++ {
			_ = timed(fail)
		}
		if st := status(t, b); st.State != breakerbox.StateOpen {
			t.Fatalf("state %s after 3 failures, want open", st.State)
		}
		e.wait(250 * time.Millisecond)
		for i := 0; i < 2; i++ {
			if err := timed(ok); err != nil {
				t.Fatalf("probe %d: %v", i, err)
			}
		}
		if st := status(t, b); st.State != breakerbox.StateClosed {
			t.Fatalf("state %s after 2 successful probes, want closed", st.State)
		}
		eventually(t, "3 transitions counted", func() bool { return b.Stats().NotReplicated == 3 })
		if st := b.Stats(); st.Replicated != 0 || st.NotReplicated != 3 || st.Unrecorded != 0 || st.Outage {
			t.Errorf("stats %+v, want 3 transitions not replicated, none replicated, nothing unrecorded, no outage", st)
		}
		// A call's Redis work (the allow, the outcome, the WAIT) is bounded
		// by the Redis timeout; the margin is the noisy machine's.
		t.Logf("slowest call %v (Redis timeout %v)", slowest, redisTimeout)
		if slowest > redisTimeout+300*time.Millisecond {
			t.Errorf("a call took %v, want at most the Redis timeout %v (+300ms)", slowest, redisTimeout)
		}
	})
}

// TestDurableTransitionsOptionIsChecked: negative replicas or timeout are
// refused by New like every invalid option.
func TestDurableTransitionsOptionIsChecked(t *testing.T) {
	rdb := engines(t)[0].rdb(t)
	for _, opt := range []client.Option{client.WithDurableTransitions(-1, 0), client.WithDurableTransitions(1, -time.Second)} {
		if _, err := client.New(rdb, "durable-bad", quickConfig(), opt); err == nil || !strings.Contains(err.Error(), "durable") {
			t.Errorf("New with a negative durability: %v, want an error naming it", err)
		}
	}
}
