// Package client is the Go client of breakerbox: a circuit breaker whose
// state lives in Redis and is shared by every worker of a fleet.
//
// Every transition is decided by the Lua script lua/breaker-8.lua inside
// Redis, atomically and on Redis's clock; this package never decides one by
// itself. It asks the script, keeps a view of the script's last answer, and
// reports outcomes. See docs/protocol.md for the protocol that workers in
// other languages use on the same breakers.
//
// The seed's three usage styles:
//
//   - context manager: [Breaker.Execute] runs a function if the breaker
//     admits it and records its outcome;
//   - decorator: [Wrap] and [Do] protect a function returning a value;
//   - manual: [Breaker.Allow] returns a [Permit]; report the outcome on it
//     with Success or Failure.
//
// A refused call returns an error matching [ErrOpen]. Operators read and
// control breakers with package client/admin (Status, List, History,
// Control, Configure); the vocabulary (states, modes, Config, Status) is
// defined in the root package breakerbox.
//
// Admission is [Fast] by default: closed-state calls are admitted from the
// worker's view of the breaker without a round trip; [Strict] asks the
// script for every call. While Redis is unreachable a breaker follows its
// [OutagePolicy].
package client
