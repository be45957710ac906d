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

// WithDurableTransitions (options.go): a breaker's script calls run on a
// connection of their own, and a reply that reports a transition is
// followed by WAIT on that connection (WAIT counts the replicas that
// acknowledged the connection's own writes, so it must follow the script
// on the connection that ran it).

// durableCounts are a handle's counts of the transitions it waited for.
type durableCounts struct{ replicated, notReplicated atomic.Int64 }

// durable reports whether b waits for its transitions' replication.
func (b *Breaker) durable() bool { return b.o.durable.replicas > 0 }

// waitFor is how long b may wait for a transition's replication when left
// is what is left of its caller's Redis timeout.
func (b *Breaker) waitFor(left time.Duration) time.Duration {
	d := b.o.redisTimeout
	if t := b.o.durable.timeout; t > 0 && t < d {
		d = t
	}
	return min(d, left)
}

// ownConn returns a connection of its own on the master that holds key
// (n: the node it was resolved to), for a script call and the WAIT after
// it; nil when the client has none to give (a client type other than
// *redis.Client and *redis.ClusterClient, or a Cluster master not known).
// The caller releases it.
func (h *Hub) ownConn(ctx context.Context, n *node, key string) *redis.Conn {
	switch {
	case n != nil && n.client != nil:
		return n.client.Conn()
	case h.cluster != nil:
		if key == "" {
			return nil
		}
		m, err := h.cluster.MasterForKey(ctx, key)
		if err != nil {
			return nil
		}
		return m.Conn()
	}
	if c, ok := h.rdb.(*redis.Client); ok {
		return c.Conn()
	}
	return nil
}

// connReply is a script's reply and, for a durable breaker, the
// connection that carried it (to be released).
type connReply struct {
	res  any
	conn *redis.Conn
}

// release gives the connection back to the pool.
func (r connReply) release() {
	if r.conn != nil {
		_ = r.conn.Close()
	}
}

// evalConn runs one operation of breaker-8.lua for b like eval; for a
// durable breaker on a connection of its own, returned with the reply
// (released here on error). ctx bounds nothing by itself: callers run it
// through call.
func (b *Breaker) evalConn(ctx context.Context, args ...any) (connReply, error) {
	if !b.durable() {
		res, err := b.eval(ctx, args...)
		return connReply{res: res}, err
	}
	conn := b.h.ownConn(ctx, b.nodeOf(), b.keys[0])
	if conn == nil {
		res, err := b.eval(ctx, args...)
		return connReply{res: res}, err
	}
	b.h.io.begin()
	defer b.h.io.end()
	res, err := breakerbox.BreakerScript.RunAs(ctx, conn, b.h.rdb, b.keys, args...).Result()
	if err != nil {
		_ = conn.Close()
		if redirected(err) {
			// The slot moved (a resharding or a failover the client has not
			// seen): the node refused without running the script. Through
			// the client, which follows the redirect; no WAIT can follow
			// that call, so a transition it reports counts NotReplicated.
			if c := b.h.cluster; c != nil {
				c.ReloadState(ctx)
			}
			res, err := b.eval(ctx, args...)
			b.h.nodes.resolve(ctx, b) // the next call's connection, on the master the map names now
			return connReply{res: res}, err
		}
		return connReply{}, breakerbox.ScriptError(err)
	}
	return connReply{res: res, conn: conn}, nil
}

// errRedirected says why a transition made by a call run again through the
// client (redirected) was not waited for.
var errRedirected = errors.New("redirected to another node: no WAIT on its connection")

// redirected reports whether err is a Cluster node's MOVED or ASK: a call
// sent to the node that does not serve its slot, refused without running.
func redirected(err error) bool {
	return redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")
}

// settle follows a durable breaker's reply r of generation gen: when gen
// is newer than prior (the newest generation the handle knew before the
// call), the reply reports a transition, and b waits (at most
// waitFor(left)) for its replication and counts it. r's connection is
// released.
func (b *Breaker) settle(r connReply, prior, gen int64, left time.Duration) {
	if !b.durable() || gen <= prior {
		r.release()
		return
	}
	acked, err := b.h.waitReplicas(r.conn, b.o.durable.replicas, b.waitFor(left))
	b.countReplication(acked, err, gen)
}

// countReplication counts one transition that acked replicas acknowledged
// (err: why the WAIT did not answer).
func (b *Breaker) countReplication(acked int64, err error, gen int64) {
	if err == nil && acked >= int64(b.o.durable.replicas) {
		b.dur.replicated.Add(1)
		return
	}
	b.dur.notReplicated.Add(1)
	attrs := []any{"generation", gen, "acknowledged", max(acked, 0), "want", b.o.durable.replicas}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	b.logf(warnLevel, "circuit breaker transition not acknowledged by replicas", attrs...)
}

// waitReplicas sends WAIT replicas on conn and returns how many replicas
// acknowledged the connection's writes, or an error: no connection, d too
// short, WAIT refused, or not answered within d. The server's own WAIT
// timeout is half of d: Redis checks blocked clients' timeouts at its
// event loop's pace (up to 1/hz late), and the client should not give up
// first, which costs the connection. It releases conn exactly once: when
// the WAIT answers (after its caller stopped waiting, if it did), or at
// once when the WAIT is not sent.
func (h *Hub) waitReplicas(conn *redis.Conn, replicas int, d time.Duration) (int64, error) {
	if conn == nil {
		return 0, errors.New("no connection of its own to send WAIT on")
	}
	release := sync.OnceFunc(func() { _ = conn.Close() })
	ms := (d / 2).Milliseconds()
	if ms < 1 {
		release()
		return 0, fmt.Errorf("no time left to WAIT (%s)", d)
	}
	var started atomic.Bool
	acked, err := call(context.Background(), h, "WAIT", d, func(ctx context.Context) (int64, error) {
		started.Store(true)
		defer release() // when the WAIT answers, even after its caller stopped waiting
		return conn.Wait(ctx, replicas, time.Duration(ms)*time.Millisecond).Result()
	}, nil)
	if !started.Load() {
		release() // the call was not made (the Hub is shutting down)
	}
	return acked, err
}
