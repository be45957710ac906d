package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/breakerbox/breakerbox"
)

var (
	// ErrOpen is matched (errors.Is) by every refusal: the breaker is open,
	// its half-open probes are all taken, or an operator forced it open.
	ErrOpen = errors.New("circuit breaker is open")
	// ErrRedisUnavailable is matched, together with ErrOpen, by a refusal
	// of the OutageRefuseAll policy.
	ErrRedisUnavailable = errors.New("redis unavailable")
	// ErrPermitUsed is returned by a permit's second outcome.
	ErrPermitUsed = errors.New("permit already used")
	// ErrShutdown is returned by a Breaker's calls after Shutdown.
	ErrShutdown = errors.New("breaker handle shut down")
)

// OpenError is the error of a refused call. It matches ErrOpen.
type OpenError struct {
	// Name is the breaker's name.
	Name string
	// State and Mode are the breaker's as the refusal saw them: the
	// script's answer, or during an outage the in-process fallback's, or
	// under OutageRefuseAll this worker's last view (see Outage).
	State breakerbox.State
	// Mode: see State.
	Mode breakerbox.Mode
	// RetryAfter is how long the refusal holds: -1 while forced open; 0
	// when unknown.
	RetryAfter time.Duration
	// Outage is true when the refusal was decided while Redis was
	// unreachable: by the in-process fallback (OutageDecideLocally) or by
	// OutageRefuseAll, whose State and Mode are then only this worker's
	// last view of the breaker, not a fresh answer.
	Outage bool
	// Cause is, under OutageRefuseAll, ErrRedisUnavailable joined with
	// the Redis error that started the outage; nil otherwise.
	Cause error
}

// Error says which breaker refused, in which state and mode, and why.
func (e *OpenError) Error() string {
	msg := fmt.Sprintf("breaker %q: %v (state %s, mode %s", e.Name, ErrOpen, e.State, e.Mode)
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(", retry in %s", e.RetryAfter)
	}
	if e.Outage {
		msg += ", decided during a redis outage"
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg + ")"
}

// Unwrap makes errors.Is match ErrOpen and the cause.
func (e *OpenError) Unwrap() []error { return []error{ErrOpen, e.Cause} }
