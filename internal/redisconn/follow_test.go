package redisconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

var (
	cluster = redistest.NewShared("cluster", func(t redistest.TB) *redistest.Cluster {
		return redistest.StartReplicatedCluster(t)
	})
	sentinel = redistest.NewShared("sentinel", func(t redistest.TB) *redistest.SentinelGroup {
		return redistest.StartSentinelGroup(t, redistest.SentinelOptions{})
	})
)

// followBound is issue 13's bound: a component reaches the promoted node
// within 2s of the servers' own failover.
const followBound = 2 * time.Second

func TestStale(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{redis.Nil, false},
		{context.Canceled, false},
		{fmt.Errorf("wrapped: %w", context.Canceled), false},
		{errors.New("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{context.DeadlineExceeded, true},
		{io.EOF, true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{fmt.Errorf("x: %w", syscall.ECONNRESET), true},
	} {
		if got := Stale(tc.err); got != tc.want {
			t.Errorf("Stale(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestStaleRedisReplies checks the replies on a real server's error type.
func TestStaleRedisReplies(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	ctx := context.Background()
	rdb := s.Client(t)
	for reply, want := range map[string]bool{
		"MOVED 3999 127.0.0.1:6381": true, "ASK 3999 127.0.0.1:6381": true,
		"CLUSTERDOWN The cluster is down": true, "READONLY You can't write against a read only replica.": true,
		"TRYAGAIN Multiple keys request during rehashing of slot": true, "MASTERDOWN Link with MASTER is down": true,
		"LOADING Redis is loading the dataset in memory": true,
		"NOPERM this user has no permissions":            false, "BADKEYS keys": false, "ERR unknown command": false,
	} {
		err := rdb.Eval(ctx, "return redis.error_reply(ARGV[1])", nil, reply).Err()
		if err == nil || err.Error() != reply {
			t.Fatalf("EVAL error_reply %q: err = %v", reply, err)
		}
		if got := Stale(err); got != want {
			t.Errorf("Stale(%q) = %v, want %v", reply, got, want)
		}
	}
}

func TestFollowIsIdempotentAndRateLimited(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: every dial is refused
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, MaxRedirects: -1, DialTimeout: 100 * time.Millisecond})
	defer cc.Close()
	if got := Follow(cc); got != cc {
		t.Fatalf("Follow returned %v, want its argument", got)
	}
	Follow(cc) // a second call adds nothing

	ctx := context.Background()
	began := time.Now()
	for i := 0; i < 20; i++ {
		if err := cc.Get(ctx, "k").Err(); err == nil {
			t.Fatal("GET on a closed port succeeded")
		}
	}
	elapsed := time.Since(began)
	if n, max := Reloads(cc), int64(elapsed/MinReloadInterval)+1; n < 1 || n > max {
		t.Fatalf("20 failures in %v asked for %d reloads, want 1..%d", elapsed, n, max)
	}

	plain := redis.NewClient(&redis.Options{Addr: addr})
	defer plain.Close()
	if Follow(plain) != plain || Reloads(plain) != 0 {
		t.Fatal("Follow of a *redis.Client must leave it alone")
	}
}

// newClusterClient is a cluster client with short timeouts, as breakerbox
// components use.
func newClusterClient(c *redistest.Cluster) *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, ContextTimeoutEnabled: true})
}

func TestClusterClientFollowsAKilledMaster(t *testing.T) {
	c := cluster.Get(t)
	c.Use(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const key, channel = "{follow}k", "{follow}ch"
	followed := newClusterClient(c)
	defer followed.Close()
	Follow(followed)
	stock := newClusterClient(c) // go-redis alone, for comparison
	defer stock.Close()
	for _, cl := range []*redis.ClusterClient{followed, stock} {
		if err := cl.Set(ctx, key, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	sub := followed.Subscribe(ctx, channel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := sub.Channel()

	old, err := c.MasterOf(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := old.Client(t).Wait(ctx, 1, 2*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v", n, err)
	}
	old.Kill(t)
	killed := time.Now()

	get := make(chan time.Time, 1)
	go func() {
		at, err := redistest.FirstSuccess(ctx, 20*time.Millisecond, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			return followed.Get(ctx, key).Err()
		})
		if err != nil {
			t.Errorf("the followed client never read the key again: %v", err)
		}
		get <- at
	}()
	nm, promoted, err := c.WaitServing(ctx, key, old)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster: %s killed, %s serves the slot %v later", old.Addr, nm.Addr, promoted.Sub(killed).Round(time.Millisecond))

	// The subscription follows too: a message published after the
	// failover reaches it.
	received := make(chan time.Time, 1)
	go func() {
		for m := range msgs {
			if m.Payload == "after" {
				received <- time.Now()
				return
			}
		}
	}()
	pub := time.NewTicker(20 * time.Millisecond)
	defer pub.Stop()
	var gotAt, subAt time.Time
	for gotAt.IsZero() || subAt.IsZero() {
		select {
		case gotAt = <-get:
			t.Logf("followed client reads the key %v after the slot is served (Reloads %d)",
				gotAt.Sub(promoted).Round(time.Millisecond), Reloads(followed))
		case subAt = <-received:
			t.Logf("subscription receives %v after the slot is served", subAt.Sub(promoted).Round(time.Millisecond))
		case <-pub.C:
			pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			_ = nm.Client(t).Publish(pctx, channel, "after").Err()
			cancel()
		case <-ctx.Done():
			t.Fatalf("timed out: get %v, subscription %v", gotAt, subAt)
		}
	}
	if lag := gotAt.Sub(promoted); lag > followBound {
		t.Errorf("the followed client read the key %v after the cluster served the slot, want <= %v", lag, followBound)
	}
	if lag := subAt.Sub(promoted); lag > followBound {
		t.Errorf("the subscription received %v after the cluster served the slot, want <= %v", lag, followBound)
	}

	// go-redis alone still dials the dead node: it would reload only at
	// its 60s timer. (This documents why Follow exists.)
	time.Sleep(time.Until(promoted.Add(followBound)))
	sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer scancel()
	if err := stock.Get(sctx, key).Err(); err == nil {
		t.Log("note: the stock client followed on its own this time")
	} else {
		t.Logf("stock go-redis client %v after the failover: %v", followBound, err)
	}
}

func TestSentinelClientFollowsAKilledMaster(t *testing.T) {
	g := sentinel.Get(t)
	g.Use(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: g.MasterName, SentinelAddrs: g.SentinelAddrs,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
		ContextTimeoutEnabled: true})
	defer rdb.Close()
	if Follow(rdb) != rdb {
		t.Fatal("Follow changed a failover client")
	}
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Wait(ctx, 1, 2*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v", n, err)
	}
	old, err := g.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old.Kill(t)
	killed := time.Now()
	get := make(chan time.Time, 1)
	go func() {
		at, err := redistest.FirstSuccess(ctx, 20*time.Millisecond, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			return rdb.Set(ctx, "k", "after", 0).Err()
		})
		if err != nil {
			t.Errorf("the failover client never wrote again: %v", err)
		}
		get <- at
	}()
	nm, named, err := g.WaitNewMaster(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	at := <-get
	t.Logf("sentinel: %s killed, %s named %v later; the client wrote %v after that",
		old.Addr, nm.Addr, named.Sub(killed).Round(time.Millisecond), at.Sub(named).Round(time.Millisecond))
	if lag := at.Sub(named); lag > followBound {
		t.Errorf("the client wrote %v after Sentinel named the new master, want <= %v", lag, followBound)
	}
}
