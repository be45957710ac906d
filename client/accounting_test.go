package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
)

// TestNothingVanishesDuringAnOutage: the calls a breaker admits, refuses,
// sees succeed and fail while it follows its outage policy are counted in
// Stats and, once Redis answers again, added to the breaker's totals in
// Redis (tally: the totals only, never the state).
func TestNothingVanishesDuringAnOutage(t *testing.T) {
	for _, policy := range []client.OutagePolicy{client.OutageDecideLocally, client.OutageAdmitAll, client.OutageRefuseAll} {
		t.Run(policy.String(), func(t *testing.T) {
			var logs logBuffer
			b, mr := downRedis(t, policy, &logs)
			before := b.Stats()
			// 3 failures (the local fallback trips on them), then 5 more calls.
			for i := 0; i < 3; i++ {
				_ = timed(t, b, fail)
			}
			for i := 0; i < 5; i++ {
				_ = timed(t, b, ok)
			}
			st := b.Stats()
			admitted, refused := st.OutageAdmitted-before.OutageAdmitted, st.OutageRefused-before.OutageRefused
			succeeded, failed := st.OutageSucceeded-before.OutageSucceeded, st.OutageFailed-before.OutageFailed
			if admitted+refused != 8 || succeeded+failed != admitted {
				t.Fatalf("8 calls during the outage: admitted %d, refused %d, succeeded %d, failed %d (stats %+v)",
					admitted, refused, succeeded, failed, st)
			}
			switch policy {
			case client.OutageDecideLocally:
				if failed != 3 || refused != 5 {
					t.Errorf("the local fallback: %d failures, %d refusals; want 3 and 5 (it trips on 3)", failed, refused)
				}
			case client.OutageAdmitAll:
				if failed != 3 || succeeded != 5 {
					t.Errorf("admit-all: %d failures, %d successes; want 3 and 5", failed, succeeded)
				}
			case client.OutageRefuseAll:
				if refused != 8 {
					t.Errorf("refuse-all: %d refusals, want 8", refused)
				}
			}
			if err := mr.Restart(); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the outage to end", func() bool { return !b.Stats().Outage })
			if err := b.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			after := b.Stats()
			want := st.OutageSucceeded + st.OutageFailed + st.OutageRefused
			if after.Tallied != want {
				t.Errorf("tallied %d, want the outage's %d outcomes and refusals", after.Tallied, want)
			}
			rs, err := admin.Status(context.Background(), rdbOf(t, b), b.Name())
			if err != nil {
				t.Fatal(err)
			}
			if rs.TotalSuccesses < succeeded || rs.TotalFailures < failed || rs.TotalRefused < refused || rs.State != breakerbox.StateClosed {
				t.Errorf("Redis after the outage %+v: want the outage's %d successes, %d failures, %d refusals in the totals, the state untouched",
					rs, succeeded, failed, refused)
			}
		})
	}
}

// TestRefusalsOfAFailedBatchAreUnrecorded: a record that Redis refuses
// with an error (here a corrupted config, BADCONFIG) leaves its outcomes
// and its refusals in Stats().Unrecorded; it is an error, not an outage.
func TestRefusalsOfAFailedBatchAreUnrecorded(t *testing.T) {
	e := engines(t)[1] // Fast admission: refusals from the view are batched
	ctx := context.Background()
	var logs logBuffer
	cfg := quickConfig()
	cfg.RecoveryTimeout = time.Minute
	b := newBreaker(t, e.rdb(t), "unrecorded", cfg, client.WithLogger(logs.logger()))
	if err := b.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < cfg.FailureThreshold; i++ {
		_ = run(t, b, fail)
	}
	eventually(t, "the view to say open", func() bool { return b.State() == breakerbox.StateOpen && b.Ready(ctx) == nil })
	if err := rdbOf(t, b).HSet(ctx, breakerbox.Key("unrecorded", "config"), "failure_threshold", "many").Err(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 7; i++ {
		if _, err := b.Allow(ctx); !errors.Is(err, client.ErrOpen) {
			t.Fatalf("refusal %d: %v", i, err)
		}
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Unrecorded != 7 || st.Outage {
		t.Errorf("stats %+v, want the 7 refusals unrecorded and no outage", st)
	}
	if logs.count("circuit breaker outcomes not recorded") == 0 {
		t.Error("the failed batch was not logged")
	}
}

// TestTheFallbackStartsFromTheLastView: a breaker open in Redis when the
// outage begins stays open in the local fallback until its recovery time,
// instead of starting closed and sending calls to the failing upstream.
func TestTheFallbackStartsFromTheLastView(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	cfg := quickConfig()
	cfg.RecoveryTimeout = time.Second
	b := newBreaker(t, rdb, "last-view", cfg, client.WithAdmission(client.AdmitStrict),
		client.WithRedisTimeout(redisTimeout))
	if err := b.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		_ = run(t, b, fail)
	}
	opened := time.Now()
	if b.State() != breakerbox.StateOpen {
		t.Fatalf("view after 3 failures: %s", b.State())
	}
	mr.Close()
	ran := 0
	for time.Since(opened) < 500*time.Millisecond { // half the recovery time: room for a loaded machine
		err := timed(t, b, func(context.Context) error { ran++; return nil })
		if err == nil {
			t.Fatalf("a call was admitted %s after the breaker opened, before its 1s recovery time", time.Since(opened))
		}
		var oe *client.OpenError
		if errors.As(err, &oe) && oe.Outage && oe.State != breakerbox.StateOpen {
			t.Fatalf("refusal during the outage says %s, want open", oe.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ran != 0 || !b.Stats().Outage {
		t.Fatalf("%d calls reached the upstream during the outage (outage %v)", ran, b.Stats().Outage)
	}
	time.Sleep(time.Until(opened.Add(cfg.RecoveryTimeout + 50*time.Millisecond)))
	if err := timed(t, b, ok); err != nil {
		t.Errorf("after the recovery time: %v, want a probe admitted by the fallback", err)
	}
}
