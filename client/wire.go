package client

import (
	"context"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

// The operations of lua/breaker-8.lua that the client sends, built in one
// place (docs/protocol.md, "How the Go client uses the protocol").

// recordArgs returns the arguments of record REFUSED OUTCOME-GROUPS...:
// six fields per outcome (outcome.group).
func recordArgs(refused int64, outs []outcome) []any {
	args := make([]any, 0, 2+6*len(outs))
	args = append(args, "record", refused)
	for _, o := range outs {
		for _, f := range o.group() {
			args = append(args, f)
		}
	}
	return args
}

// tallyArgs returns the arguments of tally SUCCESSES FAILURES REFUSED:
// counts added to the totals only.
func tallyArgs(c counts) []any { return []any{"tally", c.s, c.f, c.r} }

// configArgs returns the arguments of seed or configure ACTOR FIELD VALUE...
// A seed writes cfg.Fields (the trip rules at their defaults left out: the
// script reads an absent field as its default); a configure, an explicit
// change, writes every field (AllFields), so that it also turns off the
// rules cfg leaves off, as admin.Configure does.
func configArgs(op, actor string, cfg Config) []any {
	fields := cfg.Fields()
	if op == "configure" {
		fields = cfg.AllFields()
	}
	args := make([]any, 0, 2+len(fields))
	args = append(args, op, actor)
	for _, f := range fields {
		args = append(args, f)
	}
	return args
}

// eval runs one operation of breaker-8.lua for b and maps script error
// codes to breakerbox's sentinel errors. ctx bounds nothing by itself:
// callers run it through call.
func (b *Breaker) eval(ctx context.Context, args ...any) (any, error) {
	b.h.io.begin()
	defer b.h.io.end()
	res, err := breakerbox.BreakerScript.Run(ctx, b.h.rdb, b.keys, args...).Result()
	if err != nil {
		return nil, breakerbox.ScriptError(err)
	}
	return res, nil
}

// configure stores cfg: an explicit change of the shared config.
func (b *Breaker) configure(ctx context.Context, cfg Config) (breakerbox.ConfigureReply, error) {
	res, err := b.eval(ctx, configArgs("configure", b.o.actor, cfg)...)
	if err != nil {
		return breakerbox.ConfigureReply{}, err
	}
	return breakerbox.ParseConfigureReply(res)
}

// scriptCall is one script call of a pipeline.
type scriptCall struct {
	script *breakerbox.Script
	keys   []string
	args   []any
}

// pipeline runs calls in one pipeline (on a Cluster, go-redis splits it by
// node) and returns one command per call. A call the server could not run
// as queued (NOSCRIPT after a restart or SCRIPT FLUSH; a read-only script
// the server cannot run with EVALSHA_RO or its shebang: see
// breakerbox.Script) was not run, so it is run again on its own through
// Script.Run, which falls back to EVAL (the script's source travels with
// it, whatever the server's cache holds) and learns what the server needs.
// The error is the pipeline's own (a connection that failed); the
// commands' are read one by one. With conn (a connection of one node, see
// ownConn) every call runs on it, so that a WAIT can follow them there.
func (h *Hub) pipeline(ctx context.Context, conn *redis.Conn, calls []scriptCall) ([]*redis.Cmd, error) {
	h.io.begin()
	defer h.io.end()
	cmds := make([]*redis.Cmd, len(calls))
	var on redis.Scripter = h.rdb
	newPipe := h.rdb.Pipeline
	if conn != nil {
		on, newPipe = conn, conn.Pipeline
	}
	pipe := newPipe()
	for i, c := range calls {
		cmds[i] = c.script.Queue(ctx, pipe, h.rdb, c.keys, c.args...)
	}
	_, err := pipe.Exec(ctx)
	// Calls the server lost the script for: load it once and pipeline them
	// again; whatever still fails (flushed again meanwhile, or a read-only
	// script the server cannot run as queued) runs on its own.
	var lost []int
	loaded := map[*breakerbox.Script]bool{}
	for i, c := range calls {
		if redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
			lost = append(lost, i)
			if !loaded[c.script] {
				loaded[c.script] = true
				_, _ = c.script.Load(ctx, h.rdb)
			}
		}
	}
	if len(lost) > 0 {
		pipe := newPipe()
		for _, i := range lost {
			c := calls[i]
			cmds[i] = c.script.Queue(ctx, pipe, h.rdb, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx)
	}
	for i, c := range calls {
		cerr := cmds[i].Err()
		var rerr redis.Error
		switch {
		case redis.HasErrorPrefix(cerr, "NOSCRIPT"),
			c.script.ReadOnly && errors.As(cerr, &rerr) && !strings.HasPrefix(cerr.Error(), "BAD"):
			cmds[i] = c.script.RunAs(ctx, on, h.rdb, c.keys, c.args...)
		}
	}
	if err != nil {
		for _, c := range cmds {
			if c.Err() == nil && c.Val() == nil {
				c.SetErr(err) // never sent or never answered: the pipeline's error is its own
			}
		}
	}
	var rerr redis.Error
	if err != nil && errors.As(err, &rerr) {
		err = nil // an error reply (WRONGPASS at connect included), read per command
	}
	return cmds, err
}

// cmdErr returns the command's error with script error codes mapped.
func cmdErr(c *redis.Cmd) error { return breakerbox.ScriptError(c.Err()) }
