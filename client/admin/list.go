package admin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

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

// Statuses reads many breakers' snapshots with pipelined EVALSHA, a
// round trip per 1,000 names, in the order given. A breaker that cannot be
// read on its own (a corrupted config: ErrBadConfig) is left out of the
// result and named in the returned error, joined with errors.Join, so one
// broken breaker does not hide the others. A failure of Redis itself
// returns no statuses.
func Statuses(ctx context.Context, rdb redis.UniversalClient, names []string) ([]breakerbox.Status, error) {
	for _, n := range names {
		if err := breakerbox.ValidateName(n); err != nil {
			return nil, err
		}
	}
	out := make([]breakerbox.Status, 0, len(names))
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

// statusPipeline runs lua/status-8.lua for names in one pipeline. If the
// server lost the script (NOSCRIPT), it loads it and runs the pipeline
// again; if the server cannot run it as sent (no usable EVALSHA_RO, no
// shebang), one status read through Script.Run learns what it needs first.
func statusPipeline(ctx context.Context, rdb redis.UniversalClient, names []string) ([]result, error) {
	script := breakerbox.StatusScript
	for attempt := 0; ; attempt++ {
		cmds := make([]*redis.Cmd, len(names))
		pipe := rdb.Pipeline()
		for i, n := range names {
			cmds[i] = script.Queue(ctx, pipe, rdb, breakerbox.Keys(n), "status")
		}
		_, _ = pipe.Exec(ctx) // errors are read per command below
		out := make([]result, len(cmds))
		noscript, unusable := false, -1
		for i, cmd := range cmds {
			val, err := cmd.Result()
			var rerr redis.Error
			switch {
			case err == nil:
				out[i] = result{val: val}
			case redis.HasErrorPrefix(err, "NOSCRIPT"):
				noscript = true
			case errors.As(err, &rerr) && !strings.HasPrefix(err.Error(), "BAD"):
				unusable = i // an unknown EVALSHA_RO, a refused read-only run
			case errors.As(err, &rerr):
				out[i] = result{err: breakerbox.ScriptError(err)}
			default:
				return nil, fmt.Errorf("read breakers: %w", err)
			}
		}
		if !noscript && unusable < 0 {
			return out, nil
		}
		if attempt > 1 {
			return nil, fmt.Errorf("read breakers: the status script still cannot run: %w", cmds[max(unusable, 0)].Err())
		}
		if unusable >= 0 {
			if err := script.Run(ctx, rdb, breakerbox.Keys(names[unusable]), "status").Err(); err != nil &&
				!strings.HasPrefix(err.Error(), "BAD") {
				return nil, fmt.Errorf("read breakers: %w", err)
			}
		}
		if noscript {
			if _, err := script.Load(ctx, rdb); err != nil {
				return nil, fmt.Errorf("read breakers: load script: %w", err)
			}
		}
	}
}

// List returns every breaker's snapshot, sorted by name: the seed's
// get_all_circuit_breakers.
func List(ctx context.Context, rdb redis.UniversalClient) ([]breakerbox.Status, error) {
	names, err := Names(ctx, rdb)
	if err != nil {
		return nil, err
	}
	return Statuses(ctx, rdb, names)
}
