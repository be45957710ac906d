// Package breakerbox holds the protocol shared by every breakerbox client
// and the breaker's vocabulary, defined once: the Lua scripts that decide
// every transition (embedded from lua/), the Redis key layout of a breaker,
// name validation, the error codes the scripts return, the states, modes
// and operator actions, the shared Config and its bounds, and the parsers
// of every reply, announcement, history entry and stream entry.
//
// The worker's API lives in package client, the operator's (status, list,
// history, controls, config) in package client/admin; both, and the alert
// daemon, use the types defined here. This package imports neither of
// them, nor gopher-lua. docs/protocol.md describes the same protocol for
// callers in other languages.
package breakerbox

import (
	"context"
	"crypto/sha1"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/*.lua
var luaFiles embed.FS

// Script is one Lua script of lua/, named <Name>-<Keys>.lua.
//
// A script whose first line is a shebang ("#!lua flags=no-writes") is
// read-only: Run calls it with EVALSHA_RO. Servers that cannot compile a
// shebang (miniredis, gopher-lua, Redis 6) get Body instead, the source with
// its first line left empty; Run learns that per client from the compile
// error and from then on sends Body (EVALSHA of BodySHA1). Redis 6, which
// has no EVALSHA_RO, and miniredis, whose EVALSHA_RO refuses TIME, get
// EVALSHA. docs/protocol.md lists both SHAs.
type Script struct {
	Name     string // "breaker"
	File     string // "breaker-8.lua"
	Keys     int    // number of KEYS the script takes
	Source   string // the Lua source, as committed
	SHA1     string // hex SHA1 of Source, as EVALSHA wants it
	ReadOnly bool   // declared no-writes in its shebang line
	Body     string // Source without its shebang (its first line left empty); Source when it has none
	BodySHA1 string // hex SHA1 of Body

	clients sync.Map // redis.Scripter -> scriptSupport, learned from the server's answers
}

// scriptSupport is what a server (a client's servers) cannot do.
type scriptSupport struct {
	noShebang bool // compile Body, not Source
	noRO      bool // no EVALSHA_RO / EVAL_RO (Redis 6)
}

func (s *Script) support(c redis.Scripter) scriptSupport {
	if v, ok := s.clients.Load(c); ok {
		return v.(scriptSupport)
	}
	return scriptSupport{}
}

func (s *Script) learn(c redis.Scripter, f func(*scriptSupport)) {
	sup := s.support(c)
	f(&sup)
	s.clients.Store(c, sup)
}

// shebangError reports a server that cannot compile a shebang line
// ("near '#'" from miniredis and gopher-lua, "unexpected symbol near '#'"
// from Redis 6).
func shebangError(err error) bool { return err != nil && strings.Contains(err.Error(), "near '#'") }

// noReadOnly reports a server without a usable EVALSHA_RO / EVAL_RO:
// Redis 6 does not know the command, and miniredis refuses TIME in a
// read-only script as if it wrote.
func noReadOnly(err error) bool {
	return redis.HasErrorPrefix(err, "ERR unknown command") || redis.HasErrorPrefix(err, "ERR Unknown command") ||
		(err != nil && strings.Contains(err.Error(), "Write commands are not allowed in read-only scripts"))
}

// Run calls the script with EVALSHA (EVALSHA_RO for a read-only script),
// falling back to EVAL when the server answers NOSCRIPT (after a restart or
// SCRIPT FLUSH); EVAL also caches the script for the next EVALSHA. See
// Script for servers without shebangs or EVALSHA_RO.
func (s *Script) Run(ctx context.Context, c redis.Scripter, keys []string, args ...any) *redis.Cmd {
	return s.RunAs(ctx, c, c, keys, args...)
}

// RunAs is Run on c, a connection taken from client (a *redis.Conn of
// it): what the server needs (see Script) is learned and kept under
// client, so that connections taken and given back one by one do not
// each keep an entry.
func (s *Script) RunAs(ctx context.Context, c, client redis.Scripter, keys []string, args ...any) *redis.Cmd {
	for attempt := 0; ; attempt++ {
		sup := s.support(client)
		src, sha := s.Source, s.SHA1
		if sup.noShebang {
			src, sha = s.Body, s.BodySHA1
		}
		ro := s.ReadOnly && !sup.noRO
		var cmd *redis.Cmd
		if ro {
			cmd = c.EvalShaRO(ctx, sha, keys, args...)
		} else {
			cmd = evalOnce(ctx, c, "evalsha", sha, keys, args)
		}
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			if ro {
				cmd = c.EvalRO(ctx, src, keys, args...)
			} else {
				cmd = evalOnce(ctx, c, "eval", src, keys, args)
			}
		}
		err := cmd.Err()
		switch {
		case attempt < 2 && ro && noReadOnly(err):
			s.learn(client, func(sup *scriptSupport) { sup.noRO = true })
		case attempt < 2 && !sup.noShebang && s.Body != s.Source && shebangError(err):
			s.learn(client, func(sup *scriptSupport) { sup.noShebang = true })
		default:
			return cmd
		}
	}
}

// Load sends the script to the server with SCRIPT LOAD (on a cluster client,
// to every master) and returns the SHA1 the server reports: Body's when the
// server cannot compile the shebang.
func (s *Script) Load(ctx context.Context, c redis.Scripter) (string, error) {
	if s.support(c).noShebang {
		return c.ScriptLoad(ctx, s.Body).Result()
	}
	sha, err := c.ScriptLoad(ctx, s.Source).Result()
	if s.Body != s.Source && shebangError(err) {
		s.learn(c, func(sup *scriptSupport) { sup.noShebang = true })
		return c.ScriptLoad(ctx, s.Body).Result()
	}
	return sha, err
}

// Queue adds the script's EVALSHA (or EVALSHA_RO) to a pipeline of client
// c, with the SHA c's servers know it by. An error reply of the queued
// command (NOSCRIPT, an unknown EVALSHA_RO) is the caller's to handle: Run
// on one of the keys, or Load, teaches the script what c needs, and the
// pipeline can then be sent again.
func (s *Script) Queue(ctx context.Context, p redis.Pipeliner, c redis.Scripter, keys []string, args ...any) *redis.Cmd {
	sup := s.support(c)
	sha := s.SHA1
	if sup.noShebang {
		sha = s.BodySHA1
	}
	if s.ReadOnly && !sup.noRO {
		return p.EvalShaRO(ctx, sha, keys, args...)
	}
	if s.ReadOnly {
		return p.EvalSha(ctx, sha, keys, args...)
	}
	return evalOnce(ctx, p, "evalsha", sha, keys, args)
}

// sendOnce is a script call that go-redis must not send again by itself.
// A client retries a command whose reply it did not get (EOF, a reset
// connection: MaxRetries, and a Cluster's MaxRedirects), but a script
// whose reply was lost may have run: sent again, its outcomes would be
// counted twice. go-redis still sends it again when it was never written
// (NoRetry forbids only a second execution), and follows MOVED and ASK,
// which a server answers without running it. Read-only scripts are
// retried as usual.
type sendOnce struct{ *redis.Cmd }

// NoRetry tells go-redis not to send the call again.
func (sendOnce) NoRetry() bool { return true }

// evalOnce runs (or queues, on a pipeline) EVAL or EVALSHA (name) of
// script (a SHA1 or the source) as a sendOnce call on c.
func evalOnce(ctx context.Context, c any, name, script string, keys []string, args []any) *redis.Cmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, name, script, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	a = append(a, args...)
	cmd := redis.NewCmd(ctx, a...)
	if len(keys) > 0 {
		cmd.SetFirstKeyPos(3)
	}
	p, ok := c.(interface {
		Process(context.Context, redis.Cmder) error
	})
	if !ok {
		cmd.SetErr(fmt.Errorf("breakerbox: %T cannot send commands", c))
		return cmd
	}
	_ = p.Process(ctx, sendOnce{cmd})
	return cmd
}

var scripts = mustLoadScripts()

// BreakerScript is lua/breaker-8.lua: the state machine. Its header is its contract.
var BreakerScript = scripts["breaker"]

// StatusScript is lua/status-8.lua: the read-only snapshot of one breaker.
var StatusScript = scripts["status"]

// Scripts returns every embedded script, sorted by name.
func Scripts() []*Script {
	out := make([]*Script, 0, len(scripts))
	for _, s := range scripts {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func mustLoadScripts() map[string]*Script {
	entries, err := luaFiles.ReadDir("lua")
	if err != nil {
		panic(err) // the embed directive guarantees the folder exists
	}
	out := map[string]*Script{}
	for _, e := range entries {
		name, keys, ok := parseScriptFile(e.Name())
		if !ok {
			panic("breakerbox: lua/" + e.Name() + " is not named <name>-<numKeys>.lua")
		}
		src, err := luaFiles.ReadFile(path.Join("lua", e.Name()))
		if err != nil {
			panic(err)
		}
		s := &Script{Name: name, File: e.Name(), Keys: keys, Source: string(src), SHA1: sha1Hex(string(src))}
		s.Body = s.Source
		if first, rest, ok := strings.Cut(s.Source, "\n"); ok && strings.HasPrefix(first, "#!") {
			s.ReadOnly = strings.Contains(first, "no-writes")
			s.Body = "\n" + rest // keeps line numbers
		}
		s.BodySHA1 = sha1Hex(s.Body)
		out[name] = s
	}
	return out
}

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// parseScriptFile splits "breaker-8.lua" into ("breaker", 8).
func parseScriptFile(file string) (string, int, bool) {
	base, ok := strings.CutSuffix(file, ".lua")
	i := strings.LastIndexByte(base, '-')
	if !ok || i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(base[i+1:])
	if err != nil || n < 0 {
		return "", 0, false
	}
	return base[:i], n, true
}

// KeyPrefix starts every key and channel of breakerbox.
const KeyPrefix = "circuit_breaker:"

// RegistryKey is a set of breaker names that clients add to when they start
// using a breaker. It is a convenience for listing; SCAN finds the rest.
const RegistryKey = KeyPrefix + "registry"

// KeySuffixes are the keys of one breaker in the order breaker-8.lua takes them.
var KeySuffixes = []string{"state", "failures", "last_failure_time", "metrics",
	"history", "config", "probes", "events"}

// Key returns the key of breaker name with the given suffix, for example
// Key("openai", "state") == "circuit_breaker:{openai}:state".
func Key(name, suffix string) string { return KeyPrefix + "{" + name + "}:" + suffix }

// Keys returns the eight keys breaker-8.lua takes, in order.
func Keys(name string) []string {
	keys := make([]string, len(KeySuffixes))
	for i, s := range KeySuffixes {
		keys[i] = Key(name, s)
	}
	return keys
}

// Channel is the pub/sub channel on which the script announces every
// transition of breaker name as "STATE GENERATION MODE RETRY_AFTER_MS".
func Channel(name string) string { return Key(name, "changed") }

// NameFromKey returns the breaker name of a key such as
// circuit_breaker:{name}:state, or false when key is not a breaker key.
func NameFromKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, KeyPrefix+"{")
	i := strings.LastIndex(rest, "}:")
	if !ok || i < 0 {
		return "", false
	}
	return rest[:i], ValidateName(rest[:i]) == nil
}

// MaxNameLen is the longest breaker name accepted, in bytes.
const MaxNameLen = 200

// ErrInvalidName is returned for a breaker name that cannot be used.
var ErrInvalidName = errors.New("invalid breaker name")

// ValidateName checks that name is 1 to 200 bytes of valid text without
// braces (they would break the hash tag) or control characters.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidName, len(name), MaxNameLen)
	case strings.ContainsAny(name, "{}"):
		return fmt.Errorf("%w %q: contains { or }", ErrInvalidName, name)
	case strings.ContainsFunc(name, unicode.IsControl):
		return fmt.Errorf("%w %q: contains a control character", ErrInvalidName, name)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w %q: not valid UTF-8", ErrInvalidName, name)
	}
	return nil
}

// Errors the scripts return, by their code (the first word of the reply).
var (
	ErrBadKeys   = errors.New("BADKEYS")
	ErrBadArgs   = errors.New("BADARGS")
	ErrBadConfig = errors.New("BADCONFIG")
)

// ScriptError maps an error reply of a script to ErrBadKeys, ErrBadArgs or
// ErrBadConfig (wrapped with the script's message) and returns any other
// error unchanged.
func ScriptError(err error) error {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return err
	}
	msg := rerr.Error()
	for _, sentinel := range []error{ErrBadKeys, ErrBadArgs, ErrBadConfig} {
		if rest, ok := strings.CutPrefix(msg, sentinel.Error()+" "); ok {
			return fmt.Errorf("%w: %s", sentinel, rest)
		}
	}
	return err
}
