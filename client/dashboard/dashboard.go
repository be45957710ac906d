package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed assets
var assets embed.FS

var errAlreadyRunning = errors.New("dashboard: Run called twice")

// Dashboard is the web dashboard: an http.Handler serving the page, its
// API and its event stream. Run must be running for the page to be live.
type Dashboard struct {
	feed *feed
	st   store
	auth *auth
	host string
	log  *slog.Logger
	h    http.Handler
}

type settings struct {
	operators []Operator
	closed    bool
	interval  time.Duration
	timeout   time.Duration
	log       *slog.Logger
}

// Option configures a Dashboard.
type Option func(*settings)

// WithOperators lets these operators act on breakers (reset, force open,
// disable, release, change config). Without operators the dashboard is
// read-only: every action is refused.
func WithOperators(ops ...Operator) Option {
	return func(s *settings) { s.operators = append(s.operators, ops...) }
}

// WithClosed requires a signed-in operator for everything but the page's
// own files and the healthz path: reading breakers too. By default anyone
// who reaches the dashboard may read it.
func WithClosed() Option { return func(s *settings) { s.closed = true } }

// WithInterval sets how often every breaker is read (default 2s, at least
// 100ms): the period of the rates and the sparklines. Transitions do not
// wait for it: they are read as soon as a breaker announces them.
func WithInterval(d time.Duration) Option { return func(s *settings) { s.interval = d } }

// WithTimeout bounds each read of Redis and each action (default 5s).
func WithTimeout(d time.Duration) Option { return func(s *settings) { s.timeout = d } }

// WithLogger sends the dashboard's logs (Redis errors, operator actions)
// to l instead of slog.Default().
func WithLogger(l *slog.Logger) Option { return func(s *settings) { s.log = l } }

// New returns a dashboard of the breakers in rdb. It validates the options
// and makes no Redis call; Run reads Redis.
func New(rdb redis.UniversalClient, opts ...Option) (*Dashboard, error) {
	if rdb == nil {
		return nil, errors.New("dashboard: nil redis client")
	}
	return newDashboard(redisStore{rdb: rdb}, opts...)
}

func newDashboard(st store, opts ...Option) (*Dashboard, error) {
	s := settings{interval: 2 * time.Second, timeout: 5 * time.Second, log: slog.Default()}
	for _, o := range opts {
		o(&s)
	}
	switch {
	case s.interval < 100*time.Millisecond:
		return nil, fmt.Errorf("dashboard: interval %s, want at least 100ms", s.interval)
	case s.timeout <= 0:
		return nil, fmt.Errorf("dashboard: timeout %s, want > 0", s.timeout)
	case s.log == nil:
		return nil, errors.New("dashboard: nil logger")
	}
	a, err := newAuth(s.operators, s.closed)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown"
	}
	d := &Dashboard{feed: newFeed(st, s.interval, s.timeout, s.log), st: st, auth: a, host: host, log: s.log}
	d.h = d.routes()
	return d, nil
}

// Run reads Redis and feeds the pages until ctx ends: one pattern
// subscription to every breaker's :changed channel, and a bulk status
// read every interval. It returns nil when ctx ends, or an error if it is
// already running.
func (d *Dashboard) Run(ctx context.Context) error { return d.feed.run(ctx) }

// Health reports the dashboard's own health (see Health).
func (d *Dashboard) Health() Health { return d.feed.healthAt(time.Now()) }

// ServeHTTP serves the dashboard. Mount it on a path of its own with
// http.StripPrefix, e.g.
//
//	mux.Handle("/breakers/", http.StripPrefix("/breakers", d))
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.h.ServeHTTP(w, r) }

func (d *Dashboard) routes() http.Handler {
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", files)
	mux.Handle("GET /app.js", files)
	mux.Handle("GET /app.css", files)
	mux.HandleFunc("GET /healthz", d.serveHealth)
	mux.HandleFunc("GET /api/session", d.serveSession)
	mux.HandleFunc("POST /api/login", d.serveLogin)
	mux.HandleFunc("POST /api/logout", d.serveLogout)
	mux.HandleFunc("GET /api/breakers", d.reader(d.serveBreakers))
	mux.HandleFunc("GET /api/breaker", d.reader(d.serveBreaker))
	mux.HandleFunc("GET /api/events", d.reader(d.serveEvents))
	mux.HandleFunc("POST /api/action", d.operator(d.serveAction))
	mux.HandleFunc("POST /api/config", d.operator(d.serveConfig))

	// Cross-site requests: browsers say where a request comes from
	// (Sec-Fetch-Site, Origin); a POST from another origin is refused
	// before any handler runs. The page's own POSTs also carry the
	// session's CSRF token and a JSON body (see operator).
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.log.Warn("dashboard: cross-origin request refused", "path", r.URL.Path,
			"origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		writeError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	return securityHeaders(cop.Handler(mux))
}

// securityHeaders keeps the page from being framed, sniffed or from
// loading anything from elsewhere.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// reader wraps a handler that reads breakers: on a closed dashboard it
// needs a signed-in operator.
func (d *Dashboard) reader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !d.auth.mayRead(r) {
			writeError(w, http.StatusUnauthorized, "sign in to read this dashboard")
			return
		}
		h(w, r)
	}
}

