package client

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/breakerbox/breakerbox"
)

// registration is where a breaker stands in the Hub's registration: its
// config seeded (see New) and its channel subscribed.
type registration struct {
	mu          sync.Mutex
	done        atomic.Bool
	err         error         // the last attempt's error
	wait        chan struct{} // closed when an attempt ends
	overwritten bool          // SetConfig ran: the registration only seeds

	queued  bool      // in control.reg (guarded by control.mu)
	retryAt time.Time // guarded by control.mu
}

func (r *registration) init() { r.wait = make(chan struct{}) }

// finish ends an attempt and wakes the callers waiting for it.
func (r *registration) finish(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.done.Store(true)
	}
	r.err = err
	close(r.wait)
	r.wait = make(chan struct{})
}

// state reports whether the breaker is registered, or the error (not an
// outage's) that its registration last failed with.
func (r *registration) state() (bool, error) {
	if r.done.Load() {
		return true, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil && !unreachable(r.err) {
		return false, r.err
	}
	return false, nil
}

// waitRegistered waits until b is registered, at most the Redis timeout.
// A registration refused with an error (NOPERM, BADCONFIG, ...) returns
// that error at once while it is tried again in the background; one that
// cannot reach Redis returns an error that starts the outage policy.
func (b *Breaker) waitRegistered(ctx context.Context) error {
	if b.reg.done.Load() {
		return nil
	}
	b.reg.mu.Lock()
	err, ch := b.reg.err, b.reg.wait
	b.reg.mu.Unlock()
	if err != nil && !unreachable(err) {
		return err
	}
	b.h.ctl.register(b)
	t := time.NewTimer(b.o.redisTimeout)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		return &StallError{Op: "seed", After: b.o.redisTimeout}
	case <-ctx.Done():
		return ctx.Err()
	}
	if b.reg.done.Load() {
		return nil
	}
	b.reg.mu.Lock()
	defer b.reg.mu.Unlock()
	return b.reg.err
}

// refreshed applies a status read (started at start, unix nanos) to b:
// the view and the config in force. The view is confirmed when the
// breaker's channel was subscribed on the current connection before the
// read was asked for, and nothing changed since. (Announcements older
// than the read that arrive after it are ignored by generation: see
// accept.)
func (b *Breaker) refreshed(st breakerbox.Status, start int64, req refreshReq) {
	b.readConfig(st, start)
	nv := newView(st.Announcement(), nil)
	b.viewMu.Lock()
	old := b.view.Load()
	if old != nil && old.local == nil && old.gen >= st.Generation && old.set > start {
		nv = nil // a reply or announcement at least as new as the read came in meanwhile
	}
	var c StateChange
	moved := false
	if nv != nil {
		c, moved = b.applyLocked(old, nv, fromRefresh)
	}
	b.viewMu.Unlock()
	if moved {
		b.logTransition(c)
	}
	s := &b.h.sub
	if req.epoch == s.epoch.Load() && b.subEpoch.Load() == req.epoch && b.subGen.Load() == req.subGen {
		b.confirmed.Store(req.epoch)
	}
}

// readConfig takes the config in force from a status read started at
// start (unix nanos), unless SetConfig stored one since.
func (b *Breaker) readConfig(st breakerbox.Status, start int64) {
	cfg := st.Config()
	b.cfgMu.Lock()
	if start >= b.cfgSet {
		b.cfg.Store(&cfg)
	}
	b.cfgMu.Unlock()
}
