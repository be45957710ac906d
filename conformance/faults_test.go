package conformance

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(s, nil)) }

// counted is what callers reported, to compare with Redis's totals.
type counted struct{ successes, failures, refused atomic.Int64 }

// TestFaultScriptFlushMidTraffic flushes the script cache over and over
// while callers run: the client must reload the script transparently
// (EVALSHA, NOSCRIPT, EVAL) and lose or double no outcome.
func TestFaultScriptFlushMidTraffic(t *testing.T) {
	srv := redistest.Start(t)
	for _, adm := range []client.Admission{client.AdmitStrict, client.AdmitFast} {
		t.Run(adm.String(), func(t *testing.T) {
			rdb := srv.Client(t)
			name := "flush-" + adm.String()
			var logs syncBuffer
			b, err := client.New(rdb, name, client.Config{FailureThreshold: 4, RecoveryTimeout: 20 * time.Millisecond,
				SuccessThreshold: 1, RequestTimeout: time.Second},
				client.WithAdmission(adm), client.WithLogger(logs.logger()), client.WithRedisTimeout(2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var c counted
			var wg sync.WaitGroup
			done := make(chan struct{})
			for g := 0; g < 4; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(g), 7))
					for i := 0; i < 250; i++ {
						p, err := b.Allow(ctx)
						if errors.Is(err, client.ErrOpen) {
							c.refused.Add(1)
							time.Sleep(time.Millisecond)
							continue
						}
						if err != nil {
							t.Errorf("allow: %v", err)
							return
						}
						if rng.IntN(3) == 0 {
							err = p.Failure(ctx, errors.New("boom"))
							c.failures.Add(1)
						} else {
							err = p.Success(ctx)
							c.successes.Add(1)
						}
						if err != nil {
							t.Errorf("outcome: %v", err)
							return
						}
					}
				}()
			}
			flushes := 0
			go func() { wg.Wait(); close(done) }()
		flushing:
			for flushes < 10000 {
				select {
				case <-done:
					break flushing
				case <-time.After(2 * time.Millisecond):
				}
				if err := rdb.ScriptFlush(ctx).Err(); err != nil {
					t.Fatalf("SCRIPT FLUSH: %v", err)
				}
				flushes++
			}
			<-done
			if err := b.Shutdown(ctx); err != nil {
				t.Fatalf("close: %v", err)
			}
			if u := b.Stats().Unrecorded; u != 0 {
				t.Errorf("%d outcomes unrecorded; want 0 (the script cache was flushed, Redis never went away)\nlogs:\n%s", u, logs.String())
			}
			st, err := admin.Status(ctx, rdb, name)
			if err != nil {
				t.Fatal(err)
			}
			if st.TotalSuccesses != c.successes.Load() || st.TotalFailures != c.failures.Load() || st.TotalRefused != c.refused.Load() {
				t.Errorf("Redis recorded %d successes, %d failures, %d refused; callers reported %d, %d, %d",
					st.TotalSuccesses, st.TotalFailures, st.TotalRefused, c.successes.Load(), c.failures.Load(), c.refused.Load())
			}
			if flushes < 5 {
				t.Errorf("only %d SCRIPT FLUSHes happened during the traffic; the test proved little", flushes)
			}
			t.Logf("%s: %d SCRIPT FLUSHes during %d successes, %d failures, %d refusals; all recorded exactly once",
				adm, flushes, c.successes.Load(), c.failures.Load(), c.refused.Load())
		})
	}
}

// callRecord is one caller's call during the restart test.
type callRecord struct {
	start, end      time.Time
	allowDur        time.Duration
	outcomeDur      time.Duration
	admitted        bool
	allowErr        error
	outcomeErr      error
	outageWhenAsked bool
}

