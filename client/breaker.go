package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

// Breaker is one process's handle on a breaker shared through Redis. Every
// transition is decided by lua/breaker-8.lua; the handle admits calls from
// the script's last answer (AdmitFast) or asks the script (AdmitStrict),
// and reports outcomes. Its Hub does the Redis work it shares with the
// process's other breakers. Operators read and control breakers with
// package client/admin. A Breaker is safe for concurrent use. Call
// Shutdown when done with it.
type Breaker struct {
	h    *Hub
	name string
	keys []string
	o    options
	seed Config                 // the Config given to New, for a breaker with none stored
	cfg  atomic.Pointer[Config] // the config in force, as last read from Redis

	cfgMu  sync.Mutex
	cfgSet int64 // unix nanos of the last SetConfig's write
	fast   bool

	node atomic.Pointer[node] // the Redis node holding the breaker's keys

	viewMu    sync.Mutex           // orders view changes (and the hook's queue)
	view      atomic.Pointer[view] // read without the lock
	confirmed atomic.Uint64        // the subscription epoch whose refresh confirmed the view
	subEpoch  atomic.Uint64        // the subscription epoch in which its channel was last confirmed
	subGen    atomic.Uint64        // how many times its channel was confirmed

	redisGen atomic.Int64 // the newest generation Redis told this handle (WithDurableTransitions)

	reg  registration
	q    queue
	out  outageCounts
	dur  durableCounts
	shut atomic.Bool
}

// New returns a handle on the breaker called name, shared by every worker
// that uses the same Redis. It runs on the Hub shared by every breaker of
// the process on rdb (made with the first New on rdb, or by NewHub, and
// shut down with the last breaker New put on it): see Hub and Option.
//
// cfg seeds the breaker: it is stored only if the breaker has no config in
// Redis yet (the script's seed operation). From then on the config in
// Redis is the fleet's truth: a restart, a reconnection or the end of an
// outage never writes it again, and only an explicit change alters it
// (SetConfig, WithOverwriteConfig, cbctl config, or configure from any
// language). A zero field of cfg means its default.
//
// New validates name, cfg (an invalid cfg matches
// breakerbox.ErrInvalidConfig) and opts, and makes no Redis call itself:
// the Hub registers the breaker in the background, batched with the other
// new breakers, and its first call waits for that (bounded by the Redis
// timeout).
func New(rdb redis.UniversalClient, name string, cfg Config, opts ...Option) (*Breaker, error) {
	if rdb == nil {
		return nil, fmt.Errorf("breaker %q: nil redis client", name)
	}
	if err := check(name, cfg); err != nil {
		return nil, err
	}
	if _, err := defaultOptions().apply(opts); err != nil {
		return nil, fmt.Errorf("breaker %q: %w", name, err)
	}
	h, err := sharedHub(rdb)
	if err != nil {
		return nil, err
	}
	b, err := h.newBreaker(name, cfg, opts)
	if err != nil {
		_ = h.unref(context.Background())
		return nil, err
	}
	return b, nil
}

func check(name string, cfg Config) error {
	if err := breakerbox.ValidateName(name); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("breaker %q: %w", name, err)
	}
	return nil
}

func (h *Hub) newBreaker(name string, cfg Config, opts []Option) (*Breaker, error) {
	if err := check(name, cfg); err != nil {
		return nil, err
	}
	o, err := h.o.apply(opts)
	if err != nil {
		return nil, fmt.Errorf("breaker %q: %w", name, err)
	}
	b := &Breaker{h: h, name: name, keys: breakerbox.Keys(name), o: o, seed: cfg, fast: o.admission == AdmitFast}
	inForce := cfg.WithDefaults()
	b.cfg.Store(&inForce)
	b.node.Store(h.nodes.initial())
	b.reg.init()
	b.q.init()
	if o.outage == OutageDecideLocally {
		warmFallback()
	}
	if !h.add(b) {
		return nil, fmt.Errorf("breaker %q: %w", name, ErrShutdown)
	}
	h.ctl.register(b)
	return b, nil
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.name }

// Hub returns the Hub the breaker runs on.
func (b *Breaker) Hub() *Hub { return b.h }

// Config returns the config in force as this handle last read it from
// Redis (at registration, after every (re)subscription, and after every
// configure announced on the breaker's channel); before the first read,
// the seed given to New with its defaults. Execute's deadline is its
// RequestTimeout.
func (b *Breaker) Config() Config { return *b.cfg.Load() }

