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
	"github.com/breakerbox/breakerbox/alerts"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
)

// Options shape a demo run.
type Options struct {
	RedisURL string        // empty: an embedded miniredis
	Workers  int           // default 4
	Healthy  time.Duration // upstream healthy at first, default 1s
	Down     time.Duration // then failing, default 2s
	After    time.Duration // then healthy again until the end, default 2s
	Out      io.Writer
	// NoAlerts leaves out the alert daemon, which otherwise runs in process
	// and prints its alerts (standard-output sink) among the demo's lines.
	NoAlerts bool
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
	ops, err := newRedis()
	if err != nil {
		fmt.Fprintln(out, "demo:", err)
		return 1
	}
	defer ops.Close()
	if err := ops.Ping(ctx).Err(); err != nil {
		fmt.Fprintln(out, "demo: redis:", err)
		return 1
	}
	// Start from a clean breaker so the demo can be rerun on a real server.
	if err := ops.Del(ctx, breakerbox.Keys(Breaker)...).Err(); err != nil {
		fmt.Fprintln(out, "demo: redis:", err)
		return 1
	}

	cfg := client.Config{FailureThreshold: 3, RecoveryTimeout: 500 * time.Millisecond,
		SuccessThreshold: 2, RequestTimeout: 200 * time.Millisecond}
	say("%d workers share breaker %q: opens after %d consecutive failures, probes after %s, closes after %d successes",
		o.Workers, Breaker, cfg.FailureThreshold, cfg.RecoveryTimeout, cfg.SuccessThreshold)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	alertsCtx, stopAlerts := context.WithCancel(ctx) // outlives the workers to post the recovery
	defer stopAlerts()
	var bg sync.WaitGroup
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if !o.NoAlerts {
		d, err := newAlertDaemon(ops, out, quiet)
		if err != nil {
			fmt.Fprintln(out, "demo: alerts:", err)
			return 1
		}
		say("the alert daemon reads the breaker's transition stream (no SLACK_WEBHOOK_URL: alerts go to stdout)")
		bg.Add(1)
		go func() { defer bg.Done(); _ = d.Run(alertsCtx) }()
	}
	bg.Add(1)
	go func() { defer bg.Done(); watch(runCtx, ops, say) }()

	up := &upstream{}
	var ran, refused, failed atomic.Int64
	var workers sync.WaitGroup
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
		defer b.Shutdown(context.Background())
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
	stopAlerts()
	bg.Wait()

	st, err := admin.Status(ctx, ops, Breaker)
	if err != nil {
		fmt.Fprintln(out, "demo:", err)
		return 1
	}
	fmt.Fprintf(out, "\n%s: %s\n  Failures: %d/%d\n  Success Rate: %.1f%%\n  Requests: %d (%d refused)\n  Last Error: %s\n",
		st.Name, st.State, st.CurrentFailures, st.FailureThreshold, st.SuccessRate,
		st.TotalRequests, st.TotalRefused, st.LastFailureError)
	if st.State != breakerbox.StateClosed || st.Generation < 3 {
		fmt.Fprintln(out, "demo: the breaker did not go through open and back to closed")
		return 1
	}
	return 0
}

// watch prints every transition of the breaker as the script announces it.
func watch(ctx context.Context, rdb redis.UniversalClient, say func(string, ...any)) {
	printed, n := int64(0), 0 // a fresh breaker: closed in generation 0
	ps := rdb.Subscribe(ctx, breakerbox.Channel(Breaker))
	defer ps.Close()
	defer context.AfterFunc(ctx, func() { _ = ps.Close() })() // unblocks ReceiveMessage
	for {
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil {
			return
		}
		a, err := breakerbox.ParseAnnouncement(msg.Payload)
		if err != nil || a.Generation == printed { // a config change announces the same generation
			continue
		}
		printed, n = a.Generation, n+1 // the generation orders transitions; n counts them
		switch a.State {
		case breakerbox.StateOpen:
			say("breaker OPEN (transition %d): the fleet stops calling the upstream; probing in %dms", n, a.RetryAfterMs())
		case breakerbox.StateHalfOpen:
			say("breaker HALF_OPEN (transition %d): admitting a few probes", n)
		case breakerbox.StateClosed:
			say("breaker CLOSED (transition %d): normal operation", n)
		}
	}
}

// newAlertDaemon returns the alert daemon with a standard-output sink,
// tuned for a demo that lasts seconds: it notices the breaker at once and
// folds flapping over one second instead of five minutes.
func newAlertDaemon(rdb redis.UniversalClient, out io.Writer, log *slog.Logger) (*alerts.Daemon, error) {
	sink, err := alerts.NewWriterSink(&indent{w: out})
	if err != nil {
		return nil, err
	}
	return alerts.New(rdb, alerts.Config{Consumer: "demo", FlapWindow: time.Second,
		DiscoveryInterval: 50 * time.Millisecond, Block: 100 * time.Millisecond, Logger: log}, sink)
}

// indent sets the alerts apart from the demo's own lines.
type indent struct{ w io.Writer }

func (i *indent) Write(p []byte) (int, error) {
	text := strings.TrimRight(string(p), "\n")
	if text == "" {
		return len(p), nil
	}
	_, err := io.WriteString(i.w, "        | "+strings.ReplaceAll(text, "\n", "\n        | ")+"\n")
	return len(p), err
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
