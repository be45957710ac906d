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
	// OutageDecideLocally (the default) runs the same Lua state machine in
	// process, with the same config, on this worker's outcomes only, until
	// Redis answers again.
	OutageDecideLocally OutagePolicy = iota
	// OutageAdmitAll admits every call while Redis is unreachable.
	OutageAdmitAll
	// OutageRefuseAll refuses every call while Redis is unreachable, with
	// an *OpenError whose Outage is true and whose Cause matches
	// ErrRedisUnavailable.
	OutageRefuseAll
)

// String names the policy in logs: decide-locally, admit-all or refuse-all.
func (p OutagePolicy) String() string {
	switch p {
	case OutageDecideLocally:
		return "decide-locally"
	case OutageAdmitAll:
		return "admit-all"
	case OutageRefuseAll:
		return "refuse-all"
	}
	return "OutagePolicy(" + strconv.Itoa(int(p)) + ")"
}

// Admission says how a worker decides to admit a call.
type Admission int

const (
	// AdmitFast (the default) admits calls in the closed state, and refuses
	// them while the breaker is open and its recovery timer runs, from the
	// worker's view of the breaker, without a round trip. The view is kept
	// fresh by the script's PUBLISH on every transition and is trusted only
	// while the subscription is live. Outcomes are sent in order, batched:
	// a success does not wait, a failure waits for its batch (one round trip
	// shared by concurrent failures) so the worker sees a trip before its
	// next call. Half-open probes are always admitted by the script.
	AdmitFast Admission = iota
	// AdmitStrict asks the script for every admission and waits for every
	// outcome to be recorded: two round trips per call.
	AdmitStrict
)

// String names the admission in logs: fast or strict.
func (a Admission) String() string {
	if a == AdmitStrict {
		return "strict"
	}
	return "fast"
}

// Verdict is a classifier's answer about a call's error.
type Verdict int

const (
	// VerdictSuccess counts the call as a success.
	VerdictSuccess Verdict = iota
	// VerdictFailure counts the call as a failure (the breaker's last
	// error is the call's).
	VerdictFailure
	// VerdictIgnore counts the call neither way: it cannot move the
	// breaker, and a half-open probe's lease is returned at once (outcome
	// r on the wire). For errors that say nothing about the upstream's
	// health: a validation error, a 404 the caller expects.
	VerdictIgnore
)

// String returns success, failure or ignore.
func (v Verdict) String() string {
	switch v {
	case VerdictSuccess:
		return "success"
	case VerdictFailure:
		return "failure"
	case VerdictIgnore:
		return "ignore"
	}
	return "Verdict(" + strconv.Itoa(int(v)) + ")"
}

type options struct {
	logger        *slog.Logger
	classify      func(error) Verdict
	outage        OutagePolicy
	admission     Admission
	redisTimeout  time.Duration
	actor         string
	onStateChange func(StateChange)
}

// Option changes how a Breaker behaves in this process (not the shared Config).
type Option func(*options)

// WithLogger sends the breaker's logs to l instead of slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithClassifier sets how a call's non-nil error counts (Execute, Do, Wrap
// and Permit.Done use it). By default every error is VerdictFailure,
// except the caller's own cancellation, which is always ignored and never
// reaches the classifier. A nil classify restores the default.
func WithClassifier(classify func(error) Verdict) Option {
	return func(o *options) { o.classify = classify }
}

// WithOutagePolicy sets what happens while Redis is unreachable (default OutageDecideLocally).
func WithOutagePolicy(p OutagePolicy) Option { return func(o *options) { o.outage = p } }

// WithAdmission chooses AdmitFast (default) or AdmitStrict admission.
func WithAdmission(a Admission) Option { return func(o *options) { o.admission = a } }

// WithRedisTimeout bounds each Redis call the breaker makes on a caller's
// path (default 250ms); past it the call follows the outage policy.
func WithRedisTimeout(d time.Duration) Option { return func(o *options) { o.redisTimeout = d } }

// WithActor names this process in operator events (default "go:HOSTNAME:PID").
func WithActor(actor string) Option { return func(o *options) { o.actor = actor } }

// WithOnStateChange calls hook for every change of the breaker's state or
// mode that this handle learns of (see StateChange). The hook runs on a
// goroutine of the handle, one change at a time and in order, never on a
// caller's path and never while the handle holds a lock, so it may block
// or call the breaker. Up to 64 changes wait for a slow hook; past that,
// each newer change is merged into the last one waiting (its To, Mode and
// Generation become the newer change's and its Cause "observed"), so a
// slow hook lags and sees fewer steps but still a consistent chain of
// states ending in the latest, and callers never wait for it. A panic in
// the hook is logged and the hook keeps being called.
func WithOnStateChange(hook func(StateChange)) Option {
	return func(o *options) { o.onStateChange = hook }
}

func defaultOptions() options {
	host, _ := os.Hostname()
	return options{
		logger:       slog.Default(),
		redisTimeout: 250 * time.Millisecond,
		actor:        "go:" + host + ":" + strconv.Itoa(os.Getpid()),
	}
}

func failureVerdict(error) Verdict { return VerdictFailure }
