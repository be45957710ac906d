package alerts

import (
	"context"
	"testing"
	"time"
)

// TestTheQueueHandsABreakerToOneGoroutineAtATime: a breaker queued again
// while being delivered waits until that delivery is done; other breakers
// are handed out meanwhile, in the order they were queued.
func TestTheQueueHandsABreakerToOneGoroutineAtATime(t *testing.T) {
	q := newQueue()
	ctx := context.Background()
	q.push("alpha")
	if name, ok := q.pop(ctx); !ok || name != "alpha" {
		t.Fatalf("pop = %q, %v", name, ok)
	}
	q.push("alpha") // announced again while being delivered
	q.push("beta")
	q.push("beta") // once in the queue at most
	if name, ok := q.pop(ctx); !ok || name != "beta" {
		t.Fatalf("pop = %q, %v; want beta (alpha is being delivered)", name, ok)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if name, ok := q.pop(short); ok {
		t.Fatalf("pop = %q while alpha is busy and beta queued once; want nothing", name)
	}
	got := make(chan string, 1)
	go func() {
		name, _ := q.pop(ctx)
		got <- name
	}()
	q.done("alpha")
	select {
	case name := <-got:
		if name != "alpha" {
			t.Fatalf("pop after done = %q, want alpha", name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a pop waiting for alpha was not woken by done")
	}
}
