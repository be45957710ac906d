// Package bounded runs a Redis call so that its caller waits at most a
// given time, whatever the connection does: go-redis honours a context's
// deadline on the socket only when the client was made with
// ContextTimeoutEnabled, and otherwise waits for its own read timeout
// (3s by default) on a server that stopped answering.
package bounded

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// StallError is the error of a call that did not answer within its bound.
// The call may still complete later.
type StallError struct {
	// Op is what was asked of Redis.
	Op string
	// After is the bound that ran out.
	After time.Duration
}

// Error says which call stalled and for how long it was waited for.
func (e *StallError) Error() string {
	return fmt.Sprintf("redis did not answer %s within %s", e.Op, e.After)
}

// Timeout reports true, as a net.Error's does.
func (e *StallError) Timeout() bool { return true }

// Call runs fn, one exchange with Redis, so that the caller waits at most d
// and not past ctx: fn runs on a goroutine of its own, with a context
// bounded by d as well (which go-redis honours when it can), and the caller
// stops waiting at the deadline. When the caller has stopped waiting, late
// (if not nil) is given fn's result once it arrives. A timeout is a
// *StallError; the caller's own cancellation is returned as ctx.Err().
func Call[T any](ctx context.Context, op string, d time.Duration, fn func(context.Context) (T, error),
	late func(T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	ch := make(chan result, 1)
	var state atomic.Int32 // 0 waiting, 1 delivered, 2 abandoned
	go func() {
		v, err := fn(cctx)
		if state.CompareAndSwap(0, 1) {
			ch <- result{v, err}
		} else if late != nil {
			late(v, err)
		}
		cancel() // after the result is delivered: the caller reads cctx.Done as the deadline
	}()
	var zero T
	select {
	case r := <-ch:
		return r.v, r.err
	case <-cctx.Done():
	case <-ctx.Done():
	}
	if !state.CompareAndSwap(0, 2) {
		r := <-ch // the result came in as the wait ended
		return r.v, r.err
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	return zero, &StallError{Op: op, After: d}
}
