// Package metrics exports breakerbox breakers to Prometheus. The Collector
// reads Redis at scrape time (admin.List, or admin.Statuses for a
// fixed list of names: pipelined, one round trip per 1,000 breakers), so
// every process that registers it reports the fleet-wide truth, and no
// process has to run for the numbers to exist.
//
//	c, err := metrics.NewCollector(rdb)
//	prometheus.MustRegister(c)
//	http.Handle("/metrics", promhttp.Handler())
//
// Series, each labelled service="NAME" (the breaker's name):
//
//	circuit_breaker_state              gauge   0 closed, 1 open, 2 half_open
//	circuit_breaker_mode               gauge   0 normal, 1 forced_open, 2 disabled
//	circuit_breaker_failures           gauge   current consecutive failures
//	circuit_breaker_failure_threshold  gauge   failures that open the breaker
//	circuit_breaker_total_requests     gauge   successes + failures + refused, lifetime (see below)
//	circuit_breaker_success_rate       gauge   percent of recorded outcomes that succeeded
//	circuit_breaker_successes_total    counter
//	circuit_breaker_failures_total     counter
//	circuit_breaker_refused_total      counter calls refused by the breaker
//	circuit_breaker_transitions_total  counter changes of state or mode
//	circuit_breaker_window_calls       gauge   calls in the trip rules' window (breakers with a window only)
//	circuit_breaker_failure_rate       gauge   percent of the window's calls that failed (idem)
//	circuit_breaker_slow_call_rate     gauge   percent of the window's calls that were slow (idem)
//
// and, without labels, circuit_breaker_scrape_error (1 when the last read of
// Redis failed) and circuit_breaker_scrape_duration_seconds.
//
// circuit_breaker_total_requests keeps the seed's name, so it is exported as
// a gauge: a counter must end in _total (promlint), and the OpenMetrics
// format would rename it. Use the three _total counters with rate().
//
// circuit_breaker_transitions_total is the status field transitions, which
// the script adds 1 to at every change of state or mode: opened, half_opened,
// closed, and the operator actions reset, forced_open, disabled, released
// (and repaired). Config changes do not count. To count openings alone, use
// the transition stream (the alert daemon reads it).
//
// The window series (docs/protocol.md, "The window") are exported only for
// breakers that keep a window (window_ms or window_calls configured): they
// are what the failure-rate and slow-call rules compare with their
// thresholds, fleet-wide, as of the scrape.
package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/bounded"
	"github.com/breakerbox/breakerbox/internal/redisconn"
)

// Collector is a prometheus.Collector reading breakers from Redis at every
// scrape. It is safe for concurrent use.
type Collector struct {
	rdb     redis.UniversalClient
	names   []string // nil: every breaker
	timeout time.Duration
	log     *slog.Logger

	state, mode, failures, threshold, requests, rate *prometheus.Desc
	successes, failuresTotal, refused, transitions   *prometheus.Desc
	windowCalls, failureRate, slowCallRate           *prometheus.Desc
	scrapeError, scrapeDuration                      *prometheus.Desc
}

// Option configures a Collector.
type Option func(*Collector)

// WithNames exports only these breakers instead of every breaker in Redis.
// A name nobody has used is exported as closed with the defaults.
func WithNames(names ...string) Option {
	return func(c *Collector) { c.names = append([]string{}, names...) }
}

// WithTimeout bounds one scrape's Redis reads (default 5s), whatever
// Redis does: a stalled or unreachable Redis costs a scrape this long at
// most, and is exported as circuit_breaker_scrape_error 1.
func WithTimeout(d time.Duration) Option { return func(c *Collector) { c.timeout = d } }

// WithLogger sends scrape errors to l instead of slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *Collector) { c.log = l } }

