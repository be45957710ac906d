package client

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/bounded"
	"github.com/breakerbox/breakerbox/internal/knobs"
)

// Strict admission asks the script twice per call (allow, then record).
// Sent one EVALSHA each, concurrent calls cost Redis two round trips of
// system calls apiece on top of the scripts. strictBatch coalesces them
// per node instead, with no timer: a script call goes out at once, in a
// pipeline of its own, when fewer than maxStrictInFlight pipelines of its
// node are in flight; calls that arrive meanwhile wait and go together in
// the next pipeline, sent as soon as one in flight ends. A lone caller
// thus waits one round trip as before, and many callers share round trips.
//
// Each call still runs through call (bounded by its Redis timeout, its
// late reply handled by its late function as before): evalStrict only
// replaces the EVALSHA inside it. Every script call is sent once, like an
// EVALSHA of its own (h.pipeline: NoRetry commands, NOSCRIPT reloaded).
// Durable breakers keep their own connection (they WAIT on it) and Fast
// breakers their sender: neither comes here.
type strictBatch struct {
	mu       sync.Mutex
	pending  []*strictCall
	inflight int
}

// beforeNextPipeline, when set (by tests only), runs in free between
// taking the pending calls and starting their pipeline: it widens the
// window in which a Shutdown refuses that start.
var beforeNextPipeline func()

// maxStrictInFlight bounds the pipelines of Strict calls in flight per
// node: two, so that a call arriving while one is in flight need not wait
// for it when the other slot is free.
const maxStrictInFlight = 2

// strictCall is one script call waiting for its pipeline.
type strictCall struct {
	ctx  context.Context // bounded by the caller's Redis timeout (call)
	keys []string
	args []any
	res  any
	err  error
	done chan struct{}
}

// evalStrict runs one operation of breaker-8.lua for b like evalConn, in
// a pipeline shared with the node's other Strict calls (strictBatch).
// Like evalConn it bounds nothing by itself: callers run it through call.
func (b *Breaker) evalStrict(ctx context.Context, args ...any) (connReply, error) {
	if b.fast || b.durable() || knobs.NoStrictBatch.Load() {
		return b.evalConn(ctx, args...)
	}
	c := &strictCall{ctx: ctx, keys: b.keys, args: args, done: make(chan struct{})}
	b.nodeOf().strict.add(b.h, c)
	<-c.done
	return connReply{res: c.res}, c.err
}

// add sends c at once in a pipeline of its own (with any calls still
// pending) when a slot is free; otherwise c waits for the next pipeline.
func (s *strictBatch) add(h *Hub, c *strictCall) {
	s.mu.Lock()
	s.pending = append(s.pending, c)
	if s.inflight >= maxStrictInFlight {
		s.mu.Unlock()
		return // sent by the pipeline in flight that ends first
	}
	calls := s.take()
	s.mu.Unlock()
	s.send(h, calls)
}

// take empties the pending calls into a pipeline in flight; s.mu is held.
func (s *strictBatch) take() []*strictCall {
	calls := s.pending
	s.pending = nil
	s.inflight++
	return calls
}

// send runs calls in one pipeline and answers each, then frees its slot
// (free). The slot is freed early when every caller of the pipeline has
// stopped waiting for it (runStrict): a pipeline stuck on a dead
// connection must not hold up the node's later calls.
func (s *strictBatch) send(h *Hub, calls []*strictCall) {
	var once sync.Once
	free := func() { once.Do(func() { s.free(h) }) }
	runStrict(h, calls, free)
	free()
}

// free gives back a pipeline slot and, if calls are pending, sends them in
// the next pipeline on a goroutine of the Hub's calls (send's caller is a
// caller waiting for its own answer). Once the Hub is shut down nothing is
// sent: every pending call is answered ErrStopped, so none is left waiting.
func (s *strictBatch) free(h *Hub) {
	s.mu.Lock()
	s.inflight--
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return
	}
	next := s.take()
	s.mu.Unlock()
	if beforeNextPipeline != nil {
		beforeNextPipeline()
	}
	if h.calls.Go(func() { s.send(h, next) }) {
		return
	}
	s.mu.Lock()
	s.inflight--
	next = append(next, s.pending...)
	s.pending = nil
	s.mu.Unlock()
	for _, c := range next {
		c.err = bounded.ErrStopped // the Hub is shut down: not sent
		close(c.done)
	}
}

// runStrict sends calls in one pipeline and answers each. A call whose context
// is done is not sent (its caller has stopped waiting: as go-redis does
// with such a context). The pipeline's context keeps the first call's
// values, lasts until the latest call's deadline, and is cancelled once
// no call waits for it (every caller's context done: the Hub's Shutdown
// cancels them all).
func runStrict(h *Hub, calls []*strictCall, free func()) {
	live := make([]*strictCall, 0, len(calls))
	for _, c := range calls {
		if err := c.ctx.Err(); err != nil {
			c.err = err
			close(c.done)
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	var latest time.Time
	for _, c := range live {
		if d, ok := c.ctx.Deadline(); ok && d.After(latest) {
			latest = d
		}
	}
	base := context.WithoutCancel(live[0].ctx)
	var ctx context.Context
	var cancel context.CancelFunc
	if latest.IsZero() {
		ctx, cancel = context.WithCancel(base)
	} else {
		ctx, cancel = context.WithDeadline(base, latest)
	}
	defer cancel()
	var waiting atomic.Int64
	waiting.Store(int64(len(live)))
	sc := make([]scriptCall, len(live))
	stops := make([]func() bool, len(live))
	for i, c := range live {
		sc[i] = scriptCall{breakerbox.BreakerScript, c.keys, c.args}
		stops[i] = context.AfterFunc(c.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
				free() // nobody waits for this pipeline: its slot serves the next
			}
		})
	}
	cmds, _ := h.pipeline(ctx, nil, sc)
	for _, stop := range stops {
		stop()
	}
	for i, c := range live {
		switch c.err = cmdErr(cmds[i]); {
		case c.err == nil:
			c.res = cmds[i].Val() // (pipeline gives a call never answered the pipeline's error)
		case errors.Is(c.err, context.Canceled) && c.ctx.Err() != nil:
			// The pipeline was cancelled because every caller stopped
			// waiting: each call ends as its own context did (its Redis
			// timeout, an outage; the Hub's stop), as a call of its own
			// would have.
			c.err = c.ctx.Err()
		}
		close(c.done)
	}
}
