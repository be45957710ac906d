package bench

import (
	"context"
	"net"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Counter is a go-redis hook that counts what a client sends: round trips
// (a command, or a whole pipeline), commands, and the round trips made on a
// caller's path, that is with a context marked by OnCallerPath. Work a
// library does in the background (a batch sent from its own goroutine)
// uses its own context and is counted only in the totals. The set-up
// go-redis sends on every new connection (HELLO, CLIENT SETINFO,
// CLIENT MAINT_NOTIFICATIONS, AUTH, SELECT) is not a call's work: it is left out, and dials are counted
// apart.
type Counter struct {
	roundTrips       atomic.Int64
	commands         atomic.Int64
	callerRoundTrips atomic.Int64
	dials            atomic.Int64
}

// Counts is a reading of a Counter.
type Counts struct {
	RoundTrips       int64 `json:"round_trips"`
	Commands         int64 `json:"commands"`
	CallerRoundTrips int64 `json:"caller_round_trips"`
	Dials            int64 `json:"dials"`
}

// Sub returns c minus o.
func (c Counts) Sub(o Counts) Counts {
	return Counts{c.RoundTrips - o.RoundTrips, c.Commands - o.Commands, c.CallerRoundTrips - o.CallerRoundTrips, c.Dials - o.Dials}
}

// Add returns c plus o.
func (c Counts) Add(o Counts) Counts {
	return Counts{c.RoundTrips + o.RoundTrips, c.Commands + o.Commands, c.CallerRoundTrips + o.CallerRoundTrips, c.Dials + o.Dials}
}

// Read returns the counts so far.
func (c *Counter) Read() Counts {
	return Counts{c.roundTrips.Load(), c.commands.Load(), c.callerRoundTrips.Load(), c.dials.Load()}
}

type callerKey struct{}

// OnCallerPath marks ctx as the context of a protected call, so that round
// trips made with it (or a context derived from it) count as on the
// caller's path.
func OnCallerPath(ctx context.Context) context.Context {
	return context.WithValue(ctx, callerKey{}, true)
}

func onCallerPath(ctx context.Context) bool {
	v, _ := ctx.Value(callerKey{}).(bool)
	return v
}

var _ redis.Hook = (*Counter)(nil)

// DialHook counts new connections.
func (c *Counter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c.dials.Add(1)
		return next(ctx, network, addr)
	}
}

// connSetup reports whether cmd is part of go-redis's connection set-up.
func connSetup(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "auth", "select":
		return true
	case "client":
		args := cmd.Args()
		if len(args) > 1 {
			sub, _ := args[1].(string)
			switch strings.ToLower(sub) {
			case "setinfo", "setname", "maint_notifications":
				return true
			}
		}
	}
	return false
}

// ProcessHook counts one round trip and one command.
func (c *Counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if connSetup(cmd) {
			return next(ctx, cmd)
		}
		c.roundTrips.Add(1)
		c.commands.Add(1)
		if onCallerPath(ctx) {
			c.callerRoundTrips.Add(1)
		}
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook counts one round trip and every command in it.
func (c *Counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && connSetup(cmds[0]) {
			return next(ctx, cmds)
		}
		c.roundTrips.Add(1)
		c.commands.Add(int64(len(cmds)))
		if onCallerPath(ctx) {
			c.callerRoundTrips.Add(1)
		}
		return next(ctx, cmds)
	}
}
