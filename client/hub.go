package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/bounded"
	"github.com/breakerbox/breakerbox/internal/redisconn"
)

// Hub is the runtime that every breaker of a process on one Redis client
// shares: one pub/sub connection on which every breaker's channel is
// subscribed (classic PUBLISH reaches one subscriber connection on a
// Cluster too), one liveness PING a second, one outcome sender that
// batches every breaker's outcomes into pipelines, one refresh of every
// breaker after each (re)subscription, and one outage detector per Redis
// node with its recovery check. Its cost stays flat as its breakers grow:
// three goroutines and at most one connection beyond go-redis's pool,
// whatever the number of breakers.
//
// New uses a Hub shared per Redis client, made with its first breaker and
// shut down with its last; NewHub makes one explicitly, to set the
// process options once (see Option) and hand out breakers with Hub.New.
// A Hub is safe for concurrent use.
type Hub struct {
	rdb     redis.UniversalClient
	cluster *redis.ClusterClient // rdb, when it is one
	o       options
	shared  bool // made by New: shut down with its last breaker

	ctx    context.Context // cancelled by Shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup // the three loops: subscriber, sender, control
	calls  *bounded.Group // every other goroutine that talks to Redis; Shutdown waits for them

	mu       sync.RWMutex
	byName   map[string]*channel // the handles of each breaker name
	closed   bool
	handles  int
	shutdown chan struct{} // closed when Shutdown has finished

	nodes  nodes
	io     congestion
	sub    subscriber
	send   sender
	ctl    control
	notify notifier
}

// channel is what the Hub keeps per breaker name: the handles on it and
// the state of its pub/sub subscription.
type channel struct {
	handles    []*Breaker
	subscribed bool   // SUBSCRIBE sent (go-redis repeats it on every new connection)
	epoch      uint64 // the subscription epoch in which it was last confirmed
}

// sharedHubs are the Hubs that New made, by Redis client.
var sharedHubs = struct {
	sync.Mutex
	m map[redis.UniversalClient]*Hub
}{m: map[redis.UniversalClient]*Hub{}}

// NewHub returns a Hub on rdb. opts are process options for the Hub's own
// work and defaults for its breakers (see Option); they are checked here,
// and no Redis call is made until the first breaker is used. If no Hub is
// registered for rdb yet, New uses this one for rdb from now on (and
// leaves it running when its breakers shut down: Hub.Shutdown stops it).
func NewHub(rdb redis.UniversalClient, opts ...Option) (*Hub, error) {
	h, err := newHub(rdb, opts)
	if err != nil {
		return nil, err
	}
	sharedHubs.Lock()
	if _, ok := sharedHubs.m[rdb]; !ok {
		sharedHubs.m[rdb] = h
	}
	sharedHubs.Unlock()
	return h, nil
}

func newHub(rdb redis.UniversalClient, opts []Option) (*Hub, error) {
	if rdb == nil {
		return nil, errors.New("breakerbox hub: nil redis client")
	}
	o, err := defaultOptions().apply(opts)
	if err != nil {
		return nil, fmt.Errorf("breakerbox hub: %w", err)
	}
	// Reach a promoted replica within a second or two of a Cluster failover
	// instead of at go-redis's 60s slot-map reload (a Sentinel client
	// follows by itself).
	redisconn.Follow(rdb)
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{rdb: rdb, o: o, ctx: ctx, cancel: cancel, calls: bounded.NewGroup(),
		byName: map[string]*channel{}, shutdown: make(chan struct{})}
	h.cluster, _ = rdb.(*redis.ClusterClient)
	h.nodes.init(h)
	h.send.init(h)
	h.ctl.init(h)
	h.notify.init(h)
	h.sub.init(h)
	h.wg.Add(3)
	go h.sub.run()
	go h.send.run()
	go h.ctl.run()
	return h, nil
}

// sharedHub returns the Hub New uses for rdb, making one if needed, with
// one more reference.
func sharedHub(rdb redis.UniversalClient) (*Hub, error) {
	sharedHubs.Lock()
	defer sharedHubs.Unlock()
	if h, ok := sharedHubs.m[rdb]; ok && h.ref() {
		return h, nil
	}
	h, err := newHub(rdb, nil)
	if err != nil {
		return nil, err
	}
	h.shared = true
	h.ref()
	sharedHubs.m[rdb] = h
	return h, nil
}

