package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/alerts"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/client/dashboard"
)

// LiveOptions shape the live demo: breakers whose upstreams fail and
// recover on a schedule, with the dashboard serving them.
type LiveOptions struct {
	RedisURL string // empty: an embedded miniredis
	Addr     string // where the dashboard listens, e.g. 127.0.0.1:8080
	Out      io.Writer
}

// liveUpstream is one breaker of the live demo and its upstream's health
// over time.
type liveUpstream struct {
	name  string
	every time.Duration                 // one call per worker every
	fails func(t time.Duration) float64 // failure probability at t since start
}

// The live demo's upstreams: some go down for a while every so often
// (early in the first cycle, so there is something to see at once), one
// flaps, one is always down, the others are healthy with different
// traffic. Two are under an operator's override from the start.
var liveUpstreams = []liveUpstream{
	{"openai_transcription", 60 * time.Millisecond, cycle(40*time.Second, 6*time.Second, 12*time.Second, 1)},
	{"anthropic_messages", 40 * time.Millisecond, func(time.Duration) float64 { return 0.02 }},
	{"stripe_charges", 80 * time.Millisecond, cycle(25*time.Second, 4*time.Second, 10*time.Second, 0.7)},
	{"slack_webhook", 150 * time.Millisecond, func(time.Duration) float64 { return 1 }},
	{"s3_uploads", 30 * time.Millisecond, func(time.Duration) float64 { return 0 }},
	{"sendgrid_email", 120 * time.Millisecond, func(t time.Duration) float64 { return 0.1 + 0.1*math.Sin(t.Seconds()/5) }},
	{"twilio_sms", 200 * time.Millisecond, func(time.Duration) float64 { return 0 }},
	{"geocoder", 100 * time.Millisecond, func(time.Duration) float64 { return 0.3 }},
	{"legacy_billing", 250 * time.Millisecond, func(time.Duration) float64 { return 0 }},
	{"search_index", 50 * time.Millisecond, cycle(30*time.Second, 9*time.Second, 4*time.Second, 1)},
}

// cycle fails with probability p from from to from+down in every period.
func cycle(period, from, down time.Duration, p float64) func(time.Duration) float64 {
	return func(t time.Duration) float64 {
		if at := t % period; at >= from && at < from+down {
			return p
		}
		return 0
	}
}

// liveErrors are what the failing upstreams answer.
var liveErrors = []string{"503 Service Unavailable", "connection timeout after 10s",
	"429 Too Many Requests", "connection reset by peer"}

// RunLive runs the live demo until ctx ends: each breaker of liveUpstreams
// called by two workers, the alert daemon (alerts discarded), and the
// dashboard at o.Addr with an operator "demo" whose secret it prints.
func RunLive(ctx context.Context, o LiveOptions) int {
	out := &syncWriter{w: o.Out}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rdb, closeRedis, err := liveRedis(o.RedisURL)
	if err != nil {
		fmt.Fprintln(out, "demo:", err)
		return 1
	}
	defer closeRedis()
	if err := rdb.Ping(ctx).Err(); err != nil {
		fmt.Fprintln(out, "demo: redis:", err)
		return 1
	}
	secret := randomSecret()
	dash, err := dashboard.New(rdb, dashboard.WithOperators(dashboard.Operator{Name: "demo", Secret: secret}),
		dashboard.WithInterval(time.Second), dashboard.WithLogger(quiet))
	if err != nil {
		fmt.Fprintln(out, "demo:", err)
		return 1
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		fmt.Fprintln(out, "demo: dashboard:", err)
		return 1
	}
	srv := &http.Server{Handler: dash, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	go func() { _ = dash.Run(ctx) }()
	sink, _ := alerts.NewWriterSink(io.Discard)
	if d, err := alerts.New(rdb, alerts.Config{Consumer: "demo", Logger: quiet}, sink); err == nil {
		go func() { _ = d.Run(ctx) }()
	}

	if err := StartLive(ctx, rdb, quiet); err != nil {
		fmt.Fprintln(out, "demo:", err)
		return 1
	}

	url := "http://" + ln.Addr().String() + "/"
	fmt.Fprintf(out, "breakerbox live demo: %d breakers, 2 workers each, upstreams failing and recovering on a schedule\n", len(liveUpstreams))
	fmt.Fprintf(out, "dashboard:  %s\n", url)
	fmt.Fprintf(out, "operator:   sign in as demo with secret %s to reset, force open, disable, release or reconfigure\n", secret)
	fmt.Fprintln(out, "Ctrl-C to stop")
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-done
	return 0
}

// LiveBreakers are the names of the live demo's breakers.
func LiveBreakers() []string {
	names := make([]string, len(liveUpstreams))
	for i, u := range liveUpstreams {
		names[i] = u.name
	}
	return names
}

// StartLive starts the live demo's traffic on rdb until ctx ends: it
// deletes the demo's breakers, then two workers per breaker call their
// upstreams, and two breakers get an operator's override (forced open,
// disabled). The browser tests of client/dashboard use it for the
// screenshot.
func StartLive(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger) error {
	for _, u := range liveUpstreams { // start from clean breakers, so the demo can be rerun
		if err := rdb.Del(ctx, breakerbox.Keys(u.name)...).Err(); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
	}
	cfg := client.Config{FailureThreshold: 3, RecoveryTimeout: 5 * time.Second, SuccessThreshold: 2,
		RequestTimeout: 2 * time.Second}
	start := time.Now()
	for _, u := range liveUpstreams {
		for w := 1; w <= 2; w++ {
			b, err := client.New(rdb, u.name, cfg, client.WithLogger(log), client.WithActor(fmt.Sprintf("demo-worker-%d", w)))
			if err != nil {
				return err
			}
			context.AfterFunc(ctx, func() { _ = b.Shutdown(context.Background()) })
			go callForever(ctx, b, u, start)
		}
	}
	// Operators' overrides, as if someone had used cbctl.
	for name, action := range map[string]breakerbox.Action{"legacy_billing": breakerbox.ActionForceOpen, "geocoder": breakerbox.ActionDisable} {
		if _, err := admin.Control(ctx, rdb, name, action, "cbctl:ops@demo"); err != nil {
			return err
		}
	}
	return nil
}

// callForever is one worker calling its upstream through the breaker.
func callForever(ctx context.Context, b *client.Breaker, u liveUpstream, start time.Time) {
	tick := time.NewTicker(u.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p := u.fails(time.Since(start))
		_ = b.Execute(ctx, func(ctx context.Context) error {
			if mrand.Float64() < p {
				return errors.New(liveErrors[mrand.IntN(len(liveErrors))])
			}
			return nil
		})
	}
}

func liveRedis(url string) (redis.UniversalClient, func(), error) {
	if url != "" {
		rdb, err := client.RedisFromURL(url)
		if err != nil {
			return nil, nil, err
		}
		return rdb, func() { _ = rdb.Close() }, nil
	}
	mr, err := miniredis.Run()
	if err != nil {
		return nil, nil, fmt.Errorf("embedded miniredis: %w", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	return rdb, func() { _ = rdb.Close(); mr.Close() }, nil
}

func randomSecret() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
