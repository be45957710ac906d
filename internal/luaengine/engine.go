// Package luaengine runs breakerbox's Lua scripts in gopher-lua against a
// small in-memory store that speaks the subset of Redis the scripts use.
//
// It serves two purposes: unit tests of the scripts with a clock the test
// moves, and the client's local fallback breaker while Redis is unreachable,
// so that even then every transition is decided by the same Lua source.
package luaengine

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	gjson "github.com/alicebob/miniredis/v2/gopher-json"
	lua "github.com/yuin/gopher-lua"
)

// Message is one PUBLISH a script made.
type Message struct{ Channel, Payload string }

// StreamEntry is one entry of a stream, fields in the order they were added.
type StreamEntry struct {
	ID     string
	Fields []string
}

type zset map[string]float64

type stream struct {
	entries []StreamEntry
	lastMs  int64
	lastSeq int64
}

// Engine is an in-memory keyspace with a Lua interpreter. It is safe for
// concurrent use: each Eval runs alone, as a script does in Redis.
type Engine struct {
	mu        sync.Mutex
	now       func() time.Time
	data      map[string]any // string, map[string]string, zset, []string (head first), *stream
	published []Message
	reuse     bool        // keep one interpreter (NewReusing)
	L         *lua.LState // the kept interpreter
}

// New returns an empty engine whose TIME is read from now. Each Eval runs
// in an interpreter of its own, so a script cannot leave anything behind
// for the next (the tests' engine).
func New(now func() time.Time) *Engine {
	return &Engine{now: now, data: map[string]any{}}
}

// NewReusing returns an engine like New's whose Evals share one
// interpreter, as Redis's do: an Eval costs a few microseconds instead of
// setting up an interpreter (the worker's outage fallback, which runs on
// every call of an outage). Scripts must not rely on globals, which
// breakerbox's never do.
func NewReusing(now func() time.Time) *Engine {
	e := New(now)
	e.reuse = true
	return e
}

// ScriptError is an error reply of a script (redis.error_reply) or of a
// command it called; its text is what Redis would send after the "-".
type ScriptError string

func (e ScriptError) Error() string { return string(e) }

// Eval runs src with KEYS and ARGV and returns its reply converted as Redis
// converts it: int64, string, nil, []any, or a ScriptError.
func (e *Engine) Eval(src string, keys []string, args ...string) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	proto, err := Compile(src)
	if err != nil {
		return nil, err
	}
	L := e.L
	if L == nil {
		L = e.newState()
		if e.reuse {
			e.L = L
		} else {
			defer L.Close()
		}
	}
	defer L.SetTop(0)
	L.SetGlobal("KEYS", stringsTable(L, keys))
	L.SetGlobal("ARGV", stringsTable(L, args))
	L.Push(L.NewFunctionFromProto(proto))
	if err := L.PCall(0, 1, nil); err != nil {
		var apiErr *lua.ApiError
		if errors.As(err, &apiErr) {
			// error({err = "CODE message"}) ends a script with that error
			// reply, as in Redis.
			if t, ok := apiErr.Object.(*lua.LTable); ok {
				if msg, ok := t.RawGetString("err").(lua.LString); ok {
					return nil, ScriptError(msg)
				}
			}
			return nil, fmt.Errorf("lua runtime error: %s", apiErr.Object.String())
		}
		return nil, err
	}
	return fromLua(L.Get(-1))
}

// newState returns an interpreter with the libraries a script may use.
func (e *Engine) newState() *lua.LState {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		L.Push(L.NewFunction(lib.fn))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	L.SetGlobal("redis", e.redisTable(L))
	L.Push(L.NewFunction(gjson.Loader))
	L.Call(0, 1)
	L.SetGlobal("cjson", L.Get(-1))
	L.Pop(1)
	return L
}

// compiled caches compiled scripts for every engine of the process: a
// compiled FunctionProto is read-only, and compiling breaker-8.lua takes
// milliseconds, which a worker's first call during an outage should not
// pay.
var compiled sync.Map // source -> *lua.FunctionProto

