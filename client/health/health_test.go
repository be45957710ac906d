package health_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/client/health"
)

var quiet = slog.New(slog.DiscardHandler)

func setup(t *testing.T) (*miniredis.Miniredis, *redis.Client) {
	t.Helper()
	mr := miniredis.RunT(t)
	mr.SetTime(time.Date(2025, 10, 25, 11, 30, 0, 0, time.UTC))
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return mr, rdb
}

// use registers breaker name and records failures on it (3 open it).
func use(t *testing.T, rdb *redis.Client, name string, failures int) *client.Breaker {
	t.Helper()
	ctx := context.Background()
	cfg := client.DefaultConfig()
	b, err := client.New(rdb, name, cfg, client.WithAdmission(client.AdmitStrict), client.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	p, err := b.Allow(ctx) // registers the breaker
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Success(ctx)
	for range failures {
		p, err := b.Allow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = p.Failure(ctx, errors.New("connection timeout"))
	}
	return b
}

func get(t *testing.T, h http.Handler, method string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, "/health", nil))
	return rec.Code, strings.TrimSpace(rec.Body.String()), rec.Header()
}

func mustNew(t *testing.T, rdb redis.UniversalClient, opts ...health.Option) *health.Handler {
	t.Helper()
	h, err := health.New(rdb, append([]health.Option{health.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHealthyWhenNoBreakerIsOpen(t *testing.T) {
	_, rdb := setup(t)
	h := mustNew(t, rdb)
	if code, body, _ := get(t, h, "GET"); code != 200 || body != `{"status":"healthy"}` {
		t.Errorf("no breakers: %d %s", code, body)
	}
	use(t, rdb, "openai_transcription", 2) // failing, but below the threshold
	code, body, hdr := get(t, h, "GET")
	if code != 200 || body != `{"status":"healthy"}` {
		t.Errorf("closed breaker: %d %s", code, body)
	}
	if hdr.Get("Content-Type") != "application/json" || hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", hdr)
	}
}

func TestDegradedListsOpenBreakersSorted(t *testing.T) {
	_, rdb := setup(t)
	use(t, rdb, "openai_transcription", 3)
	use(t, rdb, "anthropic_api", 0)
	forced := use(t, rdb, "s3", 0)
	if _, err := admin.Control(context.Background(), rdb, forced.Name(), breakerbox.ActionForceOpen, "test"); err != nil {
		t.Fatal(err)
	}
	code, body, _ := get(t, mustNew(t, rdb), "GET")
	if code != 503 || body != `{"status":"degraded","open_circuits":["openai_transcription","s3"]}` {
		t.Errorf("%d %s", code, body)
	}
}

func TestHalfOpenIsNotDegraded(t *testing.T) {
	mr, rdb := setup(t)
	b := use(t, rdb, "svc", 3)
	mr.SetTime(time.Date(2025, 10, 25, 11, 31, 0, 0, time.UTC)) // past the 30s recovery timeout
	if _, err := b.Allow(context.Background()); err != nil {    // becomes the half-open probe
		t.Fatal(err)
	}
	if st, _ := admin.Status(context.Background(), rdb, b.Name()); st.State != breakerbox.StateHalfOpen {
		t.Fatalf("state %s, want half_open", st.State)
	}
	if code, body, _ := get(t, mustNew(t, rdb), "GET"); code != 200 {
		t.Errorf("half-open: %d %s, want 200 as in the seed (only open counts)", code, body)
	}
}

func TestWithNamesConsidersOnlyThoseBreakers(t *testing.T) {
	_, rdb := setup(t)
	use(t, rdb, "openai_transcription", 3)
	use(t, rdb, "anthropic_api", 0)
	tests := []struct {
		names    []string
		wantCode int
		wantBody string
	}{
		{[]string{"anthropic_api"}, 200, `{"status":"healthy"}`},
		{[]string{"never_used"}, 200, `{"status":"healthy"}`},
		{[]string{"anthropic_api", "openai_transcription"}, 503, `{"status":"degraded","open_circuits":["openai_transcription"]}`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.names, ","), func(t *testing.T) {
			code, body, _ := get(t, mustNew(t, rdb, health.WithNames(tt.names...)), "GET")
			if code != tt.wantCode || body != tt.wantBody {
				t.Errorf("%d %s, want %d %s", code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestRedisErrorIs503WithAJSONError(t *testing.T) {
	for _, withNames := range []bool{false, true} {
		t.Run(map[bool]string{false: "all", true: "names"}[withNames], func(t *testing.T) {
			mr, _ := setup(t)
			rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
			defer rdb.Close()
			var opts []health.Option
			if withNames {
				opts = append(opts, health.WithNames("svc"))
			}
			h := mustNew(t, rdb, append(opts, health.WithTimeout(time.Second))...)
			mr.Close()
			code, body, _ := get(t, h, "GET")
			if code != 503 || !strings.HasPrefix(body, `{"status":"error","error":"cannot read circuit breakers from Redis: `) {
				t.Errorf("%d %s", code, body)
			}
		})
	}
}

func TestMethodsOtherThanGetAndHead(t *testing.T) {
	_, rdb := setup(t)
	h := mustNew(t, rdb)
	if code, body, _ := get(t, h, "HEAD"); code != 200 || body != "" {
		t.Errorf("HEAD: %d %q", code, body)
	}
	if code, _, hdr := get(t, h, "POST"); code != 405 || hdr.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d %v", code, hdr)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	_, rdb := setup(t)
	tests := []struct {
		name string
		rdb  redis.UniversalClient
		opts []health.Option
	}{
		{"nil client", nil, nil},
		{"bad name", rdb, []health.Option{health.WithNames("a{b}")}},
		{"no names", rdb, []health.Option{health.WithNames()}},
		{"zero timeout", rdb, []health.Option{health.WithTimeout(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := health.New(tt.rdb, tt.opts...); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}
