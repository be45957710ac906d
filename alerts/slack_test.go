package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
)

// secretPath is the part of a webhook URL that must never leak.
const secretPath = "/services/T0000/B0000/SECRETTOKEN"

// hookRequest is one request the fake webhook received.
type hookRequest struct {
	Text   string
	Status int
	At     time.Time
}

// hook is a fake Slack incoming webhook recording what it receives.
type hook struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []hookRequest
	respond func(n int, w http.ResponseWriter) int // n counts requests from 0; returns the status written
	log     func(event string)                     // optional: records the order of requests and sleeps
}

// newHook starts a webhook answering respond (nil: always 200).
func newHook(t *testing.T, respond func(n int, w http.ResponseWriter) int) *hook {
	t.Helper()
	h := &hook{respond: respond}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg struct {
			Text string `json:"text"`
		}
		if r.URL.Path != secretPath || json.NewDecoder(r.Body).Decode(&msg) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		n := len(h.reqs)
		h.reqs = append(h.reqs, hookRequest{Text: msg.Text, At: time.Now()})
		h.mu.Unlock()
		status := http.StatusOK
		if h.respond != nil {
			status = h.respond(n, w)
		} else {
			_, _ = w.Write([]byte("ok"))
		}
		h.mu.Lock()
		h.reqs[n].Status = status
		if h.log != nil {
			h.log("request " + http.StatusText(status))
		}
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// URL is the webhook's URL, secret path included.
func (h *hook) URL() string { return h.srv.URL + secretPath }

func (h *hook) requests() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookRequest(nil), h.reqs...)
}

// accepted returns the texts answered with 200, in order.
func (h *hook) accepted() []string {
	var out []string
	for _, r := range h.requests() {
		if r.Status == http.StatusOK {
			out = append(out, r.Text)
		}
	}
	return out
}

// status answers with code and an optional Retry-After.
func status(code int, retryAfter string) func(int, http.ResponseWriter) int {
	return func(_ int, w http.ResponseWriter) int {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
		return code
	}
}

func TestSlackSinkClassifiesAnswers(t *testing.T) {
	a := Alert{Kind: KindTransition, Breaker: "svc<1>", Transitions: []breakerbox.Transition{seedTransition()}}
	tests := []struct {
		name       string
		respond    func(int, http.ResponseWriter) int
		wantErr    bool
		wantRetry  bool
		retryAfter time.Duration // > 0: a *RetryAfterError with this wait
	}{
		{"200 is delivered", nil, false, false, 0},
		{"429 with Retry-After waits as told", status(429, "3"), true, true, 3 * time.Second},
		{"429 without Retry-After backs off", status(429, ""), true, true, 0},
		{"500 is retried", status(500, ""), true, true, 0},
		{"503 is retried", status(503, ""), true, true, 0},
		{"408 is retried", status(408, ""), true, true, 0},
		{"400 is permanent", status(400, ""), true, false, 0},
		{"403 is permanent", status(403, ""), true, false, 0},
		{"404 is permanent", status(404, ""), true, false, 0},
		{"410 is permanent", status(410, ""), true, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHook(t, tt.respond)
			s, err := NewSlackSink(h.URL())
			if err != nil {
				t.Fatal(err)
			}
			retry, err := s.Notify(context.Background(), a)
			if (err != nil) != tt.wantErr || retry != tt.wantRetry {
				t.Fatalf("Notify = (%v, %v), want retry %v and error %v", retry, err, tt.wantRetry, tt.wantErr)
			}
			var ra *RetryAfterError
			if got := errors.As(err, &ra); got != (tt.retryAfter > 0) || (got && ra.After != tt.retryAfter) {
				t.Errorf("error %v: RetryAfterError %v (%+v), want wait %v", err, got, ra, tt.retryAfter)
			}
			if err != nil && strings.Contains(err.Error(), "SECRETTOKEN") {
				t.Errorf("error leaks the webhook URL: %v", err)
			}
			reqs := h.requests()
			if len(reqs) != 1 || reqs[0].Text != a.SlackText() {
				t.Errorf("webhook received %+v, want one request with the alert's Slack text", reqs)
			}
		})
	}
}

func TestSlackSinkNeverLeaksTheURL(t *testing.T) {
	a := Alert{Kind: KindTransition, Breaker: "svc", Transitions: []breakerbox.Transition{seedTransition()}}
	t.Run("network error", func(t *testing.T) {
		h := newHook(t, nil)
		url := h.URL()
		h.srv.Close()
		s, err := NewSlackSink(url)
		if err != nil {
			t.Fatal(err)
		}
		retry, err := s.Notify(context.Background(), a)
		if err == nil || !retry {
			t.Fatalf("Notify to a closed server = (%v, %v), want a retryable error", retry, err)
		}
		if strings.Contains(err.Error(), "SECRETTOKEN") || !strings.Contains(err.Error(), "[webhook]") {
			t.Errorf("error = %q, want the URL replaced by [webhook]", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		h := newHook(t, func(int, http.ResponseWriter) int { <-release; return 200 })
		defer close(release)
		s, err := NewSlackSink(h.URL(), WithHTTPClient(&http.Client{Timeout: 20 * time.Millisecond}))
		if err != nil {
			t.Fatal(err)
		}
		retry, err := s.Notify(context.Background(), a)
		if err == nil || !retry || strings.Contains(err.Error(), "SECRETTOKEN") {
			t.Errorf("Notify = (%v, %v), want a retryable error without the URL", retry, err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v does not match context.DeadlineExceeded", err)
		}
	})
	t.Run("invalid URLs", func(t *testing.T) {
		for _, u := range []string{"", "ftp://hooks.example" + secretPath, "hooks.example" + secretPath,
			"https://" + secretPath[1:] + "%zz", "https://:bad" + secretPath} {
			s, err := NewSlackSink(u)
			if err == nil {
				t.Errorf("NewSlackSink(%q) = %v, want an error", u, s)
				continue
			}
			if strings.Contains(err.Error(), "SECRETTOKEN") {
				t.Errorf("NewSlackSink error leaks the URL: %v", err)
			}
		}
	})
	t.Run("printing the sink", func(t *testing.T) {
		s, err := NewSlackSink("https://hooks.example" + secretPath)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(s.String(), "SECRETTOKEN") || strings.Contains(s.LogValue().String(), "SECRETTOKEN") {
			t.Errorf("sink prints its URL: %s", s)
		}
	})
}
