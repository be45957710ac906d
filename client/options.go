package client

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"
)

// Option configures a Hub (NewHub) or a Breaker (New, Hub.New). Options
// are of two kinds, and every option is accepted in both places:
//
//   - Process options belong to the runtime a Hub shares among its
//     breakers: WithLogger, WithRedisTimeout, WithActor, WithOnStateChange.
//     Given to NewHub they apply to the Hub's own work (its pub/sub
//     connection, outcome sender, outage detection) and are the default of
//     every breaker it hands out; given to New or Hub.New they apply to
//     that breaker only (its log lines, how long its callers wait on Redis,
//     the actor its config writes carry, the hook its changes go to).
//   - Breaker options say how one breaker admits and counts calls:
//     WithAdmission, WithClassifier, WithOutagePolicy, WithOverwriteConfig,
//     WithDurableTransitions.
//     Given to NewHub they are the default of every breaker of the Hub.
//
// The shared Config (thresholds and timeouts) is not an option: it lives in
// Redis (see New).
type Option func(*options)

type options struct {
	logger        *slog.Logger
	redisTimeout  time.Duration
	actor         string
	onStateChange func(StateChange)
	classify      func(error) Verdict
	outage        OutagePolicy
	admission     Admission
	overwrite     bool
	durable       durability
}

// durability is WithDurableTransitions' setting (replicas 0: off).
type durability struct {
	replicas int
	timeout  time.Duration
}

// WithLogger sends logs to l instead of slog.Default() (a process option).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRedisTimeout bounds every wait on Redis (a process option; default
// 250ms): no caller of Execute, Do, Allow or a Permit method waits on Redis
// longer than this plus a few milliseconds, whatever Redis does and whatever
// the go-redis client's own timeouts are. A Redis call that outlives it
// starts an outage: the breakers on that Redis node follow their outage
// policy until it answers again.
func WithRedisTimeout(d time.Duration) Option { return func(o *options) { o.redisTimeout = d } }

// WithActor names this process in the operator events and config changes
// it writes (a process option; default "go:HOSTNAME:PID").
func WithActor(actor string) Option { return func(o *options) { o.actor = actor } }

// WithOnStateChange calls hook for every change of a breaker's state or
// mode that the process learns of (see StateChange). It is a process
// option: given to NewHub it hears every breaker of the Hub (tell them
// apart by StateChange.Name); given to New or Hub.New it hears that
// breaker only, instead of the Hub's hook. The hook runs on a goroutine of
// the Hub, one change at a time and in order, never on a caller's path and
// never while a lock is held, so it may block or call the breaker. Up to 64
// changes of one breaker wait for a slow hook; past that, each newer change
// of that breaker is merged into its last one waiting (its To, Mode and
// Generation become the newer change's and its Cause "observed"), so a slow
// hook lags and sees fewer steps but still a consistent chain of states
// ending in the latest, and callers never wait for it. A panic in the hook
// is logged and the hook keeps being called.
func WithOnStateChange(hook func(StateChange)) Option {
	return func(o *options) { o.onStateChange = hook }
}

// WithClassifier sets how a call's non-nil error counts (a breaker
// option; Execute, Do, Wrap and Permit.Done use it). By default every error
// is VerdictFailure, except the caller's own cancellation, which is always
// ignored and never reaches the classifier. A nil classify restores the
// default.
func WithClassifier(classify func(error) Verdict) Option {
	return func(o *options) { o.classify = classify }
}

// WithOutagePolicy sets what a breaker does while its Redis node cannot be
// reached (a breaker option; default OutageDecideLocally). Given to NewHub
// it is the default of the Hub's breakers.
func WithOutagePolicy(p OutagePolicy) Option { return func(o *options) { o.outage = p } }

// WithAdmission chooses AdmitFast (default) or AdmitStrict admission (a
// breaker option).
func WithAdmission(a Admission) Option { return func(o *options) { o.admission = a } }