// ref counts one more handle on a shared Hub; false once it is shutting down.
func (h *Hub) ref() bool {
	if !h.shared {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.handles++
	return true
}

// unref drops a shared Hub's reference; the last one shuts the Hub down.
func (h *Hub) unref(ctx context.Context) error {
	if !h.shared {
		return nil
	}
	sharedHubs.Lock()
	h.mu.Lock()
	h.handles--
	last := h.handles <= 0 && !h.closed
	if last {
		h.closed = true
		if sharedHubs.m[h.rdb] == h {
			delete(sharedHubs.m, h.rdb)
		}
	}
	h.mu.Unlock()
	sharedHubs.Unlock()
	if last {
		return h.stop(ctx)
	}
	return nil
}

// New returns a handle on the breaker called name on this Hub's Redis
// client: see the package function New, which it is, with the Hub's
// options as the defaults of opts.
func (h *Hub) New(name string, cfg Config, opts ...Option) (*Breaker, error) {
	return h.newBreaker(name, cfg, opts)
}

// Shutdown flushes every breaker's outcomes not yet sent and the state
// changes not yet given to hooks (bounded by ctx), stops the Hub's
// goroutines and closes its pub/sub connection. It then waits, bounded by
// ctx too, for every Redis call the Hub made to end, those whose callers
// stopped waiting at the Redis timeout included: once it has returned nil,
// the Hub sends Redis nothing more (an error says that ctx ran out first).
// The breakers in Redis are untouched; calls on the Hub's breakers return
// ErrShutdown afterwards.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		select {
		case <-h.shutdown:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	sharedHubs.Lock()
	if sharedHubs.m[h.rdb] == h {
		delete(sharedHubs.m, h.rdb)
	}
	sharedHubs.Unlock()
	return h.stop(ctx)
}

// stop flushes every breaker and ends the Hub's work.
func (h *Hub) stop(ctx context.Context) error {
	var errs []error
	for _, b := range h.breakers() {
		errs = append(errs, b.q.flush(ctx, b))
		b.shut.Store(true)
	}
	h.calls.Stop() // no Redis call starts now; those in flight are cancelled
	h.cancel()
	h.sub.close()
	h.wg.Wait()
	errs = append(errs, h.notify.drain(ctx))
	if err := h.calls.Wait(ctx); err != nil {
		errs = append(errs, fmt.Errorf("breakerbox hub: shutdown: %w", err))
	}
	close(h.shutdown)
	return errors.Join(errs...)
}

// breakers returns every handle of the Hub.
func (h *Hub) breakers() []*Breaker {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []*Breaker
	for _, c := range h.byName {
		out = append(out, c.handles...)
	}
	return out
}

// handlesOf returns the handles on breaker name (do not modify the slice).
func (h *Hub) handlesOf(name string) []*Breaker {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if c := h.byName[name]; c != nil {
		return c.handles
	}
	return nil
}

// add makes b one of the Hub's handles; false once the Hub is shut down.
func (h *Hub) add(b *Breaker) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.ctx.Err() != nil {
		return false
	}
	c := h.byName[b.name]
	if c == nil {
		c = &channel{}
		h.byName[b.name] = c
	}
	c.handles = append(append([]*Breaker(nil), c.handles...), b) // copy: readers hold the old slice
	return true
}

// remove drops b from the Hub's handles; it returns whether b was the last
// handle on its name (its channel may be unsubscribed).
func (h *Hub) remove(b *Breaker) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.byName[b.name]
	if c == nil {
		return false
	}
	out := make([]*Breaker, 0, len(c.handles))
	for _, x := range c.handles {
		if x != b {
			out = append(out, x)
		}
	}
	c.handles = out
	if len(out) == 0 {
		delete(h.byName, b.name)
		return true
	}
	return false
}

// logEvent logs a Hub-wide event once to the Hub's logger and once to
// every other logger its breakers were given. A Hub made by New has no
// logger of its own (its options are the defaults): it logs to its
// breakers' loggers only, the ones given to New.
func (h *Hub) logEvent(level slog.Level, msg string, attrs ...any) {
	seen := map[*slog.Logger]bool{}
	if !h.shared {
		seen[h.o.logger] = true
		h.o.logger.Log(h.ctx, level, msg, attrs...)
	}
	for _, b := range h.breakers() {
		if !seen[b.o.logger] {
			seen[b.o.logger] = true
			b.o.logger.Log(h.ctx, level, msg, attrs...)
		}
	}
	if len(seen) == 0 {
		h.o.logger.Log(h.ctx, level, msg, attrs...)
	}
}

// timeout is the Hub's Redis timeout, bounding its own background calls.
func (h *Hub) timeout() time.Duration { return h.o.redisTimeout }

// registryAdd adds names to the registry set, in the background: the
// registry only helps listing (SCAN finds every breaker anyway), so
// nothing waits for it, and a node that holds it and is down delays no
// breaker.
func (h *Hub) registryAdd(names []string) {
	if len(names) == 0 {
		return
	}
	members := make([]any, len(names))
	for i, n := range names {
		members[i] = n
	}
	h.calls.Go(func() {
		_, err := call(h.ctx, h, "SADD registry", h.timeout(), func(ctx context.Context) (int64, error) {
			return h.rdb.SAdd(ctx, breakerbox.RegistryKey, members...).Result()
		}, nil)
		if err != nil && !errors.Is(err, ErrShutdown) {
			h.logEvent(slog.LevelDebug, "circuit breaker registry not updated", "err", err)
		}
	})
}
