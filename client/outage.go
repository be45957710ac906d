package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/luaengine"
)

// outage tracks whether Redis is reachable. While it is not, calls follow
// the outage policy without touching Redis, so none waits for a timeout, and
// one background goroutine asks Redis every recheckEvery until it answers.
type outage struct {
	on    atomic.Bool // read on every call, so without the lock
	mu    sync.Mutex  // guards the rest
	since time.Time
	cause error // the error that started the outage
	local *localBreaker
}

const recheckEvery = 200 * time.Millisecond

func (o *outage) active() bool { return o.on.Load() }

func (o *outage) current() *localBreaker {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.local
}

// begin starts an outage (once; further failures during it are silent).
func (o *outage) begin(b *Breaker, cause error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.on.Load() || b.ctx.Err() != nil {
		return
	}
	o.since, o.cause = time.Now(), fmt.Errorf("cannot reach redis: %w", cause)
	if b.o.outage == OutageDecideLocally {
		o.local = newLocalBreaker(b)
	}
	o.on.Store(true) // after local is set: allow reads it once on is seen
	b.log.Error("circuit breaker cannot reach redis; following outage policy",
		"policy", b.o.outage.String(), "err", cause, "redis_timeout", b.o.redisTimeout)
	b.live.Store(false)
	b.wg.Add(1)
	go o.recheck(b)
}

func (o *outage) recheck(b *Breaker) {
	defer b.wg.Done()
	t := time.NewTicker(recheckEvery)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		st, err := b.readStatus()
		if err != nil {
			continue
		}
		o.mu.Lock()
		o.on.Store(false)
		if o.local != nil {
			o.local.retired.Store(true) // its late replies no longer change the view
		}
		o.local, o.cause = nil, nil
		since := o.since
		o.mu.Unlock()
		b.observe(st.Announcement(), fromRefresh)
		b.forgetRegistration() // Redis may have restarted empty: store the config again
		b.log.Info("circuit breaker reaches redis again", "outage", time.Since(since).Round(time.Millisecond))
		return
	}
}

// allow admits or refuses a call by the outage policy.
func (o *outage) allow(ctx context.Context, b *Breaker) (*Permit, error) {
	switch b.o.outage {
	case OutageAdmitAll:
		return &Permit{b: b, via: viaNone}, nil
	case OutageRefuseAll:
		o.mu.Lock()
		cause := o.cause
		o.mu.Unlock()
		state, mode := b.lastView() // what this worker last knew, not a made-up state
		return nil, b.openError(state, mode, 0, true, errors.Join(ErrRedisUnavailable, cause))
	}
	local := o.current()
	if local == nil { // the outage ended a moment ago
		return b.Allow(ctx)
	}
	r, err := local.allow()
	if err != nil {
		return nil, fmt.Errorf("breaker %q: local breaker: %w", b.name, err)
	}
	if !r.Admitted {
		return nil, b.openError(r.State, r.Mode, r.RetryAfter, true, nil)
	}
	return &Permit{b: b, gen: r.Generation, lease: r.Lease, via: viaLocal, local: local, start: time.Now()}, nil
}

// localBreaker runs lua/breaker-8.lua in process, on this worker's calls
// only, with the breaker's config and the local clock: the
// OutageDecideLocally policy. Transitions are still decided by the one Lua
// source, and the handle's view (State, the state-change hook) follows
// its replies until the outage ends.
type localBreaker struct {
	b       *Breaker
	engine  *luaengine.Engine
	retired atomic.Bool // the outage ended
}

func newLocalBreaker(b *Breaker) *localBreaker {
	l := &localBreaker{b: b, engine: luaengine.New(time.Now)}
	args := append([]string{"configure", b.o.actor}, b.Config().Fields()...)
	if _, err := l.eval(args...); err != nil {
		b.log.Error("circuit breaker local fallback not configured", "err", err)
	}
	return l
}

func (l *localBreaker) eval(args ...string) (any, error) {
	script := breakerbox.BreakerScript
	if args[0] == "status" {
		script = breakerbox.StatusScript // read-only; luaengine strips its shebang
	}
	return l.engine.Eval(script.Source, l.b.keys, args...)
}

func (l *localBreaker) allow() (breakerbox.AllowReply, error) {
	res, err := l.eval("allow")
	if err != nil {
		return breakerbox.AllowReply{}, err
	}
	r, err := breakerbox.ParseAllowReply(res)
	if err == nil {
		l.b.observeLocal(r.Announcement, l)
	}
	return r, err
}

// record applies one outcome. A generation below 0 stands for an outcome
// admitted by Redis before the outage: it is counted as current, so the
// failures that came with the outage still count locally.
func (l *localBreaker) record(o outcome) {
	if o.gen < 0 {
		res, err := l.eval("status")
		if err != nil {
			return
		}
		st, err := breakerbox.ParseStatus(l.b.name, res)
		if err != nil {
			l.b.log.Error("circuit breaker local fallback status unreadable", "err", err)
			return
		}
		o.gen = st.Generation
	}
	res, err := l.eval(append([]string{"record", "0"}, o.group()...)...)
	if err != nil {
		l.b.log.Error("circuit breaker local fallback record failed", "err", err)
		return
	}
	if r, err := breakerbox.ParseRecordReply(res); err == nil {
		l.b.observeLocal(r.Announcement, l)
	}
}