// Compile compiles src once per process and returns it. Calling it ahead
// of time (Warm) spares the first Eval of src the compilation.
func Compile(src string) (*lua.FunctionProto, error) {
	if p, ok := compiled.Load(src); ok {
		return p.(*lua.FunctionProto), nil
	}
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	fn, err := L.LoadString(stripShebang(src))
	if err != nil {
		return nil, err
	}
	compiled.Store(src, fn.Proto)
	return fn.Proto, nil
}

// Warm compiles srcs in the background, once per process.
func Warm(srcs ...string) {
	go func() {
		for _, s := range srcs {
			_, _ = Compile(s)
		}
	}()
}

// stripShebang empties a first line such as "#!lua flags=no-writes", which
// Redis 7 reads as the script's flags and gopher-lua cannot compile. The
// line stays (empty) so that error messages keep their line numbers.
func stripShebang(src string) string {
	if !strings.HasPrefix(src, "#!") {
		return src
	}
	if i := strings.IndexByte(src, '\n'); i >= 0 {
		return src[i:]
	}
	return ""
}

func stringsTable(L *lua.LState, ss []string) *lua.LTable {
	t := L.NewTable()
	for _, s := range ss {
		t.Append(lua.LString(s))
	}
	return t
}

func (e *Engine) redisTable(L *lua.LState) *lua.LTable {
	t := L.NewTable()
	call := func(protected bool) lua.LGFunction {
		return func(L *lua.LState) int {
			args := make([]string, L.GetTop())
			for i := range args {
				switch v := L.Get(i + 1).(type) {
				case lua.LString:
					args[i] = string(v)
				case lua.LNumber:
					args[i] = formatNumber(float64(v))
				default:
					L.RaiseError("Lua redis lib command arguments must be strings or integers")
				}
			}
			reply, err := e.command(args)
			if err != nil {
				if !protected {
					L.RaiseError("%s", err.Error())
				}
				et := L.NewTable()
				et.RawSetString("err", lua.LString(err.Error()))
				L.Push(et)
				return 1
			}
			L.Push(toLua(L, reply))
			return 1
		}
	}
	L.SetField(t, "call", L.NewFunction(call(false)))
	L.SetField(t, "pcall", L.NewFunction(call(true)))
	L.SetField(t, "error_reply", L.NewFunction(func(L *lua.LState) int {
		et := L.NewTable()
		et.RawSetString("err", lua.LString(L.CheckString(1)))
		L.Push(et)
		return 1
	}))
	L.SetField(t, "status_reply", L.NewFunction(func(L *lua.LState) int {
		st := L.NewTable()
		st.RawSetString("ok", lua.LString(L.CheckString(1)))
		L.Push(st)
		return 1
	}))
	return t
}

// formatNumber renders a Lua number as Redis does for command arguments:
// integers without exponent or fraction.
func formatNumber(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e17 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', 17, 64)
}

// statusReply is a simple-string reply such as TYPE's: Lua sees {ok = text}.
type statusReply string

// toLua converts a command reply the way Redis does: nil becomes false.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LFalse
	case statusReply:
		t := L.NewTable()
		t.RawSetString("ok", lua.LString(v))
		return t
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		t := L.NewTable()
		for _, x := range v {
			t.Append(toLua(L, x))
		}
		return t
	}
	panic(fmt.Sprintf("luaengine: reply of type %T", v))
}

// fromLua converts a script's return value the way Redis does.
func fromLua(v lua.LValue) (any, error) {
	switch v := v.(type) {
	case lua.LNumber:
		return int64(v), nil
	case lua.LString:
		return string(v), nil
	case lua.LBool:
		if v {
			return int64(1), nil
		}
		return nil, nil
	case *lua.LTable:
		if e, ok := v.RawGetString("err").(lua.LString); ok {
			return nil, ScriptError(e)
		}
		if s, ok := v.RawGetString("ok").(lua.LString); ok {
			return string(s), nil
		}
		var out []any
		for i := 1; ; i++ {
			x := v.RawGetInt(i)
			if x == lua.LNil {
				return out, nil
			}
			c, err := fromLua(x)
			if err != nil {
				c = err.Error()
			}
			out = append(out, c)
		}
	}
	return nil, nil
}

