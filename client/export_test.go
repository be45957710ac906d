package client

import (
	"time"

	"github.com/breakerbox/breakerbox/internal/redisurl"
)

// SetDefaultRedisTimeout sets the Redis timeout of Hubs and breakers made
// without WithRedisTimeout (the Hubs New makes included). TestMain calls
// it before any test runs.
func SetDefaultRedisTimeout(d time.Duration) { defaultRedisTimeout = d }

// ViewGeneration returns the generation of b's view of its breaker, or -1
// before it has one: tests wait on it after an operator action.
func ViewGeneration(b *Breaker) int64 {
	if v := b.view.Load(); v != nil {
		return v.gen
	}
	return -1
}

// AdmitsFromView reports whether b admits from its view (Fast admission).
func AdmitsFromView(b *Breaker) bool { return b.o.admission == AdmitFast }

// DefaultURLOfCommands is the default of cbctl and alertd, which must be
// DefaultRedisURL.
const DefaultURLOfCommands = redisurl.Default

// SlowNextStrictPipeline delays each start of a next Strict pipeline by d
// (a Shutdown then lands between taking pending calls and starting them)
// until the returned function is called.
func SlowNextStrictPipeline(d time.Duration) (restore func()) {
	beforeNextPipeline = func() { time.Sleep(d) }
	return func() { beforeNextPipeline = nil }
}