// WithOverwriteConfig makes New store its Config in Redis even when the
// breaker already has one (a breaker option): an explicit, deploy-time
// change of the fleet's config, written with the script's configure
// operation once, when the breaker is first registered; every field is
// written, so trip rules the Config leaves off are turned off. Without it
// the Config given to New only seeds a breaker that has none stored, and
// the config in Redis (changed by SetConfig, cbctl config or any
// language's configure) stays the fleet's truth. A stored config that this
// changes is logged as a warning.
func WithOverwriteConfig() Option { return func(o *options) { o.overwrite = true } }

// WithDurableTransitions makes the breaker's transitions wait for
// replication (a breaker option; default off, replicas 0: a transition is
// replicated asynchronously, as every Redis write, and a failover right
// after it may lose it: docs/operations.md, "What a failover can lose").
//
// With it, every script call of the breaker runs on a connection taken
// from the pool for that call, and when the script's reply reports a
// transition (a generation newer than any this handle knew: the call
// opened, half-opened or closed the breaker, or saw another worker's
// transition first), the client sends WAIT replicas TIMEOUT on that same
// connection. A call that waits for its reply (AdmitStrict, a probe's
// Allow, an outcome recorded at once) acts on it only once replicas
// replicas acknowledged the transition or the wait ran out: the Allow
// that half-opened the breaker returns its probe after it. Outcomes sent
// in the background (AdmitFast's batches) are waited for by the sender
// after it has handed their replies over, so no caller and no other batch
// waits for it. A transition acknowledged by replicas is in the replica
// that a failover promotes (Redis promotes the one with the most data), so
// a failover cannot undo it.
//
// The wait is bounded: at most timeout (0: the Redis timeout), never past
// the Redis timeout (WithRedisTimeout), and for a caller waiting on Redis
// at most what is left of its Redis timeout, as every Redis wait of a
// call. A WAIT that runs out, fails or cannot be sent (a client type
// without single connections; a call a Cluster node redirected, which
// runs again through the client) never fails a call nor starts an outage:
// the transition stands in the master, and it counts in
// Stats().NotReplicated (those acknowledged by enough replicas in
// Stats().Replicated). WAIT proves the replication of the connection's own
// writes: a reply that shows another worker's transition is counted too,
// although that worker's write is what a failover could lose. Outcomes
// and refusals are never waited for: a failover can still lose those
// recorded since the last replicated write, and an operator's action
// (cbctl, client/admin) is not waited for either.
//
// Its cost is one WAIT per transition (a round trip to the master and the
// replicas' acknowledgement, about a millisecond on a LAN), none per call.
// The worker's ACL rule needs +wait (docs/operations.md). replicas or
// timeout below 0 is an error.
func WithDurableTransitions(replicas int, timeout time.Duration) Option {
	return func(o *options) { o.durable = durability{replicas: replicas, timeout: timeout} }
}

// defaultRedisTimeout is the default of WithRedisTimeout. Only this
// package's tests change it (see export_test.go), before any Hub is made.
var defaultRedisTimeout = 250 * time.Millisecond

func defaultOptions() options {
	host, _ := os.Hostname()
	return options{
		logger:       slog.Default(),
		redisTimeout: defaultRedisTimeout,
		actor:        "go:" + host + ":" + strconv.Itoa(os.Getpid()),
		classify:     failureVerdict,
	}
}

// apply returns o with opts applied, checked.
func (o options) apply(opts []Option) (options, error) {
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.classify == nil {
		o.classify = failureVerdict
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	switch {
	case o.redisTimeout <= 0:
		return o, fmt.Errorf("redis timeout %s, want > 0", o.redisTimeout)
	case o.outage < OutageDecideLocally || o.outage > OutageRefuseAll:
		return o, fmt.Errorf("unknown outage policy %d", o.outage)
	case o.admission < AdmitFast || o.admission > AdmitStrict:
		return o, fmt.Errorf("unknown admission %d", o.admission)
	case o.durable.replicas < 0 || o.durable.timeout < 0:
		return o, fmt.Errorf("durable transitions: %d replicas, timeout %s, want both >= 0", o.durable.replicas, o.durable.timeout)
	}
	return o, nil
}

func failureVerdict(error) Verdict { return VerdictFailure }
