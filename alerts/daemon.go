package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redisconn"
)

// Daemon reads every breaker's transition stream through a consumer group
// and posts alerts to a Sink. Several daemons may share a group; each
// transition is then posted by one of them. See docs/alerts.md.
type Daemon struct {
	rdb     redis.UniversalClient
	cfg     Config
	sink    Sink
	log     *slog.Logger
	cluster bool

	mu      sync.Mutex
	known   map[string]bool // breakers whose stream has our group
	running bool
	changed chan struct{} // signalled when known grows
	soon    chan struct{} // asks maintain for a round now (see maintainSoon)

	notifyMu  sync.Mutex   // one Notify at a time: sinks need not be safe for concurrent use
	readerID  atomic.Int64 // CLIENT ID of the blocking reader's connection; 0: none
	noUnblock atomic.Bool  // CLIENT UNBLOCK was refused (an ACL): keep blocks short
	q         *queue

	mem memory // what this daemon posted and is retrying (memory.go)
}

// New returns a daemon reading breakers from rdb (a *redis.Client for a
// standalone or Sentinel-managed server, or a *redis.ClusterClient) and
// posting to sink. Zero fields of cfg take their documented defaults. A
// cluster client is made to reload its slot map as soon as a call fails
// (docs/operations.md, "Failovers").
func New(rdb redis.UniversalClient, cfg Config, sink Sink) (*Daemon, error) {
	if rdb == nil {
		return nil, errors.New("alerts: nil redis client")
	}
	if sink == nil {
		return nil, errors.New("alerts: nil sink")
	}
	redisconn.Follow(rdb) // reach a promoted replica in seconds, not at go-redis's 60s reload
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	d := &Daemon{rdb: rdb, cfg: cfg, sink: sink,
		log:     cfg.Logger.With("component", "alerts", "group", cfg.Group, "consumer", cfg.Consumer),
		known:   map[string]bool{},
		changed: make(chan struct{}, 1),
		soon:    make(chan struct{}, 1),
		q:       newQueue(),
		mem:     newMemory(),
	}
	switch rdb.(type) {
	case *redis.Client:
	case *redis.ClusterClient:
		d.cluster = true
	default:
		return nil, fmt.Errorf("alerts: redis client %T is not supported; use *redis.Client or *redis.ClusterClient", rdb)
	}
	return d, nil
}

// Config returns the daemon's configuration, defaults filled in.
func (d *Daemon) Config() Config { return d.cfg }

// Run delivers alerts until ctx is cancelled, then shuts down: an alert
// being posted gets up to Config.ShutdownGrace to finish and be
// acknowledged; every other entry stays pending in the group, to be
// delivered by this daemon's successor or another daemon of the group.
// Redis being unreachable is logged and retried, never fatal. Run returns
// nil after a shutdown, and an error only when called twice concurrently.
func (d *Daemon) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return errors.New("alerts: daemon already running")
	}
	d.running = true
	d.q = newQueue()
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.running = false
		d.mu.Unlock()
	}()

	d.log.Info("alerts daemon starting", "cluster", d.cluster, "flap_window", d.cfg.FlapWindow,
		"stale_after", d.cfg.StaleAfter, "claim_min_idle", d.cfg.ClaimMinIdle)
	d.discover(ctx)

	var wg sync.WaitGroup
	start := func(f func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx)
		}()
	}
	start(d.maintain)
	start(d.subscribe)
	if !d.cluster {
		start(d.read)
	}
	// Several breakers are delivered at once (each by one goroutine at a
	// time), so that one whose Redis node is down, and whose every command
	// waits out go-redis's dial retries, does not hold up the others.
	var workers sync.WaitGroup
	for range deliveryWorkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				name, ok := d.q.pop(ctx)
				if !ok {
					return
				}
				d.deliver(ctx, name)
				d.q.done(name)
			}
		}()
	}
	workers.Wait()
	d.q.stop()
	wg.Wait()
	d.retire()
	d.log.Info("alerts daemon stopped")
	return nil
}