var errWrongType = ScriptError("WRONGTYPE Operation against a key holding the wrong kind of value")

func wrongArgs(cmd string) error {
	return ScriptError("ERR wrong number of arguments for '" + strings.ToLower(cmd) + "' command")
}

// command runs one Redis command against the store.
func (e *Engine) command(args []string) (any, error) {
	cmd := strings.ToUpper(args[0])
	a := args[1:]
	need := func(n int) error {
		if len(a) < n {
			return wrongArgs(cmd)
		}
		return nil
	}
	minArgs, known := map[string]int{"TIME": 0, "DEL": 1, "EXISTS": 1, "TYPE": 1, "PUBLISH": 2, "GET": 1, "SET": 2,
		"HGET": 2, "HMGET": 2, "HGETALL": 1, "HSET": 3, "HDEL": 2, "HINCRBY": 3, "ZADD": 3, "ZREM": 2,
		"ZSCORE": 2, "ZCARD": 1, "ZRANGE": 3, "ZREMRANGEBYSCORE": 3, "LPUSH": 2, "LTRIM": 3,
		"LRANGE": 3, "XADD": 4}[cmd]
	if !known {
		return nil, ScriptError("ERR unknown command '" + args[0] + "' (luaengine implements only what the scripts use)")
	}
	if err := need(minArgs); err != nil {
		return nil, err
	}
	switch cmd {
	case "TIME":
		now := e.now()
		return []any{strconv.FormatInt(now.Unix(), 10), strconv.FormatInt(int64(now.Nanosecond()/1000), 10)}, nil
	case "DEL":
		var n int64
		for _, k := range a {
			if _, ok := e.data[k]; ok {
				delete(e.data, k)
				n++
			}
		}
		return n, nil
	case "PUBLISH":
		e.published = append(e.published, Message{a[0], a[1]})
		return int64(0), nil
	case "GET":
		s, ok, err := get[string](e, a[0])
		if !ok {
			return nil, err
		}
		return s, nil
	case "SET": // SET key value [NX]
		if len(a) > 2 && strings.EqualFold(a[2], "NX") {
			if _, ok := e.data[a[0]]; ok {
				return nil, nil
			}
		} else if len(a) > 2 {
			return nil, ScriptError("ERR syntax error (luaengine implements SET key value [NX])")
		}
		e.data[a[0]] = a[1]
		return statusReply("OK"), nil
	case "EXISTS":
		var n int64
		for _, k := range a {
			if _, ok := e.data[k]; ok {
				n++
			}
		}
		return n, nil
	case "TYPE":
		t := "none"
		switch e.data[a[0]].(type) {
		case string:
			t = "string"
		case map[string]string:
			t = "hash"
		case zset:
			t = "zset"
		case []string:
			t = "list"
		case *stream:
			t = "stream"
		}
		return statusReply(t), nil
	}
	switch cmd {
	case "HGET", "HMGET", "HGETALL", "HSET", "HDEL", "HINCRBY":
		return e.hash(cmd, a)
	case "ZADD", "ZREM", "ZSCORE", "ZCARD", "ZRANGE", "ZREMRANGEBYSCORE":
		return e.zset(cmd, a)
	case "LPUSH", "LTRIM", "LRANGE":
		return e.list(cmd, a)
	}
	return e.xadd(a) // XADD
}

// get returns the value at key if it has type T; ok is false when the key is
// missing or (with a WRONGTYPE error) of another type.
func get[T any](e *Engine, key string) (T, bool, error) {
	var zero T
	v, exists := e.data[key]
	if !exists {
		return zero, false, nil
	}
	t, ok := v.(T)
	if !ok {
		return zero, false, errWrongType
	}
	return t, true, nil
}

