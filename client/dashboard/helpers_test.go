package dashboard_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/client/dashboard"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// syncBuffer collects a dashboard's logs.
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

// waitHealthy waits until the dashboard has read Redis and subscribed.
func waitHealthy(t *testing.T, d *dashboard.Dashboard) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h := d.Health()
		if h.OK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dashboard not healthy: %+v", h)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rowOf returns the JSON of breaker name's row from api/breakers, or "".
func rowOf(t *testing.T, d *dashboard.Dashboard, name string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest("GET", "/api/breakers", nil))
	for row := range strings.SplitSeq(rec.Body.String(), "},{") {
		if strings.Contains(row, `"name":"`+name+`"`) {
			return row
		}
	}
	return ""
}