// retire removes this consumer from the group on every stream where it
// holds no pending entry, so that restarts (a new HOSTNAME-PID each time)
// do not pile up dead consumers in XINFO CONSUMERS. Nothing reads as this
// consumer any more, so an empty pending list stays empty until the
// XGROUP DELCONSUMER. A consumer still holding entries is kept: deleting it
// would drop them from the pending list, and another daemon takes them over.
func (d *Daemon) retire() {
	names := d.knownNames()
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pipe := d.rdb.Pipeline()
	pend := make([]*redis.XPendingExtCmd, len(names))
	for i, n := range names {
		pend[i] = pipe.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: streamKey(n), Group: d.cfg.Group,
			Start: "-", End: "+", Count: 1, Consumer: d.cfg.Consumer})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) && !redis.HasErrorPrefix(err, "NOGROUP") {
		d.log.Debug("cannot check pending entries before leaving the group", "err", err)
	}
	pipe = d.rdb.Pipeline()
	kept := 0
	for i, n := range names {
		switch p, err := pend[i].Result(); {
		case err != nil:
		case len(p) > 0:
			kept++
		default:
			pipe.XGroupDelConsumer(ctx, streamKey(n), d.cfg.Group, d.cfg.Consumer)
		}
	}
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(ctx)
	}
	if kept > 0 {
		d.log.Info("left entries pending for another daemon", "breakers", kept)
	}
}

// knownNames returns the breakers whose stream has the group, sorted.
func (d *Daemon) knownNames() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.known))
	for n := range d.known {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (d *Daemon) isKnown(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.known[name]
}

// ensureGroups creates the group on each breaker's stream, at ID 0 so that
// transitions written before the daemon ever ran are delivered; an existing
// group (BUSYGROUP) is fine. A breaker without a stream (it never changed
// state) gets no group and no stream, which would cost memory for nothing:
// its first transition's announcement, or a later discovery, brings it
// back here once the script has created the stream. Each breaker whose
// group is now in place is added to the known set and queued for delivery.
// failed reports a group that could not be created (Redis failed or
// refused): discovery sets it up again, and callers outside maintain ask
// for a round soon (maintainSoon) rather than at the next interval.
func (d *Daemon) ensureGroups(ctx context.Context, names []string) (added int, failed bool) {
	if len(names) == 0 {
		return 0, false
	}
	pipe := d.rdb.Pipeline()
	cmds := make([]*redis.StatusCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.XGroupCreate(ctx, streamKey(n), d.cfg.Group, "0")
	}
	_, _ = pipe.Exec(ctx) // errors are read per command
	for i, n := range names {
		if err := cmds[i].Err(); err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			if noStream(err) {
				d.mem.report("create group", n, nil) // no transition yet: nothing to read
			} else {
				d.mem.report("create group", n, err)
				d.log.Warn("cannot create consumer group", "breaker", n, "err", err)
				failed = true
			}
			continue
		}
		d.mem.report("create group", n, nil)
		d.mu.Lock()
		if !d.known[n] {
			d.known[n] = true
			added++
		}
		d.mu.Unlock()
		d.q.push(n)
	}
	if added > 0 {
		select {
		case d.changed <- struct{}{}:
		default:
		}
		d.unblockReader(ctx)
	}
	return added, failed
}

// discover lists every breaker (registry and SCAN, on every master of a
// cluster) and sets up the group on the new ones.
func (d *Daemon) discover(ctx context.Context) (ok bool) {
	names, err := admin.Names(ctx, d.rdb)
	d.mem.report("discover", "", err)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("breaker discovery failed", "err", err)
		}
		return false
	}
	var fresh []string
	for _, n := range names {
		if !d.isKnown(n) {
			fresh = append(fresh, n)
		}
	}
	if len(fresh) > 0 {
		added, failed := d.ensureGroups(ctx, fresh)
		if added > 0 {
			d.log.Info("breakers discovered", "count", added)
		}
		return !failed
	}
	return true
}

