package client

import (
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/breakerbox/breakerbox"
)

// Config is the breaker's shared configuration, defined in the root
// package (see [breakerbox.Config] for each field's bounds and default).
type Config = breakerbox.Config

// DefaultConfig returns the protocol's defaults: see [breakerbox.DefaultConfig].
func DefaultConfig() Config { return breakerbox.DefaultConfig() }

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
