package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/alerts"
	"github.com/breakerbox/breakerbox/client/health"
	"github.com/breakerbox/breakerbox/client/metrics"
	"github.com/breakerbox/breakerbox/internal/redisurl"
)

const usageHead = `alertd posts breakerbox transitions to Slack.

It reads every breaker's transition stream (circuit_breaker:{NAME}:events)
through a Redis consumer group, so several alertd can run side by side, and
posts each opening, recovery, half-open and operator action once. With
SLACK_WEBHOOK_URL unset it prints the alerts to standard output.

Usage: alertd [flags]

Environment:
  REDIS_URL          Redis to read (default redis://localhost:6379/0; a URL
                     with addr= parameters names a Redis Cluster, one with
                     master_name= the sentinels of a master: see
                     docs/operations.md)
  SLACK_WEBHOOK_URL  Slack incoming webhook; a secret, so it is read from
                     the environment only and never logged
  ALERTD_DASHBOARD_OPERATORS
                     NAME:SECRET,... operators who may act on breakers from
                     the dashboard (also --dashboard-operators-file)
  ALERTD_*           default of the flag of the same name (below)

Flags:
`

// options are the parsed flags and environment.
type options struct {
	redisURL          string
	group, consumer   string
	flapWindow        time.Duration
	staleAfter        time.Duration
	claimMinIdle      time.Duration
	retryMin          time.Duration
	retryMax          time.Duration
	discoveryInterval time.Duration
	maxBacklog        int64
	listen            string
	logLevel          string

	dashboard              bool
	dashboardClosed        bool
	dashboardOperatorsFile string
}

