package client_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
)

// changes collects what a state-change hook is given.
type changes struct {
	mu   sync.Mutex
	list []client.StateChange
}

func (c *changes) hook(s client.StateChange) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, s)
}

func (c *changes) get() []client.StateChange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]client.StateChange(nil), c.list...)
}

// describe prints changes as "from>to:cause".
func describe(cs []client.StateChange) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s>%s:%s", c.From, c.To, c.Cause)
	}
	return strings.Join(parts, " ")
}

func TestStateChangeHookSeesEveryTransitionInOrder(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		var got changes
		b := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a), client.WithOnStateChange(got.hook))
		_ = run(t, b, ok)
		start := status(t, b).Transitions
		tripAndWait(t, e, b)
		for i := 0; i < 2; i++ { // two probe successes close it
			if err := run(t, b, ok); err != nil {
				t.Fatalf("probe %d: %v", i, err)
			}
		}
		if st := status(t, b); st.State != breakerbox.StateClosed || st.Transitions != start+3 {
			t.Fatalf("after recovery: %+v", st)
		}
		eventually(t, "three changes", func() bool { return len(got.get()) >= 3 })
		if err := b.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		cs := got.get()
		if d := describe(cs); d != "closed>open:opened open>half_open:half_opened half_open>closed:closed" {
			t.Fatalf("changes %s", d)
		}
		prev := int64(0)
		for i, c := range cs {
			if c.Name != name || c.Generation <= prev || c.Mode != breakerbox.ModeNormal {
				t.Errorf("change %d: %+v, want a generation after %d, mode normal", i, c, prev)
			}
			prev = c.Generation
		}
	})
}

func TestStateChangeHookNamesOperatorActions(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		var got changes
		b := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a), client.WithOnStateChange(got.hook))
		_ = run(t, b, ok)
		control(t, b, breakerbox.ActionForceOpen)
		_ = run(t, b, ok) // a Strict worker learns from its next call's reply
		control(t, b, breakerbox.ActionRelease)
		_ = run(t, b, ok) // the probe
		control(t, b, breakerbox.ActionReset)
		_ = run(t, b, ok)
		eventually(t, "three changes", func() bool { return len(got.get()) >= 3 })
		_ = b.Shutdown(context.Background())
		// Fast learns from announcements, Strict from its next allow's reply;
		// the event names come from the history.
		want := "closed>open:forced_open open>half_open:released half_open>closed:reset"
		if cs := got.get(); describe(cs) != want {
			t.Errorf("changes %s, want %s\n%+v", describe(cs), want, cs)
		}
	})
}

func TestSlowStateChangeHookNeverHoldsUpCallers(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	release := make(chan struct{})
	var got changes
	hook := func(c client.StateChange) {
		<-release // a hook stuck until the test lets it go
		got.hook(c)
	}
	cfg := quickConfig()
	cfg.FailureThreshold = 1
	b := newBreaker(t, rdb, "slow-hook", cfg, client.WithAdmission(client.AdmitStrict), client.WithOnStateChange(hook))
	const cycles = 100
	for i := 0; i < cycles; i++ { // 200 transitions while the hook is stuck on the first
		if err := run(t, b, fail); err != errBoom {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if _, err := admin.Control(ctx, rdb, "slow-hook", breakerbox.ActionReset, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if err := run(t, b, ok); err != nil { // learns of the last reset
		t.Fatal(err)
	}
	close(release)
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	cs := got.get()
	if len(cs) > 66 || len(cs) < 2 {
		t.Fatalf("hook given %d changes, want the queue's 64 (+1 in the hook) at most", len(cs))
	}
	merged := 0
	for i, c := range cs {
		if i > 0 && c.From != cs[i-1].To {
			t.Errorf("change %d starts from %s, the previous ended in %s: the chain is broken", i, c.From, cs[i-1].To)
		}
		if c.Cause == "observed" {
			merged++
		}
	}
	last := cs[len(cs)-1]
	if st := status(t, b); last.To != st.State || last.Generation != st.Generation {
		t.Errorf("last change %+v, breaker is %s at generation %d", last, st.State, st.Generation)
	}
	if merged == 0 {
		t.Error("no change merged although the hook was stuck for 200 transitions")
	}
}

func TestStateChangeHookPanicIsLoggedAndHookKeepsRunning(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	var logs logBuffer
	var got changes
	hook := func(c client.StateChange) {
		got.hook(c)
		if c.To == breakerbox.StateOpen {
			panic("hook bug")
		}
	}
	cfg := quickConfig()
	cfg.FailureThreshold = 1
	b := newBreaker(t, rdb, "panicky", cfg, client.WithAdmission(client.AdmitStrict),
		client.WithOnStateChange(hook), client.WithLogger(logs.logger()))
	_ = run(t, b, ok)
	_ = run(t, b, fail)
	mr.SetTime(time.Now().Add(time.Second)) // past the recovery timeout
	_ = run(t, b, ok)
	_ = b.Shutdown(context.Background())
	if d := describe(got.get()); d != "closed>open:opened open>half_open:half_opened" {
		t.Errorf("changes %s", d)
	}
	if n := logs.count("circuit breaker state change hook panicked"); n != 1 {
		t.Errorf("panic logged %d times, want once", n)
	}
}

func TestStateChangeHookFollowsTheLocalFallback(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	var got changes
	b := newBreaker(t, rdb, "fallback", quickConfig(), client.WithAdmission(client.AdmitStrict),
		client.WithRedisTimeout(redisTimeout), client.WithOnStateChange(got.hook))
	if err := b.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = run(t, b, ok)
	mr.Close()
	_ = b.Execute(context.Background(), ok) // learns of the outage
	for i := 0; i < 3; i++ {
		_ = b.Execute(context.Background(), fail)
	}
	if !b.Stats().Outage || b.State() != breakerbox.StateOpen {
		t.Fatalf("outage %v, state %s: want the local fallback open", b.Stats().Outage, b.State())
	}
	_ = b.Shutdown(context.Background())
	cs := got.get()
	if d := describe(cs); d != "closed>open:opened" {
		t.Fatalf("changes %s, want the local opening", d)
	}
}
