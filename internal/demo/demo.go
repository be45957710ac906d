// Package demo is the main job of cmd/demo: several workers share one
// breaker in Redis while their upstream fails and recovers, and the demo
// prints what the fleet sees.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
)

// Options shape a demo run.
type Options struct {
	RedisURL string        // empty: an embedded miniredis
	Workers  int           // default 4
	Healthy  time.Duration // upstream healthy at first, default 1s
	Down     time.Duration // then failing, default 2s
	After    time.Duration // then healthy again until the end, default 2s
	Out      io.Writer
	// Alerts, when set, runs alongside the workers until the demo ends,
	// reading the breaker's transitions (the alert daemon in process).
	Alerts func(ctx context.Context, rdb redis.UniversalClient) error
}

// Breaker is the name of the demo's breaker.
const Breaker = "openai_transcription"

// upstream is a fake API whose health the demo switches.
type upstream struct{ down atomic.Bool }

func (u *upstream) transcribe(ctx context.Context) error {
	select {
	case <-time.After(5 * time.Millisecond): // the call's own latency
	case <-ctx.Done():
		return ctx.Err()
	}
	if u.down.Load() {
		return errors.New("OpenAI API error: 503 Service Unavailable")
	}
	return nil
}

// Run runs the demo and returns a process exit code.
func Run(ctx context.Context, o Options) int {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Healthy <= 0 {
		o.Healthy = time.Second
	}
	if o.Down <= 0 {
		o.Down = 2 * time.Second
	}
	if o.After <= 0 {
		o.After = 2 * time.Second
	}
	out := &syncWriter{w: o.Out}
	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(out, "%6.2fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}

	newRedis := func() (redis.UniversalClient, error) { return client.RedisFromURL(o.RedisURL) }
	if o.RedisURL == "" {
		mr, err := miniredis.Run()
		if err != nil {
			fmt.Fprintln(out, "demo: embedded miniredis:", err)
			return 1
		}
		defer mr.Close()
		say("REDIS_URL is unset: using an embedded miniredis at %s", mr.Addr())
		newRedis = func() (redis.UniversalClient, error) {
			return redis.NewClient(&redis.Options{Addr: mr.Addr()}), nil
		}
	} else {
		say("using Redis at REDIS_URL")
	}
	admin, err := newRedis()
	if err != nil {
		fmt.Fprintln(out, "demo:", err)
		return 1
	}
	defer admin.Close()
	if err := admin.Ping(ctx).Err(); err != nil {
		fmt.Fprintln(out, "demo: redis:", err)
		return 1
	}
	// Start from a clean breaker so the demo can be rerun on a real server.
	if err := admin.Del(ctx, breakerbox.Keys(Breaker)...).Err(); err != nil {
		fmt.Fprintln(out, "demo: redis:", err)
		return 1
	}

	cfg := client.Config{FailureThreshold: 3, RecoveryTimeout: 500 * time.Millisecond,
		SuccessThreshold: 2, RequestTimeout: 200 * time.Millisecond}
	say("%d workers share breaker %q: opens after %d consecutive failures, probes after %s, closes after %d successes",
		o.Workers, Breaker, cfg.FailureThreshold, cfg.RecoveryTimeout, cfg.SuccessThreshold)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var bg sync.WaitGroup
	if o.Alerts != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			if err := o.Alerts(runCtx, admin); err != nil && runCtx.Err() == nil {
				say("alerts: %v", err)
			}
		}()
	}
	bg.Add(1)
	go func() { defer bg.Done(); watch(runCtx, admin, say) }()

	up := &upstream{}
	var ran, refused, failed atomic.Int64
	var workers sync.WaitGroup
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := 0; i < o.Workers; i++ {
		rdb, err := newRedis() // each worker has its own connections, as a process would
		if err != nil {
			fmt.Fprintln(out, "demo:", err)
			return 1
		}
		defer rdb.Close()
		b, err := client.New(rdb, Breaker, cfg, client.WithLogger(quiet), client.WithActor(fmt.Sprintf("demo-worker-%d", i+1)))
		if err != nil {
			fmt.Fprintln(out, "demo:", err)
			return 1
		}
		defer b.Close(context.Background())
		workers.Add(1)
		go func() {
			defer workers.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-tick.C:
				}
				err := b.Execute(runCtx, up.transcribe)
				switch {
				case errors.Is(err, client.ErrOpen):
					refused.Add(1)
				case err != nil && runCtx.Err() == nil:
					failed.Add(1)
					ran.Add(1)
				case err == nil:
					ran.Add(1)
				}
			}
		}()
	}

	phase := func(what string, d time.Duration) {
		r0, x0, f0 := ran.Load(), refused.Load(), failed.Load()
		say("upstream %s", what)
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		say("  ... in %s: %d calls reached the upstream (%d failed), %d were refused by the breaker",
			d, ran.Load()-r0, failed.Load()-f0, refused.Load()-x0)
	}
	phase("healthy", o.Healthy)
	up.down.Store(true)
	phase("DOWN (every call fails)", o.Down)
	up.down.Store(false)
	phase("recovered", o.After)
	stop()
	workers.Wait()
	bg.Wait()

	st, err := client.ReadStatus(ctx, admin, Breaker)
	if err != nil {
		fmt.Fprintln(out, "demo:", err)
		return 1
	}
	fmt.Fprintf(out, "\n%s: %s\n  Failures: %d/%d\n  Success Rate: %.1f%%\n  Requests: %d (%d refused)\n  Last Error: %s\n",
		st.Name, st.State, st.CurrentFailures, st.FailureThreshold, st.SuccessRate,
		st.TotalRequests, st.TotalRefused, st.LastFailureError)
	if st.State != client.Closed || st.Generation < 3 {
		fmt.Fprintln(out, "demo: the breaker did not go through open and back to closed")
		return 1
	}
	return 0
}

// watch prints every transition of the breaker as the script announces it.
func watch(ctx context.Context, rdb redis.UniversalClient, say func(string, ...any)) {
	ps := rdb.Subscribe(ctx, breakerbox.Channel(Breaker))
	defer ps.Close()
	defer context.AfterFunc(ctx, func() { _ = ps.Close() })() // unblocks ReceiveMessage
	for {
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil {
			return
		}
		f := strings.Fields(msg.Payload) // STATE GENERATION MODE RETRY_AFTER_MS
		if len(f) != 4 {
			continue
		}
		switch f[0] {
		case "open":
			say("breaker OPEN (generation %s): the fleet stops calling the upstream; probing in %sms", f[1], f[3])
		case "half_open":
			say("breaker HALF_OPEN (generation %s): admitting a few probes", f[1])
		case "closed":
			say("breaker CLOSED (generation %s): normal operation", f[1])
		}
	}
}

// syncWriter serialises writes from the workers, the watcher and alerts.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
