package client

import (
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

// sender is the Hub's outcome sender: one goroutine that takes every
// breaker's queued outcomes, refusals and outage tallies and sends them in
// pipelines, one per Redis node at a time (at most maxInflight in flight
// per node), one record call in flight per breaker, so each breaker's
// outcomes reach the script in report order. A failure waits for its
// batch, bounded by the Redis timeout; a pipeline that outlives the Redis
// timeout starts an outage of its node.
type sender struct {
	h        *Hub
	mu       sync.Mutex
	dirty    []*Breaker    // breakers with work to send
	lazy     []*Breaker    // breakers with only refusals, sent within refusedEvery
	inflight map[*node]int // pipelines in flight per node
	wake     chan struct{}
}

// maxInflight bounds the pipelines in flight per node.
const maxInflight = 2

func (s *sender) init(h *Hub) {
	s.h = h
	s.inflight = map[*node]int{}
	s.wake = make(chan struct{}, 1)
}

// push adds b to the breakers with work.
func (s *sender) push(b *Breaker) {
	s.mu.Lock()
	s.dirty = append(s.dirty, b)
	s.mu.Unlock()
	s.kick()
}

func (s *sender) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// pushLazy adds b to the breakers whose refusals are sent within
// refusedEvery unless an outcome carries them earlier.
func (s *sender) pushLazy(b *Breaker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lazy) == 0 { // the first since the last promotion arms the timer
		time.AfterFunc(refusedEvery, s.promoteLazy)
	}
	s.lazy = append(s.lazy, b)
}

func (s *sender) promoteLazy() {
	s.mu.Lock()
	lazy := s.lazy
	s.lazy = nil
	for _, b := range lazy {
		b.q.mu.Lock()
		if b.q.lazy {
			b.q.lazy = false
			if !b.q.dirty && !b.q.inflight {
				b.q.dirty = true
				s.dirty = append(s.dirty, b)
			}
		}
		b.q.mu.Unlock()
	}
	s.mu.Unlock()
	s.kick()
}

// batch is what one breaker sends in one pipeline.
type batch struct {
	b       *Breaker
	outs    []outcome
	buf     []outcome // the drained buffer outs came from, to give back
	refused int64
	tally   counts
	prior   int64 // the newest generation b knew when the batch was taken (WithDurableTransitions)
}

func (s *sender) run() {
	defer s.h.wg.Done()
	for {
		select {
		case <-s.h.ctx.Done():
			return
		case <-s.wake:
		}
		s.mu.Lock()
		list := s.dirty
		s.dirty = nil
		plan := map[*node][]*Breaker{}
		var wait []*Breaker
		for _, b := range list {
			n := b.nodeOf()
			if s.inflight[n] >= maxInflight && !n.down.Load() {
				wait = append(wait, b) // sent when one of the node's pipelines completes
				continue
			}
			plan[n] = append(plan[n], b)
		}
		s.dirty = append(s.dirty, wait...)
		for n := range plan {
			s.inflight[n]++
		}
		s.mu.Unlock()
		for n, bs := range plan {
			var group []batch
			for _, b := range bs {
				if bt, ok := s.take(b, n); ok {
					group = append(group, bt)
				}
			}
			if len(group) == 0 {
				s.done(n)
				continue
			}
			if !s.h.calls.Go(func() { s.exec(n, group) }) {
				s.drop(n, group) // shut down
			}
		}
	}
}

// drop gives up on a node's batches that the Hub, shut down, will not
// send: they count as unrecorded, and their waiters are woken.
func (s *sender) drop(n *node, group []batch) {
	for _, bt := range group {
		bt.b.out.unrecorded.Add(int64(len(bt.outs)) + bt.refused + bt.tally.total())
		s.finish(bt.b, bt)
	}
	s.done(n)
}

// done counts a node's pipeline as completed.
func (s *sender) done(n *node) {
	s.mu.Lock()
	s.inflight[n]--
	s.mu.Unlock()
	s.kick()
}

