package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// StallError is the error of a Redis call that did not answer within the
// Redis timeout (WithRedisTimeout). The call may still complete later.
type StallError struct {
	// Op is what was asked of Redis.
	Op string
	// After is the Redis timeout that ran out.
	After time.Duration
}

// Error says which call stalled and for how long it was waited for.
func (e *StallError) Error() string {
	return fmt.Sprintf("redis did not answer %s within %s", e.Op, e.After)
}

// Timeout reports true, as a net.Error's does.
func (e *StallError) Timeout() bool { return true }

// call runs fn, one Redis exchange, so that the caller waits at most d
// (and not past ctx) whatever the connection does: go-redis honours a
// context's deadline on the socket only when the client was made with
// ContextTimeoutEnabled, so fn runs on a goroutine of its own, with a
// context bounded by d as well, and the caller stops waiting at the
// deadline. When the caller has stopped waiting, late (if not nil) is given
// fn's result once it arrives: a probe lease admitted too late is given
// back there. A timeout is a *StallError; the caller's own cancellation is
// returned as ctx.Err().
func call[T any](ctx context.Context, op string, d time.Duration, fn func(context.Context) (T, error),
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
		cancel()
		if state.CompareAndSwap(0, 1) {
			ch <- result{v, err}
		} else if late != nil {
			late(v, err)
		}
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

// unreachable reports whether err says that Redis could not be reached or
// could not serve the call for now: a stall past the Redis timeout, a
// network or dial error, a connection closed or refused, a pool with no
// connection to give, a server loading its data, without a master, out of
// memory, busy with a script, or a cluster being reconfigured. Only such
// errors start an outage. Anything else (a script's BADARGS, BADCONFIG or
// BADKEYS, NOPERM, WRONGPASS, NOAUTH, an unknown command) is an error to
// return or log as what it is.
func unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, redis.Nil) {
		return false
	}
	var stall *StallError
	var ne net.Error
	switch {
	case errors.As(err, &stall), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return true
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range unavailableReplies {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return false
}

// unavailableReplies are the error replies of a server that cannot serve
// the call for now, however well formed it is.
var unavailableReplies = []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY",
	"MOVED", "ASK", "BUSY", "OOM", "NOREPLICAS", "ERR max number of clients reached"}
