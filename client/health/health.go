// Package health serves the seed's health check for breakerbox breakers: an
// http.Handler that answers 200 {"status":"healthy"} when none of the
// breakers it watches is open, and 503
// {"status":"degraded","open_circuits":[...]} when some are. It reads Redis
// on every request: SCRIPT LOAD and one pipeline of status reads for a fixed
// list of names, plus SMEMBERS and SCAN to find every breaker otherwise.
//
//	h, err := health.New(rdb)                                  // every breaker in Redis
//	h, err := health.New(rdb, health.WithNames("openai", "s3")) // only these
//	http.Handle("/health", h)
package health

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redisconn"
)

// Response is the JSON body the handler writes.
type Response struct {
	// Status is "healthy" (no breaker open), "degraded" (some open) or
	// "error" (Redis could not be read).
	Status string `json:"status"`
	// OpenCircuits names the open breakers, sorted; only when degraded.
	OpenCircuits []string `json:"open_circuits,omitempty"`
	// Error says why Redis could not be read; only with status "error".
	Error string `json:"error,omitempty"`
}

// The values of Response.Status.
const (
	StatusHealthy  = "healthy"
	StatusDegraded = "degraded"
	StatusError    = "error"
)

// Handler is the health check. It is safe for concurrent use.
type Handler struct {
	rdb     redis.UniversalClient
	names   []string // nil: every breaker (admin.List)
	timeout time.Duration
	log     *slog.Logger
}

// Option configures a Handler.
type Option func(*Handler)

// WithNames makes the handler consider only these breakers (read in one
// pipeline) instead of every breaker in Redis. A name nobody
// has used reads as closed.
func WithNames(names ...string) Option {
	return func(h *Handler) { h.names = append([]string{}, names...) }
}

// WithTimeout bounds the Redis reads of one request (default 2s). Past it
// the handler answers 503 with status "error".
func WithTimeout(d time.Duration) Option { return func(h *Handler) { h.timeout = d } }

// WithLogger sends the handler's logs (Redis errors) to l instead of slog.Default().
func WithLogger(l *slog.Logger) Option { return func(h *Handler) { h.log = l } }

// New returns a health handler reading breakers from rdb. It validates the
// options and makes no Redis call. A *redis.ClusterClient is made to reload
// its slot map as soon as a call fails (after a failover, not at go-redis's
// 60s timer): see docs/operations.md, "Failovers".
func New(rdb redis.UniversalClient, opts ...Option) (*Handler, error) {
	if rdb == nil {
		return nil, fmt.Errorf("health: nil redis client")
	}
	redisconn.Follow(rdb) // reach a promoted replica in seconds, not at go-redis's 60s reload
	h := &Handler{rdb: rdb, timeout: 2 * time.Second, log: slog.Default()}
	for _, o := range opts {
		o(h)
	}
	if h.timeout <= 0 {
		return nil, fmt.Errorf("health: timeout %s, want > 0", h.timeout)
	}
	if h.log == nil {
		return nil, fmt.Errorf("health: nil logger")
	}
	if h.names != nil && len(h.names) == 0 {
		return nil, fmt.Errorf("health: WithNames given no names")
	}
	for _, n := range h.names {
		if err := breakerbox.ValidateName(n); err != nil {
			return nil, fmt.Errorf("health: %w", err)
		}
	}
	return h, nil
}

// Check reads the breakers and returns the response with its HTTP status
// code: 200 healthy, 503 degraded or error.
func (h *Handler) Check(ctx context.Context) (Response, int) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	var sts []breakerbox.Status
	var err error
	if h.names != nil {
		sts, err = admin.Statuses(ctx, h.rdb, h.names)
	} else {
		sts, err = admin.List(ctx, h.rdb)
	}
	if err != nil {
		h.log.Warn("health check could not read the circuit breakers", "err", err)
		return Response{Status: StatusError, Error: "cannot read circuit breakers from Redis: " + err.Error()},
			http.StatusServiceUnavailable
	}
	var open []string
	for _, st := range sts {
		if st.State == breakerbox.StateOpen {
			open = append(open, st.Name)
		}
	}
	if len(open) > 0 {
		sort.Strings(open)
		return Response{Status: StatusDegraded, OpenCircuits: open}, http.StatusServiceUnavailable
	}
	return Response{Status: StatusHealthy}, http.StatusOK
}

// ServeHTTP answers GET and HEAD with the check's JSON and status code.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	resp, code := h.Check(r.Context())
	body, err := json.Marshal(resp)
	if err != nil { // cannot happen for this type; answer anyway
		body, code = []byte(`{"status":"error","error":"encoding the response failed"}`), http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method == http.MethodGet {
		_, _ = w.Write(append(body, '\n'))
	}
}
