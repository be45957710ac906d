package client

import (
	"context"
	"fmt"
	"time"

	"github.com/breakerbox/breakerbox"
)

// Allow asks whether a call may go ahead. When it may, it returns a Permit
// on which the caller reports the call's outcome exactly once; when the
// breaker refuses, it returns an error matching ErrOpen (an *OpenError).
func (b *Breaker) Allow(ctx context.Context) (*Permit, error) {
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	if b.outage.active() {
		return b.outage.allow(ctx, b)
	}
	if b.o.admission == AdmitFast && b.fresh() {
		if v := b.view.Load(); v != nil && v.local == nil {
			switch {
			case v.mode == breakerbox.ModeDisabled || (v.mode == breakerbox.ModeNormal && v.state == breakerbox.StateClosed):
				return &Permit{b: b, gen: v.gen, via: viaBatch, start: time.Now()}, nil
			case v.mode == breakerbox.ModeForcedOpen || time.Now().Before(v.until):
				b.batch.refuse()
				return nil, b.openError(v.state, v.mode, time.Until(v.until), false, nil)
			}
		}
	}
	res, err := b.eval(ctx, "allow")
	if err != nil {
		if err := b.redisFailed(ctx, "allow", err); err != nil {
			return nil, err
		}
		return b.outage.allow(ctx, b)
	}
	r, err := breakerbox.ParseAllowReply(res)
	if err != nil {
		return nil, fmt.Errorf("breaker %q: %w", b.name, err)
	}
	b.observe(r.Announcement, fromReply)
	if !r.Admitted {
		return nil, b.openError(r.State, r.Mode, r.RetryAfter, false, nil)
	}
	via := viaBatch
	if b.o.admission == AdmitStrict {
		via = viaRedis
	}
	return &Permit{b: b, gen: r.Generation, lease: r.Lease, via: via, start: time.Now()}, nil
}

// Execute runs fn if the breaker admits it and records its outcome (see
// Permit.Done and WithClassifier). When the breaker refuses, fn is not run
// and the error matches ErrOpen. fn's context is cancelled after the
// config's RequestTimeout; running out of it is a failure. A panic in fn
// is recorded as a failure and re-panicked. The caller's own cancellation
// is not counted either way.
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
