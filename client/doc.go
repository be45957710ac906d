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
// every transition the process learns of. [Breaker.State] is the handle's
// view, with no round trip; [Breaker.Shutdown] flushes and stops it.
//
// Every breaker of a process on one Redis client runs on one [Hub]: one
// pub/sub connection for all their announcements, one outcome sender that
// batches them into pipelines, one outage detector per Redis node. New
// uses a Hub shared per client; [NewHub] makes one to set the process
// options once ([Option] says which options belong to the process and
// which to a breaker).
//
// The [Config] given to New only seeds a breaker that has none stored in
// Redis: the stored config is the fleet's truth, changed explicitly with
// [Breaker.SetConfig], [WithOverwriteConfig] or an operator's configure.
// A zero field of Config means its default.
//
// Admission is [AdmitFast] by default: closed-state calls are admitted from
// the worker's view of the breaker without a round trip; [AdmitStrict] asks
// the script for every call. No call waits on Redis longer than the Redis
// timeout ([WithRedisTimeout]); past it, or while its Redis node cannot be
// reached, a breaker follows its [OutagePolicy]: [OutageDecideLocally]
// (default), [OutageAdmitAll] or [OutageRefuseAll], and what it decides is
// counted ([Stats]) and added to the totals in Redis when the node answers
// again. Errors Redis answers with (NOPERM, WRONGPASS, a script's
// BADCONFIG) are returned or logged as what they are, never taken for an
// outage.
//
// The vocabulary (State, Mode, Action, Config, Status, Event) is defined
// once in the root package breakerbox; [Config] and [DefaultConfig] are
// aliases of it. Operators read and control breakers with package
// client/admin (Status, List, History, Control, Configure), which does not
// import this package.
package client
