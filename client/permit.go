package client

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/breakerbox/breakerbox"
)

type permitVia int

const (
	viaBatch permitVia = iota // outcome queued, sent in order by the Hub's sender
	viaRedis                  // outcome sent at once (AdmitStrict)
	viaLocal                  // outcome goes to the outage's local breaker
	viaNone                   // admitted by OutageAdmitAll: counted for the tally
)

// Permit is an admitted call. Report its outcome exactly once with
// Success, Failure, Ignore or Done.
type Permit struct {
	b      *Breaker
	gen    int64
	lease  string
	via    permitVia
	local  *localBreaker
	used   atomic.Bool
	waited time.Duration // spent waiting on Redis in Allow: the outcome waits at most the rest of the Redis timeout
	start  time.Time     // when the call began: Allow, or fn's start in Execute
}

// budget is how long the permit's outcome may wait on Redis: what is left
// of the Redis timeout after Allow's own wait (at least a few ms), so that
// a call (Allow, then its outcome) waits on Redis at most the Redis
// timeout in all.
func (p *Permit) budget() time.Duration {
	return max(p.b.o.redisTimeout-p.waited, minBudget)
}

// minBudget is the least an outcome waits for Redis.
const minBudget = 5 * time.Millisecond

// Generation is the breaker generation the call was admitted in. An outcome
// reported after the breaker has changed generation is counted in the
// totals but cannot move the breaker (see docs/protocol.md).
func (p *Permit) Generation() int64 { return p.gen }

// Probe reports whether the call is a half-open probe holding a lease.
func (p *Permit) Probe() bool { return p.lease != "" }

// Success records a successful call.
func (p *Permit) Success(ctx context.Context) error { return p.finish(ctx, "s", nil) }

// Failure records a failed call and err as the breaker's last error. An
// err that says how long the upstream asked callers to stay away (it, or
// an error it wraps, has a RetryAfter() time.Duration method, as
// *RetryAfterError and client/transport's *StatusError do) opens the
// breaker for the whole fleet until then (docs/protocol.md, Trip rules).
func (p *Permit) Failure(ctx context.Context, err error) error { return p.finish(ctx, "f", err) }

// RetryAfterError is a failure that carries the upstream's retry-after:
// return one from a call (or wrap an SDK's rate-limit error in one) and
// Execute, Do, Wrap and Permit.Failure record it.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("retry after %s", e.After)
	}
	return e.Err.Error()
}

// Unwrap returns the error it carries.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter returns how long the upstream asked callers to stay away.
func (e *RetryAfterError) RetryAfter() time.Duration { return e.After }

// retryAfter finds a retry-after in err's chain, in milliseconds (0: none).
func retryAfter(err error) int64 {
	var ra interface{ RetryAfter() time.Duration }
	if err == nil || !errors.As(err, &ra) {
		return 0
	}
	d := ra.RetryAfter()
	if d <= 0 {
		return 0
	}
	return max(1, d.Milliseconds())
}

// Ignore gives the permit back without counting the call (one that never
// reached the upstream, or whose error says nothing about it): it cannot
// move the breaker, and a probe's lease is returned at once.
func (p *Permit) Ignore(ctx context.Context) error { return p.finish(ctx, "r", nil) }

// Done records err's outcome: nil is a success; the caller's own
// cancellation is ignored; any other error counts as the classifier says
// (WithClassifier; by default a failure).
func (p *Permit) Done(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return p.Success(ctx)
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return p.Ignore(ctx)
	}
	switch p.b.o.classify(err) {
	case VerdictSuccess:
		return p.Success(ctx)
	case VerdictIgnore:
		return p.Ignore(ctx)
	}
	return p.Failure(ctx, err)
}

// MaxErrorLen bounds the error text stored with a failure, in bytes.
const MaxErrorLen = 500

func errorText(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > MaxErrorLen {
		s = s[:MaxErrorLen]
	}
	return string([]rune(s)) // drops a rune cut in half
}

func (p *Permit) finish(ctx context.Context, kind string, err error) error {
	b := p.b
	if p.used.Swap(true) {
		return fmt.Errorf("breaker %q: %w", b.name, ErrPermitUsed)
	}
	o := outcome{kind: kind, gen: p.gen, lease: p.lease, err: errorText(err), durationMs: -1}
	if !p.start.IsZero() {
		o.durationMs = time.Since(p.start).Milliseconds()
	}
	if kind == "f" {
		o.retryMs = retryAfter(err)
		b.logf(debugLevel, "circuit breaker recorded failure", "err", o.err)
	}
	switch p.via {
	case viaBatch:
		if kind == "r" && p.lease == "" {
			return nil // ignoring a call without a probe lease changes nothing in Redis
		}
		if b.nodeOf().down.Load() {
			b.outageOutcome(o, nil)
			return nil
		}
		if kind == "f" {
			o.sent = make(chan struct{})
		}
		if !b.q.add(b, o) {
			b.outageOutcome(o, nil)
			return nil
		}
		if o.sent != nil {
			waitSent(b, o, p.budget())
		}
	case viaRedis:
		return b.recordNow(ctx, o, p.budget())
	case viaLocal:
		b.outageOutcome(o, p.local)
	case viaNone:
		b.outageOutcome(o, nil)
	}
	return nil
}

// recordNow sends one outcome and waits for the script's answer, at most
// budget (AdmitStrict).
func (b *Breaker) recordNow(ctx context.Context, o outcome, budget time.Duration) error {
	n := b.nodeOf()
	if n.down.Load() {
		b.outageOutcome(o, nil)
		return nil
	}
	if o.kind == "r" && o.lease == "" {
		return nil
	}
	start, prior := time.Now(), b.redisGen.Load()
	cr, err := call(context.WithoutCancel(ctx), b.h, "record", budget, func(ctx context.Context) (connReply, error) {
		return b.evalStrict(ctx, recordArgs(0, []outcome{o})...)
	}, func(cr connReply, err error) {
		cr.release()
		res := cr.res
		if err != nil {
			b.out.unrecorded.Add(1)
		} else if r, err := breakerbox.ParseRecordReply(res); err == nil {
			b.observe(r.Announcement, fromRecordReply)
		}
	})
	var stall *StallError
	if err != nil && notRun(err) {
		n.begin(err) // nothing was applied: the outcome is the outage's, tallied later
		b.outageOutcome(o, nil)
		return nil
	}
	if err != nil {
		if !errors.As(err, &stall) {
			b.out.unrecorded.Add(1) // a stalled one is counted if its late reply is an error
		}
		if unreachable(err) && (stall == nil || budget >= b.o.redisTimeout) {
			n.begin(err) // (a short budget that ran out proves no stall)
		}
		if !unreachable(err) {
			b.logf(warnLevel, "circuit breaker outcomes not recorded", "count", 1, "err", err)
		}
		return fmt.Errorf("breaker %q: record: %w", b.name, err)
	}
	r, err := breakerbox.ParseRecordReply(cr.res)
	if err != nil {
		cr.release()
		return fmt.Errorf("breaker %q: %w", b.name, err)
	}
	b.settle(cr, prior, r.Generation, budget-time.Since(start))
	b.observe(r.Announcement, fromRecordReply)
	return nil
}
