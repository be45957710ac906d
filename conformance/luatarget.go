package conformance

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/luaengine"
)

// LuaEngine runs every target in gopher-lua (internal/luaengine), each on
// its own in-memory store with a clock the runner sets.
func LuaEngine() Engine {
	return Engine{Name: "gopher-lua", Parallel: true, Open: func(_ context.Context, name string) (Target, error) {
		return NewLuaTarget(name), nil
	}}
}

// NewLuaTarget returns breaker name on a fresh gopher-lua store whose clock
// starts at BaseTime.
func NewLuaTarget(name string) Target {
	t := &luaTarget{name: name}
	t.now.Store(BaseTime)
	t.eng = luaengine.New(func() time.Time { return time.UnixMilli(t.now.Load()) })
	return t
}

type luaTarget struct {
	name string
	eng  *luaengine.Engine
	now  atomic.Int64
}

// doScript runs one command given in ARGV: how redis steps reach the store.
const doScript = "return redis.call(unpack(ARGV))"

func (t *luaTarget) Name() string { return t.name }

func (t *luaTarget) Eval(_ context.Context, script *breakerbox.Script, keys []string, args ...string) (any, error) {
	return luaReply(t.eng.Eval(script.Source, keys, args...))
}

func (t *luaTarget) Do(_ context.Context, args ...string) (any, error) {
	return luaReply(t.eng.Eval(doScript, nil, args...))
}

// luaReply turns every error of the engine into an error reply, as Redis
// turns a script's runtime error into one.
func luaReply(v any, err error) (any, error) {
	if err == nil {
		return v, nil
	}
	var se luaengine.ScriptError
	if errors.As(err, &se) {
		return nil, &ReplyError{Text: string(se)}
	}
	return nil, &ReplyError{Text: "ERR " + err.Error()}
}

func (t *luaTarget) exists(key string) bool {
	keys := t.eng.Keys()
	i := sort.SearchStrings(keys, key)
	return i < len(keys) && keys[i] == key
}

func (t *luaTarget) Type(_ context.Context, key string) (string, error) {
	switch {
	case !t.exists(key):
		return "none", nil
	case func() bool { _, ok := t.eng.Get(key); return ok }():
		return "string", nil
	case len(t.eng.HGetAll(key)) > 0:
		return "hash", nil
	case len(t.eng.LRange(key)) > 0:
		return "list", nil
	case len(t.eng.ZMembers(key)) > 0:
		return "zset", nil
	case len(t.eng.XRange(key)) > 0:
		return "stream", nil
	}
	return "none", nil // an empty container, which Redis would have deleted
}

func (t *luaTarget) Get(ctx context.Context, key string) (string, bool, error) {
	if v, ok := t.eng.Get(key); ok {
		return v, true, nil
	}
	if typ, _ := t.Type(ctx, key); typ != "none" {
		return "", false, &ReplyError{Text: "WRONGTYPE key holds a " + typ}
	}
	return "", false, nil
}

func (t *luaTarget) HGetAll(_ context.Context, key string) (map[string]string, error) {
	return t.eng.HGetAll(key), nil
}

func (t *luaTarget) LRange(_ context.Context, key string) ([]string, error) {
	return t.eng.LRange(key), nil
}

func (t *luaTarget) XRange(_ context.Context, key string) ([]StreamEntry, error) {
	var out []StreamEntry
	for _, e := range t.eng.XRange(key) {
		fields := map[string]string{}
		for i := 0; i+1 < len(e.Fields); i += 2 {
			fields[e.Fields[i]] = e.Fields[i+1]
		}
		out = append(out, StreamEntry{ID: e.ID, Fields: fields})
	}
	return out, nil
}

func (t *luaTarget) ZRange(_ context.Context, key string) ([]ZMember, error) {
	var out []ZMember
	for m, s := range t.eng.ZMembers(key) {
		out = append(out, ZMember{Member: m, Score: s})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score < out[j].Score
		}
		return out[i].Member < out[j].Member
	})
	return out, nil
}

func (t *luaTarget) Published(context.Context) ([]string, error) {
	channel := breakerbox.Channel(t.name)
	var out []string
	for _, m := range t.eng.Published() {
		if m.Channel == channel {
			out = append(out, m.Payload)
		} else if strings.HasPrefix(m.Channel, breakerbox.KeyPrefix) {
			out = append(out, "wrong channel "+m.Channel+": "+m.Payload)
		}
	}
	return out, nil
}

func (t *luaTarget) Now(context.Context) (int64, error) { return t.now.Load(), nil }

func (t *luaTarget) SetNow(ms int64) bool {
	t.now.Store(ms)
	return true
}

func (t *luaTarget) Close() error { return nil }