// maintain runs discovery and the sweep every DiscoveryInterval. After a
// round with a Redis error it comes back sooner (RetryMin, doubling up to
// redisRetryCap): a failover is over in seconds, and /healthz reports the
// error until a round succeeds. maintainSoon asks for a round at once;
// while failed rounds are being retried, the next one is due within
// redisRetryCap anyway and the request waits for it.
func (d *Daemon) maintain(ctx context.Context) {
	wait, retry := d.cfg.DiscoveryInterval, time.Duration(0)
	for {
		soon := d.soon
		if retry != 0 {
			soon = nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-soon:
			timer.Stop()
		}
		ok := d.discover(ctx)
		ok = d.sweep(ctx) && ok
		switch {
		case ok:
			wait, retry = d.cfg.DiscoveryInterval, 0
		case retry == 0:
			retry = min(d.cfg.RetryMin, redisRetryCap)
		default:
			retry = min(2*retry, redisRetryCap)
		}
		if !ok {
			wait = min(max(retry, time.Millisecond), d.cfg.DiscoveryInterval)
		}
	}
}

// maintainSoon asks maintain for a discovery and sweep round now: an
// announcement may have been missed (the subscription was renewed after
// a reconnect), or a consumer group could not be created.
func (d *Daemon) maintainSoon() {
	select {
	case d.soon <- struct{}{}:
	default:
	}
}

// deliveryWorkers is how many breakers are delivered at the same time.
// Sink.Notify is still called for one alert at a time.
const deliveryWorkers = 8

// redisRetryCap bounds the wait before retrying a Redis operation that
// failed (discovery, sweep, a breaker's delivery round): Redis comes back
// from a restart or a failover within seconds, and the daemon with it.
const redisRetryCap = time.Second

// sweepCount bounds the entries one sweep command looks at per stream.
const sweepCount = 100

// sweep finds work that no wake-up announced, in one pipeline (split per
// node on a cluster): entries idle longer than ClaimMinIdle in any
// consumer's pending list, taken over with XAUTOCLAIM (their consumer is
// presumed dead), and entries not yet delivered to the group (a missed
// pub/sub message on a cluster). Breakers with either are queued.
func (d *Daemon) sweep(ctx context.Context) (ok bool) {
	names := d.knownNames()
	if len(names) == 0 {
		return true
	}
	ok = true
	pipe := d.rdb.Pipeline()
	claims := make([]*redis.XAutoClaimJustIDCmd, len(names))
	reads := make([]*redis.XStreamSliceCmd, len(names))
	for i, n := range names {
		claims[i] = pipe.XAutoClaimJustID(ctx, &redis.XAutoClaimArgs{Stream: streamKey(n), Group: d.cfg.Group,
			Consumer: d.cfg.Consumer, MinIdle: d.cfg.ClaimMinIdle, Start: "0-0", Count: sweepCount})
		reads[i] = pipe.XReadGroup(ctx, &redis.XReadGroupArgs{Group: d.cfg.Group, Consumer: d.cfg.Consumer,
			Streams: []string{streamKey(n), ">"}, Count: 1, Block: -1})
	}
	_, _ = pipe.Exec(ctx)
	var regroup []string
	for i, n := range names {
		ids, _, cerr := claims[i].Result()
		msgs, rerr := reads[i].Result()
		if errors.Is(rerr, redis.Nil) {
			rerr = nil
		}
		switch {
		case redis.HasErrorPrefix(cerr, "NOGROUP") || redis.HasErrorPrefix(rerr, "NOGROUP"):
			regroup = append(regroup, n)
		case cerr != nil || rerr != nil:
			ok = false
			if ctx.Err() == nil {
				d.mem.report("sweep", n, errors.Join(cerr, rerr))
				d.log.Warn("sweep failed", "breaker", n, "err", errors.Join(cerr, rerr))
			}
		default:
			d.mem.report("sweep", n, nil)
			if len(ids) > 0 {
				d.log.Info("took over entries of an idle consumer", "breaker", n, "entries", len(ids))
			}
			if len(ids) > 0 || len(msgs) > 0 {
				d.q.push(n)
			}
		}
	}
	return d.regroup(ctx, regroup) && ok
}

