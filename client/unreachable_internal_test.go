package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

// replyError is an error reply as go-redis returns one.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

var _ redis.Error = replyError("")

// TestOnlyUnreachabilityIsAnOutage: the errors that start an outage are
// those of a Redis that cannot be reached or cannot serve for now; error
// replies about the call itself (the script's BADARGS, BADCONFIG and
// BADKEYS, ACL and authentication errors) are not.
func TestOnlyUnreachabilityIsAnOutage(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&StallError{Op: "allow", After: time.Second}, true},
		{context.DeadlineExceeded, true},
		{io.EOF, true},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("wrapped: %w", syscall.ECONNRESET), true},
		{redis.ErrClosed, true},
		{redis.ErrPoolTimeout, true},
		{replyError("LOADING Redis is loading the dataset in memory"), true},
		{replyError("READONLY You can't write against a read only replica."), true},
		{replyError("CLUSTERDOWN The cluster is down"), true},
		{replyError("BUSY Redis is busy running a script."), true},
		{replyError("OOM command not allowed when used memory > 'maxmemory'."), true},
		{replyError("ERR max number of clients reached"), true},
		{breakerbox.ScriptError(replyError("BADARGS record REFUSED is \"x\", want an integer 0..1000000000")), false},
		{breakerbox.ScriptError(replyError("BADCONFIG failure_threshold is \"lots\"")), false},
		{breakerbox.ScriptError(replyError("BADKEYS KEYS[2] must be circuit_breaker:{x}:failures")), false},
		{replyError("NOPERM this user has no permissions to run the 'evalsha' command"), false},
		{replyError("WRONGPASS invalid username-password pair or user is disabled."), false},
		{replyError("NOAUTH Authentication required."), false},
		{replyError("ERR Protocol error: unauthenticated multibulk length"), false},
		{context.Canceled, false},
		{redis.Nil, false},
		{errors.New("something else"), false},
	} {
		if got := unreachable(c.err); got != c.want {
			t.Errorf("unreachable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
