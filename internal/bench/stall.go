package bench

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/health"
)

// StallFigures are what callers waited while Redis was stopped (SIGSTOP)
// under load, on a go-redis client with its defaults (context deadlines
// ignored, a 3 s read timeout).
type StallFigures struct {
	Stall         time.Duration // how long Redis was stopped
	Timeout       time.Duration // the breakers' Redis timeout
	Calls         int64         // calls made while Redis was stopped
	Max           time.Duration // the longest of them
	MaxWhat       string
	P99           time.Duration
	OutageAfter   time.Duration // from SIGSTOP until every breaker followed its outage policy
	RecoveredIn   time.Duration // from SIGCONT until every breaker used Redis again
	HealthTimeout time.Duration
	HealthMax     time.Duration // the longest /health answer while Redis was stopped
	HealthCodes   map[int]int
}

// measureStall starts a redis-server of its own, runs 16 goroutines on a
// Fast and a Strict breaker (Execute in a tight loop, one call in five a
// failure that waits for its batch) and /health requests, stops the
// server with SIGSTOP for d and resumes it.
func measureStall(ctx context.Context, bin string, d time.Duration) (StallFigures, error) {
	f := StallFigures{Stall: d, Timeout: 250 * time.Millisecond, HealthTimeout: 500 * time.Millisecond, HealthCodes: map[int]int{}}
	srv, err := StartServer(ctx, bin)
	if err != nil {
		return f, err
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr}) // go-redis defaults
	defer rdb.Close()
	cfg := client.Config{FailureThreshold: 1_000_000} // failures are recorded; the breakers stay closed
	fast, err := client.New(rdb, "stall-fast", cfg, client.WithLogger(quiet), client.WithRedisTimeout(f.Timeout))
	if err != nil {
		return f, err
	}
	strict, err := client.New(rdb, "stall-strict", cfg, client.WithLogger(quiet), client.WithRedisTimeout(f.Timeout),
		client.WithAdmission(client.AdmitStrict))
	if err != nil {
		return f, err
	}
	defer fast.Shutdown(context.Background())
	defer strict.Shutdown(context.Background())
	for _, b := range []*client.Breaker{fast, strict} {
		if err := b.Ready(ctx); err != nil {
			return f, err
		}
	}
	h, err := health.New(rdb, health.WithNames("stall-fast", "stall-strict"), health.WithTimeout(f.HealthTimeout),
		health.WithLogger(quiet))
	if err != nil {
		return f, err
	}
	var stalled atomic.Bool
	var mu sync.Mutex
	hist := NewHistogram()
	var stop atomic.Bool
	var wg sync.WaitGroup
	boom := errors.New("upstream: 503")
	for g := 0; g < 8; g++ {
		for _, b := range []*client.Breaker{fast, strict} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					start := time.Now()
					_ = b.Execute(ctx, func(context.Context) error {
						if i%5 == 2 {
							return boom
						}
						return nil
					})
					if took := time.Since(start); stalled.Load() {
						mu.Lock()
						f.Calls++
						hist.Record(took)
						if took > f.Max {
							f.Max, f.MaxWhat = took, "Execute "+b.Name()
						}
						mu.Unlock()
					}
				}
			}()
		}
	}
	time.Sleep(300 * time.Millisecond)
	pid := srv.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return f, err
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	defer resume()
	stopped := time.Now()
	stalled.Store(true)
	healthDone := make(chan struct{})
	go func() {
		defer close(healthDone)
		for time.Since(stopped) < d-f.HealthTimeout {
			start := time.Now()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
			took := time.Since(start)
			mu.Lock()
			f.HealthMax = max(f.HealthMax, took)
			f.HealthCodes[rec.Code]++
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	for time.Since(stopped) < d {
		if f.OutageAfter == 0 && fast.Stats().Outage && strict.Stats().Outage {
			f.OutageAfter = time.Since(stopped)
		}
		time.Sleep(2 * time.Millisecond)
	}
	<-healthDone
	stalled.Store(false)
	resume()
	cont := time.Now()
	for fast.Stats().Outage || strict.Stats().Outage {
		if time.Since(cont) > 10*time.Second {
			return f, errors.New("the breakers did not leave the outage within 10s of SIGCONT")
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.RecoveredIn = time.Since(cont)
	stop.Store(true)
	wg.Wait()
	f.P99 = hist.Quantile(0.99)
	return f, nil
}
