package cbctl

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// corruption is one way a breaker's keys can be broken by hand.
type corruption struct {
	name  string
	apply func(ctx context.Context, rdb redis.UniversalClient, name string) error
	// kind: "readable" (status-8.lua reads it and names it in corrupt),
	// "badconfig" (the scripts refuse the breaker) or "entry" (a history
	// entry that is not JSON, which only the history shows).
	kind string
	// msg is what cbctl must say (NAME is the breaker's name).
	msg string
	// repairedBy are the commands after which the problem is gone (their
	// script call repaired it): cbctl then says that it did.
	repairedBy string
}

// wrongType replaces key suffix of a breaker by a key of another type.
func wrongType(suffix string, set func(ctx context.Context, rdb redis.UniversalClient, key string) error) func(context.Context, redis.UniversalClient, string) error {
	return func(ctx context.Context, rdb redis.UniversalClient, name string) error {
		key := breakerbox.Key(name, suffix)
		if err := rdb.Del(ctx, key).Err(); err != nil {
			return err
		}
		return set(ctx, rdb, key)
	}
}

func asHash(ctx context.Context, rdb redis.UniversalClient, key string) error {
	return rdb.HSet(ctx, key, "x", "1").Err()
}
func asList(ctx context.Context, rdb redis.UniversalClient, key string) error {
	return rdb.RPush(ctx, key, "x").Err()
}
func asSet(ctx context.Context, rdb redis.UniversalClient, key string) error {
	return rdb.SAdd(ctx, key, "x").Err()
}
func asString(ctx context.Context, rdb redis.UniversalClient, key string) error {
	return rdb.Set(ctx, key, "x", 0).Err()
}

// setKey sets a string key or a hash field of a breaker.
func setKey(suffix string, fieldValue ...string) func(context.Context, redis.UniversalClient, string) error {
	return func(ctx context.Context, rdb redis.UniversalClient, name string) error {
		key := breakerbox.Key(name, suffix)
		if len(fieldValue) == 1 {
			return rdb.Set(ctx, key, fieldValue[0], 0).Err()
		}
		return rdb.HSet(ctx, key, fieldValue[0], fieldValue[1]).Err()
	}
}

var corruptions = []corruption{
	{"state is a hash", wrongType("state", asHash), "readable",
		"circuit_breaker:{NAME}:state is a hash, not a string: DEL it", "reset open disable release config"},
	{"failures is a list", wrongType("failures", asList), "readable",
		"circuit_breaker:{NAME}:failures is a list, not a string: DEL it", "reset open disable release config"},
	{"last_failure_time is a set", wrongType("last_failure_time", asSet), "readable",
		"circuit_breaker:{NAME}:last_failure_time is a set, not a string: DEL it", ""},
	{"metrics is a string", wrongType("metrics", asString), "readable",
		"circuit_breaker:{NAME}:metrics is a string, not a hash: DEL it", "reset open disable release config"},
	{"history is a hash", wrongType("history", asHash), "readable",
		"circuit_breaker:{NAME}:history is a hash, not a list: DEL it", "reset open disable config"},
	{"config is a string", wrongType("config", asString), "badconfig",
		"circuit_breaker:{NAME}:config is a string, not a hash: DEL it", ""},
	{"probes is a string", wrongType("probes", asString), "readable",
		"circuit_breaker:{NAME}:probes is a string, not a sorted set: DEL it", "reset open disable"},
	{"events is a list", wrongType("events", asList), "readable",
		"circuit_breaker:{NAME}:events is a list, not a stream: DEL it", "reset open disable"},
	{"config value out of bounds", setKey("config", "failure_threshold", "0"), "badconfig",
		`circuit_breaker:{NAME}:config field failure_threshold holds "0", not an integer 1..1000000: ` +
			"cbctl config NAME --failure-threshold VALUE repairs it", ""},
	{"state is not a state", setKey("state", "banana"), "readable",
		`circuit_breaker:{NAME}:state holds "banana", not closed, open or half_open: cbctl reset NAME repairs it now`,
		"reset open disable release config"},
	{"failures is negative", setKey("failures", "-7"), "readable",
		`circuit_breaker:{NAME}:failures holds "-7", not a count: DEL it`, "reset open disable release config"},
	{"mode is not a mode", setKey("metrics", "mode", "sideways"), "readable",
		`circuit_breaker:{NAME}:metrics field mode holds "sideways", not forced_open or disabled: HDEL it`,
		"reset open disable"},
	{"history entry is not JSON", func(ctx context.Context, rdb redis.UniversalClient, name string) error {
		return rdb.LPush(ctx, breakerbox.Key(name, "history"), `{"ts": oops`).Err()
	}, "entry", `circuit_breaker:{NAME}:history entry 0 (0 is the newest) holds "{\"ts\": oops", not JSON ` +
		`(shown as the event unreadable): remove it with redis-cli LREM 'circuit_breaker:{NAME}:history' 1 '{"ts": oops'`, ""},
}