// SetConfig changes the shared config for every worker (this handle too):
// an explicit change, written with the script's configure operation, that
// every worker follows from the announcement the script publishes. Every
// field is written (as admin.Configure does), so trip rules that cfg
// leaves off are turned off. A zero field of cfg means its default (a
// trip rule without one: off); an invalid cfg matches
// breakerbox.ErrInvalidConfig and changes nothing. The Redis call is
// bounded by the Redis timeout and by ctx.
func (b *Breaker) SetConfig(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("breaker %q: %w", b.name, err)
	}
	b.reg.mu.Lock()
	b.reg.overwritten = true // a registration still to come seeds, never overwrites this
	b.reg.mu.Unlock()
	_, err := call(ctx, b.h, "configure", b.o.redisTimeout, func(ctx context.Context) (breakerbox.ConfigureReply, error) {
		return b.configure(ctx, cfg)
	}, nil)
	if err != nil {
		if unreachable(err) {
			b.nodeOf().begin(err)
		}
		return fmt.Errorf("breaker %q: configure: %w", b.name, err)
	}
	inForce := cfg.WithDefaults()
	b.cfgMu.Lock()
	b.cfgSet = time.Now().UnixNano() // status reads started before do not overwrite it
	b.cfg.Store(&inForce)
	b.cfgMu.Unlock()
	return nil
}

// State returns the breaker's state as this handle last learned it (from
// the script's replies, its announcements, the refreshes, and during an
// outage the in-process fallback's decisions), with no round trip:
// StateClosed before the handle has learned anything. Use admin.Status for
// a fresh read from Redis.
func (b *Breaker) State() breakerbox.State {
	state, _ := b.lastView()
	return state
}

// Stats are counts kept by this handle, in this process only.
type Stats struct {
	// Outage is true while the breaker's Redis node is considered
	// unreachable and calls follow the outage policy.
	Outage bool
	// OutageAdmitted and OutageRefused count the calls the outage policy
	// admitted and refused.
	OutageAdmitted, OutageRefused int64
	// OutageSucceeded and OutageFailed count the outcomes reported while
	// the breaker followed its outage policy (including those of calls
	// admitted by Redis before the outage began). Outcomes ignored by the
	// classifier count in neither.
	OutageSucceeded, OutageFailed int64
	// Tallied counts the outage's successes, failures and refusals that
	// have been added to the breaker's totals in Redis (the script's tally
	// operation: totals only, never the state) once Redis answered again.
	Tallied int64
	// Unrecorded counts outcomes and refusals that could not be delivered
	// to Redis: a record or tally whose call failed or whose reply was
	// lost (the script may or may not have applied it, so it is not sent
	// again), or a call that Redis refused with an error.
	Unrecorded int64
	// Replicated and NotReplicated count the transitions seen in the
	// replies to this handle's calls that WithDurableTransitions waited
	// for: acknowledged by at least the replicas asked for, and not (the
	// wait ran out, failed, or could not be sent). Both stay 0 without it.
	Replicated, NotReplicated int64
}

// Stats returns this handle's local counts.
func (b *Breaker) Stats() Stats {
	return Stats{
		Outage:          b.nodeOf().down.Load(),
		OutageAdmitted:  b.out.admitted.Load(),
		OutageRefused:   b.out.refused.Load(),
		OutageSucceeded: b.out.succeeded.Load(),
		OutageFailed:    b.out.failed.Load(),
		Tallied:         b.out.tallied.Load(),
		Unrecorded:      b.out.unrecorded.Load(),
		Replicated:      b.dur.replicated.Load(),
		NotReplicated:   b.dur.notReplicated.Load(),
	}
}

// Flush waits until every outcome reported so far has been sent to Redis
// (or given up on: see Stats), and, unless Redis is unreachable, until the
// counts of a past outage have been tallied. ctx bounds the wait.
func (b *Breaker) Flush(ctx context.Context) error { return b.q.flush(ctx, b) }

// Ready waits until the breaker is registered and its view is confirmed by
// the subscription: with AdmitFast the first calls are then decided
// locally, and with either admission the Hub's first refresh of the
// breaker (a status read and a seed, sent once the subscription is live)
// is behind it. Calling it is optional; ctx bounds the wait.
func (b *Breaker) Ready(ctx context.Context) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if b.shut.Load() {
			return b.shutErr()
		}
		registered, err := b.reg.state()
		if err != nil {
			return err
		}
		if registered && b.trusted() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Shutdown flushes outcomes not yet sent and state changes not yet given
// to the hook (both bounded by ctx), and stops the handle. It does not
// change the breaker in Redis. Calls after Shutdown return ErrShutdown. The
// last breaker of a Hub made by New shuts the Hub down too, waiting for its
// Redis calls in flight (see Hub.Shutdown).
func (b *Breaker) Shutdown(ctx context.Context) error {
	if b.shut.Load() {
		return nil
	}
	err := b.q.flush(ctx, b)
	if b.shut.Swap(true) {
		return err
	}
	if last := b.h.remove(b); last {
		b.h.ctl.unsubscribe(b.name)
	}
	return errors.Join(err, b.h.notify.drain(ctx), b.h.unref(ctx))
}

// nodeOf returns the Redis node holding the breaker's keys, as last resolved.
func (b *Breaker) nodeOf() *node { return b.node.Load() }

// shutErr is the error of a call after Shutdown.
func (b *Breaker) shutErr() error { return fmt.Errorf("breaker %q: %w", b.name, ErrShutdown) }
