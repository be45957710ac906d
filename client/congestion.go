package client

import (
	"sync"
	"sync/atomic"
	"time"
)

// congestion notices when the Hub's Redis replies may be waiting for the
// Go runtime rather than for Redis. When every processor runs goroutines
// that never block (callers deciding from their view in a tight loop), a
// goroutine whose reply has arrived is woken only by the runtime's monitor
// thread and then waits in the global run queue, which busy processors
// visit rarely: a pipeline that Redis answered in 100µs can look stalled
// for hundreds of milliseconds, and start an outage. So when Redis calls
// are in flight and none has completed for congestAfter, callers deciding
// from their view pause (at most congestWait): parked callers leave the
// processors idle, and an idle processor polls the network at once.
type congestion struct {
	inflight atomic.Int64 // Redis exchanges in flight
	progress atomic.Int64 // unix nanos when one last started from none or completed
	on       atomic.Bool
	mu       sync.Mutex
	eased    chan struct{} // under mu: closed when an exchange completes
}

const (
	congestAfter = time.Millisecond
	congestWait  = time.Millisecond
)

// begin counts an exchange with Redis; end must follow.
func (c *congestion) begin() {
	if c.inflight.Add(1) == 1 {
		c.progress.Store(time.Now().UnixNano())
	}
}

// end counts an exchange done, and releases the callers pausing for it.
func (c *congestion) end() {
	c.inflight.Add(-1)
	c.progress.Store(time.Now().UnixNano())
	if c.on.Load() {
		c.mu.Lock()
		if c.on.Load() {
			c.on.Store(false)
			close(c.eased)
		}
		c.mu.Unlock()
	}
}

// check is called at most every peekEvery by a caller deciding from its
// view: it notes congestion when exchanges are in flight and none
// completed for congestAfter.
func (c *congestion) check(now int64) {
	if c.on.Load() || c.inflight.Load() == 0 || now-c.progress.Load() < int64(congestAfter) {
		return
	}
	c.mu.Lock()
	if !c.on.Load() {
		c.eased = make(chan struct{})
		c.on.Store(true)
	}
	c.mu.Unlock()
}

// pause parks the caller until an exchange completes, at most congestWait.
func (c *congestion) pause() {
	c.mu.Lock()
	ch := c.eased
	on := c.on.Load()
	c.mu.Unlock()
	if !on {
		return
	}
	t := time.NewTimer(congestWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}
