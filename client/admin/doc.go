// Package admin is the operator's side of breakerbox: read a breaker's
// status and history, list every breaker, apply an operator action
// (reset, force open, disable, release) and change the shared config.
//
// Every function takes the redis.UniversalClient of the fleet's Redis and
// a breaker name; none keeps state, starts a goroutine or runs a breaker
// (that is package client, the worker's side). The types they return, and
// the actions and config they take, are defined once in the root package
// breakerbox. cbctl, the alert daemon, client/health and client/metrics
// use this package, and it imports neither package client nor gopher-lua.
//
// Every function bounds nothing by itself: pass a ctx with a deadline.
package admin
