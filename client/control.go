package client

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

// control is the Hub's goroutine for everything but outcomes and the
// subscription's reads: it registers new breakers (seed, in pipelines,
// then subscribes their channels in one batch), refreshes breakers
// (pipelined seed and status reads) after every (re)subscription, after
// every configure announced on their channel and at the end of an outage,
// and
// asks nodes in an outage whether they answer again. Every Redis call it
// makes is bounded by the Hub's Redis timeout; a node that does not answer
// delays only its own breakers.
type control struct {
	h         *Hub
	mu        sync.Mutex
	reg       []*Breaker
	retry     []*Breaker // registrations refused with an error, tried again later
	toRefresh map[*Breaker]refreshReq
	kick      chan struct{}
}

// refreshReq is a refresh asked for while the subscription was in epoch,
// after the breaker's channel was subscribed subGen times.
type refreshReq struct{ epoch, subGen uint64 }

// retryRegistration is how long a registration refused with an error
// (not an outage) waits before it is tried again.
const retryRegistration = time.Second

func (c *control) init(h *Hub) {
	c.h = h
	c.toRefresh = map[*Breaker]refreshReq{}
	c.kick = make(chan struct{}, 1)
}

func (c *control) kickSoon() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// register asks for b to be registered (or, once it is, refreshed).
func (c *control) register(b *Breaker) {
	c.mu.Lock()
	if !b.reg.queued {
		b.reg.queued = true
		c.reg = append(c.reg, b)
	}
	c.mu.Unlock()
	c.kickSoon()
}

// refresh asks for b's status to be read.
func (c *control) refresh(b *Breaker) {
	c.mu.Lock()
	c.toRefresh[b] = refreshReq{epoch: c.h.sub.epoch.Load(), subGen: b.subGen.Load()}
	c.mu.Unlock()
	c.kickSoon()
}

// subscribed notes that the channel of breaker name was (re)subscribed in
// epoch: its handles' views wait for a refresh.
func (c *control) subscribed(name string, epoch uint64) {
	c.h.mu.Lock()
	var handles []*Breaker
	if ch := c.h.byName[name]; ch != nil {
		ch.epoch = epoch
		handles = ch.handles
	}
	c.h.mu.Unlock()
	for _, b := range handles {
		b.subEpoch.Store(epoch)
		b.subGen.Add(1)
		b.confirmed.Store(0)
		c.refresh(b)
	}
}

// unsubscribe drops the channel of a name that has no handle left.
func (c *control) unsubscribe(name string) { c.h.sub.unsubscribe(breakerbox.Channel(name)) }

func (c *control) run() {
	defer c.h.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-c.h.ctx.Done():
			return
		case <-c.kick:
		case <-timer.C:
		}
		again := c.registerAll()
		again = c.refreshAll() || again
		again = c.h.nodes.recheckDown() || again
		if again {
			timer.Reset(recheckEvery)
		}
	}
}

// byNode groups breakers by the node holding their keys, leaving out
// those whose node is down (the end of the outage asks for them again)
// and those shut down.
func (c *control) byNode(list []*Breaker) map[*node][]*Breaker {
	h := c.h
	if h.cluster != nil {
		_, _ = call(h.ctx, h, "cluster slots", h.timeout(), func(ctx context.Context) (struct{}, error) {
			for _, b := range list {
				h.nodes.resolve(ctx, b)
			}
			return struct{}{}, nil
		}, nil)
	}
	groups := map[*node][]*Breaker{}
	for _, b := range list {
		if n := b.nodeOf(); !b.shut.Load() && !n.down.Load() {
			groups[n] = append(groups[n], b)
		}
	}
	return groups
}

// eachNode runs f for every group at once and waits for all of them.
func eachNode[T any](groups map[*node][]T, f func(n *node, group []T)) {
	var wg sync.WaitGroup
	for n, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(n, g)
		}()
	}
	wg.Wait()
}

// registerAll registers the breakers waiting for it: seed (or configure
// with WithOverwriteConfig) in one pipeline per node, then their channels
// subscribed in one batch. It reports whether some must be tried again.
func (c *control) registerAll() bool {
	c.mu.Lock()
	list := c.reg
	c.reg = nil
	now := time.Now()
	var later []*Breaker
	for _, b := range c.retry {
		if now.After(b.reg.retryAt) {
			list = append(list, b)
		} else {
			later = append(later, b)
		}
	}
	c.retry = later
	for _, b := range list {
		b.reg.queued = false
	}
	c.mu.Unlock()
	var todo, registered []*Breaker
	for _, b := range list {
		if b.reg.done.Load() {
			registered = append(registered, b)
		} else {
			todo = append(todo, b)
		}
	}
	var mu sync.Mutex
	eachNode(c.byNode(todo), func(n *node, group []*Breaker) {
		ok := c.seed(n, group)
		mu.Lock()
		registered = append(registered, ok...)
		mu.Unlock()
	})
	var names, channels []string
	var subscribed []*Breaker
	c.h.mu.Lock()
	for _, b := range registered {
		if ch := c.h.byName[b.name]; ch != nil && !ch.subscribed {
			ch.subscribed = true
			names = append(names, b.name)
			channels = append(channels, breakerbox.Channel(b.name))
		} else if ch != nil {
			if b.subEpoch.Load() == 0 {
				b.subEpoch.Store(ch.epoch) // 0 until confirmed: then subscribed refreshes every handle
			}
			subscribed = append(subscribed, b)
		}
	}
	c.h.mu.Unlock()
	for _, b := range subscribed {
		c.refresh(b) // confirms it if the channel's subscription was confirmed already
	}
	c.h.registryAdd(names)
	if len(channels) > 0 {
		c.h.sub.subscribe(channels...)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.retry) > 0
}

