package client

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
)

// Breaker is one worker's handle on a breaker shared through Redis. Every
// transition is decided by lua/breaker-8.lua; the handle only admits calls
// from the script's last answer (AdmitFast) and reports outcomes. Operators
// read and control breakers with package client/admin.
// A Breaker is safe for concurrent use. Call Shutdown when done with it.
type Breaker struct {
	rdb  redis.UniversalClient
	name string
	cfg  atomic.Pointer[Config] // replaced by SetConfig
	keys []string
	o    options
	log  *slog.Logger

	viewMu    sync.Mutex           // orders view changes (and the hook's queue)
	view      atomic.Pointer[view] // read without the lock
	live      atomic.Bool          // subscription confirmed (AdmitFast)
	lastHeard atomic.Int64         // unix nanos of the last message or pong

	regMu      sync.Mutex
	registered bool
	ready      atomic.Bool // started and registered: the per-call check takes no lock

	mu       sync.Mutex
	started  bool
	shutdown atomic.Bool     // written under mu, read without it on the fast path
	ctx      context.Context // cancelled by Shutdown; ends background work
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	batch  *batcher
	outage outage
	notify *notifier // nil without WithOnStateChange
}

// New returns a handle on the breaker called name, shared by every worker
// that uses the same Redis. It validates name and cfg (an invalid cfg
// matches breakerbox.ErrInvalidConfig) and makes no Redis call: the config
// is registered (stored in Redis, overwriting a different one, with a log
// line) on first use.
func New(rdb redis.UniversalClient, name string, cfg Config, opts ...Option) (*Breaker, error) {
	if err := breakerbox.ValidateName(name); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("breaker %q: %w", name, err)
	}
	if rdb == nil {
		return nil, fmt.Errorf("breaker %q: nil redis client", name)
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.classify == nil {
		o.classify = failureVerdict
	}
	if o.redisTimeout <= 0 {
		return nil, fmt.Errorf("breaker %q: redis timeout %s, want > 0", name, o.redisTimeout)
	}
	if o.outage < OutageDecideLocally || o.outage > OutageRefuseAll || o.admission < AdmitFast || o.admission > AdmitStrict {
		return nil, fmt.Errorf("breaker %q: unknown outage policy %d or admission %d", name, o.outage, o.admission)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Breaker{rdb: rdb, name: name, keys: breakerbox.Keys(name), o: o,
		log: o.logger.With("breaker", name), ctx: ctx, cancel: cancel}
	b.cfg.Store(&cfg)
	b.batch = newBatcher(b)
	if o.onStateChange != nil {
		b.notify = newNotifier(o.onStateChange, b.log)
		b.notify.lookup = b.historyCause
	}
	return b, nil
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.name }

// Config returns the config this handle registers (the one given to New,
// or to the last SetConfig).
func (b *Breaker) Config() Config { return *b.cfg.Load() }

// SetConfig changes the shared config for every worker (this handle too):
// an explicit change, written with the script's configure operation. An
// invalid cfg matches breakerbox.ErrInvalidConfig and changes nothing.
func (b *Breaker) SetConfig(ctx context.Context, cfg Config) error {
	// Under regMu, so a first-use registration of the old config cannot
	// land after this one.
	b.regMu.Lock()
	defer b.regMu.Unlock()
	if _, err := admin.Configure(ctx, b.rdb, b.name, cfg, b.o.actor); err != nil {
		return err
	}
	b.cfg.Store(&cfg)
	b.registered = true
	return nil
}

// State returns the breaker's state as this handle last learned it (from
// the script's replies, with AdmitFast its announcements, and during an
// outage the in-process fallback's decisions), with no round trip:
// StateClosed before the handle has learned anything. Use admin.Status for
// a fresh read from Redis.
func (b *Breaker) State() breakerbox.State {
	if v := b.view.Load(); v != nil {
		return v.state
	}
	return breakerbox.StateClosed
}

// Stats are counts kept by this handle, in this process only.
type Stats struct {
	// Unrecorded counts outcomes that could not be sent to Redis because
	// it was unreachable; they are not retried, since a lost reply cannot
	// tell whether the script ran.
	Unrecorded int64
	// Outage is true while Redis is considered unreachable.
	Outage bool
}

// Stats returns this handle's local counts.
func (b *Breaker) Stats() Stats {
	return Stats{Unrecorded: b.batch.unrecorded.Load(), Outage: b.outage.active()}
}

// Flush waits until every outcome reported so far has been sent to Redis
// (or given up on: see Stats).
func (b *Breaker) Flush(ctx context.Context) error { return b.batch.flush(ctx) }

// Shutdown flushes outcomes not yet sent and state changes not yet given
// to the hook (both bounded by ctx), and stops the handle's background
// work. It does not change the breaker in Redis. Calls after Shutdown
// return ErrShutdown.
func (b *Breaker) Shutdown(ctx context.Context) error {
	err := b.batch.flush(ctx)
	b.mu.Lock() // start checks shutdown and adds to wg under mu
	b.shutdown.Store(true)
	b.mu.Unlock()
	b.cancel()
	b.batch.close()
	b.wg.Wait()
	if b.notify != nil {
		if nerr := b.notify.drain(ctx); err == nil {
			err = nerr
		}
	}
	return err
}
