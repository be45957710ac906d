package dashboard_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/client/dashboard"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// TestTransitionsMissedWhileResubscribingAreReadAtOnce: the bulk read runs
// once an hour here, so only the read after the subscription is back can
// show a transition made while the dashboard was not subscribed.
func TestTransitionsMissedWhileResubscribingAreReadAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	if err := rdb.SAdd(ctx, "circuit_breaker:registry", "payments").Err(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	d, err := dashboard.New(rdb, dashboard.WithInterval(time.Hour), dashboard.WithLogger(logs.logger()))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(runCtx) }()
	defer func() { stop(); <-done }()
	waitHealthy(t, d)

	if err := rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	forceOpen(t, rdb, "payments") // announced to nobody
	deadline := time.Now().Add(10 * time.Second)
	for {
		h := d.Health()
		row := rowOf(t, d, "payments")
		if h.OK && strings.Contains(row, `"mode":"forced_open"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("payments after resubscribing: %s; health %+v; logs:\n%s", row, h, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "subscribing again") {
		t.Errorf("the lost subscription was not logged:\n%s", logs)
	}
}
