package client

import (
	"context"
	"fmt"
	"sync"

	"github.com/breakerbox/breakerbox"
)

// StateChange is a change of a breaker's state or mode, or a transition
// that kept both (a reset of a closed breaker), as one handle learned of
// it: from its own replies, the script's announcements (AdmitFast), a
// status read after a reconnection or an outage, or the in-process
// fallback during an outage. See WithOnStateChange.
type StateChange struct {
	// Name is the breaker's name.
	Name string
	// From and To are the states before and after.
	From, To breakerbox.State
	// Mode is the mode after the change.
	Mode breakerbox.Mode
	// Generation is the breaker's generation after the change: Redis's,
	// or during an outage the in-process fallback's own count (which
	// starts again at 0 and does not compare with Redis's).
	Generation int64
	// Cause is the transition's event name when the handle knows it
	// (opened, half_opened, closed, reset, forced_open, disabled,
	// released, ...: docs/protocol.md, "Events"), else "observed": several
	// transitions seen at once, a switch between Redis and the in-process
	// fallback, or an operator action whose history entry could not be
	// read.
	Cause string
}

// maxPendingChanges bounds the changes of one breaker waiting for a slow hook.
const maxPendingChanges = 64

// notifier hands state changes to the hooks on one goroutine of the Hub
// (started while changes wait, gone when none do), in order, through a
// queue bounded per breaker (see WithOnStateChange).
type notifier struct {
	h       *Hub
	mu      sync.Mutex
	queue   []change
	waiting map[*Breaker]int
	running bool
	idle    chan struct{} // closed when the queue empties
}

type change struct {
	b *Breaker
	c StateChange
}

func (n *notifier) init(h *Hub) {
	n.h = h
	n.waiting = map[*Breaker]int{}
	n.idle = make(chan struct{})
	close(n.idle)
}

// push queues b's change c; past maxPendingChanges of b it merges c into
// b's last change waiting. It never blocks on the hook.
func (n *notifier) push(b *Breaker, c StateChange) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.waiting[b] >= maxPendingChanges {
		for i := len(n.queue) - 1; i >= 0; i-- {
			if last := &n.queue[i]; last.b == b {
				last.c.To, last.c.Mode, last.c.Generation, last.c.Cause = c.To, c.Mode, c.Generation, "observed"
				return
			}
		}
	}
	n.queue = append(n.queue, change{b, c})
	n.waiting[b]++
	if !n.running {
		n.running = true
		n.idle = make(chan struct{})
		go n.run()
	}
}

func (n *notifier) run() {
	for {
		n.mu.Lock()
		if len(n.queue) == 0 {
			n.running = false
			close(n.idle)
			n.mu.Unlock()
			return
		}
		ch := n.queue[0]
		n.queue = n.queue[1:]
		if n.waiting[ch.b]--; n.waiting[ch.b] == 0 {
			delete(n.waiting, ch.b)
		}
		n.mu.Unlock()
		c := ch.c
		if c.Cause == causeLookup {
			c.Cause = ch.b.historyCause(c)
		}
		call := ch.b.o.onStateChange
		func() {
			defer func() {
				if r := recover(); r != nil {
					ch.b.logf(errorLevel, "circuit breaker state change hook panicked", "panic", fmt.Sprint(r))
				}
			}()
			call(c)
		}()
	}
}

// drain waits until every change queued so far has been given to its hook.
func (n *notifier) drain(ctx context.Context) error {
	n.mu.Lock()
	idle := n.idle
	n.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// historyCause reads the event name of change c from the breaker's
// history: the newest entry of c's generation that is a transition.
func (b *Breaker) historyCause(c StateChange) string {
	if b.nodeOf().down.Load() {
		return "observed"
	}
	raw, err := call(b.h.ctx, b.h, "LRANGE history", b.o.redisTimeout, func(ctx context.Context) ([]string, error) {
		return b.h.rdb.LRange(ctx, breakerbox.Key(b.name, "history"), 0, 9).Result()
	}, nil)
	if err != nil {
		return "observed"
	}
	for _, r := range raw {
		if e := breakerbox.ParseEvent(r); e.Generation == c.Generation && e.Event != "config_changed" && e.Event != "unreadable" {
			return e.Event
		}
	}
	return "observed"
}