// operator wraps an action: it needs a JSON body (a cross-site HTML form
// cannot send one) and an operator, authenticated either by an
// Authorization header or by the session cookie together with the
// session's CSRF token in the X-CSRF-Token header.
func (d *Dashboard) operator(h func(w http.ResponseWriter, r *http.Request, user string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !isJSON(r) {
			writeError(w, http.StatusUnsupportedMediaType, "want Content-Type: application/json")
			return
		}
		if len(d.auth.ops) == 0 {
			writeError(w, http.StatusForbidden, "this dashboard is read-only: no operators are configured")
			return
		}
		user, sess := d.auth.who(r)
		switch {
		case user == "":
			writeError(w, http.StatusUnauthorized, "sign in as an operator to act on breakers")
			return
		case sess != nil && !subtleEqual(r.Header.Get(csrfHeader), sess.csrf):
			writeError(w, http.StatusForbidden, "missing or wrong "+csrfHeader+" header")
			return
		}
		h(w, r, user)
	}
}

func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

func (d *Dashboard) serveHealth(w http.ResponseWriter, r *http.Request) {
	h := d.Health()
	code := http.StatusOK
	if !h.OK {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, h)
}

// sessionInfo tells the page who it is and what it may do.
type sessionInfo struct {
	User      string `json:"user,omitempty"`
	CSRF      string `json:"csrf,omitempty"`
	Operators bool   `json:"operators"` // some operators are configured
	Closed    bool   `json:"closed"`
	Read      bool   `json:"read"` // may read the breakers
}

func (d *Dashboard) serveSession(w http.ResponseWriter, r *http.Request) {
	info := sessionInfo{Operators: len(d.auth.ops) > 0, Closed: d.auth.closed, Read: d.auth.mayRead(r)}
	if s, ok := d.auth.fromCookie(r); ok {
		info.User, info.CSRF = s.user, s.csrf
	}
	writeJSON(w, http.StatusOK, info)
}

func (d *Dashboard) serveLogin(w http.ResponseWriter, r *http.Request) {
	if !isJSON(r) {
		writeError(w, http.StatusUnsupportedMediaType, "want Content-Type: application/json")
		return
	}
	var in struct{ User, Secret string }
	if err := readJSON(r, &in); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	user, ok := d.auth.check(in.User, in.Secret)
	if !ok {
		d.log.Warn("dashboard: sign-in refused", "user", in.User, "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "wrong name or secret")
		return
	}
	s := d.auth.startSession(w, r, user)
	d.log.Info("dashboard: operator signed in", "user", user, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, sessionInfo{User: s.user, CSRF: s.csrf, Operators: true, Closed: d.auth.closed, Read: true})
}

func (d *Dashboard) serveLogout(w http.ResponseWriter, r *http.Request) {
	d.auth.endSession(w, r)
	writeJSON(w, http.StatusOK, sessionInfo{Operators: len(d.auth.ops) > 0, Closed: d.auth.closed, Read: !d.auth.closed})
}

func (d *Dashboard) serveBreakers(w http.ResponseWriter, r *http.Request) {
	rows, _ := d.feed.rowsNow()
	writeJSON(w, http.StatusOK, rows)
}

// breakerPage is what api/breaker returns: the row and the detail.
type breakerPage struct {
	Breaker Breaker `json:"breaker"`
	Detail
}

func (d *Dashboard) serveBreaker(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	row, ok := d.feed.row(name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no breaker named %q", name))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), d.feed.timeout)
	defer cancel()
	det, err := d.st.detail(ctx, name)
	if err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, breakerPage{Breaker: row, Detail: det})
}

// heartbeat keeps idle event streams alive through proxies.
const heartbeat = 15 * time.Second

func (d *Dashboard) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives a server's WriteTimeout
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	l, first := d.feed.listen()
	if _, err := w.Write(first); err != nil || l == nil {
		return // not running: the page tries again later
	}
	defer d.feed.unlisten(l)
	if err := rc.Flush(); err != nil {
		return
	}
	ping := time.NewTicker(heartbeat)
	defer ping.Stop()
	for {
		var msg []byte
		select {
		case <-r.Context().Done():
			return
		case <-l.gone:
			return
		case msg = <-l.ch:
		case <-ping.C:
			msg = []byte(": ping\n\n")
		}
		if _, err := w.Write(msg); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// maxBody bounds a request body.
const maxBody = 64 << 10

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad JSON body: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
