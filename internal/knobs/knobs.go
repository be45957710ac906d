// Package knobs holds switches that benchmarks flip to measure what a
// mechanism of the client buys (bbbench's before-and-after figures).
// Nothing else sets them; their zero values are the client's behaviour.
package knobs

import "sync/atomic"

// NoPeek turns off the callers' peek at the subscription's socket
// (client: subscriber.maybePeek), so that views wait for the Go runtime
// to run the subscription's reader, as they did before it existed.
var NoPeek atomic.Bool

// NoStrictBatch turns off the coalescing of Strict breakers' script calls
// into shared pipelines (client: strictBatch), so that each allow and each
// record is an EVALSHA of its own, as they were before it existed.
var NoStrictBatch atomic.Bool
