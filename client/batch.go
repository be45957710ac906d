package client

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
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
	sent       chan struct{} // closed once sent, when someone waits for it
}

// group returns o as the record operation's six-field group OUTCOME GEN
// LEASE ERROR DURATION_MS RETRY_AFTER_MS: the one place every sender
// builds it.
func (o outcome) group() []string {
	d, r := "", ""
	if o.durationMs >= 0 {
		d = strconv.FormatInt(min(o.durationMs, breakerbox.MaxConfigMs), 10)
	}
	if o.retryMs > 0 {
		r = strconv.FormatInt(min(o.retryMs, breakerbox.MaxConfigMs), 10)
	}
	return []string{o.kind, strconv.FormatInt(o.gen, 10), o.lease, o.err, d, r}
}

// maxBatch bounds how many outcomes one record call carries.
const maxBatch = 256

// batcher sends a worker's outcomes to Redis in the order they were
// reported, as many as have queued up in one record call, one call in
// flight at a time. Successes do not wait for it; a failure waits until its
// batch has been applied (one round trip, shared by every failure in the
// batch), so that a worker learns of a trip before its next call.
type batcher struct {
	b          *Breaker
	mu         sync.Mutex
	cond       *sync.Cond // signalled when work arrives, work is done, or on close
	pending    []outcome
	spare      []outcome // the last drained buffer, reused by add
	refused    int64
	queued     uint64 // outcomes and refusals ever queued
	done       uint64 // of those, sent (or given up on)
	running    bool
	closed     bool
	timerSet   bool // a send of refusals alone is scheduled
	unrecorded atomic.Int64
	exited     chan struct{}
}

func newBatcher(b *Breaker) *batcher {
	q := &batcher{b: b}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// maxPending bounds the outcomes waiting to be sent: past it add waits, so
// a worker that reports faster than Redis applies outcomes is held to
// Redis's pace instead of queueing without bound, and a failure never waits
// behind more than a few batches of successes.
const maxPending = 4 * maxBatch

func (q *batcher) add(o outcome) {
	q.mu.Lock()
	for len(q.pending) >= maxPending && q.running && !q.closed {
		q.cond.Wait()
	}
	q.pending = append(q.pending, o)
	q.queued++
	q.wakeLocked()
	q.mu.Unlock()
}

// refusedEvery is how often refusals made from the worker's view are sent
// when no outcome carries them earlier: they feed metrics, not decisions, so
// an open breaker costs its workers no round trip per refused call.
const refusedEvery = 100 * time.Millisecond

// refuse counts a call the worker refused from its view.
func (q *batcher) refuse() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.refused++
	q.queued++
	if !q.timerSet && !q.closed {
		q.timerSet = true
		time.AfterFunc(refusedEvery, func() {
			q.mu.Lock()
			q.timerSet = false
			q.wakeLocked()
			q.mu.Unlock()
		})
	}
}

func (q *batcher) wakeLocked() {
	if !q.running && !q.closed {
		q.running = true
		q.exited = make(chan struct{})
		go q.loop()
	}
	q.cond.Broadcast()
}

func (q *batcher) loop() {
	defer close(q.exited)
	q.mu.Lock()
	for {
		for len(q.pending) == 0 && q.refused == 0 {
			if q.closed {
				q.running = false
				q.mu.Unlock()
				return
			}
			q.cond.Wait()
		}
		// Take the whole queue and give add the spare buffer (taking
		// batches off the front of one slice made append copy the rest of
		// a long queue again and again).
		work, buf := q.pending, q.pending
		q.pending, q.spare = q.spare[:0], nil
		refused := q.refused
		q.refused = 0
		q.cond.Broadcast() // room for producers waiting in add
		q.mu.Unlock()

		for len(work) > 0 || refused > 0 {
			n := min(len(work), maxBatch)
			batch := work[:n:n]
			work = work[n:]
			q.send(batch, refused)
			for _, o := range batch {
				if o.sent != nil {
					close(o.sent)
				}
			}
			q.mu.Lock()
			q.done += uint64(n) + uint64(refused)
			q.cond.Broadcast()
			q.mu.Unlock()
			refused = 0
		}
		clear(buf) // drop the strings and channels it holds
		q.mu.Lock()
		q.spare = buf[:0]
	}
}

func (q *batcher) send(batch []outcome, refused int64) {
	b := q.b
	if b.outage.active() {
		if local := b.outage.current(); local != nil {
			for _, o := range batch {
				local.record(outcome{kind: o.kind, gen: -1, err: o.err, durationMs: o.durationMs, retryMs: o.retryMs}) // see localBreaker.record
			}
		}
		q.unrecorded.Add(int64(len(batch)))
		return
	}
	args := make([]any, 0, 2+6*len(batch))
	args = append(args, "record", refused)
	for _, o := range batch {
		for _, f := range o.group() {
			args = append(args, f)
		}
	}
	res, err := b.eval(b.ctx, args...)
	if err != nil {
		if b.ctx.Err() == nil {
			b.outage.begin(b, err)
		}
		q.unrecorded.Add(int64(len(batch)))
		b.log.Warn("circuit breaker outcomes not recorded", "count", len(batch), "err", err)
		return
	}
	if r, err := breakerbox.ParseRecordReply(res); err == nil {
		b.observe(r.Announcement, fromRecordReply)
	} else {
		b.log.Warn("circuit breaker ignored a malformed record reply", "err", err)
	}
}

// flush waits until everything queued before the call has been sent.
func (q *batcher) flush(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	target := q.queued
	if q.done < target {
		q.wakeLocked() // refusals may be waiting for their timer
	}
	for q.done < target && q.running {
		if err := ctx.Err(); err != nil {
			return err
		}
		q.cond.Wait()
	}
	return nil
}

// close ends the loop once the queue is empty.
func (q *batcher) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	exited := q.exited
	q.mu.Unlock()
	if exited != nil {
		<-exited
	}
}
