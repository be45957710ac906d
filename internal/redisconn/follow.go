// Package redisconn makes go-redis clients follow Redis failovers within
// a second or two instead of a minute.
//
// A *redis.ClusterClient learns the slot map from CLUSTER SLOTS and, on its
// own, reloads it only on MOVED, READONLY and every 60 seconds. When a
// master dies nobody answers on its address, so no MOVED ever comes: the
// client keeps dialling the dead node until its timer fires. Follow makes
// it reload as soon as a command, a pipeline or a dial fails in a way that
// says the map may be stale.
//
// A *redis.Client made by redis.NewFailoverClient (Sentinel) already
// follows: it asks Sentinel for the master's address at every dial and
// drops its connections when Sentinel announces +switch-master. A plain
// *redis.Client has nothing to follow. Follow leaves both as they are.
//
// Every breakerbox component that builds or receives a Redis client calls
// Follow: client.RedisFromURL, the alert daemon, the health handler and the
// metrics collector; the worker runtime must call it too on the clients
// users give it.
package redisconn

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"weak"

	"github.com/redis/go-redis/v9"
)

// MinReloadInterval bounds how often Follow asks a cluster client to
// reload its slot map: at most once per interval, however many commands
// fail. go-redis reloads in the background and folds requests that arrive
// while a reload runs into one more reload 200ms after it.
const MinReloadInterval = 100 * time.Millisecond

// follower is the state Follow keeps per cluster client. It refers to its
// client weakly, so that the registry below never keeps a client alive.
type follower struct {
	client  weak.Pointer[redis.ClusterClient]
	last    atomic.Int64 // unix nanoseconds of the last reload request
	reloads atomic.Int64 // reload requests made
}

// followed maps each followed cluster client (weakly) to its follower, so
// that Follow is idempotent.
var followed sync.Map // weak.Pointer[redis.ClusterClient] -> *follower

// Follow makes rdb follow failovers (see the package documentation) and
// returns it. It is safe to call more than once on the same client, and
// from several goroutines. Call it before the client's first command: a
// cluster client's node connections made before Follow do not report
// their dial errors (their commands' errors still trigger reloads).
func Follow(rdb redis.UniversalClient) redis.UniversalClient {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok || cc == nil {
		return rdb
	}
	key := weak.Make(cc)
	f := &follower{client: key}
	if _, loaded := followed.LoadOrStore(key, f); loaded {
		return rdb
	}
	runtime.AddCleanup(cc, func(k weak.Pointer[redis.ClusterClient]) { followed.Delete(k) }, key)
	cc.AddHook(f)
	cc.OnNewNode(func(node *redis.Client) { node.AddHook(dialHook{f}) })
	return rdb
}

// Reloads reports how many slot-map reloads Follow requested for rdb (0
// for a client Follow does not act on). For tests and debugging.
func Reloads(rdb redis.UniversalClient) int64 {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return 0
	}
	if v, ok := followed.Load(weak.Make(cc)); ok {
		return v.(*follower).reloads.Load()
	}
	return 0
}

// reload asks the client to reload its slot map, at most once per
// MinReloadInterval.
func (f *follower) reload() {
	now := time.Now().UnixNano()
	last := f.last.Load()
	if now-last < int64(MinReloadInterval) || !f.last.CompareAndSwap(last, now) {
		return
	}
	if cc := f.client.Value(); cc != nil {
		f.reloads.Add(1)
		cc.ReloadState(context.Background())
	}
}

// DialHook leaves the cluster client's own dials alone: the nodes' dial
// hooks (dialHook) see them.
func (f *follower) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook reloads the slot map after a command failed with a stale-map
// error.
func (f *follower) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if Stale(err) {
			f.reload()
		}
		return err
	}
}

// ProcessPipelineHook reloads the slot map after a pipeline (or MULTI)
// in which any command failed with a stale-map error.
func (f *follower) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		stale := Stale(err)
		for _, c := range cmds {
			if stale {
				break
			}
			stale = Stale(c.Err())
		}
		if stale {
			f.reload()
		}
		return err
	}
}

// dialHook is installed on every node client of a followed cluster
// client: a failed dial (the node is gone) reloads the slot map. It also
// covers the pub/sub connections, which are dialled through the node.
type dialHook struct{ f *follower }

func (h dialHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil && !errors.Is(err, context.Canceled) {
			h.f.reload()
		}
		return conn, err
	}
}

func (h dialHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h dialHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// stalePrefixes are the Redis error replies that say the slot map may be
// out of date: the slot moved or is being moved, the cluster is
// reconfiguring, or the node is (no longer, or not yet) a master.
var stalePrefixes = []string{"MOVED", "ASK", "CLUSTERDOWN", "READONLY", "TRYAGAIN", "MASTERDOWN", "LOADING"}

// Stale reports whether err may come from a stale view of the servers:
// a network error (refused, reset, closed, timed out), a deadline that
// expired while waiting on Redis, or one of the replies above. A caller's
// cancellation, redis.Nil and other Redis errors (WRONGTYPE, NOPERM,
// script errors) are not.
func Stale(err error) bool {
	switch {
	case err == nil, errors.Is(err, redis.Nil), errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	for _, p := range stalePrefixes {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}
