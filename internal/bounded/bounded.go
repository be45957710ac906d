// Package bounded runs a Redis call so that its caller waits at most a
// given time, whatever the connection does: go-redis honours a context's
// deadline on the socket only when the client was made with
// ContextTimeoutEnabled, and otherwise waits for its own read timeout
// (3s by default) on a server that stopped answering.
package bounded

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStopped is the error of a call made in a Group that was stopped: it
// was not sent.
var ErrStopped = errors.New("stopped: no more redis calls")

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
	return CallIn(ctx, nil, op, d, fn, late)
}

// CallIn is Call with fn's goroutine run in g (see Group): once g is
// stopped, the call is not made and its error is ErrStopped, and a call
// that g's stop cancelled returns ErrStopped too. A nil g is Call.
func CallIn[T any](ctx context.Context, g *Group, op string, d time.Duration, fn func(context.Context) (T, error),
	late func(T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	var zero T
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	unhook := func() bool { return true }
	if g != nil {
		unhook = context.AfterFunc(g.ctx, cancel) // Stop cancels the call, abandoned or not
	}
	ch := make(chan result, 1)
	var state atomic.Int32 // 0 waiting, 1 delivered, 2 abandoned
	run := func() {
		v, err := fn(cctx)
		unhook()
		if state.CompareAndSwap(0, 1) {
			ch <- result{v, err}
		} else if late != nil {
			late(v, err)
		}
		cancel() // after the result is delivered: the caller reads cctx.Done as the deadline
	}
	if g == nil {
		go run()
	} else if !g.Go(run) {
		unhook()
		cancel()
		return zero, ErrStopped
	}
	stopped := func(err error) error {
		if g != nil && g.Stopped() && ctx.Err() == nil && (err == nil || errors.Is(err, context.Canceled)) {
			return ErrStopped
		}
		return err
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return r.v, stopped(r.err)
		}
		return r.v, nil
	case <-cctx.Done():
	case <-ctx.Done():
	}
	if !state.CompareAndSwap(0, 2) {
		r := <-ch // the result came in as the wait ended
		if r.err != nil {
			return r.v, stopped(r.err)
		}
		return r.v, nil
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if err := stopped(nil); err != nil {
		return zero, err
	}
	return zero, &StallError{Op: op, After: d}
}

// Group runs the goroutines that talk to Redis for one owner (a Hub), so
// that the owner can stop them: after Stop no goroutine starts in the
// group, the contexts of its calls are cancelled (go-redis then sends
// nothing more for them: it checks the context before it takes a
// connection), and Wait waits until every goroutine of the group has
// returned, the calls whose callers stopped waiting included. Once Wait
// has returned nil, nothing the group ran talks to Redis again. The zero
// Group is not usable: use NewGroup.
type Group struct {
	ctx    context.Context // cancelled by Stop
	cancel context.CancelFunc
	mu     sync.RWMutex // Go holds it shared: calls do not queue on one another
	closed bool
	wg     sync.WaitGroup
}

// NewGroup returns a running Group.
func NewGroup() *Group {
	ctx, cancel := context.WithCancel(context.Background())
	return &Group{ctx: ctx, cancel: cancel}
}

// Go runs f on a goroutine of the group and reports true, or, once the
// group is stopped, does nothing and reports false.
func (g *Group) Go(f func()) bool {
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return false
	}
	g.wg.Add(1)
	g.mu.RUnlock()
	go func() {
		defer g.wg.Done()
		f()
	}()
	return true
}

// Stop starts no more goroutines and cancels the contexts of the calls
// in flight. It may be called more than once.
func (g *Group) Stop() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cancel()
}

// Stopped reports whether Stop was called.
func (g *Group) Stopped() bool { return g.ctx.Err() != nil }

// Wait waits, at most until ctx is done, until every goroutine of the
// group has returned; call it after Stop. A call blocked on a connection
// that honours no deadline can outlive ctx: Wait then returns an error
// that says so.
func (g *Group) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("redis calls still in flight: %w", ctx.Err())
	}
}
