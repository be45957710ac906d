package client

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

// Status is a snapshot of one breaker: see [breakerbox.Status].
type Status = breakerbox.Status

func evalOp(ctx context.Context, rdb redis.UniversalClient, name string, args ...any) (any, error) {
	if err := breakerbox.ValidateName(name); err != nil {
		return nil, err
	}
	res, err := breakerbox.BreakerScript.Run(ctx, rdb, breakerbox.Keys(name), args...).Result()
	if err != nil {
		return nil, fmt.Errorf("breaker %q: %s: %w", name, args[0], breakerbox.ScriptError(err))
	}
	return res, nil
}

// ReadStatus returns a snapshot of breaker name. A breaker nobody has used
// reads as closed with the seed defaults.
func ReadStatus(ctx context.Context, rdb redis.UniversalClient, name string) (Status, error) {
	res, err := evalOp(ctx, rdb, name, "status")
	if err != nil {
		return Status{}, err
	}
	return breakerbox.ParseStatus(name, res)
}

// Event is one entry of a breaker's history: see [breakerbox.Event].
type Event = breakerbox.Event

// ReadHistory returns up to limit of the breaker's latest events, newest
// first. An entry that is not valid JSON (a hand-edited list) is returned
// as an event named "unreadable" with the raw text in Detail.
func ReadHistory(ctx context.Context, rdb redis.UniversalClient, name string, limit int) ([]Event, error) {
	if err := breakerbox.ValidateName(name); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	raw, err := rdb.LRange(ctx, breakerbox.Key(name, "history"), 0, int64(limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("breaker %q: history: %w", name, err)
	}
	out := make([]Event, 0, len(raw))
	for _, r := range raw {
		out = append(out, breakerbox.ParseEvent(r))
	}
	return out, nil
}

// Action is an operator control: see [breakerbox.Action].
type Action = breakerbox.Action

// The operator controls.
const (
	ActionReset     = breakerbox.ActionReset
	ActionForceOpen = breakerbox.ActionForceOpen
	ActionDisable   = breakerbox.ActionDisable
	ActionRelease   = breakerbox.ActionRelease
)

// Control applies an operator action to breaker name; actor says who did it
// (it is written to the history and the transition stream).
func Control(ctx context.Context, rdb redis.UniversalClient, name string, action Action, actor string) (Status, error) {
	if _, err := evalOp(ctx, rdb, name, "control", string(action), actor); err != nil {
		return Status{}, err
	}
	return ReadStatus(ctx, rdb, name)
}

// Configure writes cfg as breaker name's shared config and reports how many
// fields changed. Every worker uses it from its next call.
func Configure(ctx context.Context, rdb redis.UniversalClient, name string, cfg Config, actor string) (int, error) {
	if err := cfg.Validate(); err != nil {
		return 0, fmt.Errorf("breaker %q: %w", name, err)
	}
	res, err := evalOp(ctx, rdb, name, configureArgs(actor, cfg)...)
	if err != nil {
		return 0, err
	}
	r, err := breakerbox.ParseConfigureReply(res)
	if err != nil {
		return 0, fmt.Errorf("breaker %q: %w", name, err)
	}
	return r.Written, nil
}

// Status reads the breaker's snapshot.
func (b *Breaker) Status(ctx context.Context) (Status, error) { return ReadStatus(ctx, b.rdb, b.name) }

// History returns up to limit latest events, newest first.
func (b *Breaker) History(ctx context.Context, limit int) ([]Event, error) {
	return ReadHistory(ctx, b.rdb, b.name, limit)
}

func (b *Breaker) control(ctx context.Context, a Action) error {
	res, err := evalOp(ctx, b.rdb, b.name, "control", string(a), b.o.actor)
	if err != nil {
		return err
	}
	r, err := breakerbox.ParseControlReply(res)
	if err != nil {
		return fmt.Errorf("breaker %q: control: %w", b.name, err)
	}
	b.observe(r, false)
	return nil
}

// Reset forces the breaker to closed, clears its consecutive counts and
// lifts force-open or disable. Lifetime totals are kept.
func (b *Breaker) Reset(ctx context.Context) error { return b.control(ctx, ActionReset) }

// ForceOpen makes the breaker refuse every call until Release or Reset.
func (b *Breaker) ForceOpen(ctx context.Context) error { return b.control(ctx, ActionForceOpen) }

// Disable makes the breaker admit every call (still counting) until Release or Reset.
func (b *Breaker) Disable(ctx context.Context) error { return b.control(ctx, ActionDisable) }

// Release returns to normal operation: from force-open to half-open (probes
// first), from disable to closed.
func (b *Breaker) Release(ctx context.Context) error { return b.control(ctx, ActionRelease) }

// SetConfig changes the shared config for every worker (this handle too).
func (b *Breaker) SetConfig(ctx context.Context, cfg Config) error {
	// Under regMu, so a first-use registration of the old config cannot
	// land after this one.
	b.regMu.Lock()
	defer b.regMu.Unlock()
	if _, err := Configure(ctx, b.rdb, b.name, cfg, b.o.actor); err != nil {
		return err
	}
	b.cfg.Store(&cfg)
	b.registered = true
	return nil
}

// Names returns every breaker in Redis, sorted: those in the registry set
// and those found by SCAN (on a cluster, on every master).
func Names(ctx context.Context, rdb redis.UniversalClient) ([]string, error) {
	seen := map[string]bool{}
	members, err := rdb.SMembers(ctx, breakerbox.RegistryKey).Result()
	if err != nil {
		return nil, fmt.Errorf("list breakers: %w", err)
	}
	for _, n := range members {
		if breakerbox.ValidateName(n) == nil {
			seen[n] = true
		}
	}
	var mu sync.Mutex // ForEachMaster scans the masters concurrently
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, breakerbox.KeyPrefix+"{*}:state", 1000).Iterator()
		for iter.Next(ctx) {
			if n, ok := breakerbox.NameFromKey(iter.Val()); ok {
				mu.Lock()
				seen[n] = true
				mu.Unlock()
			}
		}
		return iter.Err()
	}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	default:
		err = fmt.Errorf("SCAN over %T is not supported; use *redis.Client or *redis.ClusterClient", rdb)
	}
	if err != nil {
		return nil, fmt.Errorf("list breakers: %w", err)
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// statusChunk is how many status reads go in one pipeline.
const statusChunk = 1000

// ReadStatuses reads many breakers' snapshots with pipelined EVALSHA, a
// round trip per 1,000 names, in the order given. A breaker that cannot be
// read on its own (a corrupted config: ErrBadConfig) is left out of the
// result and named in the returned error, joined with errors.Join, so one
// broken breaker does not hide the others. A failure of Redis itself
// returns no statuses.
func ReadStatuses(ctx context.Context, rdb redis.UniversalClient, names []string) ([]Status, error) {
	for _, n := range names {
		if err := breakerbox.ValidateName(n); err != nil {
			return nil, err
		}
	}
	out := make([]Status, 0, len(names))
	var errs []error
	for start := 0; start < len(names); start += statusChunk {
		chunk := names[start:min(start+statusChunk, len(names))]
		results, err := statusPipeline(ctx, rdb, chunk)
		if err != nil {
			return nil, err
		}
		for i, res := range results {
			st, err := breakerbox.ParseStatus(chunk[i], res.val)
			if res.err != nil {
				err = res.err
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("breaker %q: status: %w", chunk[i], err))
				continue
			}
			out = append(out, st)
		}
	}
	return out, errors.Join(errs...)
}

