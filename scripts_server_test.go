package breakerbox_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// commands records the commands a client sends (pipelines included).
type commands struct {
	mu   sync.Mutex
	seen []string
}

func (c *commands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := strings.ToLower(cmd.Name()); name != "hello" && name != "client" { // connection set-up
			c.mu.Lock()
			c.seen = append(c.seen, name)
			c.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}
func (c *commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (c *commands) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.seen
	c.seen = nil
	return out
}

// statusTwice reads a status twice on a fresh client and returns the
// commands of each read.
func statusTwice(t *testing.T, rdb *redis.Client) (first, second []string) {
	t.Helper()
	cmds := &commands{}
	rdb.AddHook(cmds)
	ctx := context.Background()
	keys := breakerbox.Keys("svc")
	for i := 0; i < 2; i++ {
		res, err := breakerbox.StatusScript.Run(ctx, rdb, keys, "status").Slice()
		if err != nil || len(res) < 2 || res[0] != "state" {
			t.Fatalf("status read %d: %v, %v", i+1, res, err)
		}
		if i == 0 {
			first = cmds.take()
		} else {
			second = cmds.take()
		}
	}
	return first, second
}

// TestStatusScriptFallsBackWhereShebangsOrEVALSHA_ROAreMissing: miniredis
// cannot compile the shebang line and refuses TIME in EVAL_RO; the Script
// learns both from the first read and the second read is one EVALSHA of
// the body's SHA.
func TestStatusScriptFallsBackWhereShebangsOrEVALSHA_ROAreMissing(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	first, second := statusTwice(t, rdb)
	if len(first) < 3 {
		t.Errorf("first read %v: want the failed attempts before the body", first)
	}
	if strings.Join(second, " ") != "evalsha" {
		t.Errorf("second read %v, want one evalsha", second)
	}
	ok, err := rdb.ScriptExists(context.Background(), breakerbox.StatusScript.BodySHA1).Result()
	if err != nil || !ok[0] {
		t.Errorf("miniredis holds the body's SHA1: %v, %v", ok, err)
	}
	sha, err := breakerbox.StatusScript.Load(context.Background(), rdb)
	if err != nil || sha != breakerbox.StatusScript.BodySHA1 {
		t.Errorf("Load on miniredis = %s, %v; want the body's SHA1", sha, err)
	}
}

// TestStatusScriptRunsReadOnlyOnRedis7: Redis 7 compiles the shebang and
// has EVALSHA_RO: the first read is EVALSHA_RO then EVAL_RO (NOSCRIPT), the
// second one EVALSHA_RO of the file's SHA.
func TestStatusScriptRunsReadOnlyOnRedis7(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	first, second := statusTwice(t, rdb)
	if strings.Join(first, " ") != "evalsha_ro eval_ro" || strings.Join(second, " ") != "evalsha_ro" {
		t.Errorf("reads %v then %v, want [evalsha_ro eval_ro] then [evalsha_ro]", first, second)
	}
	sha, err := breakerbox.StatusScript.Load(context.Background(), rdb)
	if err != nil || sha != breakerbox.StatusScript.SHA1 {
		t.Errorf("Load on Redis 7 = %s, %v; want the file's SHA1", sha, err)
	}
	// The script cannot write: Redis refuses a write from a no-writes script.
	err = rdb.EvalRO(context.Background(), "#!lua flags=no-writes\nreturn redis.call('SET', KEYS[1], 'x')", []string{"k"}).Err()
	if err == nil {
		t.Error("a no-writes script wrote on Redis 7")
	}
}

// TestScriptsTakeOnlyWrongTypeForCorruption runs both scripts as a Redis
// user that may not run GET and HMGET (a rule missing a command the
// scripts call): they end with Redis's refusal and change nothing, instead
// of reading the refused keys as corrupted, deleting them (breaker-8.lua)
// or reporting a breaker that is not there (status-8.lua).
func TestScriptsTakeOnlyWrongTypeForCorruption(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	admin := srv.Client(t)
	keys := breakerbox.Keys("svc")
	if err := breakerbox.BreakerScript.Run(ctx, admin, keys, "control", "force_open", "test").Err(); err != nil {
		t.Fatal(err)
	}
	before, err := admin.HGetAll(ctx, breakerbox.Key("svc", "metrics")).Result()
	if err != nil || before["generation"] == "" {
		t.Fatalf("metrics after force_open: %v, %v", before, err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "nogets", "on", ">pw", "~*", "&*", "+@all", "-get", "-hmget").Err(); err != nil {
		t.Fatal(err)
	}
	user := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "nogets", Password: "pw"})
	t.Cleanup(func() { _ = user.Close() })
	for _, run := range []struct {
		script *breakerbox.Script
		args   []any
	}{
		{breakerbox.BreakerScript, []any{"control", "release", "test"}},
		{breakerbox.BreakerScript, []any{"allow"}},
		{breakerbox.StatusScript, []any{"status"}},
	} {
		res, err := run.script.Run(ctx, user, keys, run.args...).Result()
		if err == nil || !strings.Contains(err.Error(), "can't run this command") {
			t.Errorf("%s %v under a user without GET: %v, %v; want Redis's refusal", run.script.File, run.args, res, err)
		}
	}
	after, err := admin.HGetAll(ctx, breakerbox.Key("svc", "metrics")).Result()
	if err != nil || len(after) != len(before) || after["generation"] != before["generation"] || after["mode"] != "forced_open" {
		t.Fatalf("metrics after the refused calls: %v (%v), want them unchanged: %v", after, err, before)
	}
	if st, err := admin.Get(ctx, breakerbox.Key("svc", "state")).Result(); err != nil || st != "open" {
		t.Fatalf("state after the refused calls: %q, %v; want open", st, err)
	}
}
