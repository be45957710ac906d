// Package conformance proves that every engine that runs lua/breaker-8.lua
// agrees with docs/protocol.md: gopher-lua with a moved clock, miniredis,
// a real redis-server, a real three-master Redis Cluster, and a Python
// worker that speaks RESP with nothing but its standard library.
//
// The contract is written down once, as language-neutral JSON vectors in
// conformance/vectors: named scenarios whose steps are operations on one
// breaker (allow, outcomes, operator controls, configure, status, raw key
// edits), each at a time offset in milliseconds from the scenario start,
// with what must hold afterwards (reply fields, keys, history and stream
// entries, announcements). RunVector runs one vector against one Target;
// conformance/python/conformance.py does the same in Python.
//
// # Time
//
// Engines with a settable clock (gopher-lua, miniredis) put Redis's clock at
// start+offset before each step, so every instant is exact. Real servers
// cannot move their clock, so the runner stretches the scenario instead: a
// timed vector (any step with an offset above 0) runs with every duration
// multiplied by a scale (default 20: a vector millisecond lasts 20 real
// ones). The runner waits, on Redis's own TIME, until each step is at least
// scale*(its offset - an earlier step's offset) after the end of every
// earlier step, so "at or after" a deadline always holds; after the run it
// checks that no step ran so late that it crossed a configured duration it
// was meant to stay below, and otherwise retries the vector on a fresh
// breaker (the machine was too slow, which says nothing about the script).
// Reported durations (retry_after_ms, outage_ms) are compared within a
// tolerance there; instants ("@T") must fall inside the Redis-clock window
// in which a step at offset T ran. The decisions themselves (open or not,
// admitted or not, current or stale) are exact on every engine.
package conformance
