package client_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
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

// movedOnce answers MOVED, without sending it, to every other script call
// that records or allows (single or pipelined): a Cluster node whose slot
// has moved. The call run again after it goes through.
type movedOnce struct{ n atomic.Int64 }

type movedError string

func (e movedError) Error() string { return string(e) }
func (movedError) RedisError()     {}

func (m *movedOnce) refuse(cmd redis.Cmder) bool {
	args := cmd.Args()
	if strings.ToLower(cmd.Name()) != "evalsha" || len(args) < 12 {
		return false
	}
	if op := fmt.Sprint(args[11]); op != "allow" && op != "record" {
		return false
	}
	if m.n.Add(1)%2 == 1 {
		cmd.SetErr(movedError("MOVED 1 127.0.0.1:1"))
		return true
	}
	return false
}

func (m *movedOnce) DialHook(next redis.DialHook) redis.DialHook { return next }
func (m *movedOnce) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if m.refuse(cmd) {
			return cmd.Err()
		}
		return next(ctx, cmd)
	}
}
func (m *movedOnce) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var send []redis.Cmder
		for _, c := range cmds {
			if !m.refuse(c) {
				send = append(send, c)
			}
		}
		if len(send) == 0 {
			return nil
		}
		return next(ctx, send)
	}
}

// TestADurableCallRedirectedRunsAgainThroughTheClient: a durable breaker's
// call goes to its node on a connection of its own, which does not follow
// a Cluster's MOVED; refused that way (nothing ran), it runs again through
// the client (which follows it), starts no outage, loses no count, and a
// transition it reports counts NotReplicated (no WAIT can follow it).
func TestADurableCallRedirectedRunsAgainThroughTheClient(t *testing.T) {
	srv := redistest.Start(t)
	for _, a := range []client.Admission{client.AdmitStrict, client.AdmitFast} {
		t.Run(a.String(), func(t *testing.T) {
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
			t.Cleanup(func() { _ = rdb.Close() })
			b := newBreaker(t, rdb, "redirected-"+a.String(), quickConfig(), client.WithAdmission(a),
				client.WithDurableTransitions(1, 100*time.Millisecond))
			if err := b.Ready(context.Background()); err != nil {
				t.Fatal(err)
			}
			m := &movedOnce{}
			rdb.AddHook(m)
			_ = run(t, b, ok)
			for i := 0; i < 3; i++ {
				_ = run(t, b, fail)
			}
			eventually(t, "the trip counted", func() bool { return b.Stats().NotReplicated == 1 })
			st := b.Stats()
			if m.n.Load() < 2 || st.Outage || st.Unrecorded != 0 {
				t.Errorf("%d calls refused with MOVED; stats %+v: want no outage, nothing unrecorded", m.n.Load()/2, st)
			}
			s, err := admin.Status(context.Background(), srv.Client(t), b.Name())
			if err != nil {
				t.Fatal(err)
			}
			if s.State != breakerbox.StateOpen || s.TotalFailures != 3 || s.TotalSuccesses != 1 {
				t.Errorf("in Redis: %s, %d failures, %d successes; want open, 3 and 1", s.State, s.TotalFailures, s.TotalSuccesses)
			}
		})
	}
}
