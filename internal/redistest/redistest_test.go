package redistest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStartSetGet(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if !s.Running() {
		t.Fatal("Running() = false right after Start")
	}
	if s.Port == 0 || s.Port == reservedPort || s.Addr != fmt.Sprintf("127.0.0.1:%d", s.Port) {
		t.Fatalf("unexpected Addr=%q Port=%d", s.Addr, s.Port)
	}
	ctx := ctxT(t)
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want \"v\"", got, err)
	}
	// Persistence is off.
	cfg, err := c.ConfigGet(ctx, "appendonly").Result()
	if err != nil || cfg["appendonly"] != "no" {
		t.Fatalf("CONFIG GET appendonly = %v, %v", cfg, err)
	}
	cfg, err = c.ConfigGet(ctx, "save").Result()
	if err != nil || cfg["save"] != "" {
		t.Fatalf("CONFIG GET save = %v, %v", cfg, err)
	}
}

func TestRestartSameAddrEmpty(t *testing.T) {
	t.Parallel()
	s := Start(t)
	addr, port := s.Addr, s.Port
	ctx := ctxT(t)
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}

	s.Restart(t)
	if s.Addr != addr || s.Port != port {
		t.Fatalf("after Restart Addr=%q Port=%d, want %q %d", s.Addr, s.Port, addr, port)
	}
	if !s.Running() {
		t.Fatal("Running() = false after Restart")
	}
	// The same client reconnects to the same address.
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	if _, err := c.Get(ctx, "k").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after Restart: err = %v, want redis.Nil (nothing is saved)", err)
	}
	// And a second restart works as well.
	s.Restart(t)
	if err := s.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after second Restart: %v", err)
	}
}

func TestStopFailsClient(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := ctxT(t)
	c := s.Client(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	s.Stop(t)
	if s.Running() {
		t.Fatal("Running() = true after Stop")
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Stop succeeded")
	}
	s.Stop(t) // idempotent
	if s.Running() {
		t.Fatal("Running() = true after second Stop")
	}
}

func TestRequirePass(t *testing.T) {
	t.Parallel()
	s := Start(t, "--requirepass", "secret")
	ctx := ctxT(t)
	err := s.Client(t).Set(ctx, "k", "v", 0).Err()
	if err == nil || !(strings.Contains(err.Error(), "NOAUTH") || strings.Contains(err.Error(), "Authentication required")) {
		t.Fatalf("SET without password: err = %v, want NOAUTH", err)
	}
	authed := redis.NewClient(&redis.Options{Addr: s.Addr, Password: "secret"})
	t.Cleanup(func() { _ = authed.Close() })
	if err := authed.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET with password: %v", err)
	}
	// Stop authenticates its SHUTDOWN and Restart keeps the password.
	s.Restart(t)
	if err := authed.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING with password after Restart: %v", err)
	}
	s.Stop(t)
	if s.Running() {
		t.Fatal("Running() = true after Stop")
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	if len(c.Addrs) != 3 {
		t.Fatalf("Addrs = %v, want 3", c.Addrs)
	}
	ctx := ctxT(t)
	cc := c.Client(t)

	keys := []string{"{a}x", "{b}x", "{c}x"}
	masters := map[string]bool{}
	for _, k := range keys {
		if err := cc.Set(ctx, k, "v-"+k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		m, err := cc.MasterForKey(ctx, k)
		if err != nil {
			t.Fatalf("MasterForKey %s: %v", k, err)
		}
		masters[m.Options().Addr] = true
	}
	if len(masters) != 3 {
		t.Fatalf("keys %v landed on masters %v, want 3 distinct", keys, masters)
	}
	for _, k := range keys {
		got, err := cc.Get(ctx, k).Result()
		if err != nil || got != "v-"+k {
			t.Fatalf("GET %s = %q, %v", k, got, err)
		}
	}

	var mu sync.Mutex
	visited := map[string]bool{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		mu.Lock()
		visited[m.Options().Addr] = true
		mu.Unlock()
		return m.Ping(ctx).Err()
	})
	if err != nil {
		t.Fatalf("ForEachMaster: %v", err)
	}
	if len(visited) != 3 {
		t.Fatalf("ForEachMaster visited %v, want 3 masters", visited)
	}
	for _, a := range c.Addrs {
		if !visited[a] {
			t.Fatalf("ForEachMaster visited %v, missing %s", visited, a)
		}
	}
}

func TestFreePortCluster(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for i := 0; i < 20; i++ {
		p, err := freePort(true)
		if err != nil {
			t.Fatal(err)
		}
		if p >= maxClusterPort || p == reservedPort || seen[p] {
			t.Fatalf("freePort(true) = %d (seen=%v)", p, seen[p])
		}
		seen[p] = true
	}
}

// fakeTB records Skip/Fatal instead of acting on the real test.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	skipped string
	fataled string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skip(args ...any) {
	f.mu.Lock()
	f.skipped = fmt.Sprint(args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Fatal(args ...any) {
	f.mu.Lock()
	f.fataled = fmt.Sprint(args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func runFake(t *testing.T, fn func(testing.TB)) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

func TestRequireRedisMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())

	t.Setenv(requireEnv, "")
	f := runFake(t, func(tb testing.TB) { RequireRedis(tb) })
	if !strings.HasPrefix(f.skipped, "redis-server not found: ") || f.fataled != "" {
		t.Fatalf("without %s: skipped=%q fataled=%q", requireEnv, f.skipped, f.fataled)
	}
	f = runFake(t, func(tb testing.TB) { Start(tb) })
	if !strings.HasPrefix(f.skipped, "redis-server not found: ") {
		t.Fatalf("Start without redis-server: skipped=%q fataled=%q", f.skipped, f.fataled)
	}

	t.Setenv(requireEnv, "1")
	f = runFake(t, func(tb testing.TB) { RequireRedis(tb) })
	if !strings.HasPrefix(f.fataled, "redis-server not found: ") || f.skipped != "" {
		t.Fatalf("with %s=1: skipped=%q fataled=%q", requireEnv, f.skipped, f.fataled)
	}
	f = runFake(t, func(tb testing.TB) { StartCluster(tb, 3) })
	if !strings.HasPrefix(f.fataled, "redis-server not found: ") {
		t.Fatalf("StartCluster with %s=1: skipped=%q fataled=%q", requireEnv, f.skipped, f.fataled)
	}
}

func TestRequireRedisFound(t *testing.T) {
	if p := RequireRedis(t); !strings.HasSuffix(p, "redis-server") {
		t.Fatalf("RequireRedis = %q", p)
	}
}
