package client

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"
)

// Config is a breaker's shared configuration. It is stored in Redis with
// the breaker (circuit_breaker:{NAME}:config) so every worker, in any
// language, uses the same values; New registers it on first use.
type Config struct {
	// FailureThreshold is how many consecutive failures open the breaker.
	// Seed default 3; must be at least 1.
	FailureThreshold int
	// RecoveryTimeout is how long the breaker stays open before it admits
	// probes, on Redis's clock. Seed default 30s; must be at least 1ms.
	RecoveryTimeout time.Duration
	// SuccessThreshold is how many probe successes close a half-open
	// breaker. Seed default 2; must be at least 1.
	SuccessThreshold int
	// HalfOpenMaxCalls is how many probes a half-open breaker admits at once
	// across the fleet. Zero means SuccessThreshold.
	HalfOpenMaxCalls int
	// RequestTimeout bounds a protected call: Execute cancels the call's
	// context after it (a timeout is a failure), and a probe's lease expires
	// after it. Seed default 45s; must be at least 1ms.
	RequestTimeout time.Duration
}

// DefaultConfig returns the seed's defaults: 3 failures open the breaker,
// 30s recovery timeout, 2 successes close it, 45s request timeout.
func DefaultConfig() Config {
	return Config{FailureThreshold: 3, RecoveryTimeout: 30 * time.Second,
		SuccessThreshold: 2, RequestTimeout: 45 * time.Second}
}

// ErrInvalidConfig is returned by New and SetConfig for a config that cannot be used.
var ErrInvalidConfig = errors.New("invalid breaker config")

// Validate reports whether c can be used, naming the first bad field.
func (c Config) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: %s is %v, want %s", ErrInvalidConfig, field, v, want)
	}
	switch {
	case c.FailureThreshold < 1 || c.FailureThreshold > maxCount:
		return bad("FailureThreshold", c.FailureThreshold, "1 to 1000000")
	case c.SuccessThreshold < 1 || c.SuccessThreshold > maxCount:
		return bad("SuccessThreshold", c.SuccessThreshold, "1 to 1000000")
	case c.HalfOpenMaxCalls < 0 || c.HalfOpenMaxCalls > maxCount:
		return bad("HalfOpenMaxCalls", c.HalfOpenMaxCalls, "0 (same as SuccessThreshold) to 1000000")
	case c.RecoveryTimeout < time.Millisecond || c.RecoveryTimeout > maxDuration:
		return bad("RecoveryTimeout", c.RecoveryTimeout, "1ms to 720h")
	case c.RequestTimeout < time.Millisecond || c.RequestTimeout > maxDuration:
		return bad("RequestTimeout", c.RequestTimeout, "1ms to 720h")
	}
	return nil
}

// The upper bounds of the script's BOUNDS table (lua/breaker-8.lua; a test
// checks that they agree). The root package's Config bounds table replaces
// these when the API pass lands.
const (
	maxCount    = 1_000_000
	maxDuration = 2_592_000_000 * time.Millisecond // 30 days
)

// fields returns the config as the script's configure arguments.
func (c Config) fields() []any {
	hoMax := c.HalfOpenMaxCalls
	if hoMax == 0 {
		hoMax = c.SuccessThreshold
	}
	return []any{
		"failure_threshold", c.FailureThreshold,
		"recovery_timeout_ms", c.RecoveryTimeout.Milliseconds(),
		"success_threshold", c.SuccessThreshold,
		"half_open_max_calls", hoMax,
		"request_timeout_ms", c.RequestTimeout.Milliseconds(),
	}
}

// OutagePolicy says what a breaker does while Redis cannot be reached.
type OutagePolicy int

const (
	// LocalBreaker (the default) runs the same Lua state machine in process,
	// with the same config, on this worker's outcomes only, until Redis
	// answers again.
	LocalBreaker OutagePolicy = iota
	// FailOpen admits every call while Redis is unreachable.
	FailOpen
	// FailClosed refuses every call (with ErrOpen) while Redis is unreachable.
	FailClosed
)

func (p OutagePolicy) String() string {
	switch p {
	case LocalBreaker:
		return "local-breaker"
	case FailOpen:
		return "fail-open"
	case FailClosed:
		return "fail-closed"
	}
	return "OutagePolicy(" + strconv.Itoa(int(p)) + ")"
}

// Admission says how a worker decides to admit a call.
type Admission int

const (
	// Fast (the default) admits calls in the closed state, and refuses them
	// while the breaker is open and its recovery timer runs, from the
	// worker's view of the breaker, without a round trip. The view is kept
	// fresh by the script's PUBLISH on every transition and is trusted only
	// while the subscription is live. Outcomes are sent in order, batched:
	// a success does not wait, a failure waits for its batch (one round trip
	// shared by concurrent failures) so the worker sees a trip before its
	// next call. Half-open probes are always admitted by the script.
	Fast Admission = iota
	// Strict asks the script for every admission and waits for every
	// outcome to be recorded: two round trips per call.
	Strict
)

func (a Admission) String() string {
	if a == Strict {
		return "strict"
	}
	return "fast"
}

type options struct {
	logger       *slog.Logger
	isFailure    func(error) bool
	outage       OutagePolicy
	admission    Admission
	redisTimeout time.Duration
	actor        string
}

// Option changes how a Breaker behaves in this process (not the shared Config).
type Option func(*options)

// WithLogger sends the breaker's logs to l instead of slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithIsFailure sets which errors count as failures. Errors for which it
// returns false count as successes. By default every error counts, except
// the caller's own cancellation, which is never counted either way.
func WithIsFailure(f func(error) bool) Option { return func(o *options) { o.isFailure = f } }

// WithOutagePolicy sets what happens while Redis is unreachable (default LocalBreaker).
func WithOutagePolicy(p OutagePolicy) Option { return func(o *options) { o.outage = p } }

// WithAdmission chooses Fast (default) or Strict admission.
func WithAdmission(a Admission) Option { return func(o *options) { o.admission = a } }

// WithRedisTimeout bounds each Redis call the breaker makes on a caller's
// path (default 250ms); past it the call follows the outage policy.
func WithRedisTimeout(d time.Duration) Option { return func(o *options) { o.redisTimeout = d } }

// WithActor names this process in operator events (default "go:HOSTNAME:PID").
func WithActor(actor string) Option { return func(o *options) { o.actor = actor } }

func defaultOptions() options {
	host, _ := os.Hostname()
	return options{
		logger:       slog.Default(),
		isFailure:    func(error) bool { return true },
		redisTimeout: 250 * time.Millisecond,
		actor:        "go:" + host + ":" + strconv.Itoa(os.Getpid()),
	}
}
