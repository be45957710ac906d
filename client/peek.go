package client

import (
	"context"
	"net"
	"runtime"
	"sync"
	"weak"

	"github.com/redis/go-redis/v9"
)

// captureHook is a go-redis hook whose only work is to hand the
// connections dialled for a Hub's subscriber to it (see captured); other
// dials and every command pass through untouched.
type captureHook struct{}

func (captureHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err == nil {
			captured(ctx, conn)
		}
		return conn, err
	}
}

func (captureHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (captureHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// hooked remembers the clients that have the hook, weakly, so the hook is
// added once per client.
var hooked sync.Map // weak.Pointer[redis.Client] or weak.Pointer[redis.ClusterClient] -> true

// captureDials adds the capture hook to rdb once. On a Cluster the
// subscription is dialled by a node's client: the hook goes on every node
// client made from now on, and on each node the Hub resolves a breaker to
// (nodes.resolve), which the client may have made before.
func captureDials(rdb redis.UniversalClient) {
	switch c := rdb.(type) {
	case *redis.Client:
		addHookOnce(weak.Make(c), c, func() { c.AddHook(captureHook{}) })
	case *redis.ClusterClient:
		addHookOnce(weak.Make(c), c, func() {
			c.OnNewNode(func(n *redis.Client) { captureDials(n) })
		})
	}
}

func addHookOnce[T any](key weak.Pointer[T], c *T, add func()) {
	if _, loaded := hooked.LoadOrStore(key, true); loaded {
		return
	}
	runtime.AddCleanup(c, func(k weak.Pointer[T]) { hooked.Delete(k) }, key)
	add()
}
