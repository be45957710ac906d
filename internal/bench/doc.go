// Package bench is the logic of cmd/bbbench: it starts its own
// redis-server on a free loopback port and measures, side by side in one
// run, a go-redis PING (the floor), breakerbox's Execute in each state and
// admission mode, sony/gobreaker/v2 in process and its
// DistributedCircuitBreaker on a go-redis store; then how fast a trip
// reaches another worker, Redis CPU and memory per breaker, and listing
// 10,000 breakers. The report is markdown (docs/performance.md).
//
// Every case runs sequentially, with many goroutines, and in several
// worker processes (the binary re-executes itself as workers), a few
// times in shuffled order; the report quotes medians and ratios to PING
// measured in the same repetition, because the machine is shared.
// Round trips are counted by a go-redis hook on each worker's client,
// commands and server time by INFO commandstats deltas, and every case
// that records outcomes is checked for exact counts after it ran.
package bench
