package conformance

import (
	"context"
	"fmt"

	"github.com/breakerbox/breakerbox"
)

// Target is one breaker on one engine: where RunVector sends a vector's
// steps and reads back what it checks. Every engine implements it: gopher-lua
// (NewLuaTarget), and miniredis, redis-server and Redis Cluster through
// go-redis (NewRedisTarget).
type Target interface {
	// Name is the breaker's name; its keys are breakerbox.Keys(Name()).
	Name() string
	// Eval runs script (breakerbox.BreakerScript or breakerbox.StatusScript) with
	// keys and args. A script error reply is returned as *ReplyError; any
	// other error means the engine failed.
	Eval(ctx context.Context, script *breakerbox.Script, keys []string, args ...string) (any, error)
	// Do runs one raw command (the redis steps). Error replies are *ReplyError.
	Do(ctx context.Context, args ...string) (any, error)

	// Type returns the type of key: none, string, hash, list, zset, stream.
	Type(ctx context.Context, key string) (string, error)
	// Get returns the string at key; ok is false when the key is absent.
	Get(ctx context.Context, key string) (value string, ok bool, err error)
	// HGetAll returns the hash at key (empty when absent).
	HGetAll(ctx context.Context, key string) (map[string]string, error)
	// LRange returns the whole list at key, head first.
	LRange(ctx context.Context, key string) ([]string, error)
	// XRange returns every entry of the stream at key, oldest first.
	XRange(ctx context.Context, key string) ([]StreamEntry, error)
	// ZRange returns the sorted set at key with scores, lowest first.
	ZRange(ctx context.Context, key string) ([]ZMember, error)
	// Published returns the payloads announced on the breaker's channel
	// since the previous call, in order.
	Published(ctx context.Context) ([]string, error)

	// Now returns Redis's clock (TIME) in unix milliseconds.
	Now(ctx context.Context) (int64, error)
	// SetNow moves Redis's clock to ms and reports true, or reports false
	// when the engine's clock cannot be moved (a real server).
	SetNow(ms int64) bool

	// Close releases the target's connections.
	Close() error
}

// ReplyError is an error reply: from the script (BADARGS ...) or from a
// command.
type ReplyError struct{ Text string }

func (e *ReplyError) Error() string { return e.Text }

// StreamEntry is one stream entry with its fields in order.
type StreamEntry struct {
	ID     string
	Fields map[string]string
}

// ZMember is one member of a sorted set.
type ZMember struct {
	Member string
	Score  float64
}

// Engine opens targets: one per vector run, each on a fresh breaker.
type Engine struct {
	// Name names the engine in test names and the summary table.
	Name string
	// Open returns a target for breaker name.
	Open func(ctx context.Context, name string) (Target, error)
	// Parallel reports whether targets of this engine may run at the same
	// time (false when they share one settable clock).
	Parallel bool
}

// normalize converts a reply to int64, string, nil, []any or *ReplyError
// values only, failing on anything else.
func normalize(v any) (any, error) {
	switch v := v.(type) {
	case nil, int64, string:
		return v, nil
	case int:
		return int64(v), nil
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			n, err := normalize(x)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	}
	return nil, fmt.Errorf("reply holds a %T (%v); replies hold only integers and strings", v, v)
}
