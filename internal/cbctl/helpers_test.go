package cbctl

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/client"
)

// result is what one cbctl invocation produced.
type result struct {
	code           int
	stdout, stderr string
}

// cbctl runs Run with args and the given environment.
func cbctl(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	return cbctlCtx(t, context.Background(), env, args...)
}

func cbctlCtx(t *testing.T, ctx context.Context, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(ctx, args, &out, &errOut, func(k string) string { return env[k] })
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// startMini starts a miniredis and returns it with the REDIS_URL
// environment that points cbctl at it.
func startMini(t *testing.T) (*miniredis.Miniredis, redis.UniversalClient, map[string]string) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return mr, rdb, map[string]string{"REDIS_URL": "redis://" + mr.Addr() + "/0", "USER": "alice"}
}

// breaker makes breaker name known in rdb (registered with cfg) and
// records the outcomes given: 's' success, 'f' failure.
func breaker(t *testing.T, rdb redis.UniversalClient, name string, cfg client.Config, outcomes string) {
	t.Helper()
	ctx := context.Background()
	// Its Shutdown returns once none of its calls can reach Redis any
	// more, so the corruptions a test writes next are not overwritten.
	hub := testHub(t, rdb)
	defer func() {
		if err := hub.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
	}()
	b, err := hub.New(name, cfg, client.WithAdmission(client.AdmitStrict))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := rdb.SAdd(ctx, "circuit_breaker:registry", name).Err(); err != nil {
		t.Fatal(err)
	}
	for i, o := range outcomes {
		p, err := b.Allow(ctx)
		if err != nil {
			t.Fatalf("breaker %s: outcome %d (%c): allow: %v", name, i, o, err)
		}
		if o == 's' {
			err = p.Success(ctx)
		} else {
			err = p.Failure(ctx, errors.New("upstream timeout"))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// testHub returns a Hub on rdb with a Redis timeout far above the
// default 250ms: on a loaded test machine a script call may take longer,
// and a breaker would then follow its outage policy instead of, say,
// opening in Redis. The caller shuts it down.
func testHub(t *testing.T, rdb redis.UniversalClient) *client.Hub {
	t.Helper()
	hub, err := client.NewHub(rdb, client.WithRedisTimeout(5*time.Second),
		client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	return hub
}

func quickConfig() client.Config {
	return client.Config{FailureThreshold: 3, RecoveryTimeout: 30 * time.Second, SuccessThreshold: 2,
		RequestTimeout: 45 * time.Second}
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