// corruptCommands are every cbctl command, as run on breaker NAME.
var corruptCommands = [][]string{
	{"status", "NAME"}, {"list"}, {"history", "NAME"}, {"watch", "--count", "1"},
	{"config", "NAME"}, {"config", "NAME", "--failure-threshold", "4"},
	{"reset", "NAME"}, {"open", "NAME"}, {"disable", "NAME"}, {"release", "NAME"}, {"scripts"},
}

// TestEveryCommandExplainsEveryCorruptedKey runs every cbctl command on an
// open breaker with each kind of corrupted key, on a real redis-server:
// each says which key is wrong, what is wrong and how to fix it, where it
// reads that key; an action or config change that repaired it says so;
// and no command prints Redis's raw WRONGTYPE.
func TestEveryCommandExplainsEveryCorruptedKey(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for i, c := range corruptions {
		t.Run(c.name, func(t *testing.T) {
			// A database per corruption: list and watch read every breaker in it.
			db := i + 1
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: db})
			t.Cleanup(func() { _ = rdb.Close() })
			env := map[string]string{"REDIS_URL": fmt.Sprintf("redis://%s/%d", srv.Addr, db), "USER": "alice"}
			breaker(t, rdb, "good", quickConfig(), "s") // list and watch show it whatever else is broken
			for j, cmd := range corruptCommands {
				name := fmt.Sprintf("b%d", j)
				breaker(t, rdb, name, quickConfig(), "fff")
				if err := c.apply(ctx, rdb, name); err != nil {
					t.Fatal(err)
				}
				args := make([]string, len(cmd))
				for k, a := range cmd {
					args[k] = strings.ReplaceAll(a, "NAME", name)
				}
				t.Run(strings.Join(cmd, " "), func(t *testing.T) {
					checkCorruptCommand(t, rdb, env, c, name, args)
				})
			}
		})
	}
}

