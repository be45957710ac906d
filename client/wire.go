package client

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

// The operations of lua/breaker-8.lua that the client sends, built in one
// place (docs/protocol.md, "How the Go client uses the protocol").

// protocolV2 is true when the embedded script has the seed and tally
// operations and six-field record groups (protocol v2). Until it lands,
// seed is a configure guarded by HLEN and tally a record of stale groups.
var protocolV2 = strings.Contains(breakerbox.BreakerScript.Source, "tally SUCCESSES")

// staleGen is a generation no breaker has: outcomes sent with it count in
// the totals only (how protocol v1 tallies).
const staleGen = 9007199254740991

// recordArgs returns the arguments of record REFUSED OUTCOME-GROUPS...
func recordArgs(refused int64, outs []outcome) []any {
	width := 4
	if protocolV2 {
		width = 6
	}
	args := make([]any, 0, 2+width*len(outs))
	args = append(args, "record", refused)
	for _, o := range outs {
		args = append(args, o.kind, o.gen, o.lease, o.err)
		if protocolV2 {
			args = append(args, "", "") // DURATION_MS, RETRY_AFTER_MS: issue 11
		}
	}
	return args
}

// tallyArgs returns the arguments that add c to the totals only.
func tallyArgs(c counts) []any {
	if protocolV2 {
		return []any{"tally", c.s, c.f, c.r}
	}
	outs := make([]outcome, 0, c.s+c.f)
	for i := int64(0); i < c.s; i++ {
		outs = append(outs, outcome{kind: "s", gen: staleGen})
	}
	for i := int64(0); i < c.f; i++ {
		outs = append(outs, outcome{kind: "f", gen: staleGen, err: "decided during a redis outage"})
	}
	return recordArgs(c.r, outs)
}

// configArgs returns the arguments of seed or configure ACTOR FIELD VALUE...
func configArgs(op, actor string, cfg Config) []any {
	fields := cfg.Fields()
	args := make([]any, 0, 2+len(fields))
	args = append(args, op, actor)
	for _, f := range fields {
		args = append(args, f)
	}
	return args
}

// statusScript is the script that answers status.
func statusScript() *breakerbox.Script {
	if s := scriptNamed("status"); s != nil {
		return s
	}
	return breakerbox.BreakerScript
}

func scriptNamed(name string) *breakerbox.Script {
	for _, s := range breakerbox.Scripts() {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// eval runs one operation of breaker-8.lua for b and maps script error
// codes to breakerbox's sentinel errors. ctx bounds nothing by itself:
// callers run it through call.
func (b *Breaker) eval(ctx context.Context, args ...any) (any, error) {
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
// node) and returns one command per call. If the server lost a script
// (NOSCRIPT: a restart, SCRIPT FLUSH), it loads it and sends those calls
// again, once. The error is the pipeline's own (a connection that failed),
// the commands' are read one by one.
func (h *Hub) pipeline(ctx context.Context, calls []scriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	run := func(idx []int) error {
		pipe := h.rdb.Pipeline()
		for _, i := range idx {
			c := calls[i]
			cmds[i] = pipe.EvalSha(ctx, c.script.SHA1, c.keys, c.args...)
		}
		_, err := pipe.Exec(ctx)
		h.send.pipelines.Add(1)
		return err
	}
	all := make([]int, len(calls))
	for i := range all {
		all[i] = i
	}
	err := run(all)
	var lost []int
	loaded := map[*breakerbox.Script]bool{}
	for i, c := range cmds {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			lost = append(lost, i)
			if !loaded[calls[i].script] {
				loaded[calls[i].script] = true
				if _, lerr := calls[i].script.Load(ctx, h.rdb); lerr != nil {
					return cmds, lerr
				}
			}
		}
	}
	if len(lost) > 0 {
		err = run(lost)
	}
	var rerr redis.Error
	if err != nil && errors.As(err, &rerr) {
		err = nil // a command's own error reply, read per command
	}
	return cmds, err
}

// cmdErr returns the command's error with script error codes mapped.
func cmdErr(c *redis.Cmd) error { return breakerbox.ScriptError(c.Err()) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
