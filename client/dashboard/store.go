package dashboard

import (
	"context"

	"github.com/breakerbox/breakerbox"
)

// store is everything the dashboard asks of Redis. redisStore (redis.go)
// is its one implementation and the only file of the package that calls
// the client package or go-redis, so a change of the operator API touches
// that file alone; the tests' fakes implement it too.
type store interface {
	// names lists every breaker in Redis, sorted.
	names(ctx context.Context) ([]string, error)
	// statuses reads the breakers' snapshots in one pipelined round trip
	// per 1,000 names. A breaker that cannot be read on its own (a
	// corrupted config) comes back as a Breaker with Error set; an error
	// is returned only when Redis itself failed.
	statuses(ctx context.Context, names []string) ([]Breaker, error)
	// since returns the Redis time (unix ms) of the breaker's latest
	// transition or operator action of a generation up to gen, from its
	// history; 0 when it has none. gen is the generation of the status
	// row being filled in: a transition made after that row was read (its
	// generation is higher) must not lend the row its time.
	since(ctx context.Context, name string, gen int64) (int64, error)
	// detail reads what the breaker's page shows besides its row.
	detail(ctx context.Context, name string) (Detail, error)
	// control applies an operator action.
	control(ctx context.Context, name, action, actor string) error
	// configure stores the given config fields (and only those).
	configure(ctx context.Context, name string, fields map[string]int64, actor string) error
	// subscribe calls changed with the breaker's name for every
	// announcement on any breaker's :changed channel, through one pattern
	// subscription, until ctx ends. It calls ready once the subscription
	// is confirmed and returns the error that ended it.
	subscribe(ctx context.Context, ready func(), changed func(name string)) error
}

// Breaker is one breaker as the dashboard shows it: the script's status
// snapshot, when it entered its state, and the rates the dashboard
// measured. JSON is what the page and api/breakers receive.
type Breaker struct {
	Name              string           `json:"name"`
	State             string           `json:"state"` // closed, open, half_open
	Mode              string           `json:"mode"`  // normal, forced_open, disabled
	Generation        int64            `json:"generation"`
	Failures          int64            `json:"failures"` // consecutive, current
	FailureThreshold  int64            `json:"failure_threshold"`
	SuccessRate       float64          `json:"success_rate"` // percent of recorded outcomes
	Requests          int64            `json:"requests"`     // lifetime: successes + failures + refused
	Successes         int64            `json:"successes"`
	FailuresTotal     int64            `json:"failures_total"`
	Refused           int64            `json:"refused"`
	Probes            int64            `json:"probes"` // half-open leases held
	HalfOpenSuccesses int64            `json:"half_open_successes"`
	RetryAfterMS      int64            `json:"retry_after_ms"` // -1 while forced open
	OpenedAtMS        int64            `json:"opened_at_ms,omitempty"`
	LastFailureMS     int64            `json:"last_failure_ms,omitempty"`
	LastError         string           `json:"last_error"`
	Config            map[string]int64 `json:"config"`  // the :config fields in force, defaults applied
	TimeMS            int64            `json:"time_ms"` // Redis's clock when read

	// FailureRate, SlowCallRate and WindowCalls are the trip rules'
	// window (docs/protocol.md, "The window"): the percent of its calls
	// that failed or were slow, and how many it holds; nil for a breaker
	// without a window. The page shows their columns when any breaker has
	// them.
	FailureRate  *float64 `json:"failure_rate,omitempty"`
	SlowCallRate *float64 `json:"slow_call_rate,omitempty"`
	WindowCalls  *int64   `json:"calls_in_window,omitempty"`
	// RecoveryTimeoutMS is the recovery timeout in force (grown by
	// recovery_backoff after failed probes); RetryUntilMS, when not 0, the
	// Redis time an upstream's retry-after keeps the breaker open until.
	RecoveryTimeoutMS int64 `json:"recovery_timeout_in_force_ms"`
	RetryUntilMS      int64 `json:"retry_until_ms,omitempty"`

	// Error says why the breaker could not be read (for example
	// BADCONFIG); the other fields are then empty.
	Error string `json:"error,omitempty"`

	// Set by the dashboard, not read from Redis.
	SinceMS     int64   `json:"since_ms,omitempty"` // Redis time it entered this state or mode; 0 unknown
	sinceKnown  bool    // SinceMS was looked up for this generation (found or not): not looked up again
	RequestRate float64 `json:"request_rate"` // requests per second over the last interval
	RefusalRate float64 `json:"refusal_rate"` // refused calls per second over the last interval
}

// Detail is what a breaker's page shows besides its row.
type Detail struct {
	History []Event `json:"history"` // newest first
	Probes  []Probe `json:"probes"`
	Stream  Stream  `json:"stream"`
}

// Event is one entry of a breaker's history.
type Event struct {
	TS         int64  `json:"ts"` // unix ms, Redis's clock
	Event      string `json:"event"`
	From       string `json:"from,omitempty"`
	To         string `json:"to,omitempty"`
	Generation int64  `json:"generation"`
	Actor      string `json:"actor,omitempty"`
	Error      string `json:"error,omitempty"`
	Detail     string `json:"detail,omitempty"`
}

// Probe is a half-open probe lease.
type Probe struct {
	Lease     string `json:"lease"`
	ExpiresMS int64  `json:"expires_ms"` // unix ms, Redis's clock
}

// Stream is the delivery state of the breaker's transition stream
// (circuit_breaker:{NAME}:events), the alert daemons' outbox.
type Stream struct {
	Length int64   `json:"length"` // entries kept
	Groups []Group `json:"groups"`
}

// Group is one consumer group reading the stream (one per alert
// daemon deployment).
type Group struct {
	Name          string `json:"name"`
	Consumers     int64  `json:"consumers"`
	Pending       int64  `json:"pending"` // delivered, not yet acknowledged
	Lag           int64  `json:"lag"`     // not yet delivered; -1 unknown
	LastDelivered string `json:"last_delivered"`
}

// configFields are the :config fields an operator may change, in the
// order the protocol lists them, with their bounds (breakerbox.ConfigFields:
// fields added there, such as issue 11's, are accepted here too).
var configFields = breakerbox.ConfigFields()

// actions are the operator actions the control operation takes.
var actions = map[string]bool{"reset": true, "force_open": true, "disable": true, "release": true}