// seed stores the config of a node's new breakers (only where none is
// stored, unless overwriting) and returns those registered.
func (c *control) seed(n *node, group []*Breaker) []*Breaker {
	h := c.h
	ops := make([]string, len(group))
	for i, b := range group {
		b.reg.mu.Lock()
		ops[i] = "seed"
		if b.o.overwrite && !b.reg.overwritten {
			ops[i] = "configure"
		}
		b.reg.mu.Unlock()
	}
	type result struct {
		replies  []breakerbox.ConfigureReply
		statuses []breakerbox.Status
		errs     []error
	}
	start := time.Now().UnixNano()
	res, err := call(h.ctx, h, "seed", h.timeout(), func(ctx context.Context) (result, error) {
		r := result{replies: make([]breakerbox.ConfigureReply, len(group)),
			statuses: make([]breakerbox.Status, len(group)), errs: make([]error, len(group))}
		// The status read after the seed gives the config in force (the
		// seed's, or the one stored before) from the start.
		calls := make([]scriptCall, 0, 2*len(group))
		for i, b := range group {
			calls = append(calls, scriptCall{breakerbox.BreakerScript, b.keys, configArgs(ops[i], b.o.actor, b.seed)})
		}
		for _, b := range group {
			calls = append(calls, scriptCall{breakerbox.StatusScript, b.keys, []any{"status"}})
		}
		cmds, _ := h.pipeline(ctx, nil, calls) // a pipeline's failure is each command's error
		for i, b := range group {
			if r.errs[i] = cmdErr(cmds[i]); r.errs[i] == nil {
				r.replies[i], r.errs[i] = breakerbox.ParseConfigureReply(cmds[i].Val())
			}
			r.statuses[i], _ = breakerbox.ParseStatus(b.name, cmds[len(group)+i].Val())
		}
		return r, nil // each breaker's own error says more than the connection's
	}, nil)
	if err != nil {
		if unreachable(err) {
			n.begin(err)
		}
		for _, b := range group {
			c.failed(b, err)
		}
		return nil
	}
	var ok []*Breaker
	for i, b := range group {
		if err := res.errs[i]; err != nil {
			if unreachable(err) {
				n.begin(err)
			}
			c.failed(b, err)
			continue
		}
		if b.o.overwrite && res.replies[i].Overwritten > 0 {
			b.logf(warnLevel, "circuit breaker overwrote the shared config", "config", b.seed.AllFields())
		}
		if st := res.statuses[i]; st.Name != "" {
			b.readConfig(st, start)
			b.observe(st.Announcement(), fromReply)
		}
		b.reg.finish(nil)
		b.logf(infoLevel, "circuit breaker initialised", "admission", b.o.admission, "outage_policy", b.o.outage)
		ok = append(ok, b)
	}
	return ok
}

// failed records a registration that did not succeed. An outage's is
// tried again when the outage ends; any other error is logged and tried
// again after retryRegistration, and meanwhile returned to the callers.
func (c *control) failed(b *Breaker, err error) {
	if unreachable(err) {
		b.reg.finish(err)
		return
	}
	b.logf(errorLevel, "circuit breaker not registered", "err", err)
	b.reg.finish(err)
	c.mu.Lock()
	b.reg.retryAt = time.Now().Add(retryRegistration)
	c.retry = append(c.retry, b)
	c.mu.Unlock()
}

// refreshAll reads the status of the breakers waiting for a refresh, in
// one pipeline per node. It reports whether some must be tried again.
func (c *control) refreshAll() bool {
	c.mu.Lock()
	reqs := c.toRefresh
	c.toRefresh = map[*Breaker]refreshReq{}
	c.mu.Unlock()
	if len(reqs) == 0 {
		return false
	}
	list := make([]*Breaker, 0, len(reqs))
	for b := range reqs {
		list = append(list, b)
	}
	h := c.h
	retry := false
	var mu sync.Mutex
	eachNode(c.byNode(list), func(n *node, group []*Breaker) {
		start := time.Now().UnixNano()
		// A seed first: a Redis that restarted without persistence lost
		// the config, which the seed stores again (it never overwrites
		// one that is stored).
		calls := make([]scriptCall, 0, 2*len(group))
		for _, b := range group {
			calls = append(calls, scriptCall{breakerbox.BreakerScript, b.keys, configArgs("seed", b.o.actor, b.seed)})
		}
		for _, b := range group {
			calls = append(calls, scriptCall{breakerbox.StatusScript, b.keys, []any{"status"}})
		}
		cmds, err := call(h.ctx, h, "status", h.timeout(), func(ctx context.Context) ([]*redis.Cmd, error) {
			cmds, _ := h.pipeline(ctx, nil, calls) // a pipeline's failure is each command's error
			return cmds, nil
		}, nil)
		if err != nil {
			if unreachable(err) {
				n.begin(err)
			}
			return // the outage's end refreshes them
		}
		for i, b := range group {
			sc := cmds[len(group)+i]
			st, err := breakerbox.ParseStatus(b.name, sc.Val())
			if cerr := cmdErr(sc); cerr != nil {
				err = cerr
			}
			if err != nil {
				if unreachable(err) {
					n.begin(err)
					continue
				}
				b.logf(errorLevel, "circuit breaker status unreadable", "err", err)
				mu.Lock()
				retry = true
				mu.Unlock()
				continue
			}
			b.refreshed(st, start, reqs[b])
		}
	})
	if retry {
		// Read again on the next round (a broken config an operator fixes).
		c.mu.Lock()
		for b, r := range reqs {
			if _, again := c.toRefresh[b]; !again && !b.trusted() {
				c.toRefresh[b] = r
			}
		}
		c.mu.Unlock()
	}
	return retry
}
