package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/alerts"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// buffer is a bytes.Buffer safe for the daemon and the test at once.
type buffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	held *heldWrite
}

// heldWrite is a write that waits for the test (see hold).
type heldWrite struct {
	match            string
	arrived, release chan struct{}
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	if h := b.held; h != nil && bytes.Contains(p, []byte(h.match)) {
		b.held = nil
		b.mu.Unlock()
		close(h.arrived)
		<-h.release
		b.mu.Lock()
	}
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// hold makes the next write containing match wait until release is
// called; arrived is closed when that write is waiting. For alertd's
// stdout, it holds an alert being posted: the sink has it and has not
// answered yet.
func (b *buffer) hold(match string) (arrived <-chan struct{}, release func()) {
	h := &heldWrite{match: match, arrived: make(chan struct{}), release: make(chan struct{})}
	b.mu.Lock()
	b.held = h
	b.mu.Unlock()
	var once sync.Once
	return h.arrived, func() { once.Do(func() { close(h.release) }) }
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestHelpListsEveryFlagAndVariable(t *testing.T) {
	var out buffer
	if code := run(context.Background(), []string{"--help"}, io.Discard, &out, env(nil)); code != 0 {
		t.Fatalf("--help exit code %d", code)
	}
	for _, want := range []string{"REDIS_URL", "SLACK_WEBHOOK_URL", "-redis-url", "-group", "-consumer",
		"-flap-window", "-stale-after", "-claim-min-idle", "-retry-min", "-retry-max", "-discovery-interval",
		"-listen", "-log-level", "-max-backlog", "ALERTD_MAX_BACKLOG", "master_name=", "ALERTD_FLAP_WINDOW", "breakerbox-alerts", "5m0s", "10m0s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBadInputExitsWithoutLeakingSecrets(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"unknown flag", []string{"--nope"}, nil, 2, "flag provided but not defined"},
		{"bad duration in the environment", nil, map[string]string{"ALERTD_STALE_AFTER": "soon"}, 2, "ALERTD_STALE_AFTER"},
		{"bad log level", []string{"--log-level", "loud"}, nil, 2, "--log-level"},
		{"flap window not shorter than stale threshold", []string{"--flap-window", "1h", "--stale-after", "1h"},
			map[string]string{"REDIS_URL": "redis://127.0.0.1:1"}, 2, "FlapWindow"},
		{"invalid webhook", nil, map[string]string{"REDIS_URL": "redis://127.0.0.1:1",
			"SLACK_WEBHOOK_URL": "ftp://hooks.example/services/SECRETTOKEN"}, 1, "SLACK_WEBHOOK_URL"},
		{"stray argument", []string{"extra"}, nil, 2, "unexpected arguments"},
		{"bad backlog bound", []string{"--max-backlog", "0"}, nil, 2, "--max-backlog"},
		{"bad backlog bound in the environment", nil, map[string]string{"ALERTD_MAX_BACKLOG": "lots"}, 2, "ALERTD_MAX_BACKLOG"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out buffer
			if code := run(context.Background(), tt.args, io.Discard, &out, env(tt.env)); code != tt.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tt.code, out.String())
			}
			if !strings.Contains(out.String(), tt.want) || strings.Contains(out.String(), "SECRETTOKEN") {
				t.Errorf("stderr lacks %q or leaks the webhook:\n%s", tt.want, out.String())
			}
		})
	}
}

func TestRunPrintsAlertsWithoutWebhookAndStopsOnCancel(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--redis-url", "redis://" + srv.Addr, "--discovery-interval", "100ms",
			"--consumer", "demo"}, &stdout, &stderr, env(nil))
	}()

	b, err := client.New(rdb, "openai_transcription", client.DefaultConfig(), client.WithAdmission(client.AdmitStrict))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	for i := 0; i < 3; i++ {
		p, err := b.Allow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = p.Failure(ctx, errors.New("OpenAI API error: Connection timeout"))
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stdout.String(), "Connection timeout\n```") {
		if time.Now().After(deadline) {
			t.Fatalf("no alert on stdout after 10s; stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d after cancellation; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancellation")
	}
	if !strings.HasPrefix(stdout.String(), "🚨 Circuit Breaker Alert: openai_transcription\n") {
		t.Errorf("stdout:\n%s", stdout.String())
	}
}

func TestHealthzReportsRedisAndLag(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	b, err := client.New(rdb, "alpha", client.DefaultConfig(), client.WithAdmission(client.AdmitStrict))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	if _, err := admin.Status(context.Background(), rdb, b.Name()); err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{})
	release := make(chan struct{})
	var holdOnce sync.Once
	sink := alerts.SinkFunc(func(ctx context.Context, a alerts.Alert) (bool, error) {
		holdOnce.Do(func() { close(held) })
		<-release
		return false, nil
	})
	// No retries: with Redis stopped, /healthz answers at once.
	drdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer drdb.Close()
	d, err := alerts.New(drdb, alerts.Config{Consumer: "health", DiscoveryInterval: 50 * time.Millisecond,
		ShutdownGrace: 200 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer cancel()
	mux, err := newMux(d, drdb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(mux)
	defer web.Close()

	get := func() (int, alerts.Health) {
		t.Helper()
		resp, err := http.Get(web.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h alerts.Health
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
			t.Fatalf("decode /healthz: %v", err)
		}
		return resp.StatusCode, h
	}

	// An operator action is being posted (the sink holds it): one entry
	// pending; a second one waits undelivered behind it.
	if _, err := admin.Control(ctx, rdb, "alpha", breakerbox.ActionForceOpen, "test"); err != nil {
		t.Fatal(err)
	}
	<-held
	if _, err := admin.Control(ctx, rdb, "alpha", breakerbox.ActionReset, "test"); err != nil {
		t.Fatal(err)
	}
	code, h := get()
	if code != http.StatusOK || !h.OK || h.Breakers != 1 || h.Pending+h.Lag != 2 || h.Pending < 1 ||
		len(h.Streams) != 1 || h.Streams[0].Breaker != "alpha" {
		t.Errorf("/healthz = %d %+v, want ok with alpha's 2 entries pending or lagging", code, h)
	}
	close(release)

	// The breakers' health (alpha was reset: healthy) and their metrics.
	resp, err := http.Get(web.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"healthy"`) {
		t.Errorf("/health = %d %s, want 200 healthy", resp.StatusCode, body)
	}
	if _, err := admin.Control(ctx, rdb, "alpha", breakerbox.ActionForceOpen, "test"); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(web.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"open_circuits":["alpha"]`) {
		t.Errorf("/health with alpha forced open = %d %s, want 503 naming alpha", resp.StatusCode, body)
	}
	resp, err = http.Get(web.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `circuit_breaker_state{service="alpha"} 1`) {
		t.Errorf("/metrics lacks alpha's open state:\n%s", body)
	}

	srv.Stop(t)
	if code, h := get(); code != http.StatusServiceUnavailable || h.OK || h.Redis == "ok" {
		t.Errorf("/healthz with Redis down = %d %+v, want 503", code, h)
	}
	cancel()
	<-done
}