// TestFaultRedisRestartMidTraffic stops Redis under traffic and starts it
// again: callers follow the outage policy, no call blocks past the client's
// Redis timeout (plus slack for a loaded machine: this bounds a hang, it
// does not measure speed), and the breaker records outcomes in Redis again
// within a second of Redis answering.
func TestFaultRedisRestartMidTraffic(t *testing.T) {
	const timeout = 100 * time.Millisecond
	const slack = 400 * time.Millisecond
	cases := []struct {
		policy client.OutagePolicy
		adm    client.Admission
	}{
		{client.OutageDecideLocally, client.AdmitStrict}, {client.OutageAdmitAll, client.AdmitStrict}, {client.OutageRefuseAll, client.AdmitStrict},
		{client.OutageDecideLocally, client.AdmitFast}, {client.OutageRefuseAll, client.AdmitFast},
	}
	for _, tc := range cases {
		t.Run(tc.policy.String()+"/"+tc.adm.String(), func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
			t.Cleanup(func() { _ = rdb.Close() })
			var logs syncBuffer
			name := "restart"
			cfg := client.Config{FailureThreshold: 3, RecoveryTimeout: 50 * time.Millisecond, SuccessThreshold: 1, RequestTimeout: time.Second}
			b, err := client.New(rdb, name, cfg, client.WithOutagePolicy(tc.policy), client.WithAdmission(tc.adm),
				client.WithRedisTimeout(timeout), client.WithLogger(logs.logger()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
			ctx := context.Background()

			var mu sync.Mutex
			var calls []callRecord
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for g := 0; g < 3; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						rec := callRecord{start: time.Now(), outageWhenAsked: b.Stats().Outage}
						p, err := b.Allow(ctx)
						rec.allowDur = time.Since(rec.start)
						rec.allowErr = err
						if p != nil {
							rec.admitted = true
							s := time.Now()
							rec.outcomeErr = p.Success(ctx)
							rec.outcomeDur = time.Since(s)
						}
						rec.end = time.Now()
						mu.Lock()
						calls = append(calls, rec)
						mu.Unlock()
						time.Sleep(2 * time.Millisecond)
					}
				}()
			}

			time.Sleep(150 * time.Millisecond)
			srv.Stop(t)
			downAt := time.Now()
			time.Sleep(400 * time.Millisecond)
			upBegin := time.Now()
			srv.Restart(t)
			upAt := time.Now()

			// The breaker works again once an outcome reaches the new server.
			var recovered time.Duration
			deadline := upAt.Add(3 * time.Second)
			for time.Now().Before(deadline) {
				st, err := admin.Status(ctx, rdb, name)
				if err == nil && st.TotalSuccesses > 0 && !b.Stats().Outage {
					recovered = time.Since(upAt)
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			close(stop)
			wg.Wait()

			if recovered == 0 {
				t.Errorf("no outcome reached Redis within 3s of its restart\nlogs:\n%s", logs.String())
			} else if recovered > time.Second {
				t.Errorf("outcomes reached Redis %s after its restart, want within 1s", recovered)
			}
			mu.Lock()
			defer mu.Unlock()
			var during, admittedDuring int
			for i, c := range calls {
				if c.allowDur > timeout+slack || c.outcomeDur > timeout+slack {
					t.Errorf("call %d took %s to allow and %s to report, want each within the %s Redis timeout (+%s slack)",
						i, c.allowDur, c.outcomeDur, timeout, slack)
				}
				// Calls entirely inside the outage, once this worker knew of it
				// (a Fast worker admits from its view until it learns).
				if c.start.Before(downAt) || c.end.After(upBegin) || (tc.adm == client.AdmitFast && !c.outageWhenAsked) {
					continue
				}
				during++
				if c.admitted {
					admittedDuring++
				}
				switch tc.policy {
				case client.OutageAdmitAll, client.OutageDecideLocally:
					// Only successes are reported, so the local breaker never trips.
					if !c.admitted || c.allowErr != nil {
						t.Errorf("call %d during the outage: admitted %v, err %v; %s admits", i, c.admitted, c.allowErr, tc.policy)
					}
				case client.OutageRefuseAll:
					if c.admitted || !errors.Is(c.allowErr, client.ErrOpen) || !errors.Is(c.allowErr, client.ErrRedisUnavailable) {
						t.Errorf("call %d during the outage: admitted %v, err %v; refuse-all refuses with ErrOpen and ErrRedisUnavailable", i, c.admitted, c.allowErr)
					}
				}
			}
			if during < 10 {
				t.Errorf("only %d calls ran inside the outage; the test proved little", during)
			}
			t.Logf("%s/%s: %d calls, %d inside the outage (%d admitted), Redis down %s, outcomes recorded again %s after restart",
				tc.policy, tc.adm, len(calls), during, admittedDuring, upBegin.Sub(downAt).Round(time.Millisecond), recovered.Round(time.Millisecond))
		})
	}
}

// TestFaultConfigSurvivesRedisRestart: after a restart without persistence
// the breaker's keys are gone; the worker's config must apply again, not
// the protocol defaults, or a worker configured for 1 failure would need 3.
func TestFaultConfigSurvivesRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	cfg := client.Config{FailureThreshold: 1, RecoveryTimeout: 7 * time.Second, SuccessThreshold: 1, RequestTimeout: time.Second}
	var logs syncBuffer
	b, err := client.New(rdb, "cfg-restart", cfg, client.WithAdmission(client.AdmitStrict),
		client.WithRedisTimeout(100*time.Millisecond), client.WithLogger(logs.logger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(ctx) })
	p, err := b.Allow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Success(ctx)
	srv.Restart(t)
	var st breakerbox.Status
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if p, err := b.Allow(ctx); err == nil && !b.Stats().Outage {
			_ = p.Success(ctx)
			if st, err = admin.Status(ctx, rdb, "cfg-restart"); err == nil && st.TotalSuccesses > 0 {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.TotalSuccesses == 0 {
		t.Fatalf("the breaker did not work again after the restart\nlogs:\n%s", logs.String())
	}
	// The worker seeds its config again after its subscription comes back
	// (the seed stores it only where none is stored).
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st, err = admin.Status(ctx, rdb, "cfg-restart"); err == nil && st.FailureThreshold == 1 {
			break
		}
	}
	if st.FailureThreshold != 1 || st.RecoveryTimeout != 7*time.Second {
		t.Errorf("3s after the restart Redis has failure_threshold %d, recovery_timeout %s; the worker's config says 1 and 7s",
			st.FailureThreshold, st.RecoveryTimeout)
	}
}

