package luaengine_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/internal/luaengine"
)

func engine() (*luaengine.Engine, *time.Time) {
	now := time.UnixMilli(1_700_000_000_123)
	return luaengine.New(func() time.Time { return now }), &now
}

func TestRepliesConvertAsRedisConvertsThem(t *testing.T) {
	e, _ := engine()
	cases := []struct {
		src  string
		want any
	}{
		{`return redis.call('GET', 'missing') == false and 1 or 0`, int64(1)},
		{`return 3.9`, int64(3)},
		{`return 'x'`, "x"},
		{`return {1, 'a', {2}}`, []any{int64(1), "a", []any{int64(2)}}},
		{`return {1, nil, 3}`, []any{int64(1)}},
		{`return false`, nil},
		{`return redis.call('TIME')[1]`, "1700000000"},
		{`return redis.call('TIME')[2]`, "123000"},
		{`redis.call('SET', 'k', 1700000000123) return redis.call('GET', 'k')`, "1700000000123"},
	}
	for _, c := range cases {
		got, err := e.Eval(c.src, nil)
		if err != nil || !equal(got, c.want) {
			t.Errorf("%s = %#v, %v; want %#v", c.src, got, err, c.want)
		}
	}
}

func equal(a, b any) bool {
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok != bok {
		return false
	}
	if !aok {
		return a == b
	}
	if len(as) != len(bs) {
		return false
	}
	for i := range as {
		if !equal(as[i], bs[i]) {
			return false
		}
	}
	return true
}

func TestErrorsAreRepliesOrRuntimeErrors(t *testing.T) {
	e, _ := engine()
	e.Set("s", "string")
	_, err := e.Eval(`return redis.error_reply('BADARGS nope')`, nil)
	var se luaengine.ScriptError
	if !errors.As(err, &se) || string(se) != "BADARGS nope" {
		t.Errorf("error_reply: %v, want ScriptError BADARGS nope", err)
	}
	if _, err := e.Eval(`error({err = 'NOPERM refused'})`, nil); !errors.As(err, &se) || string(se) != "NOPERM refused" {
		t.Errorf("error({err = ...}): %v, want ScriptError NOPERM refused, as Redis answers", err)
	}
	got, err := e.Eval(`local r = redis.pcall('HGET', 's', 'f') return r.err`, nil)
	if err != nil || !strings.HasPrefix(got.(string), "WRONGTYPE") {
		t.Errorf("pcall on the wrong type: %v, %v; want the WRONGTYPE error as a table", got, err)
	}
	if _, err := e.Eval(`return redis.call('HGET', 's', 'f')`, nil); err == nil || errors.As(err, &se) {
		t.Errorf("call on the wrong type: %v, want a Lua runtime error", err)
	}
	if _, err := e.Eval(`return redis.call('FLUSHALL')`, nil); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("an unimplemented command: %v", err)
	}
	if _, err := e.Eval(`return x.y`, nil); err == nil {
		t.Error("indexing a nil global succeeded")
	}
}

func TestStreamIDsAndMaxLen(t *testing.T) {
	e, now := engine()
	for i := 0; i < 3; i++ {
		if _, err := e.Eval(`return redis.call('XADD', KEYS[1], 'MAXLEN', 2, '*', 'n', ARGV[1])`, []string{"st"}, string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	*now = now.Add(time.Millisecond)
	if _, err := e.Eval(`return redis.call('XADD', KEYS[1], 'MAXLEN', 2, '*', 'n', 'd')`, []string{"st"}); err != nil {
		t.Fatal(err)
	}
	got := e.XRange("st")
	if len(got) != 2 || got[0].ID != "1700000000123-2" || got[1].ID != "1700000000124-0" || got[1].Fields[1] != "d" {
		t.Errorf("stream %+v, want the last two entries with increasing IDs", got)
	}
}

func TestListAndSortedSetCommands(t *testing.T) {
	e, _ := engine()
	src := `
for i = 1, 5 do redis.call('LPUSH', 'l', i) end
redis.call('LTRIM', 'l', 0, 2)
redis.call('ZADD', 'z', 30, 'c', 10, 'a', 20, 'b')
redis.call('ZREMRANGEBYSCORE', 'z', '-inf', 10)
local first = redis.call('ZRANGE', 'z', 0, 0, 'WITHSCORES')
return {redis.call('LRANGE', 'l', 0, -1), first, redis.call('ZCARD', 'z'), redis.call('ZSCORE', 'z', 'c')}`
	got, err := e.Eval(src, nil)
	want := []any{[]any{"5", "4", "3"}, []any{"b", "20"}, int64(2), "30"}
	if err != nil || !equal(got, want) {
		t.Errorf("got %#v, %v; want %#v", got, err, want)
	}
}

// TestShebangLineIsStripped: gopher-lua cannot compile "#!lua ...", which
// Redis 7 reads as the script's flags; the engine empties that line and
// keeps line numbers.
func TestShebangLineIsStripped(t *testing.T) {
	e, _ := engine()
	got, err := e.Eval("#!lua flags=no-writes\nreturn redis.call('TYPE', 'missing')", nil)
	if err != nil || got != "none" {
		t.Errorf("shebang script = %#v, %v; want \"none\"", got, err)
	}
	_, err = e.Eval("#!lua flags=no-writes\n\nreturn x.y", nil)
	if err == nil || !strings.Contains(err.Error(), ":3:") {
		t.Errorf("runtime error %v, want it on line 3", err)
	}
}