func checkCorruptCommand(t *testing.T, rdb redis.UniversalClient, env map[string]string, c corruption, name string, args []string) {
	ctx := context.Background()
	msg := strings.ReplaceAll(c.msg, "NAME", name)
	key := msg[:strings.IndexAny(msg, " ")]
	r := cbctl(t, env, args...)
	t.Logf("%v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
	out := r.stdout + r.stderr
	if strings.Contains(out, "WRONGTYPE") || strings.Contains(out, "user_script") {
		t.Errorf("raw Redis error printed:\n%s", out)
	}
	want := func(code int, in string, substr string) {
		t.Helper()
		if r.code != code {
			t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
		}
		if substr != "" && !strings.Contains(in, substr) {
			t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", substr, r.stdout, r.stderr)
		}
	}
	quiet := func() {
		t.Helper()
		want(ExitOK, "", "")
		if r.stderr != "" {
			t.Errorf("stderr %q, want nothing: the command does not read what is corrupted", r.stderr)
		}
	}
	cmd := args[0]
	if cmd == "config" && len(args) > 2 {
		cmd = "config-change"
	}
	switch {
	case cmd == "scripts":
		quiet()
	case cmd == "history":
		switch {
		case c.kind == "entry":
			want(ExitOK, r.stderr, msg)
			if !strings.Contains(r.stdout, "unreadable") {
				t.Errorf("the entry is not shown as unreadable:\n%s", r.stdout)
			}
		case strings.HasSuffix(key, ":history"):
			want(ExitError, r.stderr, msg)
		default:
			quiet()
		}
	case c.kind == "entry":
		quiet()
	case cmd == "watch":
		want(ExitOK, r.stdout, msg) // in the frame
		if !containsFields(r.stdout, "good closed") {
			t.Errorf("watch does not show the good breaker:\n%s", r.stdout)
		}
	case cmd == "config-change" && c.name == "config value out of bounds":
		want(ExitOK, "", "") // the flag replaces the bad value
		if st, err := admin.Status(ctx, rdb, name); err != nil || st.FailureThreshold != 4 {
			t.Errorf("after the repair: %+v %v", st, err)
		}
	case c.kind == "badconfig":
		want(ExitError, r.stderr, msg)
		if cmd == "list" && !containsFields(r.stdout, "good closed") {
			t.Errorf("list does not show the good breaker:\n%s", r.stdout)
		}
		if cmd != "list" && cmd != "status" && cmd != "config" {
			if st, _ := rdb.Get(ctx, breakerbox.Key(name, "state")).Result(); st != "open" {
				t.Errorf("state %q after a refused %s, want open (unchanged)", st, cmd)
			}
		}
	case strings.Contains(" "+c.repairedBy+" ", " "+strings.TrimSuffix(cmd, "-change")+" ") && cmd != "config":
		want(ExitOK, r.stderr, " repaired "+key)
		if strings.Contains(r.stderr, msg) {
			t.Errorf("a repaired problem is still reported:\n%s", r.stderr)
		}
		st, err := admin.Status(ctx, rdb, name)
		if err != nil || strings.Contains(st.Corrupt, strings.TrimPrefix(key, breakerbox.Key(name, ""))) {
			t.Errorf("status-8.lua still reports %q (%v)", st.Corrupt, err)
		}
	default:
		want(ExitOK, r.stderr, msg)
	}
}

func TestARegistryOfTheWrongTypeIsExplained(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	breaker(t, rdb, "svc", quickConfig(), "")
	if err := rdb.Del(ctx, breakerbox.RegistryKey).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, breakerbox.RegistryKey, "svc", 0).Err(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"REDIS_URL": "redis://" + srv.Addr + "/0"}
	for _, args := range [][]string{{"list"}, {"status", "svc"}, {"history", "svc"}, {"reset", "svc"}, {"watch", "--count", "1"}} {
		r := cbctl(t, env, args...)
		if r.code != ExitError || !strings.Contains(r.stderr, "circuit_breaker:registry is a string, not a set: DEL it") ||
			strings.Contains(r.stderr, "WRONGTYPE") {
			t.Errorf("%v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
}

func TestCorruptedKeysInJSONOutput(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	breaker(t, rdb, "svc", quickConfig(), "f")
	if err := rdb.Set(ctx, breakerbox.Key("svc", "state"), "banana", 0).Err(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"REDIS_URL": "redis://" + srv.Addr + "/0"}
	want := `circuit_breaker:{svc}:state holds "banana"`

	// stdout stays the JSON it always is; the explanation goes to stderr.
	r := cbctl(t, env, "list", "-o", "json")
	var sts []breakerbox.Status
	if err := json.Unmarshal([]byte(r.stdout), &sts); err != nil || r.code != ExitOK || len(sts) != 1 ||
		sts[0].Corrupt != `state is "banana"` || !strings.Contains(r.stderr, want) {
		t.Errorf("list -o json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	// watch -o json carries the explanations in the frame.
	r = cbctl(t, env, "watch", "--count", "1", "-o", "json")
	var f frame
	if err := json.Unmarshal([]byte(r.stdout), &f); err != nil || r.code != ExitOK || len(f.Problems) != 1 ||
		!strings.HasPrefix(f.Problems[0], want) {
		t.Errorf("watch -o json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
}

func TestSplitCorruptKeepsQuotedSeparators(t *testing.T) {
	got := splitCorrupt(`state is "a; b\"; c"; history has the wrong type; metrics.mode is "x"`)
	want := []string{`state is "a; b\"; c"`, "history has the wrong type", `metrics.mode is "x"`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("splitCorrupt = %q, want %q", got, want)
	}
}
