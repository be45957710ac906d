package client

import (
	"context"
	"log/slog"
	"time"

	"github.com/breakerbox/breakerbox"
)

// view is the worker's copy of what the script last said.
type view struct {
	state breakerbox.State
	gen   int64
	mode  breakerbox.Mode
	until time.Time // while the breaker refuses, the local time before which asking again is pointless
	// local is the in-process fallback that decided this view during an
	// outage; nil for a view from Redis. Generations compare only within
	// one of them.
	local *localBreaker
	set   int64 // unix nanos when the view was made
}

// trusted reports whether b's view may be used without asking the script:
// the Hub's subscription is live, and b's channel was (re)subscribed and b
// refreshed since the connection last changed. (Allow also checks that no
// announcement waits unread on the subscription: see maybePeek.)
func (b *Breaker) trusted() bool {
	s := &b.h.sub
	return b.confirmed.Load() == s.epoch.Load() && s.live()
}

// source says where an observation comes from.
type source int

const (
	// fromReply is the script's reply to this handle's allow; replies may
	// arrive out of order, so one older than the view (by generation) is
	// ignored.
	fromReply source = iota
	// fromRecordReply is the script's reply to this handle's outcomes
	// (same order rule as fromReply).
	fromRecordReply
	// fromAnnouncement is a pub/sub message: announcements arrive in order
	// among themselves, but may be overtaken by replies, so one not newer
	// than the view is ignored (one of the same generation is a config
	// change: the subscriber asks for a refresh instead).
	fromAnnouncement
	// fromRefresh is a status read after (re)subscribing or at the end
	// of an outage: it replaces whatever the view held.
	fromRefresh
	// fromLocal is a reply of the in-process fallback during an outage.
	fromLocal
)

// observe replaces the view with what the script in Redis said.
func (b *Breaker) observe(a breakerbox.Announcement, src source) { b.apply(a, src, nil) }

// observeLocal replaces the view with what the in-process fallback l said.
func (b *Breaker) observeLocal(a breakerbox.Announcement, l *localBreaker) { b.apply(a, fromLocal, l) }

// accept reports whether an observation from src replaces view old.
func accept(old, nv *view, src source) bool {
	switch {
	case old == nil:
		return src != fromLocal || !nv.local.retired.Load()
	case src == fromLocal:
		// A retired fallback's late reply must not undo the outage's end.
		return !nv.local.retired.Load() && (old.local != nv.local || nv.gen >= old.gen)
	case old.local != nil && !old.local.retired.Load():
		return false // the fallback decides until the outage ends
	case src == fromReply || src == fromRecordReply:
		return old.local != nil || nv.gen >= old.gen
	case src == fromAnnouncement:
		// Announcements and replies travel on different connections: an
		// announcement can arrive after a reply that already told a later
		// generation. Generations only grow (max(previous+1, now_ms), even
		// for a breaker whose keys were deleted), so an older one is late.
		return old.local != nil || nv.gen > old.gen
	}
	return true
}

func (b *Breaker) apply(a breakerbox.Announcement, src source, local *localBreaker) {
	if local == nil {
		for g := b.redisGen.Load(); a.Generation > g && !b.redisGen.CompareAndSwap(g, a.Generation); g = b.redisGen.Load() {
		}
	}
	nv := newView(a, local)
	b.viewMu.Lock()
	c, moved := b.applyLocked(b.view.Load(), nv, src)
	b.viewMu.Unlock()
	if moved {
		b.logTransition(c)
	}
}

// newView is the view an announcement makes, as of now.
func newView(a breakerbox.Announcement, local *localBreaker) *view {
	now := time.Now()
	nv := &view{state: a.State, gen: a.Generation, mode: a.Mode, local: local, set: now.UnixNano()}
	switch {
	case a.Mode == breakerbox.ModeForcedOpen:
		nv.until = now.Add(24 * time.Hour)
	case a.RetryAfter > 0 && a.State != breakerbox.StateClosed:
		nv.until = now.Add(a.RetryAfter)
	}
	return nv
}

