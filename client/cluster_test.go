package client_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// TestAStalledMasterCostsOnlyItsOwnBreakers: on a Redis Cluster each
// master is an outage domain. With one master stopped by SIGSTOP under
// load, the breakers in its slots follow their outage policy (callers
// waiting at most the Redis timeout, plus stallMargin on a loaded
// machine), while callers of breakers on the other masters never wait as
// long as the Redis timeout (they would if anything of theirs waited for
// the stalled master) and never leave Redis. The Redis timeout is a
// second so that both bounds leave room for a loaded machine, and the
// stall lasts three seconds so that a caller left to go-redis's read
// timeout or to the stall itself is caught.
func TestAStalledMasterCostsOnlyItsOwnBreakers(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	cc := cl.Client(t)
	ctx := context.Background()
	const timeout = time.Second
	victim := cl.Addrs[0]
	var onVictim, elsewhere []*client.Breaker
	for i := 0; len(onVictim) < 4 || len(elsewhere) < 8; i++ {
		name := fmt.Sprintf("slot-%03d", i)
		m, err := cc.MasterForKey(ctx, breakerbox.Key(name, "state"))
		if err != nil {
			t.Fatal(err)
		}
		switch addr := m.Options().Addr; {
		case addr == victim && len(onVictim) < 4:
			onVictim = append(onVictim, newBreaker(t, cc, name, quickConfig(), client.WithRedisTimeout(timeout)))
		case addr != victim && len(elsewhere) < 8:
			elsewhere = append(elsewhere, newBreaker(t, cc, name, quickConfig(), client.WithRedisTimeout(timeout)))
		}
	}
	all := append(append([]*client.Breaker(nil), onVictim...), elsewhere...)
	for _, b := range all {
		if err := b.Ready(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var healthy, onStalled maxLatency
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, b := range all {
		lat := &healthy
		if b.Hub() != all[0].Hub() {
			t.Fatal("breakers of one cluster client on several Hubs")
		}
		for _, v := range onVictim {
			if v == b {
				lat = &onStalled
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				fn := ok
				if i%5 == 2 {
					fn = fail // failures wait for their batch
				}
				lat.time("Execute "+b.Name(), func() { _ = b.Execute(ctx, fn) })
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	stalled := time.Now()
	resume := cl.Node(victim).Pause(t, 10*time.Second)
	eventually(t, "the stalled master's breakers to follow their outage policy", func() bool {
		for _, b := range onVictim {
			if !b.Stats().Outage {
				return false
			}
		}
		return true
	})
	sawOutage := false
	for deadline := stalled.Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, b := range elsewhere {
			sawOutage = sawOutage || b.Stats().Outage
		}
	}
	resume()
	eventually(t, "the outage to end", func() bool {
		for _, b := range onVictim {
			if b.Stats().Outage {
				return false
			}
		}
		return true
	})
	stop.Store(true)
	wg.Wait()
	t.Logf("healthy masters: %d calls, longest %s; stalled master: %d calls, longest %s",
		healthy.calls, healthy.max, onStalled.calls, onStalled.max)
	if sawOutage {
		t.Error("a breaker on a healthy master followed its outage policy")
	}
	if healthy.max >= timeout {
		t.Errorf("a caller of a breaker on a healthy master waited %s (%s) while another master was stalled", healthy.max, healthy.what)
	}
	if onStalled.max > timeout+stallMargin {
		t.Errorf("a caller of a breaker on the stalled master waited %s, want at most the %s timeout + %s", onStalled.max, timeout, stallMargin)
	}
	for _, b := range all {
		if err := b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