type result struct {
	val any
	err error // an error reply of the script for this breaker alone
}

// statusPipeline runs the status operation for names in one pipeline. If
// the server lost the script (NOSCRIPT), it loads it once and runs the
// pipeline again.
func statusPipeline(ctx context.Context, rdb redis.UniversalClient, names []string) ([]result, error) {
	for attempt := 0; ; attempt++ {
		cmds := make([]*redis.Cmd, len(names))
		pipe := rdb.Pipeline()
		for i, n := range names {
			cmds[i] = pipe.EvalSha(ctx, breakerbox.BreakerScript.SHA1, breakerbox.Keys(n), "status")
		}
		_, _ = pipe.Exec(ctx) // errors are read per command below
		out := make([]result, len(cmds))
		noscript := false
		for i, cmd := range cmds {
			val, err := cmd.Result()
			var rerr redis.Error
			switch {
			case err == nil:
				out[i] = result{val: val}
			case redis.HasErrorPrefix(err, "NOSCRIPT"):
				noscript = true
			case errors.As(err, &rerr):
				out[i] = result{err: breakerbox.ScriptError(err)}
			default:
				return nil, fmt.Errorf("read breakers: %w", err)
			}
		}
		if !noscript {
			return out, nil
		}
		if attempt > 0 {
			return nil, fmt.Errorf("read breakers: script still missing after SCRIPT LOAD")
		}
		if _, err := breakerbox.BreakerScript.Load(ctx, rdb); err != nil {
			return nil, fmt.Errorf("read breakers: load script: %w", err)
		}
	}
}

// List returns every breaker's snapshot, sorted by name: the seed's
// get_all_circuit_breakers.
func List(ctx context.Context, rdb redis.UniversalClient) ([]Status, error) {
	names, err := Names(ctx, rdb)
	if err != nil {
		return nil, err
	}
	return ReadStatuses(ctx, rdb, names)
}