// regroup handles streams whose group vanished (the stream was deleted):
// they are forgotten and set up again. It reports false when a group
// could not be created; discovery takes that breaker back.
func (d *Daemon) regroup(ctx context.Context, names []string) (ok bool) {
	if len(names) == 0 {
		return true
	}
	d.mu.Lock()
	for _, n := range names {
		delete(d.known, n)
	}
	d.mu.Unlock()
	for _, n := range names {
		d.mem.report("sweep", n, nil) // not swept until known again; "create group" says why
	}
	_, failed := d.ensureGroups(ctx, names)
	return !failed
}

// subscribe listens to every breaker's announcements: each transition
// queues its breaker at once (a breaker not seen before gets its group
// first). On a cluster this is what wakes delivery. Announcements made
// while the subscription reconnected are lost: when go-redis renews it
// (a restart, a failover of the node it was on), a sweep runs at once to
// find their entries, rather than at the next DiscoveryInterval.
func (d *Daemon) subscribe(ctx context.Context) {
	var ps *redis.PubSub
	try := func(pattern string) error {
		ps = d.rdb.PSubscribe(ctx, pattern)
		// The first reply says whether Redis took the subscription (an
		// ACL may refuse the pattern); go-redis renews it on reconnects.
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := ps.Receive(rctx)
		if err != nil {
			_ = ps.Close()
		}
		return err
	}
	for {
		err := try(changedPattern)
		if isReply(err) { // refused (NOPERM): the workers' channel rule allows the other
			err = try(broadPattern)
		}
		d.mem.report("subscribe", "", err)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		d.log.Warn("cannot subscribe to the breakers' announcements; the sweep still finds new entries", "pattern", changedPattern, "err", err)
		if sleep(ctx, min(d.cfg.DiscoveryInterval, redisRetryCap)) != nil {
			return
		}
	}
	defer ps.Close()
	// Breakers that first changed state after the discovery at start and
	// before the subscription took effect were announced to no one: a
	// round now finds them, not the one after DiscoveryInterval.
	d.maintainSoon()
	ch := ps.ChannelWithSubscriptions()
	for {
		var msg *redis.Message
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Subscription:
				// The first confirmation was read by try: this one
				// follows a reconnect.
				if m.Kind == "psubscribe" {
					d.log.Info("subscription renewed after a reconnect; sweeping for entries announced meanwhile")
					d.maintainSoon()
				}
				continue
			case *redis.Message:
				msg = m
			default:
				continue
			}
		}
		name, ok := nameFromChannel(msg.Channel)
		if !ok {
			continue
		}
		if !d.isKnown(name) {
			if _, failed := d.ensureGroups(ctx, []string{name}); failed {
				d.maintainSoon()
			}
			continue
		}
		d.q.push(name)
	}
}

// readCount bounds the entries one blocking read returns per stream; the
// read only says which breakers have work.
const readCount = 100

// noUnblockBlock caps the blocking read when CLIENT UNBLOCK cannot cut it
// short, so that shutdown stays prompt.
const noUnblockBlock = 500 * time.Millisecond

