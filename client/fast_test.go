package client_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// evalshaCalls reads how many EVALSHA commands the server has run.
func evalshaCalls(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

func TestFastWorkersLearnOfATripAndRefuseWithoutRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	admin := srv.Client(t)
	a := newBreaker(t, srv.Client(t), "fleet", quickConfig())
	b := newBreaker(t, srv.Client(t), "fleet", quickConfig())
	for _, w := range []*client.Breaker{a, b} {
		if err := w.Ready(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Closed: b admits from its view, without asking Redis.
	before := evalshaCalls(t, admin)
	for i := 0; i < 50; i++ {
		p, err := b.Allow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = p.Ignore(ctx)
	}
	if d := evalshaCalls(t, admin) - before; d != 0 {
		t.Errorf("50 closed-state admissions made %d EVALSHA calls, want 0", d)
	}

	for i := 0; i < 3; i++ {
		_ = run(t, a, fail)
	}
	eventually(t, "worker b to learn of the trip", func() bool {
		_, err := b.Allow(ctx)
		return errors.Is(err, client.ErrOpen)
	})
	before = evalshaCalls(t, admin)
	for i := 0; i < 100; i++ {
		if _, err := b.Allow(ctx); !errors.Is(err, client.ErrOpen) {
			t.Fatalf("refusal %d: %v", i, err)
		}
	}
	if d := evalshaCalls(t, admin) - before; d > 2 {
		t.Errorf("100 refusals made %d EVALSHA calls, want at most 2 (the batched refusal count)", d)
	}
	_ = b.Flush(ctx)
	if st := status(t, a); st.TotalRefused < 100 {
		t.Errorf("total refused %d, want the 100 local refusals counted", st.TotalRefused)
	}
	// After the recovery timeout, b asks the script and gets a probe.
	time.Sleep(quickConfig().RecoveryTimeout)
	p, err := b.Allow(ctx)
	if err != nil || !p.Probe() {
		t.Fatalf("after the recovery timeout: %v", err)
	}
	_ = p.Success(ctx)
}
