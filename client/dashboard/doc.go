// Package dashboard is breakerbox's web dashboard: every breaker at a
// glance, live, with a page per breaker and operator actions. It is an
// http.Handler that a service mounts on its own mux; alertd --listen serves
// it at /dashboard/, and cmd/demo --dashboard serves it while its breakers
// change.
//
//	d, err := dashboard.New(rdb, dashboard.WithOperators(dashboard.Operator{Name: "alice", Secret: secret}))
//	go d.Run(ctx) // one pattern subscription and a bulk status read every 2s
//	mux.Handle("/breakers/", http.StripPrefix("/breakers", d))
//
// What it shows: each breaker's state as a colour, consecutive failures
// against the threshold, success rate, requests and refusals per second
// with a sparkline, time in its state, the countdown to the next probe
// while open, and the last error; sortable, filterable and paged, for
// thousands of breakers. A breaker's page adds its history as a timeline,
// its config, the probes in flight and the delivery state of its
// transition stream (each alert daemon group's pending entries and lag).
//
// Live: Run holds one PSUBSCRIBE of circuit_breaker:*:changed for the
// whole process and reads a breaker as soon as it announces a transition
// or a config change; pages receive it through server-sent events
// (api/events) within milliseconds. Every interval (WithInterval, default
// 2s) it also reads every breaker in one pipelined round trip per 1,000
// breakers; the rates are the differences between two such reads.
//
// Access: anyone who reaches the dashboard may read it, unless WithClosed
// asks for a signed-in operator for everything. Actions (reset, force
// open, disable, release, change config) need an operator (WithOperators):
// signed in on the page (a session cookie, SameSite=Strict and HttpOnly,
// plus a per-session CSRF token sent in a header), or an Authorization
// header (Bearer SECRET, or Basic NAME:SECRET) for scripts. Actions are
// POSTs with a JSON body only, and cross-origin POSTs are refused (Go's
// http.CrossOriginProtection: Sec-Fetch-Site and Origin). The actor
// written to the breaker's history is dashboard:NAME@HOST.
//
// healthz answers 200 while the dashboard reads Redis and its subscription
// is live, 503 otherwise (for example NOPERM under an ACL that lacks a
// permission); see Health.
//
// The page is three embedded files (HTML, CSS, plain JavaScript), needs no
// build step and loads nothing from elsewhere.
package dashboard
