package client

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// node is one Redis node as the Hub sees it: the unit of outages. A
// standalone or Sentinel client has one node, so an outage puts every
// breaker on its outage policy; on a Cluster each master is a node, and a
// master that stalls or dies puts only the breakers in its slots on theirs.
type node struct {
	h    *Hub
	addr string // the master's address on a Cluster; "" otherwise

	down    atomic.Bool // read on every call
	mu      sync.Mutex  // guards the rest
	since   time.Time
	cause   error
	probing bool // a recovery check is running
	client  *redis.Client

	strict strictBatch // its Strict breakers' script calls, coalesced
}

// recheckEvery is how often a node in an outage is asked whether it
// answers again.
const recheckEvery = 200 * time.Millisecond

// nodes are the Hub's nodes.
type nodes struct {
	h      *Hub
	mu     sync.Mutex
	byAddr map[string]*node
	first  *node // the only node of a non-cluster client; a Cluster's breakers before their master is known
}

func (ns *nodes) init(h *Hub) {
	ns.h = h
	ns.byAddr = map[string]*node{}
	ns.first = &node{h: h}
}

// initial is a new breaker's node until it is resolved.
func (ns *nodes) initial() *node { return ns.first }

// resolve finds the node that holds b's keys now (on a Cluster, the master
// of its slot as the client's slot map says) and records it on b.
func (ns *nodes) resolve(ctx context.Context, b *Breaker) *node {
	cc := ns.h.cluster
	if cc == nil {
		return ns.first
	}
	m, err := cc.MasterForKey(ctx, b.keys[0])
	if err != nil {
		return b.nodeOf()
	}
	addr := m.Options().Addr
	ns.mu.Lock()
	n := ns.byAddr[addr]
	if n == nil {
		n = &node{h: ns.h, addr: addr, client: m}
		ns.byAddr[addr] = n
		captureDials(m) // the subscription is dialled by the node of its first channel's slot
	}
	ns.mu.Unlock()
	if old := b.node.Swap(n); old != n && old.down.Load() && !n.down.Load() {
		b.outageEnded() // its slot moved to a master that answers
	}
	return n
}

// all returns every node.
func (ns *nodes) all() []*node {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	out := []*node{ns.first}
	for _, n := range ns.byAddr {
		out = append(out, n)
	}
	return out
}

// begin starts an outage of the node (once; further failures during it
// are silent): its breakers follow their outage policy without touching
// Redis, and the Hub checks every recheckEvery whether it answers again.
func (n *node) begin(cause error) {
	if n.down.Load() || n.h.ctx.Err() != nil {
		return
	}
	n.mu.Lock()
	if n.down.Load() {
		n.mu.Unlock()
		return
	}
	n.since, n.cause = time.Now(), fmt.Errorf("cannot reach redis: %w", cause)
	n.down.Store(true)
	n.mu.Unlock()
	attrs := []any{"err", cause, "redis_timeout", n.h.timeout()}
	if n.addr != "" {
		attrs = append(attrs, "node", n.addr)
	}
	n.h.logEvent(slog.LevelError, "circuit breaker cannot reach redis; following outage policy", attrs...)
	n.h.ctl.kickSoon()
}

// causeOf returns the error that started the node's outage.
func (n *node) causeOf() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cause
}

// recheck asks a node in an outage whether it answers again, at most one
// question at a time; on a Cluster it also has the client reload its slot
// map, so that breakers whose slots moved to a promoted replica leave the
// outage as soon as the client knows.
func (n *node) recheck() {
	n.mu.Lock()
	if !n.down.Load() || n.probing {
		n.mu.Unlock()
		return
	}
	n.probing = true
	n.mu.Unlock()
	h := n.h
	if h.cluster != nil {
		h.cluster.ReloadState(h.ctx)
	}
	started := h.calls.Go(func() {
		_, err := call(h.ctx, h, "PING", h.timeout(), func(ctx context.Context) (string, error) {
			if h.cluster != nil {
				ctx := context.WithoutCancel(ctx)
				for _, b := range h.breakers() {
					if b.nodeOf() == n {
						h.nodes.resolve(ctx, b)
					}
				}
				if n.client != nil {
					return n.client.Ping(ctx).Result()
				}
			}
			return h.rdb.Ping(ctx).Result()
		}, nil)
		n.mu.Lock()
		n.probing = false
		n.mu.Unlock()
		if err == nil {
			n.end()
		}
	})
	if !started { // shut down
		n.mu.Lock()
		n.probing = false
		n.mu.Unlock()
	}
}

// end ends the node's outage: its breakers leave the outage policy, are
// registered if they never were, refreshed from Redis, and their outage's
// counts are tallied.
func (n *node) end() {
	n.mu.Lock()
	if !n.down.Load() {
		n.mu.Unlock()
		return
	}
	n.down.Store(false)
	since := n.since
	n.cause = nil
	n.mu.Unlock()
	attrs := []any{"outage", time.Since(since).Round(time.Millisecond)}
	if n.addr != "" {
		attrs = append(attrs, "node", n.addr)
	}
	n.h.logEvent(slog.LevelInfo, "circuit breaker reaches redis again", attrs...)
	for _, b := range n.h.breakers() {
		if b.nodeOf() == n {
			b.outageEnded()
		}
	}
}

// recheckDown reports whether any node is in an outage, asking each one
// that is whether it answers again.
func (ns *nodes) recheckDown() bool {
	any := false
	for _, n := range ns.all() {
		if n.down.Load() {
			any = true
			n.recheck()
		}
	}
	return any
}