// take takes b's work for one pipeline; while b's node is down, it folds
// the outcomes into the outage's counts instead (and reports false).
func (s *sender) take(b *Breaker, n *node) (batch, bool) {
	q := &b.q
	q.mu.Lock()
	q.dirty = false
	if q.inflight {
		q.mu.Unlock()
		return batch{}, false // re-pushed when its record completes
	}
	if n.down.Load() {
		outs, refused := q.pending, q.refused
		q.pending, q.refused = nil, 0
		q.done += uint64(len(outs)) + uint64(refused)
		q.signalLocked()
		q.mu.Unlock()
		b.foldIntoOutage(outs, refused)
		return batch{}, false
	}
	bt := batch{b: b, refused: q.refused, tally: q.tally, prior: b.redisGen.Load()}
	q.refused, q.tally = 0, counts{}
	q.tallying += bt.tally.total()
	if len(q.pending) <= maxBatch {
		bt.outs, bt.buf = q.pending, q.pending
		q.pending, q.spare = q.spare[:0], nil
	} else {
		bt.outs = append([]outcome(nil), q.pending[:maxBatch]...)
		q.pending = append(q.pending[:0], q.pending[maxBatch:]...)
	}
	empty := len(bt.outs) == 0 && bt.refused == 0 && bt.tally.total() == 0
	q.inflight = !empty
	q.signalLocked() // room for reporters waiting in add
	q.mu.Unlock()
	return bt, !empty
}

// exec sends one node's batches in one pipeline and applies the replies.
func (s *sender) exec(n *node, group []batch) {
	h := s.h
	stall := time.AfterFunc(h.timeout(), func() { n.begin(&StallError{Op: "record", After: h.timeout()}) })
	var calls []scriptCall
	type slot struct{ record, tally int }
	slots := make([]slot, len(group))
	for i, bt := range group {
		slots[i] = slot{-1, -1}
		if len(bt.outs) > 0 || bt.refused > 0 {
			slots[i].record = len(calls)
			calls = append(calls, scriptCall{breakerbox.BreakerScript, bt.b.keys, recordArgs(bt.refused, bt.outs)})
		}
		if bt.tally.total() > 0 {
			slots[i].tally = len(calls)
			calls = append(calls, scriptCall{breakerbox.BreakerScript, bt.b.keys, tallyArgs(bt.tally)})
		}
	}
	var conn *redis.Conn
	for i, bt := range group {
		if bt.b.durable() && slots[i].record >= 0 {
			conn = h.ownConn(h.ctx, n, "") // WAIT must follow the scripts on their connection
			break
		}
	}
	cmds, err := h.pipeline(h.ctx, conn, calls)
	var redone map[int]bool // calls run again through the client: no WAIT follows them
	if conn != nil {
		redone, err = h.redirect(cmds, calls, err)
	}
	stall.Stop()
	if err != nil && unreachable(err) {
		n.begin(err)
	}
	for i, bt := range group {
		b := bt.b
		if j := slots[i].record; j >= 0 {
			b.recorded(bt, cmds[j].Val(), cmdErr(cmds[j]))
		}
		if j := slots[i].tally; j >= 0 {
			if cerr := cmdErr(cmds[j]); notRun(cerr) {
				n.begin(cerr)
				b.q.addTally(b, bt.tally) // the script did not run: tallied when the node serves again
			} else if cerr != nil {
				b.out.unrecorded.Add(bt.tally.total())
				b.logf(warnLevel, "circuit breaker outage counts not tallied", "count", bt.tally.total(), "err", cerr)
			} else {
				b.out.tallied.Add(bt.tally.total())
			}
		}
		s.finish(b, bt)
	}
	s.done(n)
	// The callers waiting for these batches are woken and the node's
	// pipeline slot is free: the WAIT for durable breakers' transitions
	// holds neither.
	s.settle(conn, group, func(i int) (*redis.Cmd, bool) {
		if j := slots[i].record; j >= 0 {
			return cmds[j], !redone[j]
		}
		return nil, false
	})
}

// redirect runs again, through the client, the calls of a pipeline sent on
// a node's own connection that the node refused with MOVED or ASK (their
// slot moved: nothing of them ran), and puts their commands in cmds; the
// client follows the redirect. A transition they report has no WAIT
// behind it (not on their connection), so it counts NotReplicated. It
// returns the indexes of the calls run again and the pipeline's error, or
// the error of running them again.
func (h *Hub) redirect(cmds []*redis.Cmd, calls []scriptCall, err error) (map[int]bool, error) {
	var again []scriptCall
	var at []int
	for j, c := range cmds {
		if redirected(c.Err()) {
			again = append(again, calls[j])
			at = append(at, j)
		}
	}
	if len(again) == 0 {
		return nil, err
	}
	if h.cluster != nil {
		h.cluster.ReloadState(h.ctx)
	}
	redone, rerr := h.pipeline(h.ctx, nil, again)
	ran := make(map[int]bool, len(at))
	for k, j := range at {
		cmds[j] = redone[k]
		ran[j] = true
	}
	return ran, rerr
}

