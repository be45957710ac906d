package client_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// TestConcurrentWorkersKeepExactCounts runs 16 workers, each with its own
// connection pool and Breaker as separate processes would have, through a
// full closed → open → half-open → closed cycle on a real redis-server.
func TestConcurrentWorkersKeepExactCounts(t *testing.T) {
	srv := redistest.Start(t)
	for _, adm := range []client.Admission{client.AdmitFast, client.AdmitStrict} {
		t.Run(adm.String(), func(t *testing.T) {
			name := "cycle-" + adm.String()
			cfg := client.Config{FailureThreshold: 5, RecoveryTimeout: 50 * time.Millisecond,
				SuccessThreshold: 3, HalfOpenMaxCalls: 2, RequestTimeout: time.Second}
			const workers = 16
			var (
				healthy                   atomic.Bool
				successes, failures       atomic.Int64
				probesNow, maxProbes      atomic.Int64
				wg                        sync.WaitGroup
				breakers                  = make([]*client.Breaker, workers)
				ctx, cancel               = context.WithTimeout(context.Background(), 10*time.Second)
				sawOpen, sawHalfOpenProbe atomic.Bool
			)
			defer cancel()
			for i := range breakers {
				breakers[i] = newBreaker(t, srv.Client(t), name, cfg, client.WithAdmission(adm))
			}
			ops := srv.Client(t)
			closedAgain := func() bool {
				st, err := admin.Status(ctx, ops, name)
				return err == nil && st.State == breakerbox.StateClosed && st.Transitions >= 3
			}
			for _, b := range breakers {
				wg.Add(1)
				go func(b *client.Breaker) {
					defer wg.Done()
					for ctx.Err() == nil && !(sawHalfOpenProbe.Load() && closedAgain()) {
						p, err := b.Allow(ctx)
						if errors.Is(err, client.ErrOpen) {
							sawOpen.Store(true)
							healthy.Store(true) // the upstream recovers once the fleet stopped calling it
							time.Sleep(time.Millisecond)
							continue
						}
						if err != nil {
							t.Error(err)
							return
						}
						if p.Probe() {
							sawHalfOpenProbe.Store(true)
							n := probesNow.Add(1)
							for m := maxProbes.Load(); n > m && !maxProbes.CompareAndSwap(m, n); m = maxProbes.Load() {
							}
							time.Sleep(2 * time.Millisecond) // overlap with other probes
							probesNow.Add(-1)
						}
						if healthy.Load() {
							successes.Add(1)
							_ = p.Success(ctx)
						} else {
							failures.Add(1)
							_ = p.Failure(ctx, errBoom)
						}
					}
				}(b)
			}
			wg.Wait()
			for _, b := range breakers {
				if err := b.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
				if n := b.Stats().Unrecorded; n != 0 {
					t.Errorf("a worker could not record %d outcomes", n)
				}
			}
			if ctx.Err() != nil {
				t.Fatal("the cycle did not complete in 10s")
			}
			st, err := admin.Status(context.Background(), ops, name)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("reported %d successes and %d failures; max probes at once %d; status %+v",
				successes.Load(), failures.Load(), maxProbes.Load(), st)
			if st.TotalSuccesses != successes.Load() || st.TotalFailures != failures.Load() {
				t.Errorf("recorded %d successes, %d failures; workers reported %d and %d",
					st.TotalSuccesses, st.TotalFailures, successes.Load(), failures.Load())
			}
			if maxProbes.Load() > int64(cfg.HalfOpenMaxCalls) || !sawOpen.Load() {
				t.Errorf("max concurrent probes %d (limit %d), saw open %v", maxProbes.Load(), cfg.HalfOpenMaxCalls, sawOpen.Load())
			}
			entries, err := ops.XRange(context.Background(), breakerbox.Key(name, "events"), "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(entries)) != st.Transitions {
				t.Errorf("%d stream entries for %d transitions, want one per transition", len(entries), st.Transitions)
			}
			prev := int64(0)
			for i, e := range entries {
				g, _ := strconv.ParseInt(fmt.Sprint(e.Values["generation"]), 10, 64)
				if g <= prev {
					t.Errorf("entry %d has generation %v after %d: generations must increase", i, e.Values["generation"], prev)
				}
				prev = g
				if e.Values["event"] == "opened" && e.Values["from"] == "closed" && e.Values["failures"] != strconv.Itoa(cfg.FailureThreshold) {
					t.Errorf("opened with %v consecutive failures, want exactly %d", e.Values["failures"], cfg.FailureThreshold)
				}
			}
		})
	}
}