// parseFlags reads args, with ALERTD_* environment variables as defaults.
func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (options, error) {
	var o options
	fs := flag.NewFlagSet("alertd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead)
		fs.PrintDefaults()
	}
	var envErr error
	str := func(p *string, name, env, def, usage string) {
		if v := getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env "+env+")")
	}
	dur := func(p *time.Duration, name, env string, def time.Duration, usage string) {
		if v := getenv(env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("%s=%q: %w", env, v, err))
			}
			def = d
		}
		fs.DurationVar(p, name, def, usage+" (env "+env+")")
	}
	redisDefault := getenv("REDIS_URL")
	if redisDefault == "" {
		redisDefault = redisurl.Default
	}
	fs.StringVar(&o.redisURL, "redis-url", "", "Redis URL; overrides REDIS_URL (default "+redisurl.Default+")")
	str(&o.group, "group", "ALERTD_GROUP", alerts.DefaultGroup, "consumer group shared by the daemons that split the work")
	str(&o.consumer, "consumer", "ALERTD_CONSUMER", "", "this daemon's name in the group, unique among running daemons (default HOSTNAME-PID)")
	dur(&o.flapWindow, "flap-window", "ALERTD_FLAP_WINDOW", alerts.DefaultFlapWindow,
		"openings within this window after an opening alert are folded into one message with a count; 0 turns folding off")
	dur(&o.staleAfter, "stale-after", "ALERTD_STALE_AFTER", alerts.DefaultStaleAfter,
		"transitions read later than this after they happened are summarised, one message per breaker")
	dur(&o.claimMinIdle, "claim-min-idle", "ALERTD_CLAIM_MIN_IDLE", alerts.DefaultClaimMinIdle,
		"entries idle this long at another consumer are taken over (XAUTOCLAIM); also the delivery lock's lease")
	dur(&o.retryMin, "retry-min", "ALERTD_RETRY_MIN", alerts.DefaultRetryMin, "first wait after Slack failed (5xx, network); doubles per attempt")
	dur(&o.retryMax, "retry-max", "ALERTD_RETRY_MAX", alerts.DefaultRetryMax, "longest wait between attempts (a 429's Retry-After is honoured as given)")
	dur(&o.discoveryInterval, "discovery-interval", "ALERTD_DISCOVERY_INTERVAL", alerts.DefaultDiscoveryInterval,
		"how often breakers are listed and idle entries claimed")
	maxBacklog := alerts.DefaultMaxBacklog
	if v := getenv("ALERTD_MAX_BACKLOG"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			envErr = errors.Join(envErr, fmt.Errorf("ALERTD_MAX_BACKLOG=%q: want a positive integer", v))
		}
		maxBacklog = n
	}
	fs.Int64Var(&o.maxBacklog, "max-backlog", int64(maxBacklog),
		"/healthz reports unhealthy while more entries than this are pending or unread, over all breakers (env ALERTD_MAX_BACKLOG)")
	str(&o.listen, "listen", "ALERTD_LISTEN", "", "HTTP address serving /healthz, /health, /metrics and the dashboard at /dashboard/, e.g. :9465 (default: no HTTP server)")
	boolean := func(p *bool, name, env string, def bool, usage string) {
		if v := getenv(env); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("%s=%q: want true or false", env, v))
			}
			def = b
		}
		fs.BoolVar(p, name, def, usage+" (env "+env+")")
	}
	boolean(&o.dashboard, "dashboard", "ALERTD_DASHBOARD", true, "with --listen, serve the web dashboard at /dashboard/")
	boolean(&o.dashboardClosed, "dashboard-closed", "ALERTD_DASHBOARD_CLOSED", false,
		"the dashboard needs a signed-in operator to read too (default: anyone may read it)")
	str(&o.dashboardOperatorsFile, "dashboard-operators-file", "ALERTD_DASHBOARD_OPERATORS_FILE", "",
		"file of NAME:SECRET lines: operators who may act on breakers from the dashboard (with ALERTD_DASHBOARD_OPERATORS)")
	str(&o.logLevel, "log-level", "ALERTD_LOG_LEVEL", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if envErr != nil {
		return o, envErr
	}
	if o.maxBacklog < 1 {
		return o, fmt.Errorf("--max-backlog %d: want a positive integer", o.maxBacklog)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if o.redisURL == "" {
		o.redisURL = redisDefault
	}
	return o, nil
}

// run is alertd: it returns the exit code (0 after a shutdown asked for by
// ctx, 1 on a setup error, 2 on bad flags).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	o, err := parseFlags(args, stderr, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "alertd: %v\n", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintf(stderr, "alertd: --log-level %q: want debug, info, warn or error\n", o.logLevel)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	rdb, err := redisurl.New(o.redisURL)
	if err != nil {
		log.Error("cannot use the Redis URL", "err", err)
		return 1
	}
	defer rdb.Close()

	var sink alerts.Sink
	if hook := getenv("SLACK_WEBHOOK_URL"); hook != "" {
		s, err := alerts.NewSlackSink(hook)
		if err != nil {
			log.Error("cannot use SLACK_WEBHOOK_URL", "err", err)
			return 1
		}
		sink = s
		log.Info("posting alerts to the Slack webhook from SLACK_WEBHOOK_URL")
	} else {
		s, err := alerts.NewWriterSink(&syncWriter{w: stdout})
		if err != nil {
			log.Error("cannot write to standard output", "err", err)
			return 1
		}
		sink = s
		log.Info("SLACK_WEBHOOK_URL is not set: printing alerts to standard output")
	}

	flap := o.flapWindow
	if flap == 0 {
		flap = -1 // the flag's 0 means off; Config's 0 means the default
	}
	d, err := alerts.New(rdb, alerts.Config{
		Group: o.group, Consumer: o.consumer, FlapWindow: flap, StaleAfter: o.staleAfter,
		ClaimMinIdle: o.claimMinIdle, RetryMin: o.retryMin, RetryMax: o.retryMax,
		DiscoveryInterval: o.discoveryInterval, MaxBacklog: o.maxBacklog, Logger: log,
	}, sink)
	if err != nil {
		log.Error("invalid configuration", "err", err)
		return 2
	}

	var srv *http.Server
	if o.listen != "" {
		mux, err := newMux(d, rdb, log)
		if err != nil {
			log.Error("cannot serve HTTP", "err", err)
			return 1
		}
		paths := "/healthz /health /metrics"
		if o.dashboard {
			dash, err := mountDashboard(mux, rdb, o, getenv, log)
			if err != nil {
				log.Error("cannot serve the dashboard", "err", err)
				return 2
			}
			go func() { _ = dash.Run(ctx) }()
			paths += " " + dashboardPath
		}
		ln, err := net.Listen("tcp", o.listen)
		if err != nil {
			log.Error("cannot listen", "addr", o.listen, "err", err)
			return 1
		}
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("HTTP server stopped", "err", err)
			}
		}()
		log.Info("serving HTTP", "addr", ln.Addr().String(), "paths", paths)
	}

	err = d.Run(ctx)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	if err != nil {
		log.Error("daemon failed", "err", err)
		return 1
	}
	return 0
}

// newMux routes alertd's HTTP endpoints: /healthz (the daemon's own
// health: Redis reachable, consumer-group backlog), /health (the breakers',
// as in the seed: 503 while one is open) and /metrics (Prometheus, every
// breaker read from Redis at scrape time).
func newMux(d *alerts.Daemon, rdb redis.UniversalClient, log *slog.Logger) (*http.ServeMux, error) {
	breakers, err := health.New(rdb, health.WithLogger(log))
	if err != nil {
		return nil, err
	}
	collector, err := metrics.NewCollector(rdb, metrics.WithLogger(log))
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(collector); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", d.HealthHandler())
	mux.Handle("GET /health", breakers)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	return mux, nil
}

// syncWriter serialises writes to a writer shared with other code.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
