package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// slowWire is a network between a go-redis client and Redis on which
// every write may be held back for a while before it leaves (a slow or
// congested Redis, as seen from the client), and which records when each
// write actually went out: what reaches Redis, and when.
type slowWire struct {
	maxDelay atomic.Int64 // nanoseconds; 0: writes leave at once
	mu       sync.Mutex
	writes   []wireWrite
}

type wireWrite struct {
	at   time.Time
	what string
}

func (w *slowWire) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &slowConn{Conn: c, w: w}, nil
}

// after returns the writes that left at or after t.
func (w *slowWire) after(t time.Time) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, x := range w.writes {
		if !x.at.Before(t) {
			out = append(out, fmt.Sprintf("%s after: %q", x.at.Sub(t), x.what))
		}
	}
	return out
}

type slowConn struct {
	net.Conn
	w *slowWire
}

func (c *slowConn) Write(p []byte) (int, error) {
	if m := c.w.maxDelay.Load(); m > 0 {
		time.Sleep(time.Duration(rand.Int64N(m)))
	}
	c.w.mu.Lock()
	what := string(p[:min(len(p), 80)])
	c.w.writes = append(c.w.writes, wireWrite{time.Now(), strings.ReplaceAll(what, "\r\n", " ")})
	n, err := c.Conn.Write(p)
	c.w.mu.Unlock() // after the write: one recorded after Shutdown returned cannot have left before
	return n, err
}

// TestNoCommandReachesRedisAfterShutdownReturns runs a Hub under load
// (fast and strict breakers reporting outcomes, breakers being created,
// configs being set) on a network that holds writes back for up to 200ms
// while the Redis timeout is 50ms, so that many calls are abandoned by the
// callers waiting for them (a seed, a status refresh, a registry SADD, an
// allow, a pipeline of outcomes) while still on their way; it shuts the
// Hub down and checks that nothing the Hub started writes to Redis after
// Shutdown has returned. (A late write would land on keys an operator or a
// test changes after the shutdown: cbctl's tests saw WRONGTYPE from it.)
func TestNoCommandReachesRedisAfterShutdownReturns(t *testing.T) {
	srv := redistest.Start(t)
	for round := 0; round < 3; round++ {
		t.Run(fmt.Sprint("round ", round), func(t *testing.T) {
			var wire slowWire
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Dialer: wire.dial, PoolSize: 32})
			t.Cleanup(func() { rdb.Close() })
			ctx := context.Background()
			const timeout = 50 * time.Millisecond
			hub, err := client.NewHub(rdb, client.WithRedisTimeout(timeout),
				client.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			if err != nil {
				t.Fatal(err)
			}
			cfg := quickConfig()
			cfg.FailureThreshold = 1_000_000
			newOne := func(i int) *client.Breaker {
				a := client.AdmitFast
				if i%2 == 1 {
					a = client.AdmitStrict
				}
				b, err := hub.New(fmt.Sprintf("late-writes-%d-%d", round, i), cfg, client.WithAdmission(a))
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			var mu sync.Mutex
			var bs []*client.Breaker
			for i := 0; i < 8; i++ {
				bs = append(bs, newOne(i))
			}
			for _, b := range bs {
				if err := b.Ready(ctx); err != nil {
					t.Fatal(err)
				}
			}
			var stop atomic.Bool
			var wg sync.WaitGroup
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; !stop.Load(); i++ {
						mu.Lock()
						b := bs[rand.IntN(len(bs))]
						mu.Unlock()
						fn := ok
						if i%5 == 2 {
							fn = fail
						}
						_ = b.Execute(ctx, fn)
						if i%50 == 7 {
							_ = b.SetConfig(ctx, cfg)
						}
						time.Sleep(time.Millisecond)
					}
				}()
			}
			wg.Add(1)
			go func() { // new breakers: seeds, subscriptions, registry SADDs
				defer wg.Done()
				for i := len(bs); !stop.Load(); i++ {
					b, err := hub.New(fmt.Sprintf("late-writes-%d-%d", round, i), cfg)
					if err != nil {
						return // shut down
					}
					mu.Lock()
					bs = append(bs, b)
					mu.Unlock()
					time.Sleep(5 * time.Millisecond)
				}
			}()
			time.Sleep(100 * time.Millisecond)
			wire.maxDelay.Store(int64(200 * time.Millisecond))
			time.Sleep(300 * time.Millisecond)

			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			err = hub.Shutdown(sctx)
			returned := time.Now()
			if err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			time.Sleep(400 * time.Millisecond) // twice the longest hold: a late write would be out by now
			stop.Store(true)
			wg.Wait()
			if late := wire.after(returned); len(late) > 0 {
				t.Errorf("%d writes reached Redis after Shutdown returned:\n%s", len(late), strings.Join(late, "\n"))
			}
		})
	}
}

// TestShutdownLeavesNoStrictCallWaiting: many Strict callers share
// pipelines (calls wait for a slot of their node); a Shutdown in the midst
// of them must answer every waiting call and return, with nothing still in
// flight, every time. Each start of a next pipeline is slowed down, so a
// Shutdown often refuses starts while calls wait.
func TestShutdownLeavesNoStrictCallWaiting(t *testing.T) {
	defer client.SlowNextStrictPipeline(2 * time.Millisecond)()
	mr := miniredis.RunT(t)
	for trial := 0; trial < 20; trial++ {
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		h, err := client.NewHub(rdb, client.WithAdmission(client.AdmitStrict), client.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		b, err := h.New(fmt.Sprintf("strict-shutdown-%d", trial), client.Config{})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := 0; g < 64; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if err := b.Execute(context.Background(), func(context.Context) error { return nil }); err != nil {
						return // ErrShutdown
					}
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = h.Shutdown(ctx)
		cancel()
		if err != nil {
			t.Fatalf("trial %d: Shutdown: %v", trial, err)
		}
		callers := make(chan struct{})
		go func() { wg.Wait(); close(callers) }()
		select {
		case <-callers:
		case <-time.After(5 * time.Second):
			t.Fatalf("trial %d: callers still waiting 5s after Shutdown", trial)
		}
		_ = rdb.Close()
	}
}
