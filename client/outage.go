package client

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/luaengine"
)

// outageCounts are what a breaker counts about its outages (see Stats).
type outageCounts struct {
	admitted, refused, succeeded, failed, tallied, unrecorded atomic.Int64

	mu    sync.Mutex
	local *localBreaker // the in-process fallback of the current outage
}

// outageAllow admits or refuses a call by the outage policy while b's
// node is down. Every decision is counted, and added to the breaker's
// totals in Redis (tally) once the node answers again.
func (b *Breaker) outageAllow(n *node) (*Permit, error) {
	switch b.o.outage {
	case OutageAdmitAll:
		b.out.admitted.Add(1)
		return &Permit{b: b, via: viaNone}, nil
	case OutageRefuseAll:
		b.out.refused.Add(1)
		b.q.addTally(b, counts{r: 1})
		state, mode := b.lastView() // what this worker last knew, not a made-up state
		return nil, b.openError(state, mode, 0, true, errors.Join(ErrRedisUnavailable, n.causeOf()))
	}
	local := b.localFallback()
	r, err := local.allow()
	if err != nil {
		return nil, fmt.Errorf("breaker %q: local breaker: %w", b.name, err)
	}
	if !r.Admitted {
		b.out.refused.Add(1)
		b.q.addTally(b, counts{r: 1})
		return nil, b.openError(r.State, r.Mode, r.RetryAfter, true, nil)
	}
	b.out.admitted.Add(1)
	return &Permit{b: b, gen: r.Generation, lease: r.Lease, via: viaLocal, local: local, start: time.Now()}, nil
}

// outageOutcome counts the outcome of a call decided while on the outage
// policy (or reported during an outage): in Stats, in the tally sent when
// Redis answers again, and in the local fallback, which decides the next
// calls from it.
func (b *Breaker) outageOutcome(o outcome, local *localBreaker) {
	var c counts
	switch o.kind {
	case "s":
		b.out.succeeded.Add(1)
		c.s = 1
	case "f":
		b.out.failed.Add(1)
		c.f = 1
	}
	if local == nil && b.nodeOf().down.Load() && b.o.outage == OutageDecideLocally {
		local, o.gen = b.localFallback(), -1 // admitted by Redis before the outage: current for the fallback
	}
	if local != nil && !local.retired.Load() {
		local.record(o)
	}
	if c.total() > 0 {
		b.q.addTally(b, c)
	}
}

// foldIntoOutage counts outcomes and refusals that were queued for Redis
// when the breaker's node went down: they are tallied later, like the
// outage's own decisions.
func (b *Breaker) foldIntoOutage(outs []outcome, refused int64) {
	for _, o := range outs {
		b.outageOutcome(o, nil)
		if o.sent != nil {
			close(o.sent)
		}
	}
	if refused > 0 {
		b.q.addTally(b, counts{r: refused})
	}
}

// outageEnded makes b leave its outage: the fallback is retired (its late
// replies no longer change the view), and the breaker is registered (if it
// never was) and refreshed from Redis, and its outage counts tallied.
func (b *Breaker) outageEnded() {
	b.out.mu.Lock()
	if b.out.local != nil {
		b.out.local.retired.Store(true)
		b.out.local = nil
	}
	b.out.mu.Unlock()
	b.confirmed.Store(0)
	b.h.ctl.register(b) // registers if needed, then refreshes
	b.q.addTally(b, counts{})
}

// warmFallback compiles the script for the in-process fallback once per
// process, in the background, so that the first call of an outage does not
// pay for it.
var warmFallback = sync.OnceFunc(func() {
	luaengine.Warm(breakerbox.BreakerScript.Source, breakerbox.StatusScript.Source)
})

// localFallback returns the outage's in-process breaker, made on first use
// from the worker's last view.
func (b *Breaker) localFallback() *localBreaker {
	b.out.mu.Lock()
	defer b.out.mu.Unlock()
	if b.out.local == nil {
		b.out.local = newLocalBreaker(b)
	}
	return b.out.local
}

// localBreaker runs lua/breaker-8.lua in process, on this worker's calls
// only, with the config in force and the local clock: the
// OutageDecideLocally policy. It starts from the worker's last view of the
// breaker (an open breaker stays open until its recovery time, a forced
// open one stays forced open) by seeding the engine's keys from it;
// transitions are still decided by the one Lua source, and the handle's
// view (State, the hook) follows its replies until the outage ends.
type localBreaker struct {
	b       *Breaker
	engine  *luaengine.Engine
	retired atomic.Bool // the outage ended
}

func newLocalBreaker(b *Breaker) *localBreaker {
	l := &localBreaker{b: b, engine: luaengine.NewReusing(time.Now)}
	f := b.Config().Fields()
	cfg := map[string]string{}
	for i := 0; i+1 < len(f); i += 2 {
		cfg[f[i]] = f[i+1]
	}
	l.engine.SetHash(breakerbox.Key(b.name, "config"), cfg)
	state, mode := b.lastView()
	metrics := map[string]string{"generation": "0", "mode": string(mode)}
	if state == breakerbox.StateOpen {
		// opened_at such that the recovery timer ends when the view's does.
		left := time.Duration(0)
		if v := b.view.Load(); v != nil && mode == breakerbox.ModeNormal {
			left = max(0, time.Until(v.until))
		}
		openedAt := time.Now().Add(left - b.Config().RecoveryTimeout)
		metrics["opened_at"] = strconv.FormatInt(max(0, openedAt.UnixMilli()), 10)
	}
	l.engine.Set(breakerbox.Key(b.name, "state"), state.String())
	l.engine.SetHash(breakerbox.Key(b.name, "metrics"), metrics)
	return l
}

func (l *localBreaker) eval(args ...string) (any, error) {
	script := breakerbox.BreakerScript
	if args[0] == "status" {
		script = breakerbox.StatusScript
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
			l.b.logf(errorLevel, "circuit breaker local fallback status unreadable", "err", err)
			return
		}
		o.gen = st.Generation
	}
	g := o.group()
	res, err := l.eval(append([]string{"record", "0"}, g[:]...)...)
	if err != nil {
		l.b.logf(errorLevel, "circuit breaker local fallback record failed", "err", err)
		return
	}
	if r, err := breakerbox.ParseRecordReply(res); err == nil {
		l.b.observeLocal(r.Announcement, l)
	}
}
