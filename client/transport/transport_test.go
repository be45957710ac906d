package transport_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/client/transport"
)

// mode is what the upstream does with the next requests.
type mode int32

const (
	healthy         mode = iota // 200 "ok"
	failing                     // 500
	notFound                    // 404
	tooMany                     // 429
	slow                        // no answer until the client gives up
	streamingBroken             // 200, a first chunk, then the connection is cut
	streaming                   // 200, a first chunk, then waits for the client to go away
	long                        // 200, 64 KiB
)

// upstream is an httptest server whose behaviour the test switches.
type upstream struct {
	*httptest.Server
	mode atomic.Int32
	hits atomic.Int64
	hit  chan struct{} // one token per request received (buffered, dropped when full)
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{hit: make(chan struct{}, 100)}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		select {
		case u.hit <- struct{}{}:
		default:
		}
		switch mode(u.mode.Load()) {
		case healthy:
			_, _ = io.WriteString(w, "ok")
		case failing:
			http.Error(w, "upstream exploded", http.StatusInternalServerError)
		case notFound:
			http.NotFound(w, r)
		case tooMany:
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case slow:
			<-r.Context().Done()
		case streamingBroken:
			_, _ = io.WriteString(w, "first chunk\n")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // cuts the connection mid-body
		case streaming:
			_, _ = io.WriteString(w, "first chunk\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case long:
			_, _ = w.Write([]byte(strings.Repeat("x", 64<<10)))
		}
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) set(m mode) { u.mode.Store(int32(m)) }

var quiet = slog.New(slog.DiscardHandler)

type fixture struct {
	mr  *miniredis.Miniredis
	rdb redis.UniversalClient
	b   *client.Breaker
	hc  *http.Client
	up  *upstream
}

// setup builds a breaker (Strict admission, so outcomes are in Redis when
// the call returns, and miniredis's clock drives it), a transport on it and
// an upstream.
func setup(t *testing.T, cfg client.Config, opts ...transport.Option) *fixture {
	t.Helper()
	mr := miniredis.RunT(t)
	mr.SetTime(time.Date(2025, 10, 25, 11, 30, 0, 0, time.UTC))
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	b, err := client.New(rdb, "upstream", cfg, client.WithAdmission(client.AdmitStrict), client.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	if err := b.Ready(context.Background()); err != nil { // registered: the first call pays no set-up
		t.Fatal(err)
	}
	rt, err := transport.New(nil, b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{mr: mr, rdb: rdb, b: b, hc: &http.Client{Transport: rt}, up: newUpstream(t)}
}

// call makes a GET and reads the whole body; it returns the status code
// (0 on error) and the error.
func (f *fixture) call(t *testing.T) (int, error) {
	t.Helper()
	resp, err := f.hc.Get(f.up.URL + "/v1/audio?key=secret")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	return resp.StatusCode, err
}

func (f *fixture) status(t *testing.T) breakerbox.Status {
	t.Helper()
	st, err := admin.Status(context.Background(), f.rdb, f.b.Name())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestServerErrorsOpenTheBreakerAndThenNoRequestIsSent(t *testing.T) {
	f := setup(t, client.DefaultConfig())
	f.up.set(failing)
	for i := range 3 {
		code, err := f.call(t)
		if err != nil || code != 500 {
			t.Fatalf("call %d: %d %v; the 500 response itself must reach the caller", i, code, err)
		}
	}
	st := f.status(t)
	if st.State != breakerbox.StateOpen || st.TotalFailures != 3 {
		t.Fatalf("after 3 x 500: %s with %d failures", st.State, st.TotalFailures)
	}
	if !strings.Contains(st.LastFailureError, "500 Internal Server Error") || strings.Contains(st.LastFailureError, "secret") {
		t.Errorf("last error %q: want the status, without the query", st.LastFailureError)
	}

	hits := f.up.hits.Load()
	f.up.set(healthy)
	body := &closeRecorder{Reader: strings.NewReader("payload")}
	req, _ := http.NewRequest("POST", f.up.URL, body)
	_, err := f.hc.Do(req)
	var openErr *client.OpenError
	if !errors.Is(err, client.ErrOpen) || !errors.As(err, &openErr) || openErr.Name != "upstream" {
		t.Fatalf("request on an open breaker: %v, want ErrOpen", err)
	}
	if f.up.hits.Load() != hits {
		t.Error("the open breaker let the request reach the upstream")
	}
	if !body.closed {
		t.Error("request body not closed on refusal")
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestClientErrorsAreNotFailuresUnlessConfigured(t *testing.T) {
	tests := []struct {
		name         string
		mode         mode
		opts         []transport.Option
		wantFailures int64
	}{
		{"404 is a success", notFound, nil, 0},
		{"429 is a success by default", tooMany, nil, 0},
		{"429 counted when asked", tooMany, []transport.Option{transport.WithTooManyRequestsAsFailure()}, 2},
		{"404 counted by a custom classifier", notFound,
			[]transport.Option{transport.WithFailureStatus(func(c int) bool { return c >= 400 })}, 2},
		{"500 not counted by a custom classifier", failing,
			[]transport.Option{transport.WithFailureStatus(func(c int) bool { return c == 503 })}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, client.DefaultConfig(), tt.opts...)
			f.up.set(tt.mode)
			for range 2 {
				if _, err := f.call(t); err != nil {
					t.Fatal(err)
				}
			}
			st := f.status(t)
			if st.TotalFailures != tt.wantFailures || st.TotalSuccesses != 2-tt.wantFailures || st.CurrentFailures != tt.wantFailures {
				t.Errorf("failures %d (current %d), successes %d; want %d failures", st.TotalFailures,
					st.CurrentFailures, st.TotalSuccesses, tt.wantFailures)
			}
		})
	}
}

func TestConnectionErrorIsAFailure(t *testing.T) {
	f := setup(t, client.DefaultConfig())
	f.up.Close() // nothing listens any more
	if _, err := f.call(t); err == nil {
		t.Fatal("call to a closed server succeeded")
	}
	if st := f.status(t); st.TotalFailures != 1 || !strings.Contains(st.LastFailureError, "connect") {
		t.Errorf("failures %d, last error %q", st.TotalFailures, st.LastFailureError)
	}
}

func TestSlowUpstreamTimesOutAsAFailure(t *testing.T) {
	t.Run("response timeout from the breaker's RequestTimeout", func(t *testing.T) {
		cfg := client.DefaultConfig()
		cfg.RequestTimeout = 20 * time.Millisecond
		f := setup(t, cfg)
		f.up.set(slow)
		_, err := f.call(t)
		if !errors.Is(err, transport.ErrResponseTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want ErrResponseTimeout", err)
		}
		if st := f.status(t); st.TotalFailures != 1 {
			t.Errorf("failures %d, want 1", st.TotalFailures)
		}
	})
	t.Run("http.Client timeout", func(t *testing.T) {
		f := setup(t, client.DefaultConfig(), transport.WithResponseTimeout(0))
		f.hc.Timeout = 20 * time.Millisecond
		f.up.set(slow)
		if _, err := f.call(t); err == nil {
			t.Fatal("no timeout")
		}
		if st := f.status(t); st.TotalFailures != 1 {
			t.Errorf("failures %d, want 1", st.TotalFailures)
		}
	})
}

func TestStreamBrokenMidBodyIsAFailure(t *testing.T) {
	f := setup(t, client.DefaultConfig())
	f.up.set(streamingBroken)
	code, err := f.call(t)
	if code != 200 || err == nil {
		t.Fatalf("code %d err %v: want 200 headers, then a read error", code, err)
	}
	st := f.status(t)
	if st.TotalFailures != 1 || st.TotalSuccesses != 0 || !strings.Contains(st.LastFailureError, "reading response body") {
		t.Errorf("failures %d successes %d last error %q", st.TotalFailures, st.TotalSuccesses, st.LastFailureError)
	}
}

func TestBodyOutcomes(t *testing.T) {
	tests := []struct {
		name                   string
		mode                   mode
		use                    func(t *testing.T, resp *http.Response, cancel context.CancelFunc)
		wantSucc, wantFailures int64
	}{
		{"read to EOF is a success", long, func(t *testing.T, r *http.Response, _ context.CancelFunc) {
			_, _ = io.ReadAll(r.Body)
		}, 1, 0},
		{"closed before EOF is a success", long, func(t *testing.T, r *http.Response, _ context.CancelFunc) {
			_, _ = r.Body.Read(make([]byte, 10))
		}, 1, 0},
		{"caller cancels mid-stream: nothing counted", streaming, func(t *testing.T, r *http.Response, cancel context.CancelFunc) {
			_, _ = r.Body.Read(make([]byte, 5))
			cancel()
			if _, err := io.ReadAll(r.Body); !errors.Is(err, context.Canceled) {
				t.Errorf("read after cancel: %v", err)
			}
		}, 0, 0},
		{"status read only, body closed unread", healthy, func(*testing.T, *http.Response, context.CancelFunc) {}, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, client.DefaultConfig())
			f.up.set(tt.mode)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", f.up.URL, nil)
			resp, err := f.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if st := f.status(t); st.TotalSuccesses+st.TotalFailures != 0 {
				t.Errorf("outcome recorded before the body ended: %+v", st)
			}
			tt.use(t, resp, cancel)
			_ = resp.Body.Close()
			_ = resp.Body.Close() // a second Close must not record again
			st := f.status(t)
			if st.TotalSuccesses != tt.wantSucc || st.TotalFailures != tt.wantFailures {
				t.Errorf("successes %d failures %d, want %d %d", st.TotalSuccesses, st.TotalFailures, tt.wantSucc, tt.wantFailures)
			}
		})
	}
}

func TestCallerCancelBeforeHeadersCountsNothing(t *testing.T) {
	f := setup(t, client.DefaultConfig())
	f.up.set(slow)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", f.up.URL, nil)
	go func() {
		<-f.up.hit // the request is at the upstream
		cancel()
	}()
	if _, err := f.hc.Do(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if st := f.status(t); st.TotalFailures+st.TotalSuccesses != 0 {
		t.Errorf("a cancelled call was counted: %+v", st)
	}
}

func TestHalfOpenProbesThroughStreamingBodiesCloseTheBreaker(t *testing.T) {
	f := setup(t, client.DefaultConfig())
	f.up.set(failing)
	for range 3 {
		_, _ = f.call(t)
	}
	f.mr.SetTime(time.Date(2025, 10, 25, 11, 31, 0, 0, time.UTC)) // past the 30s recovery timeout
	f.up.set(long)
	for i := range 2 { // success_threshold 2
		if code, err := f.call(t); err != nil || code != 200 {
			t.Fatalf("probe %d: %d %v", i, code, err)
		}
	}
	if st := f.status(t); st.State != breakerbox.StateClosed {
		t.Errorf("after two streamed probe successes: %s", st.State)
	}
}

func TestFastAdmissionRefusesLocallyOnceOpen(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	b, err := client.New(rdb, "fast", client.DefaultConfig(), client.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	rt, err := transport.New(http.DefaultTransport, b)
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t)
	up.set(failing)
	hc := &http.Client{Transport: rt}
	for range 3 {
		resp, err := hc.Get(up.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	hits := up.hits.Load()
	if _, err := hc.Get(up.URL); !errors.Is(err, client.ErrOpen) {
		t.Fatalf("err %v, want ErrOpen", err)
	}
	if up.hits.Load() != hits {
		t.Error("request reached the upstream")
	}
}

func TestConcurrentRequestsAreEachCountedOnce(t *testing.T) {
	f := setup(t, client.DefaultConfig())
	f.up.set(long)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			resp, err := f.hc.Get(f.up.URL)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	if st := f.status(t); st.TotalSuccesses != 20 || st.TotalFailures != 0 {
		t.Errorf("successes %d failures %d, want 20 0", st.TotalSuccesses, st.TotalFailures)
	}
}

func TestNewValidates(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	b, _ := client.New(rdb, "x", client.DefaultConfig())
	if _, err := transport.New(nil, nil); err == nil {
		t.Error("nil breaker accepted")
	}
	if _, err := transport.New(nil, b, transport.WithFailureStatus(nil)); err == nil {
		t.Error("nil classifier accepted")
	}
	if _, err := transport.New(nil, b, transport.WithResponseTimeout(-time.Second)); err == nil {
		t.Error("negative timeout accepted")
	}
}

type idleCloser struct {
	http.RoundTripper
	closed bool
}

func (c *idleCloser) CloseIdleConnections() { c.closed = true }

func TestCloseIdleConnectionsReachesTheBase(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	b, _ := client.New(rdb, "x", client.DefaultConfig())
	base := &idleCloser{RoundTripper: http.DefaultTransport}
	rt, err := transport.New(base, b)
	if err != nil {
		t.Fatal(err)
	}
	(&http.Client{Transport: rt}).CloseIdleConnections()
	if !base.closed {
		t.Error("CloseIdleConnections did not reach the base transport")
	}
}

func TestRetryAfterOfA429Or503OpensTheBreakerForIt(t *testing.T) {
	now := time.Date(2025, 10, 25, 11, 30, 0, 0, time.UTC)
	tests := []struct {
		name      string
		status    int
		header    string
		opts      []transport.Option
		wantOpen  bool
		wantAfter time.Duration // the breaker's retry_after_ms, about
	}{
		{"429 with seconds", http.StatusTooManyRequests, "120", nil, true, 120 * time.Second},
		{"503 with an HTTP date", http.StatusServiceUnavailable, time.Now().Add(91 * time.Second).Format(http.TimeFormat), nil, true, 90 * time.Second},
		{"capped by the breaker's MaxRetryAfter", http.StatusTooManyRequests, "86400", nil, true, 10 * time.Minute},
		{"429 without a header stays a success", http.StatusTooManyRequests, "", nil, false, 0},
		{"a malformed header is no retry-after", http.StatusTooManyRequests, "soon", nil, false, 0},
		{"503 without a header is one failure", http.StatusServiceUnavailable, "", nil, false, 0},
		{"WithoutRetryAfter", http.StatusTooManyRequests, "120", []transport.Option{transport.WithoutRetryAfter()}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, client.DefaultConfig(), tt.opts...)
			f.mr.SetTime(now)
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.header != "" {
					w.Header().Set("Retry-After", tt.header)
				}
				http.Error(w, "slow down", tt.status)
			}))
			defer up.Close()
			resp, err := f.hc.Get(up.URL)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			st := f.status(t)
			if got := st.State == breakerbox.StateOpen; got != tt.wantOpen {
				t.Fatalf("open after one response: %v, want %v (%+v)", got, tt.wantOpen, st)
			}
			if d := st.RetryAfter - tt.wantAfter; tt.wantOpen && (d < -2*time.Second || d > 2*time.Second) {
				t.Errorf("retry after %s, want about %s", st.RetryAfter, tt.wantAfter)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 10, 25, 11, 30, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"30": 30 * time.Second, " 7 ": 7 * time.Second, "0": 0, "-5": 0, "1.5": 0, "": 0, "soon": 0,
		now.Add(time.Minute).Format(http.TimeFormat):  time.Minute,
		now.Add(-time.Minute).Format(http.TimeFormat): 0,
		"99999999999": 30 * 24 * time.Hour,
	} {
		if got := transport.ParseRetryAfter(v, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", v, got, want)
		}
	}
}
