package client

import (
	"context"
	"fmt"
	"log/slog"
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

// maxPendingChanges bounds the changes waiting for a slow hook.
const maxPendingChanges = 64

// notifier hands state changes to the hook on its own goroutine, in order,
// through a bounded queue (see WithOnStateChange).
type notifier struct {
	hook    func(StateChange)
	log     *slog.Logger
	lookup  func(StateChange) string // names a causeLookup change from the history
	mu      sync.Mutex
	cond    *sync.Cond // signalled when the queue empties
	queue   []StateChange
	running bool
}

func newNotifier(hook func(StateChange), log *slog.Logger) *notifier {
	n := &notifier{hook: hook, log: log}
	n.cond = sync.NewCond(&n.mu)
	return n
}

// push queues c; past maxPendingChanges it merges c into the last change
// waiting. It never blocks on the hook.
func (n *notifier) push(c StateChange) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.queue) >= maxPendingChanges {
		last := &n.queue[len(n.queue)-1]
		last.To, last.Mode, last.Generation, last.Cause = c.To, c.Mode, c.Generation, "observed"
		return
	}
	n.queue = append(n.queue, c)
	if !n.running {
		n.running = true
		go n.run()
	}
}

func (n *notifier) run() {
	for {
		n.mu.Lock()
		if len(n.queue) == 0 {
			n.running = false
			n.cond.Broadcast()
			n.mu.Unlock()
			return
		}
		c := n.queue[0]
		n.queue = n.queue[1:]
		n.mu.Unlock()
		if c.Cause == causeLookup {
			c.Cause = "observed"
			if n.lookup != nil {
				c.Cause = n.lookup(c)
			}
		}
		n.call(c)
	}
}

func (n *notifier) call(c StateChange) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("circuit breaker state change hook panicked", "panic", fmt.Sprint(r))
		}
	}()
	n.hook(c)
}

// drain waits until every change queued so far has been given to the hook.
func (n *notifier) drain(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		n.mu.Lock()
		n.cond.Broadcast()
		n.mu.Unlock()
	})
	defer stop()
	n.mu.Lock()
	defer n.mu.Unlock()
	for n.running {
		if err := ctx.Err(); err != nil {
			return err
		}
		n.cond.Wait()
	}
	return nil
}

// historyCause reads the event name of change c from the breaker's
// history: the newest entry of c's generation that is a transition.
func (b *Breaker) historyCause(c StateChange) string {
	if b.outage.active() {
		return "observed"
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.o.redisTimeout)
	defer cancel()
	raw, err := b.rdb.LRange(ctx, breakerbox.Key(b.name, "history"), 0, 9).Result()
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
