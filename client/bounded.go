package client

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/internal/bounded"
)

// StallError is the error of a Redis call that did not answer within the
// Redis timeout (WithRedisTimeout): its Op says which, its After how long
// it was waited for. The call may still complete later.
type StallError = bounded.StallError

// call runs fn, one exchange with Redis, so that the caller waits at most
// d whatever the connection does (see package internal/bounded); late is
// given the result of a call the caller stopped waiting for (a probe lease
// admitted too late is given back there). fn runs among h's calls, which
// Shutdown waits for, the abandoned ones included: once h is shut down the
// call is not made and its error is ErrShutdown.
func call[T any](ctx context.Context, h *Hub, op string, d time.Duration, fn func(context.Context) (T, error),
	late func(T, error)) (T, error) {
	v, err := bounded.CallIn(ctx, h.calls, op, d, fn, late)
	if errors.Is(err, bounded.ErrStopped) {
		return v, ErrShutdown
	}
	return v, err
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

// notRunReplies are the error replies of a server that refused a call
// before it applied anything, so its counts may be kept and tallied later.
// A Cluster refuses with CLUSTERDOWN, TRYAGAIN, MOVED or ASK before running
// anything; a replica, a master without enough replicas or out of memory
// refuses breaker-8.lua's first write (READONLY, NOREPLICAS, OOM), which
// the script raises before it has written anything. The reply is the one
// attempt's: breakerbox.Script sends a writing script once (go-redis does
// not retry it after a lost reply), so no earlier attempt can have run.
var notRunReplies = []string{"CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK", "LOADING", "MASTERDOWN", "READONLY",
	"NOREPLICAS", "OOM"}

// notRun reports whether err is an error reply of a call the server did
// not run (notRunReplies).
func notRun(err error) bool {
	var rerr redis.Error
	if err == nil || !errors.As(err, &rerr) {
		return false
	}
	for _, p := range notRunReplies {
		if strings.HasPrefix(rerr.Error(), p) {
			return true
		}
	}
	return false
}