// applyLocked replaces the view old with nv if src may (under viewMu),
// queues the state change for the hook, and returns it and whether the
// state or mode moved (the caller logs it once the lock is released).
func (b *Breaker) applyLocked(old, nv *view, src source) (StateChange, bool) {
	if !accept(old, nv, src) {
		return StateChange{}, false
	}
	b.view.Store(nv)
	moved := old != nil && (old.state != nv.state || old.mode != nv.mode)
	var c StateChange
	if moved || (old != nil && old.local == nv.local && nv.gen > old.gen) {
		c = StateChange{Name: b.name, From: old.state, To: nv.state, Mode: nv.mode, Generation: nv.gen,
			Cause: cause(old, nv, src)}
		if b.o.onStateChange != nil {
			b.h.notify.push(b, c) // under viewMu, so the hook sees changes in the view's order
		}
	}
	return c, moved
}

// causeLookup marks a change whose event name the history must tell: an
// operator action (or a closing seen only through an announcement).
const causeLookup = "?"

// cause names the transition from old to nv. A change seen from Redis is
// looked up in the history (causeLookup: the entry of nv's generation
// names its event exactly, however many transitions the view skipped; a
// generation is max(previous+1, now_ms), so it cannot tell one step from
// several). A change of the local fallback is one step of the local state
// machine (each local reply applies one operation) whose event the states
// and modes tell. Anything else is "observed".
func cause(old, nv *view, src source) string {
	if old.local != nv.local || nv.gen <= old.gen {
		return "observed"
	}
	if src != fromLocal {
		return causeLookup
	}
	switch {
	case nv.mode == breakerbox.ModeForcedOpen && old.mode != breakerbox.ModeForcedOpen:
		return "forced_open"
	case nv.mode == breakerbox.ModeDisabled && old.mode != breakerbox.ModeDisabled:
		return "disabled"
	case nv.mode != breakerbox.ModeNormal || old.mode != breakerbox.ModeNormal:
		// Back to normal: released or reset.
	case nv.state == breakerbox.StateOpen && old.state != breakerbox.StateOpen:
		return "opened"
	case old.state == breakerbox.StateOpen && nv.state == breakerbox.StateHalfOpen:
		return "half_opened"
	case old.state == breakerbox.StateHalfOpen && nv.state == breakerbox.StateClosed:
		return "closed" // this handle's local outcomes closed it
	}
	return "observed"
}

func (b *Breaker) logTransition(c StateChange) {
	attrs := []any{"from", c.From.String(), "to", c.To.String(), "mode", string(c.Mode), "generation", c.Generation}
	switch c.To {
	case breakerbox.StateOpen:
		b.logf(warnLevel, "circuit breaker opened", attrs...)
	case breakerbox.StateHalfOpen:
		b.logf(infoLevel, "circuit breaker timeout expired, entering half-open", attrs...)
	default:
		b.logf(infoLevel, "circuit breaker closed", attrs...)
	}
}

const (
	debugLevel = slog.LevelDebug
	infoLevel  = slog.LevelInfo
	warnLevel  = slog.LevelWarn
	errorLevel = slog.LevelError
)

// logf logs msg with the breaker's name to its logger.
func (b *Breaker) logf(level slog.Level, msg string, attrs ...any) {
	if !b.o.logger.Enabled(context.Background(), level) {
		return
	}
	b.o.logger.Log(context.Background(), level, msg, append([]any{"breaker", b.name}, attrs...)...)
}

// lastView returns the view's state and mode, or closed and normal before
// the handle has one.
func (b *Breaker) lastView() (breakerbox.State, breakerbox.Mode) {
	if v := b.view.Load(); v != nil {
		return v.state, v.mode
	}
	return breakerbox.StateClosed, breakerbox.ModeNormal
}

func (b *Breaker) openError(state breakerbox.State, mode breakerbox.Mode, retryAfter time.Duration, outage bool, cause error) error {
	b.logf(debugLevel, "circuit breaker blocked a call", "state", state.String(), "mode", string(mode))
	return &OpenError{Name: b.name, State: state, Mode: mode, RetryAfter: retryAfter, Outage: outage, Cause: cause}
}