// read is the standalone server's reader: one blocking XREADGROUP over all
// known streams at once, on a connection of its own. It only queues the
// breakers that returned entries; delivery takes them under the breaker's
// lock. CLIENT UNBLOCK cuts the wait short when new streams are known and
// at shutdown.
func (d *Daemon) read(ctx context.Context) {
	c, ok := d.rdb.(*redis.Client)
	if !ok {
		return
	}
	// A redis.Conn whose connection failed answers every later command
	// with "Conn is in a bad state", for good: after a connection error
	// (a restart, a failover, a timeout) the reader takes a fresh one.
	var conn *redis.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	done := make(chan struct{})
	defer close(done)
	stop := context.AfterFunc(ctx, func() {
		// Keep unblocking until the reader is out: the first CLIENT UNBLOCK
		// may arrive before the read is issued.
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			d.unblockReader(context.Background())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	defer stop()

	connFailed := false // the last read failed on the connection, not with a reply
	for ctx.Err() == nil {
		if conn == nil {
			conn = c.Conn()
		}
		if d.readerID.Load() == 0 {
			// Without CLIENT ID (denied by an ACL, or a server such as
			// miniredis that lacks it) the read still works; only the
			// unblocking is lost, so the wait is kept short instead.
			id, err := conn.ClientID(ctx).Result()
			if err == nil {
				d.readerID.Store(id)
				// Whether CLIENT UNBLOCK is allowed, learnt now (on this
				// connection, not blocked: it unblocks nothing) rather than
				// at shutdown, when a refusal would cost a whole block.
				if uerr := conn.ClientUnblock(ctx, id).Err(); isReply(uerr) {
					d.noUnblock.Store(true)
				}
			}
			if connFailed && (err == nil || isReply(err)) {
				// Redis answers on the new connection: a read error of the
				// old one is over, without waiting for this read's block.
				connFailed = false
				d.mem.report("read", "", nil)
			}
		}
		block := d.cfg.Block
		if d.readerID.Load() == 0 || d.noUnblock.Load() {
			block = min(block, noUnblockBlock)
		}
		names := d.knownNames()
		if len(names) == 0 {
			select {
			case <-ctx.Done():
			case <-d.changed:
			case <-time.After(d.cfg.Block):
			}
			continue
		}
		streams := make([]string, 0, 2*len(names))
		for _, n := range names {
			streams = append(streams, streamKey(n))
		}
		for range names {
			streams = append(streams, ">")
		}
		res, err := conn.XReadGroup(ctx, &redis.XReadGroupArgs{Group: d.cfg.Group, Consumer: d.cfg.Consumer,
			Streams: streams, Count: readCount, Block: block}).Result()
		switch {
		case errors.Is(err, redis.Nil):
			d.mem.report("read", "", nil)
			continue // timed out or unblocked
		case redis.HasErrorPrefix(err, "NOGROUP"), redis.HasErrorPrefix(err, "UNBLOCKED"):
			// A stream lost its group, or was deleted while the read
			// waited on it (Redis 7: "UNBLOCKED the stream key no longer
			// exists").
			d.regroupAll(ctx, names)
			continue
		case redis.HasErrorPrefix(err, "WRONGTYPE"):
			d.readFailed(ctx, err)
			d.dropBroken(ctx, names)
			continue
		case err != nil:
			if !isReply(err) {
				_ = conn.Close()
				conn = nil
				connFailed = true
			}
			d.readFailed(ctx, err)
			continue
		}
		d.mem.report("read", "", nil)
		for _, s := range res {
			if name, ok := breakerbox.NameFromKey(s.Stream); ok && len(s.Messages) > 0 {
				d.q.push(name)
			}
		}
	}
	d.readerID.Store(0)
}

// regroupAll finds which of names lost their group (one NOGROUP fails the
// whole multi-stream read) and sets them up again.
func (d *Daemon) regroupAll(ctx context.Context, names []string) {
	pipe := d.rdb.Pipeline()
	cmds := make([]*redis.XInfoGroupsCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.XInfoGroups(ctx, streamKey(n))
	}
	_, _ = pipe.Exec(ctx)
	var lost []string
	for i, n := range names {
		groups, err := cmds[i].Result()
		has := false
		for _, g := range groups {
			has = has || g.Name == d.cfg.Group
		}
		if err != nil || !has {
			lost = append(lost, n)
		}
	}
	if !d.regroup(ctx, lost) {
		d.maintainSoon()
	}
}

// dropBroken stops reading the breakers whose stream key holds another
// type (a hand-made key: one WRONGTYPE fails the whole multi-stream read);
// discovery takes them back once the key is repaired.
func (d *Daemon) dropBroken(ctx context.Context, names []string) {
	pipe := d.rdb.Pipeline()
	cmds := make([]*redis.StatusCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.Type(ctx, streamKey(n))
	}
	_, _ = pipe.Exec(ctx)
	for i, n := range names {
		if typ, err := cmds[i].Result(); err == nil && typ != "stream" && typ != "none" {
			d.mu.Lock()
			delete(d.known, n)
			d.mu.Unlock()
			d.mem.report("sweep", n, nil) // not swept while set aside: "read" says why
			d.mem.report("read", n, fmt.Errorf("WRONGTYPE: %s holds a %s, not a stream", streamKey(n), typ))
			d.log.Warn("the breaker's stream key holds another type; not reading it", "breaker", n, "type", typ)
		}
	}
}

// readFailed logs a reader error and waits RetryMin before the next read
// (on a fresh CLIENT ID: the connection may have been replaced).
func (d *Daemon) readFailed(ctx context.Context, err error) {
	d.readerID.Store(0)
	if ctx.Err() != nil {
		return
	}
	d.mem.report("read", "", err)
	d.log.Warn("blocking read failed", "err", err)
	_ = sleep(ctx, d.cfg.RetryMin)
}

// unblockReader ends the reader's current blocking read, if any. Where
// CLIENT UNBLOCK is refused (the documented ACL rule for alertd leaves it
// out: it could unblock anyone's connection), the reader keeps its blocks
// short instead.
func (d *Daemon) unblockReader(ctx context.Context) {
	if id := d.readerID.Load(); id != 0 && !d.cluster && !d.noUnblock.Load() {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := d.rdb.ClientUnblock(ctx, id).Err(); isReply(err) {
			d.noUnblock.Store(true)
			d.log.Debug("CLIENT UNBLOCK refused; blocking reads are capped instead", "cap", noUnblockBlock, "err", err)
		}
	}
}

// isReply reports whether err is an error reply of the server (NOPERM,
// NOGROUP, WRONGTYPE...), after which the connection is still usable,
// rather than a failure of the connection itself.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil)
}

// queue is the set of breakers with work, handed out in the order they
// were queued. A breaker is in it at most once, and is handed to one
// delivery goroutine at a time: one that is queued again while being
// delivered waits until done.
type queue struct {
	mu      sync.Mutex
	items   []string
	queued  map[string]bool
	busy    map[string]bool // being delivered: popped, not yet done
	timers  map[string]*time.Timer
	due     map[string]time.Time
	wake    chan struct{} // closed (and replaced) when items or busy change
	stopped bool
}

func newQueue() *queue {
	return &queue{queued: map[string]bool{}, busy: map[string]bool{}, timers: map[string]*time.Timer{},
		due: map[string]time.Time{}, wake: make(chan struct{})}
}

// signal wakes every pop waiting; q.mu is held.
func (q *queue) signal() {
	close(q.wake)
	q.wake = make(chan struct{})
}

// push queues name now.
func (q *queue) push(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped || q.queued[name] {
		return
	}
	q.queued[name] = true
	q.items = append(q.items, name)
	q.signal()
}

// pushAfter queues name after delay, unless it is already due earlier.
func (q *queue) pushAfter(name string, delay time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return
	}
	at := time.Now().Add(delay)
	if due, ok := q.due[name]; ok && !due.After(at) {
		return
	}
	if t := q.timers[name]; t != nil {
		t.Stop()
	}
	q.due[name] = at
	q.timers[name] = time.AfterFunc(delay, func() {
		q.mu.Lock()
		delete(q.due, name)
		delete(q.timers, name)
		q.mu.Unlock()
		q.push(name)
	})
}

// pop returns the next breaker that no other goroutine is delivering,
// waiting until there is one or ctx is done. The caller calls done when
// it has delivered it.
func (q *queue) pop(ctx context.Context) (string, bool) {
	for {
		if ctx.Err() != nil {
			return "", false
		}
		q.mu.Lock()
		for i, name := range q.items {
			if q.busy[name] {
				continue
			}
			q.items = append(q.items[:i:i], q.items[i+1:]...)
			delete(q.queued, name)
			q.busy[name] = true
			q.mu.Unlock()
			return name, true
		}
		wake := q.wake
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", false
		case <-wake:
		}
	}
}

// done ends the delivery of name that pop handed out.
func (q *queue) done(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.busy, name)
	q.signal()
}

// stop drops pending timers; later pushes are ignored.
func (q *queue) stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stopped = true
	for _, t := range q.timers {
		t.Stop()
	}
}
