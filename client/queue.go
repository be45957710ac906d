package client

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/breakerbox/breakerbox"
)

// outcome is one reported call, as the record operation takes it.
type outcome struct {
	kind       string // s, f or r
	gen        int64
	lease      string
	err        string
	durationMs int64         // how long the call took; -1: unknown
	retryMs    int64         // a failure's retry-after; 0: none
	sent       chan struct{} // closed once applied (or given up on), when someone waits for it
}

// group returns o as the record operation's six-field group OUTCOME GEN
// LEASE ERROR DURATION_MS RETRY_AFTER_MS: the one place every sender (the
// Hub's sender, AdmitStrict's recordNow, the outage's local fallback)
// builds it.
func (o outcome) group() [6]string {
	d, r := "", ""
	if o.durationMs >= 0 {
		d = strconv.FormatInt(min(o.durationMs, breakerbox.MaxConfigMs), 10)
	}
	if o.retryMs > 0 {
		r = strconv.FormatInt(min(o.retryMs, breakerbox.MaxConfigMs), 10)
	}
	return [6]string{o.kind, strconv.FormatInt(o.gen, 10), o.lease, o.err, d, r}
}

// maxBatch bounds how many outcomes one record call carries.
const maxBatch = 256

// maxPending bounds the outcomes of one breaker waiting to be sent: past
// it a reporter waits (at most the Redis timeout), so a worker that reports
// faster than Redis applies outcomes is held to Redis's pace instead of
// queueing without bound, and a failure never waits behind more than a few
// batches of successes.
const maxPending = 4 * maxBatch

// refusedEvery is how often refusals made from the worker's view are sent
// when no outcome carries them earlier: they feed metrics, not decisions,
// so an open breaker costs its workers no round trip per refused call.
const refusedEvery = 100 * time.Millisecond

// queue holds one breaker's outcomes until the Hub's sender takes them, in
// report order, at most one record call in flight per breaker.
type queue struct {
	mu       sync.Mutex
	pending  []outcome
	spare    []outcome // the last drained buffer, reused
	refused  int64     // refusals from the view, not yet sent
	tally    counts    // decided during an outage, not yet tallied
	queued   uint64    // outcomes and refusals ever queued
	done     uint64    // of those, sent or given up on
	inflight bool      // a record of this breaker is in flight
	tallying int64     // units of tally in flight
	dirty    bool      // in the sender's list of breakers with work
	lazy     bool      // in the sender's list of refusals to send within refusedEvery
	changed  chan struct{}
}

// counts are successes, failures and refusals decided during an outage.
type counts struct{ s, f, r int64 }

func (c counts) total() int64 { return c.s + c.f + c.r }

func (q *queue) init() { q.changed = make(chan struct{}) }

// signalLocked wakes every waiter (room, flush).
func (q *queue) signalLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// add queues o for b, waiting at most the Redis timeout for room: past
// it o is queued anyway (a Redis that stopped answering is found out by
// the sender, whose pipeline then outlives the timeout). It returns false
// when b's node went down meanwhile; the caller then counts o as an
// outage outcome.
func (q *queue) add(b *Breaker, o outcome) bool {
	var deadline time.Time
	q.mu.Lock()
	for len(q.pending) >= maxPending {
		if deadline.IsZero() {
			deadline = time.Now().Add(b.o.redisTimeout)
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			break // queued anyway
		}
		ch := q.changed
		q.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
		if b.nodeOf().down.Load() {
			return false
		}
		q.mu.Lock()
	}
	q.pending = append(q.pending, o)
	q.queued++
	wake := !q.dirty && !q.inflight
	if wake {
		q.dirty = true
	}
	q.mu.Unlock()
	if wake {
		b.h.send.push(b)
	}
	return true
}

// refuse counts a call b refused from its view.
func (q *queue) refuse(b *Breaker) {
	q.mu.Lock()
	q.refused++
	q.queued++
	lazy := !q.dirty && !q.lazy && !q.inflight
	if lazy {
		q.lazy = true
	}
	q.mu.Unlock()
	if lazy {
		b.h.send.pushLazy(b)
	}
}

// addTally counts outcomes and refusals decided during an outage, to be
// added to the breaker's totals once Redis answers again.
func (q *queue) addTally(b *Breaker, c counts) {
	q.mu.Lock()
	q.tally.s += c.s
	q.tally.f += c.f
	q.tally.r += c.r
	wake := !b.nodeOf().down.Load() && !q.dirty && !q.inflight
	if wake {
		q.dirty = true
	}
	q.mu.Unlock()
	if wake {
		b.h.send.push(b)
	}
}

// flush waits until everything queued before the call has been sent or
// given up on and, while the node answers, until the tally is sent.
func (q *queue) flush(ctx context.Context, b *Breaker) error {
	q.mu.Lock()
	target := q.queued
	for {
		down := b.nodeOf().down.Load()
		if q.done >= target && (down || q.tally.total() == 0 && q.tallying == 0) {
			q.mu.Unlock()
			return nil
		}
		if !q.dirty && !q.inflight {
			q.dirty = true
			q.lazy = false
			q.mu.Unlock()
			b.h.send.push(b)
			q.mu.Lock()
			continue
		}
		ch := q.changed
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.h.ctx.Done():
			return nil
		case <-time.After(refusedEvery):
		}
		q.mu.Lock()
	}
}

// waitSent waits for o to be applied, at most budget.
func waitSent(b *Breaker, o outcome, budget time.Duration) {
	t := time.NewTimer(budget)
	defer t.Stop()
	select {
	case <-o.sent:
	case <-t.C:
		if budget >= b.o.redisTimeout {
			b.nodeOf().begin(&StallError{Op: "record", After: budget})
		}
	case <-b.h.ctx.Done():
	}
}
