// Package client is the worker's side of breakerbox: a circuit breaker
// whose state lives in Redis and is shared by every worker of a fleet.
//
// Every transition is decided by the Lua script lua/breaker-8.lua inside
// Redis, atomically and on Redis's clock; this package never decides one by
// itself. It asks the script, keeps a view of the script's last answer, and
// reports outcomes. See docs/protocol.md for the protocol that workers in
// other languages use on the same breakers.
//
// [New] returns a [Breaker] handle; the usage styles are:
//
//   - context manager: [Breaker.Execute] runs a function if the breaker
//     admits it and records its outcome;
//   - decorator: [Wrap] and [Do] protect a function returning a value;
//   - manual: [Breaker.Allow] returns a [Permit]; report the outcome on it
//     with Success, Failure, Ignore or Done.
//
// A refused call returns an error matching [ErrOpen] (an [*OpenError]).
// [WithClassifier] says how an error counts ([VerdictSuccess],
// [VerdictFailure] or [VerdictIgnore]); [WithOnStateChange] calls a hook on
// every transition the handle learns of. [Breaker.State] is the handle's
// view, with no round trip; [Breaker.Shutdown] flushes and stops it.
//
// Admission is [AdmitFast] by default: closed-state calls are admitted from
// the worker's view of the breaker without a round trip; [AdmitStrict] asks
// the script for every call. While Redis is unreachable a breaker follows
// its [OutagePolicy]: [OutageDecideLocally] (default), [OutageAdmitAll] or
// [OutageRefuseAll].
//
// The vocabulary (State, Mode, Action, Config, Status, Event) is defined
// once in the root package breakerbox; [Config] and [DefaultConfig] are
// aliases of it. Operators read and control breakers with package
// client/admin (Status, List, History, Control, Configure), which does not
// import this package.
package client
