package admin_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// engines returns a client on miniredis and one on a redis-server started
// for the test.
func engines(t *testing.T) map[string]redis.UniversalClient {
	mr := miniredis.RunT(t)
	mini := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = mini.Close() })
	return map[string]redis.UniversalClient{"miniredis": mini, "redis-server": redistest.Start(t).Client(t)}
}

func TestStatusOfAnUnusedBreakerReadsTheDefaults(t *testing.T) {
	for name, rdb := range engines(t) {
		t.Run(name, func(t *testing.T) {
			st, err := admin.Status(context.Background(), rdb, "never-used")
			if err != nil {
				t.Fatal(err)
			}
			def := breakerbox.DefaultConfig()
			def.HalfOpenMaxCalls = def.SuccessThreshold
			if st.Name != "never-used" || st.State != breakerbox.StateClosed || st.Mode != breakerbox.ModeNormal ||
				st.Config() != def || st.Time.IsZero() {
				t.Errorf("status = %+v, want closed with the defaults", st)
			}
			if n, _ := rdb.Exists(context.Background(), breakerbox.Keys("never-used")...).Result(); n != 0 {
				t.Errorf("a status read created %d keys", n)
			}
		})
	}
}

func TestControlIsWrittenToTheHistoryWithItsActor(t *testing.T) {
	for name, rdb := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st, err := admin.Control(ctx, rdb, "svc", breakerbox.ActionForceOpen, "cbctl:alice")
			if err != nil {
				t.Fatal(err)
			}
			if st.State != breakerbox.StateOpen || st.Mode != breakerbox.ModeForcedOpen || st.RetryAfter != -1 {
				t.Errorf("after force_open: %+v", st)
			}
			if st, err = admin.Control(ctx, rdb, "svc", breakerbox.ActionRelease, "cbctl:bob"); err != nil ||
				st.State != breakerbox.StateHalfOpen || st.Mode != breakerbox.ModeNormal {
				t.Errorf("after release: %+v, %v", st, err)
			}
			h, err := admin.History(ctx, rdb, "svc", 10)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range h {
				got = append(got, e.Event+" by "+e.Actor)
			}
			if strings.Join(got, ", ") != "released by cbctl:bob, forced_open by cbctl:alice" {
				t.Errorf("history newest first: %v", got)
			}
			if _, err := admin.Control(ctx, rdb, "svc", breakerbox.Action("explode"), "x"); !errors.Is(err, breakerbox.ErrBadArgs) {
				t.Errorf("an unknown action: %v, want ErrBadArgs", err)
			}
			if h, err := admin.History(ctx, rdb, "svc", 0); h != nil || err != nil {
				t.Errorf("History with limit 0 = %v, %v", h, err)
			}
		})
	}
}

func TestConfigureValidatesBeforeRedisAndWritesOnlyChanges(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	ctx := context.Background()
	bad := breakerbox.DefaultConfig()
	bad.FailureThreshold = int(breakerbox.MaxConfigValue + 1)
	if _, err := admin.Configure(ctx, rdb, "svc", bad, "ops"); !errors.Is(err, breakerbox.ErrInvalidConfig) {
		t.Errorf("Configure of an out-of-bounds threshold: %v, want ErrInvalidConfig", err)
	}
	if _, err := admin.Status(ctx, rdb, "a{b}"); !errors.Is(err, breakerbox.ErrInvalidName) {
		t.Errorf("Status of a bad name: %v, want ErrInvalidName", err)
	}
	if n := mr.CommandCount(); n != 0 {
		t.Errorf("refused calls sent %d commands, want none", n)
	}
	cfg := breakerbox.DefaultConfig()
	cfg.RecoveryTimeout = 5 * time.Second
	all := len(breakerbox.ConfigFields())
	if n, err := admin.Configure(ctx, rdb, "svc", cfg, "ops"); err != nil || n != all {
		t.Errorf("first Configure wrote %d fields, %v; want all %d", n, err, all)
	}
	if n, err := admin.Configure(ctx, rdb, "svc", cfg, "ops"); err != nil || n != 0 {
		t.Errorf("the same Configure again wrote %d fields, %v; want 0", n, err)
	}
	if st, _ := admin.Status(ctx, rdb, "svc"); st.RecoveryTimeout != 5*time.Second {
		t.Errorf("recovery timeout in force: %v", st.RecoveryTimeout)
	}
	// An explicit change turns off a rule the config leaves off.
	rate := cfg
	rate.WindowCalls, rate.FailureRateThreshold = 100, 50
	if n, err := admin.Configure(ctx, rdb, "svc", rate, "ops"); err != nil || n != 2 {
		t.Errorf("Configure of a rate rule wrote %d fields, %v; want 2", n, err)
	}
	if n, err := admin.Configure(ctx, rdb, "svc", cfg, "ops"); err != nil || n != 2 {
		t.Errorf("Configure without it wrote %d fields, %v; want 2", n, err)
	}
	if st, _ := admin.Status(ctx, rdb, "svc"); st.WindowCalls != 0 || st.FailureRateThreshold != 0 {
		t.Errorf("the rate rule is still on: %+v", st)
	}
}

func TestCorruptedStoredConfigIsAClearError(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	mr.HSet(breakerbox.Key("svc", "config"), "failure_threshold", "abc")
	if _, err := admin.Status(context.Background(), rdb, "svc"); !errors.Is(err, breakerbox.ErrBadConfig) ||
		!strings.Contains(err.Error(), `failure_threshold is "abc"`) {
		t.Errorf("status of a breaker with a corrupted config: %v, want ErrBadConfig naming the field", err)
	}
}

func TestListReadsEveryBreaker(t *testing.T) {
	for name, rdb := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			for _, n := range []string{"b", "a", "c"} {
				if _, err := admin.Control(ctx, rdb, n, breakerbox.ActionReset, "test"); err != nil {
					t.Fatal(err)
				}
			}
			// In the registry only (a worker registered it; its keys expired).
			if err := rdb.SAdd(ctx, breakerbox.RegistryKey, "registered", "bad{name}").Err(); err != nil {
				t.Fatal(err)
			}
			// Used by another language without configuring: found by SCAN.
			if _, err := admin.Control(ctx, rdb, "python-only", breakerbox.ActionForceOpen, "py"); err != nil {
				t.Fatal(err)
			}
			all, err := admin.List(ctx, rdb)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, st := range all {
				names = append(names, st.Name+":"+st.State.String())
			}
			if strings.Join(names, ",") != "a:closed,b:closed,c:closed,python-only:open,registered:closed" {
				t.Errorf("List = %v", names)
			}
		})
	}
}

func TestStatusesLeavesOutABrokenBreakerAndNamesIt(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	ctx := context.Background()
	mr.HSet(breakerbox.Key("broken", "config"), "success_threshold", "0")
	if err := rdb.ScriptFlush(ctx).Err(); err != nil { // Statuses loads the script again
		t.Fatal(err)
	}
	sts, err := admin.Statuses(ctx, rdb, []string{"one", "broken", "two"})
	if !errors.Is(err, breakerbox.ErrBadConfig) || !strings.Contains(err.Error(), `breaker "broken"`) {
		t.Errorf("error %v, want ErrBadConfig naming broken", err)
	}
	if len(sts) != 2 || sts[0].Name != "one" || sts[1].Name != "two" {
		t.Errorf("statuses %+v, want one and two in the order given", sts)
	}
	if _, err := admin.Statuses(ctx, rdb, []string{"ok", ""}); !errors.Is(err, breakerbox.ErrInvalidName) {
		t.Errorf("Statuses with an empty name: %v, want ErrInvalidName", err)
	}
}
