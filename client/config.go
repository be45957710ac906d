package client

import (
	"strconv"

	"github.com/breakerbox/breakerbox"
)

// Config is the breaker's shared configuration, defined in the root
// package (see [breakerbox.Config] for each field's bounds and default).
// A zero field means its default, so Config{} stands for DefaultConfig().
// The Config given to New only seeds a breaker that has no config stored
// in Redis yet: see New.
type Config = breakerbox.Config

// DefaultConfig returns the protocol's defaults: see [breakerbox.DefaultConfig].
func DefaultConfig() Config { return breakerbox.DefaultConfig() }

// OutagePolicy says what a breaker does while Redis cannot be reached.
type OutagePolicy int

const (
	// OutageDecideLocally (the default) runs the same Lua state machine in
	// process, with the config in force, on this worker's calls only,
	// starting from the worker's last view of the breaker (an open breaker
	// stays open until its recovery time), until Redis answers again.
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