// TestFaultBadCredentialsOrAddress: a client with a wrong password or an
// address nobody listens on gets a clear error at first use, naming the
// cause, not a silent fallback.
func TestFaultBadCredentialsOrAddress(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "right-password")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := l.Addr().String()
	l.Close()
	cases := []struct {
		name  string
		opts  redis.Options
		cause []string // any of these in the error text
	}{
		{"wrong password", redis.Options{Addr: srv.Addr, Password: "wrong-password"}, []string{"WRONGPASS"}},
		// Redis 7 refuses an unauthenticated command of more than 10
		// arguments (an EVALSHA with 8 keys) as a protocol error before NOAUTH.
		{"no password", redis.Options{Addr: srv.Addr}, []string{"NOAUTH", "unauthenticated"}},
		// go-redis retries the dial until the breaker's Redis timeout, so
		// the breaker's log says it cannot reach Redis rather than why.
		{"unreachable address", redis.Options{Addr: deadAddr}, []string{"connection refused", "cannot reach redis"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			rdb := redis.NewClient(&opts)
			t.Cleanup(func() { _ = rdb.Close() })
			ctx := context.Background()
			mentions := func(s string) bool {
				for _, c := range tc.cause {
					if strings.Contains(s, c) {
						return true
					}
				}
				return false
			}
			// The admin calls return the error as it is.
			if _, err := admin.Status(ctx, rdb, "svc"); err == nil || !mentions(err.Error()) {
				t.Errorf("admin.Status: %v, want an error naming %v", err, tc.cause)
			}
			// A breaker handle: the first call must say why Redis is not usable.
			for _, policy := range []client.OutagePolicy{client.OutageDecideLocally, client.OutageRefuseAll} {
				var logs syncBuffer
				b, err := client.New(rdb, "svc", client.DefaultConfig(), client.WithOutagePolicy(policy),
					client.WithRedisTimeout(200*time.Millisecond), client.WithLogger(logs.logger()))
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				p, err := b.Allow(ctx)
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("%s: first Allow took %s", policy, d)
				}
				if p != nil {
					_ = p.Ignore(ctx)
				}
				_ = b.Shutdown(ctx)
				logged := logs.String()
				if !strings.Contains(logged, "level=ERROR") || !mentions(logged) {
					t.Errorf("%s: first use logged no error naming %v:\n%s", policy, tc.cause, logged)
				}
				if policy == client.OutageRefuseAll && (err == nil || !mentions(err.Error())) {
					t.Errorf("%s: first Allow returned %v; want it to name %v", tc.name, err, tc.cause)
				}
			}
		})
	}
}

// TestFastWorkerSeesShorterRecoveryTimeout: protocol.md lets a worker refuse
// locally for retry_after_ms because "the breaker announces any earlier
// change on its channel", and says a shorter recovery_timeout_ms shortens a
// running timer. So after an operator shortens it, a Fast worker must not
// keep refusing until the old deadline.
func TestFastWorkerSeesShorterRecoveryTimeout(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	var logs syncBuffer
	cfg := client.Config{FailureThreshold: 1, RecoveryTimeout: time.Minute, SuccessThreshold: 1, RequestTimeout: time.Second}
	b, err := client.New(rdb, "shorter", cfg, client.WithLogger(logs.logger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(ctx) })
	// Let the Fast view go live: the subscription is started on first use
	// and trusted once its first refresh is done (a few ms on loopback).
	p, err := b.Allow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Success(ctx)
	time.Sleep(200 * time.Millisecond)
	p, err = b.Allow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Failure(ctx, errors.New("down"))
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := admin.Status(ctx, rdb, "shorter"); err != nil || st.State != breakerbox.StateOpen {
		t.Fatalf("the breaker did not open: %+v %v", st, err)
	}
	time.Sleep(50 * time.Millisecond) // the announcement reaches the view
	// The worker learns it is open for a minute; its refusal is sent (and
	// answered) before the change, so nothing pending can tell it later.
	if _, err := b.Allow(ctx); !errors.Is(err, client.ErrOpen) {
		t.Fatalf("allow right after opening: %v, want ErrOpen", err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// An operator (another process) shortens the timer to 50ms.
	short := cfg
	short.RecoveryTimeout = 50 * time.Millisecond
	if _, err := admin.Configure(ctx, rdb, "shorter", short, "ops"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // well past the new deadline
	st, err := admin.Status(ctx, rdb, "shorter")
	if err != nil || st.RetryAfter != 0 {
		t.Fatalf("status after the change: retry after %s, err %v; want 0 (the shorter timer has run out)", st.RetryAfter, err)
	}
	p, err = b.Allow(ctx)
	if err != nil {
		t.Fatalf("Allow 300ms after shortening the recovery timeout to 50ms: %v; the configure announcement should have moved the local deadline", err)
	}
	if !p.Probe() {
		t.Errorf("admitted, but not as a half-open probe")
	}
	_ = p.Success(ctx)
}
