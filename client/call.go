package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/breakerbox/breakerbox"
)

// Allow asks whether a call may go ahead. When it may, it returns a Permit
// on which the caller reports the call's outcome exactly once; when the
// breaker refuses, it returns an error matching ErrOpen (an *OpenError).
// It waits on Redis at most the Redis timeout (WithRedisTimeout); past it,
// or when Redis cannot be reached, the call follows the outage policy. An
// error Redis answers with (a script's BADCONFIG, NOPERM, WRONGPASS, ...)
// is returned as it is.
func (b *Breaker) Allow(ctx context.Context) (*Permit, error) {
	if b.shut.Load() {
		return nil, b.shutErr()
	}
	n := b.nodeOf()
	if n.down.Load() {
		return b.outageAllow(n)
	}
	if b.fast {
		if p, err, done := b.allowFromView(); done {
			return p, err
		}
	}
	start := time.Now()
	if err := b.waitRegistered(ctx); err != nil {
		return b.redisFailed(ctx, n, "seed", err)
	}
	prior := b.redisGen.Load()
	cr, err := call(ctx, b.h, "allow", b.o.redisTimeout, func(ctx context.Context) (connReply, error) {
		return b.evalStrict(ctx, "allow")
	}, func(cr connReply, err error) {
		cr.release()
		b.lateAllow(cr.res, err)
	})
	if err != nil {
		return b.redisFailed(ctx, n, "allow", err)
	}
	r, err := breakerbox.ParseAllowReply(cr.res)
	if err != nil {
		cr.release()
		return nil, fmt.Errorf("breaker %q: %w", b.name, err)
	}
	b.settle(cr, prior, r.Generation, b.o.redisTimeout-time.Since(start))
	waited := time.Since(start)
	b.observe(r.Announcement, fromReply)
	if !r.Admitted {
		return nil, b.openError(r.State, r.Mode, r.RetryAfter, false, nil)
	}
	via := viaBatch
	if !b.fast {
		via = viaRedis
	}
	return &Permit{b: b, gen: r.Generation, lease: r.Lease, via: via, waited: waited, start: time.Now()}, nil
}

// allowFromView decides a call from the view, when it is trusted and says
// enough: closed (admitted), or refusing with a running recovery timer or
// forced open (refused). done is false when the script must decide.
func (b *Breaker) allowFromView() (p *Permit, err error, done bool) {
	if !b.trusted() {
		return nil, nil, false
	}
	now := time.Now()
	s := &b.h.sub
	s.maybePeek(now.UnixNano())
	if b.h.io.on.Load() {
		b.h.io.pause() // let the runtime run the goroutines Redis answered
	}
	if s.behind.Load() {
		if !s.waitReader() || !b.trusted() {
			return nil, nil, false
		}
		now = time.Now()
	}
	v := b.view.Load()
	if v == nil || v.local != nil {
		return nil, nil, false
	}
	switch {
	case v.mode == breakerbox.ModeDisabled || (v.mode == breakerbox.ModeNormal && v.state == breakerbox.StateClosed):
		return &Permit{b: b, gen: v.gen, via: viaBatch, start: now}, nil, true
	case v.mode == breakerbox.ModeForcedOpen || now.Before(v.until):
		b.q.refuse(b)
		return nil, b.openError(v.state, v.mode, v.until.Sub(now), false, nil), true
	}
	return nil, nil, false
}

// redisFailed handles a Redis call of Allow that failed: the caller's own
// cancellation is returned as is; unreachability (a stall past the Redis
// timeout included) starts an outage of the node and the call follows the
// outage policy; any other error is returned as what it is.
func (b *Breaker) redisFailed(ctx context.Context, n *node, op string, err error) (*Permit, error) {
	switch {
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return nil, fmt.Errorf("breaker %q: %s: %w", b.name, op, err)
	case unreachable(err):
		n.begin(err)
		return b.outageAllow(n)
	}
	return nil, fmt.Errorf("breaker %q: %s: %w", b.name, op, err)
}

// lateAllow takes the reply of an allow that its caller stopped waiting
// for: a probe lease it was given is returned at once.
func (b *Breaker) lateAllow(res any, err error) {
	if err != nil {
		return
	}
	r, err := breakerbox.ParseAllowReply(res)
	if err != nil {
		return
	}
	b.observe(r.Announcement, fromReply)
	if r.Admitted && r.Lease != "" {
		o := outcome{kind: "r", gen: r.Generation, lease: r.Lease, durationMs: -1}
		if b.nodeOf().down.Load() || !b.q.add(b, o) {
			b.outageOutcome(o, nil) // the lease expires by itself
		}
	}
}

// Execute runs fn if the breaker admits it and records its outcome (see
// Permit.Done and WithClassifier). When the breaker refuses, fn is not run
// and the error matches ErrOpen. fn's context is cancelled after the
// RequestTimeout of the config in force in Redis (see Config); running out
// of it is a failure. A panic in fn is recorded as a failure and
// re-panicked. The caller's own cancellation is not counted either way.
func (b *Breaker) Execute(ctx context.Context, fn func(context.Context) error) error {
	p, err := b.Allow(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	p.start = start // the duration recorded is fn's run time
	timeout := b.Config().RequestTimeout
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			_ = p.Failure(ctx, fmt.Errorf("panic: %v", r))
			panic(r)
		}
	}()
	err = fn(callCtx)
	if err == nil && time.Since(start) >= timeout {
		err = fmt.Errorf("call outlived request timeout %s: %w", timeout, context.DeadlineExceeded)
		_ = p.Done(ctx, err)
		return nil // fn succeeded for its caller; the breaker counts the overrun
	}
	_ = p.Done(ctx, err)
	return err
}

// Do runs fn through b like Execute and returns its result.
func Do[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error)) (T, error) {
	var out T
	err := b.Execute(ctx, func(ctx context.Context) error {
		var err error
		out, err = fn(ctx)
		return err
	})
	return out, err
}

// Wrap returns fn protected by b: the decorator style.
func Wrap[A, T any](b *Breaker, fn func(context.Context, A) (T, error)) func(context.Context, A) (T, error) {
	return func(ctx context.Context, a A) (T, error) {
		return Do(ctx, b, func(ctx context.Context) (T, error) { return fn(ctx, a) })
	}
}