// NewCollector returns a Collector reading rdb. It validates the options and
// makes no Redis call. A *redis.ClusterClient is made to reload its slot map
// as soon as a call fails (after a failover, not at go-redis's 60s timer):
// see docs/operations.md, "Failovers".
func NewCollector(rdb redis.UniversalClient, opts ...Option) (*Collector, error) {
	if rdb == nil {
		return nil, fmt.Errorf("metrics: nil redis client")
	}
	redisconn.Follow(rdb) // reach a promoted replica in seconds, not at go-redis's 60s reload
	c := &Collector{rdb: rdb, timeout: 5 * time.Second, log: slog.Default()}
	for _, o := range opts {
		o(c)
	}
	if c.timeout <= 0 {
		return nil, fmt.Errorf("metrics: timeout %s, want > 0", c.timeout)
	}
	if c.log == nil {
		return nil, fmt.Errorf("metrics: nil logger")
	}
	if c.names != nil && len(c.names) == 0 {
		return nil, fmt.Errorf("metrics: WithNames given no names")
	}
	for _, n := range c.names {
		if err := breakerbox.ValidateName(n); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	svc := []string{"service"}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, svc, nil) }
	c.state = d("circuit_breaker_state", "Breaker state: 0 closed, 1 open, 2 half_open.")
	c.mode = d("circuit_breaker_mode", "Operator override: 0 normal, 1 forced_open, 2 disabled.")
	c.failures = d("circuit_breaker_failures", "Current consecutive failures.")
	c.threshold = d("circuit_breaker_failure_threshold", "Consecutive failures that open the breaker.")
	c.requests = d("circuit_breaker_total_requests", "Calls seen by the breaker: successes, failures and refused calls.")
	c.rate = d("circuit_breaker_success_rate", "Percent of recorded outcomes that succeeded (100 before any).")
	c.successes = d("circuit_breaker_successes_total", "Calls recorded as successes.")
	c.failuresTotal = d("circuit_breaker_failures_total", "Calls recorded as failures.")
	c.refused = d("circuit_breaker_refused_total", "Calls the breaker refused (open, probes taken, forced open).")
	c.transitions = d("circuit_breaker_transitions_total",
		"Changes of state or mode: every transition and every operator action (the breaker's generation).")
	c.windowCalls = d("circuit_breaker_window_calls", "Calls in the trip rules' window (current outcomes recorded in closed).")
	c.failureRate = d("circuit_breaker_failure_rate", "Percent of the window's calls that failed (the failure-rate rule's measure).")
	c.slowCallRate = d("circuit_breaker_slow_call_rate", "Percent of the window's calls at or over slow_call_ms (the slow-call rule's measure).")
	c.scrapeError = prometheus.NewDesc("circuit_breaker_scrape_error",
		"1 when the last scrape could not read the breakers from Redis, else 0.", nil, nil)
	c.scrapeDuration = prometheus.NewDesc("circuit_breaker_scrape_duration_seconds",
		"Time the last scrape spent reading Redis.", nil, nil)
	return c, nil
}

// Describe sends every series' descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.mode, c.failures, c.threshold, c.requests, c.rate,
		c.successes, c.failuresTotal, c.refused, c.transitions, c.windowCalls, c.failureRate, c.slowCallRate,
		c.scrapeError, c.scrapeDuration} {
		ch <- d
	}
}

// Collect reads the breakers and sends their series. When Redis cannot be
// read it sends only circuit_breaker_scrape_error 1 (and the duration), so
// the scrape itself still succeeds and the error can be alerted on. When
// only some breakers cannot be read (an invalid stored config), it sends
// the others, with circuit_breaker_scrape_error 1.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	start := time.Now()
	sts, err := c.read(ctx)
	ch <- prometheus.MustNewConstMetric(c.scrapeDuration, prometheus.GaugeValue, time.Since(start).Seconds())
	failed := 0.0
	if err != nil {
		c.log.Warn("circuit breaker metrics: cannot read Redis", "err", err, "breakers_read", len(sts))
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeError, prometheus.GaugeValue, failed)
	for _, st := range sts {
		g := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, st.Name)
		}
		n := func(d *prometheus.Desc, v int64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), st.Name)
		}
		g(c.state, float64(st.State))
		g(c.mode, modeValue(st.Mode))
		g(c.failures, float64(st.CurrentFailures))
		g(c.threshold, float64(st.FailureThreshold))
		g(c.rate, st.SuccessRate)
		g(c.requests, float64(st.TotalRequests))
		n(c.successes, st.TotalSuccesses)
		n(c.failuresTotal, st.TotalFailures)
		n(c.refused, st.TotalRefused)
		n(c.transitions, st.Transitions)
		if st.Window > 0 || st.WindowCalls > 0 {
			g(c.windowCalls, float64(st.CallsInWindow))
			g(c.failureRate, st.FailureRate)
			g(c.slowCallRate, st.SlowCallRate)
		}
	}
}

// read returns the breakers' snapshots. A breaker that cannot be read (a
// corrupted config) is left out and named in the error; the others are
// still exported. The read is bounded by ctx's deadline even when the
// go-redis client ignores context deadlines (ContextTimeoutEnabled false):
// a stalled Redis costs a scrape its timeout, no more.
func (c *Collector) read(ctx context.Context) ([]breakerbox.Status, error) {
	type result struct {
		sts []breakerbox.Status
		err error
	}
	d := c.timeout
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	r, err := bounded.Call(ctx, "status reads", d, func(ctx context.Context) (result, error) {
		names := c.names
		if names == nil {
			var err error
			if names, err = admin.Names(ctx, c.rdb); err != nil {
				return result{}, err
			}
		}
		sts, err := admin.Statuses(ctx, c.rdb, names)
		return result{sts, err}, nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return r.sts, r.err
}

func modeValue(m breakerbox.Mode) float64 {
	switch m {
	case breakerbox.ModeForcedOpen:
		return 1
	case breakerbox.ModeDisabled:
		return 2
	}
	return 0
}