func (e *Engine) hash(cmd string, a []string) (any, error) {
	h, ok, err := get[map[string]string](e, a[0])
	if err != nil {
		return nil, err
	}
	if !ok {
		h = map[string]string{}
	}
	switch cmd {
	case "HGET":
		if len(a) != 2 {
			return nil, wrongArgs(cmd)
		}
		if v, ok := h[a[1]]; ok {
			return v, nil
		}
		return nil, nil
	case "HMGET":
		out := make([]any, len(a)-1)
		for i, f := range a[1:] {
			if v, ok := h[f]; ok {
				out[i] = v
			}
		}
		return out, nil
	case "HGETALL":
		fields := make([]string, 0, len(h))
		for f := range h {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		out := []any{}
		for _, f := range fields {
			out = append(out, f, h[f])
		}
		return out, nil
	case "HSET":
		if len(a) < 3 || len(a)%2 != 1 {
			return nil, wrongArgs(cmd)
		}
		var added int64
		for i := 1; i < len(a); i += 2 {
			if _, ok := h[a[i]]; !ok {
				added++
			}
			h[a[i]] = a[i+1]
		}
		e.data[a[0]] = h
		return added, nil
	case "HDEL":
		var n int64
		for _, f := range a[1:] {
			if _, ok := h[f]; ok {
				delete(h, f)
				n++
			}
		}
		if len(h) == 0 {
			delete(e.data, a[0])
		}
		return n, nil
	default: // HINCRBY
		if len(a) != 3 {
			return nil, wrongArgs(cmd)
		}
		by, err := strconv.ParseInt(a[2], 10, 64)
		if err != nil {
			return nil, ScriptError("ERR value is not an integer or out of range")
		}
		cur := int64(0)
		if v, ok := h[a[1]]; ok {
			if cur, err = strconv.ParseInt(v, 10, 64); err != nil {
				return nil, ScriptError("ERR hash value is not an integer")
			}
		}
		h[a[1]] = strconv.FormatInt(cur+by, 10)
		e.data[a[0]] = h
		return cur + by, nil
	}
}

func parseScore(s string) (float64, error) {
	switch strings.ToLower(s) {
	case "-inf":
		return math.Inf(-1), nil
	case "+inf", "inf":
		return math.Inf(1), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, ScriptError("ERR min or max is not a float")
	}
	return f, nil
}

func (z zset) sorted() []string {
	members := make([]string, 0, len(z))
	for m := range z {
		members = append(members, m)
	}
	sort.Slice(members, func(i, j int) bool {
		if z[members[i]] != z[members[j]] {
			return z[members[i]] < z[members[j]]
		}
		return members[i] < members[j]
	})
	return members
}

func (e *Engine) zset(cmd string, a []string) (any, error) {
	z, ok, err := get[zset](e, a[0])
	if err != nil {
		return nil, err
	}
	if !ok {
		z = zset{}
	}
	defer func() {
		if len(z) == 0 {
			delete(e.data, a[0])
		}
	}()
	switch cmd {
	case "ZADD":
		if len(a) < 3 || len(a)%2 != 1 {
			return nil, wrongArgs(cmd)
		}
		var added int64
		for i := 1; i < len(a); i += 2 {
			score, err := parseScore(a[i])
			if err != nil {
				return nil, err
			}
			if _, ok := z[a[i+1]]; !ok {
				added++
			}
			z[a[i+1]] = score
		}
		e.data[a[0]] = z
		return added, nil
	case "ZREM":
		var n int64
		for _, m := range a[1:] {
			if _, ok := z[m]; ok {
				delete(z, m)
				n++
			}
		}
		return n, nil
	case "ZSCORE":
		if len(a) != 2 {
			return nil, wrongArgs(cmd)
		}
		if s, ok := z[a[1]]; ok {
			return formatNumber(s), nil
		}
		return nil, nil
	case "ZCARD":
		return int64(len(z)), nil
	case "ZRANGE": // only "ZRANGE key start stop [WITHSCORES]" with start, stop >= 0
		if len(a) < 3 {
			return nil, wrongArgs(cmd)
		}
		start, _ := strconv.Atoi(a[1])
		stop, _ := strconv.Atoi(a[2])
		withScores := len(a) > 3 && strings.EqualFold(a[3], "WITHSCORES")
		out := []any{}
		for i, m := range z.sorted() {
			if i >= start && i <= stop {
				out = append(out, m)
				if withScores {
					out = append(out, formatNumber(z[m]))
				}
			}
		}
		return out, nil
	default: // ZREMRANGEBYSCORE key min max (inclusive)
		if len(a) != 3 {
			return nil, wrongArgs(cmd)
		}
		lo, err := parseScore(a[1])
		if err != nil {
			return nil, err
		}
		hi, err := parseScore(a[2])
		if err != nil {
			return nil, err
		}
		var n int64
		for m, s := range z {
			if s >= lo && s <= hi {
				delete(z, m)
				n++
			}
		}
		return n, nil
	}
}

func (e *Engine) list(cmd string, a []string) (any, error) {
	l, _, err := get[[]string](e, a[0])
	if err != nil {
		return nil, err
	}
	switch cmd {
	case "LPUSH":
		for _, v := range a[1:] {
			l = append([]string{v}, l...)
		}
		e.data[a[0]] = l
		return int64(len(l)), nil
	case "LTRIM", "LRANGE":
		if len(a) != 3 {
			return nil, wrongArgs(cmd)
		}
		start, err1 := strconv.Atoi(a[1])
		stop, err2 := strconv.Atoi(a[2])
		if err1 != nil || err2 != nil {
			return nil, ScriptError("ERR value is not an integer or out of range")
		}
		lo, hi := listRange(len(l), start, stop)
		if cmd == "LRANGE" {
			out := []any{}
			for _, v := range l[lo:hi] {
				out = append(out, v)
			}
			return out, nil
		}
		if lo >= hi {
			delete(e.data, a[0])
		} else {
			e.data[a[0]] = append([]string(nil), l[lo:hi]...)
		}
		return statusReply("OK"), nil
	}
	return nil, nil
}

// listRange turns Redis's inclusive, possibly negative indexes into a slice range.
func listRange(n, start, stop int) (int, int) {
	if start < 0 {
		start += n
	}
	if stop < 0 {
		stop += n
	}
	start = max(start, 0)
	stop = min(stop, n-1)
	if start > stop {
		return 0, 0
	}
	return start, stop + 1
}

// xadd implements "XADD key [MAXLEN n] * field value ...".
func (e *Engine) xadd(a []string) (any, error) {
	s, ok, err := get[*stream](e, a[0])
	if err != nil {
		return nil, err
	}
	if !ok {
		s = &stream{}
	}
	rest, maxLen := a[1:], -1
	if len(rest) >= 2 && strings.EqualFold(rest[0], "MAXLEN") {
		if maxLen, err = strconv.Atoi(rest[1]); err != nil || maxLen < 0 {
			return nil, ScriptError("ERR The MAXLEN argument must be >= 0.")
		}
		rest = rest[2:]
	}
	if len(rest) < 3 || rest[0] != "*" || len(rest)%2 != 1 {
		return nil, wrongArgs("XADD")
	}
	ms := e.now().UnixMilli()
	if ms > s.lastMs {
		s.lastMs, s.lastSeq = ms, 0
	} else {
		s.lastSeq++
	}
	id := fmt.Sprintf("%d-%d", s.lastMs, s.lastSeq)
	s.entries = append(s.entries, StreamEntry{ID: id, Fields: append([]string(nil), rest[1:]...)})
	if maxLen >= 0 && len(s.entries) > maxLen {
		s.entries = append([]StreamEntry(nil), s.entries[len(s.entries)-maxLen:]...)
	}
	e.data[a[0]] = s
	return id, nil
}
