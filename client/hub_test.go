package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// pubsubConns counts the server's pub/sub connections and the channels
// they subscribe to.
func pubsubConns(t *testing.T, ops *redis.Client) (conns, channels int) {
	t.Helper()
	list, err := ops.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "sub="); ok && v != "0" {
				conns++
				var n int
				fmt.Sscan(v, &n)
				channels += n
			}
		}
	}
	return conns, channels
}

// TestBreakersOfAClientShareOneHub: every breaker New makes on one Redis
// client runs on one Hub, whose one pub/sub connection subscribes every
// breaker's channel; each breaker learns of its own transitions on it; the
// Hub is shut down with its last breaker.
func TestBreakersOfAClientShareOneHub(t *testing.T) {
	srv := redistest.Start(t)
	ops := srv.Client(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	const n = 200
	bs := make([]*client.Breaker, n)
	for i := range bs {
		bs[i] = newBreaker(t, rdb, fmt.Sprintf("shared-%03d", i), quickConfig())
	}
	for _, b := range bs {
		if b.Hub() != bs[0].Hub() {
			t.Fatal("two breakers of one client on different Hubs")
		}
		if err := b.Ready(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if conns, channels := pubsubConns(t, ops); conns != 1 || channels != n {
		t.Errorf("%d pub/sub connections subscribing %d channels, want 1 connection for all %d breakers", conns, channels, n)
	}
	// An operator opens some of them: each breaker's view follows its own.
	for _, i := range []int{3, 77, 150} {
		if _, err := admin.Control(ctx, ops, bs[i].Name(), breakerbox.ActionForceOpen, "ops"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the three views to open", func() bool {
		return bs[3].State() == breakerbox.StateOpen && bs[77].State() == breakerbox.StateOpen && bs[150].State() == breakerbox.StateOpen
	})
	for i, b := range bs {
		if want := map[int]bool{3: true, 77: true, 150: true}[i]; (b.State() == breakerbox.StateOpen) != want {
			t.Errorf("%s: view %s", b.Name(), b.State())
		}
	}
	other := newBreaker(t, srv.Client(t), "shared-000", quickConfig())
	if other.Hub() == bs[0].Hub() {
		t.Error("a breaker of another client runs on the first client's Hub")
	}
	for _, b := range append(bs, other) {
		if err := b.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the Hubs' pub/sub connections to close", func() bool { c, _ := pubsubConns(t, ops); return c == 0 })
	if _, err := bs[0].Allow(ctx); !errors.Is(err, client.ErrShutdown) {
		t.Errorf("Allow after Shutdown: %v, want ErrShutdown", err)
	}
	again := newBreaker(t, rdb, "shared-000", quickConfig())
	if again.Hub() == bs[0].Hub() {
		t.Error("a breaker made after the Hub shut down runs on it")
	}
	if err := run(t, again, ok); err != nil {
		t.Errorf("a breaker on a new Hub: %v", err)
	}
}

// TestHubOptionsAreDefaultsForItsBreakers: process options given to
// NewHub apply to every breaker of the Hub; options given to Hub.New
// override them for that breaker.
func TestHubOptionsAreDefaultsForItsBreakers(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	var mu sync.Mutex
	var seen []string
	hook := func(c client.StateChange) { mu.Lock(); seen = append(seen, c.Name); mu.Unlock() }
	var own []string
	ownHook := func(c client.StateChange) { mu.Lock(); own = append(own, c.Name); mu.Unlock() }
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := client.NewHub(rdb, client.WithLogger(quiet), client.WithOnStateChange(hook),
		client.WithAdmission(client.AdmitStrict), client.WithActor("hub-test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Shutdown(context.Background()) })
	cfg := quickConfig()
	cfg.FailureThreshold = 1
	a, err := h.New("hub-a", cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.New("hub-b", cfg, client.WithOnStateChange(ownHook))
	if err != nil {
		t.Fatal(err)
	}
	if viaNew, err := client.New(rdb, "hub-c", cfg); err != nil || viaNew.Hub() != h {
		t.Errorf("New on the Hub's client: %v, on the Hub %v; want the registered Hub", err, viaNew.Hub() == h)
	}
	for _, x := range []*client.Breaker{a, b} {
		_ = x.Execute(ctx, fail)
	}
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != "hub-a" || strings.Join(own, ",") != "hub-b" {
		t.Errorf("the Hub's hook saw %v, hub-b's own hook %v; want hub-a and hub-b", seen, own)
	}
	h2, _ := admin.History(ctx, rdb, "hub-a", 5)
	if len(h2) == 0 || h2[len(h2)-1].Actor != "hub-test" {
		t.Errorf("history %+v, want the seed written by the Hub's actor", h2)
	}
	if _, err := a.Allow(ctx); !errors.Is(err, client.ErrShutdown) {
		t.Errorf("a breaker after its Hub shut down: %v, want ErrShutdown", err)
	}
	if _, err := client.NewHub(nil); err == nil {
		t.Error("NewHub(nil) succeeded")
	}
	if _, err := client.NewHub(rdb, client.WithRedisTimeout(-1)); err == nil {
		t.Error("NewHub with a negative Redis timeout succeeded")
	}
	if _, err := h.New("late", cfg); !errors.Is(err, client.ErrShutdown) {
		t.Errorf("Hub.New after Shutdown: %v, want ErrShutdown", err)
	}
}

// TestIdleHubCommandsDoNotGrowWithBreakers: an idle Hub sends one PING a
// second, whatever the number of its breakers.
func TestIdleHubCommandsDoNotGrowWithBreakers(t *testing.T) {
	srv := redistest.Start(t)
	ops := srv.Client(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	var bs []*client.Breaker
	for i := 0; i < 300; i++ {
		bs = append(bs, newBreaker(t, rdb, fmt.Sprintf("idle-%03d", i), quickConfig()))
	}
	for _, b := range bs {
		if err := b.Ready(ctx); err != nil {
			t.Fatal(err)
		}
	}
	total := func() int64 {
		info := ops.Info(ctx, "stats").Val()
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "total_commands_processed:"); ok {
				var n int64
				fmt.Sscan(v, &n)
				return n
			}
		}
		return -1
	}
	before := total()
	time.Sleep(3 * time.Second)
	if n := total() - before - 1; n > 6 { // the INFO itself is one
		t.Errorf("300 idle breakers sent %d commands in 3s, want about one PING a second", n)
	}
}