// finish marks b's batch done: waiters are woken, and b is pushed again
// when more work came in meanwhile.
func (s *sender) finish(b *Breaker, bt batch) {
	for _, o := range bt.outs {
		if o.sent != nil {
			close(o.sent)
		}
	}
	q := &b.q
	q.mu.Lock()
	q.inflight = false
	q.done += uint64(len(bt.outs)) + uint64(bt.refused)
	q.tallying -= bt.tally.total()
	if bt.buf != nil && q.spare == nil {
		clear(bt.buf) // drop the strings and channels it holds
		q.spare = bt.buf[:0]
	}
	now, lazy := false, false
	switch {
	case q.dirty:
	case len(q.pending) > 0 || q.tally.total() > 0 && !b.nodeOf().down.Load():
		q.dirty, now = true, true
	case q.refused > 0 && !q.lazy:
		q.lazy, lazy = true, true // refusals alone wait for refusedEvery, as always
	}
	q.signalLocked()
	q.mu.Unlock()
	if now {
		s.push(b)
	}
	if lazy {
		s.pushLazy(b)
	}
}

// recorded applies the reply of a record call that carried bt: the view
// follows it; an error leaves bt's outcomes and refusals unrecorded (a lost
// reply cannot tell whether the script ran, so they are not sent again),
// and starts an outage when Redis could not be reached.
func (b *Breaker) recorded(bt batch, res any, err error) {
	if err == nil {
		r, perr := breakerbox.ParseRecordReply(res)
		if perr == nil {
			b.observe(r.Announcement, fromRecordReply)
			return
		}
		b.logf(warnLevel, "circuit breaker ignored a malformed record reply", "err", perr)
		return
	}
	if notRun(err) {
		// The server refused the call before running the script (a cluster
		// failing over, a replica, a server loading): nothing was applied,
		// so the outcomes and refusals are the outage's, tallied later.
		b.nodeOf().begin(err)
		for _, o := range bt.outs {
			b.outageOutcome(o, nil)
		}
		if bt.refused > 0 {
			b.q.addTally(b, counts{r: bt.refused})
		}
		return
	}
	b.out.unrecorded.Add(int64(len(bt.outs)) + bt.refused)
	if unreachable(err) {
		b.nodeOf().begin(err)
	}
	b.logf(warnLevel, "circuit breaker outcomes not recorded", "count", len(bt.outs), "refused", bt.refused, "err", err)
}

// settle waits, when the record replies of durable breakers in group
// report transitions (record(i): batch i's record command, or nil, and
// whether conn carried it), for their replication on conn (at most the
// longest wait those breakers allow), and counts them; a transition conn
// did not carry counts NotReplicated. It releases conn. It runs after the
// batches' callers were woken and the node's pipeline slot freed, so the
// WAIT holds up no caller and no other batch.
func (s *sender) settle(conn *redis.Conn, group []batch, record func(int) (*redis.Cmd, bool)) {
	type moved struct {
		b   *Breaker
		gen int64
	}
	var made []moved
	replicas, d := 0, time.Duration(0)
	for i, bt := range group {
		c, onConn := record(i)
		if !bt.b.durable() || c == nil || c.Err() != nil {
			continue
		}
		r, err := breakerbox.ParseRecordReply(c.Val())
		if err != nil || r.Generation <= bt.prior {
			continue
		}
		if !onConn {
			bt.b.countReplication(0, errRedirected, r.Generation)
			continue
		}
		made = append(made, moved{bt.b, r.Generation})
		replicas = max(replicas, bt.b.o.durable.replicas)
		d = max(d, bt.b.waitFor(bt.b.o.redisTimeout))
	}
	if len(made) == 0 {
		if conn != nil {
			_ = conn.Close()
		}
		return
	}
	acked, err := s.h.waitReplicas(conn, replicas, d)
	for _, m := range made {
		m.b.countReplication(acked, err, m.gen)
	}
}
