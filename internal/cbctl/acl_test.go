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

// setACLUser makes user exactly rule (after a reset) on the servers at addrs.
func setACLUser(t *testing.T, addrs []string, user string, rule []string) {
	t.Helper()
	for _, a := range addrs {
		r := redis.NewClient(&redis.Options{Addr: a})
		err := r.Do(context.Background(), append([]any{"ACL", "SETUSER", user, "reset"}, redistest.Anys(rule)...)...).Err()
		_ = r.Close()
		if err != nil {
			t.Fatalf("ACL SETUSER %s %v: %v", user, rule, err)
		}
	}
}

// cbctlReadCommands are the read-only commands, as run by tryCbctl; the
// SCRIPT FLUSH before some of them makes the script fall back (EVAL_RO,
// SCRIPT LOAD) as it does after a restart of Redis.
var cbctlReadCommands = [][]string{
	{"FLUSH"}, {"status", "loose"}, // not in the registry: EXISTS; EVALSHA_RO then EVAL_RO
	{"FLUSH"}, {"list"}, // SMEMBERS, SCAN, pipelined EVALSHA_RO then SCRIPT LOAD
	{"history", "svc"}, {"watch", "--count", "1"}, {"config", "svc"}, {"scripts"},
	{"status", "svc", "-o", "json"},
}

// cbctlOperatorCommands are the rest: every action (release after a
// forced open HDELs the mode) and a config change, the first right after
// SCRIPT FLUSH (EVAL).
var cbctlOperatorCommands = [][]string{
	{"FLUSH"}, {"open", "svc"}, {"release", "svc"}, {"disable", "svc"}, {"release", "svc"}, {"reset", "svc"},
	{"config", "svc", "--failure-threshold", "4", "--recovery-timeout", "20s"},
}

// tryCbctl runs cmds as a user with rule on fresh breakers and returns
// what failed, or "" when every command exited 0.
func tryCbctl(t *testing.T, srv *redistest.Server, root *redis.Client, rule []string, cmds [][]string) string {
	t.Helper()
	ctx := context.Background()
	if err := root.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := root.Do(ctx, "ACL", "LOG", "RESET").Err(); err != nil {
		t.Fatal(err)
	}
	breaker(t, root, "svc", quickConfig(), "fff") // open, registered
	if _, err := admin.Control(ctx, root, "loose", breakerbox.ActionReset, "test"); err != nil {
		t.Fatal(err) // found by SCAN only
	}
	setACLUser(t, []string{srv.Addr}, "try", rule)
	env := map[string]string{"REDIS_URL": "redis://try:pw@" + srv.Addr + "/0", "USER": "alice"}
	for _, args := range cmds {
		if args[0] == "FLUSH" {
			if err := root.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		r := cbctl(t, env, args...)
		if r.code != ExitOK || r.stderr != "" {
			return fmt.Sprintf("%v: exit %d: %s", args, r.code, strings.TrimSpace(r.stderr))
		}
		if args[0] == "status" && len(args) > 2 { // -o json: what the script read
			var st breakerbox.Status
			want, err := admin.Status(ctx, root, args[1])
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.State != want.State ||
				st.CurrentFailures != want.CurrentFailures || st.TotalFailures != want.TotalFailures || st.Corrupt != "" {
				return fmt.Sprintf("%v: read %+v (%v), want %+v", args, st, err, want)
			}
		}
	}
	// Nothing refused, not even what cbctl would not notice.
	entries, err := root.Do(ctx, "ACL", "LOG").Slice()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		m, _ := entries[len(entries)-1].(map[any]any)
		return fmt.Sprintf("Redis refused (ACL LOG): %v %v (in %v)", m["reason"], m["object"], m["context"])
	}
	return ""
}

// TestCbctlUnderItsDocumentedACLs runs every cbctl command under the two
// rules docs/operations.md gives cbctl, on a real redis-server: the
// read-only rule runs list, status, history, watch, config and scripts and
// is refused every change; the operator rule runs everything. Then each
// rule loses one grant at a time, and something must fail: the rules are
// the smallest that work.
func TestCbctlUnderItsDocumentedACLs(t *testing.T) {
	srv := redistest.Start(t)
	root := srv.Client(t)
	ctx := context.Background()
	ro, op := redistest.DocumentedACL(t, "breakerbox-cbctl-ro", "pw"), redistest.DocumentedACL(t, "breakerbox-cbctl", "pw")
	every := append(append([][]string{}, cbctlReadCommands...), cbctlOperatorCommands...)

	t.Run("read-only", func(t *testing.T) {
		if why := tryCbctl(t, srv, root, ro, cbctlReadCommands); why != "" {
			t.Fatal(why)
		}
		env := map[string]string{"REDIS_URL": "redis://try:pw@" + srv.Addr + "/0"}
		for _, args := range cbctlOperatorCommands[1:] {
			before, _ := admin.Status(ctx, root, "svc")
			r := cbctl(t, env, args...)
			if r.code != ExitAuth || !strings.Contains(r.stderr, "NOPERM") && !strings.Contains(r.stderr, "can't run") {
				t.Errorf("%v under the read-only rule: exit %d: %s", args, r.code, r.stderr)
			}
			if after, _ := admin.Status(ctx, root, "svc"); after.Generation != before.Generation ||
				after.FailureThreshold != before.FailureThreshold {
				t.Errorf("%v under the read-only rule changed the breaker", args)
			}
		}
	})
	t.Run("operator", func(t *testing.T) {
		if why := tryCbctl(t, srv, root, op, every); why != "" {
			t.Fatal(why)
		}
		st, err := admin.Status(ctx, root, "svc")
		if err != nil || st.State != breakerbox.StateClosed || st.FailureThreshold != 4 {
			t.Errorf("after the operator's commands: %+v %v", st, err)
		}
	})

	for _, tc := range []struct {
		user string
		rule []string
		cmds [][]string
	}{{"breakerbox-cbctl-ro", ro, cbctlReadCommands}, {"breakerbox-cbctl", op, every}} {
		t.Run(tc.user+" needs every grant", func(t *testing.T) {
			for i, g := range tc.rule {
				if !strings.HasPrefix(g, "+") && !strings.Contains(g, "~") && !strings.HasPrefix(g, "&") {
					continue // on, the password
				}
				without := append(append([]string{}, tc.rule[:i]...), tc.rule[i+1:]...)
				if why := tryCbctl(t, srv, root, without, tc.cmds); why == "" {
					t.Errorf("cbctl works without %s: the rule is not the smallest", g)
				} else {
					t.Logf("without %s: %s", g, why)
				}
			}
		})
	}
}
