package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
)

func TestOperatorControlsFromGo(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		ctx := context.Background()
		b := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a), client.WithActor("tester"))
		_ = run(t, b, ok) // registers the config
		control(t, b, breakerbox.ActionForceOpen)
		e.wait(time.Second) // longer than the recovery timeout: still refused
		if err := run(t, b, ok); !errors.Is(err, client.ErrOpen) {
			t.Fatalf("forced open: %v", err)
		}
		control(t, b, breakerbox.ActionRelease)
		if st := status(t, b); st.State != breakerbox.StateHalfOpen || st.Mode != breakerbox.ModeNormal {
			t.Fatalf("after release: %+v", st)
		}
		control(t, b, breakerbox.ActionDisable)
		for i := 0; i < 5; i++ {
			if err := run(t, b, fail); !errors.Is(err, errBoom) {
				t.Fatalf("disabled breaker refused: %v", err)
			}
		}
		if st := status(t, b); st.State != breakerbox.StateClosed || st.Mode != breakerbox.ModeDisabled || st.CurrentFailures != 5 {
			t.Fatalf("disabled: %+v", st)
		}
		control(t, b, breakerbox.ActionReset)
		st := status(t, b)
		if st.State != breakerbox.StateClosed || st.Mode != breakerbox.ModeNormal || st.CurrentFailures != 0 || st.TotalFailures != 5 {
			t.Fatalf("after reset: %+v", st)
		}
		h, err := admin.History(ctx, rdbOf(t, b), name, 100)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ev := range h {
			if ev.Actor == "tester" && ev.Event != "config_changed" {
				got = append(got, ev.Event)
			}
		}
		if strings.Join(got, ",") != "reset,disabled,released,forced_open" {
			t.Errorf("operator events newest first: %v", got)
		}
	})
}

func TestNewSeedsTheConfigAndNeverOverwritesAStoredOne(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	ctx := context.Background()
	var logs logBuffer
	first := newBreaker(t, rdb, "shared", client.DefaultConfig(), client.WithLogger(logs.logger()))
	_ = run(t, first, ok)
	cfg := client.DefaultConfig()
	cfg.FailureThreshold = 5
	second := newBreaker(t, rdb, "shared", cfg, client.WithLogger(logs.logger()))
	_ = run(t, second, ok)
	if got := mr.HGet(breakerbox.Key("shared", "config"), "failure_threshold"); got != "3" {
		t.Errorf("stored failure_threshold %q after a second worker seeded 5, want the first's 3 kept", got)
	}
	if got := second.Config().FailureThreshold; got != 3 {
		t.Errorf("the second worker's config in force: threshold %d, want the stored 3", got)
	}
	if n := logs.count("circuit breaker overwrote the shared config"); n != 0 {
		t.Fatalf("seeding logged an overwrite:\n%s", logs.String())
	}
	// An explicit deploy-time change overwrites, with a warning.
	third := newBreaker(t, rdb, "shared", cfg, client.WithLogger(logs.logger()), client.WithOverwriteConfig())
	_ = run(t, third, ok)
	if got := mr.HGet(breakerbox.Key("shared", "config"), "failure_threshold"); got != "5" {
		t.Errorf("stored failure_threshold %q after WithOverwriteConfig, want 5", got)
	}
	if n := logs.count("circuit breaker overwrote the shared config"); n != 1 {
		t.Fatalf("overwrite logged %d times, want once:\n%s", n, logs.String())
	}
	// Every worker now trips on the shared threshold, whatever it seeded.
	for i := 0; i < 4; i++ {
		_ = run(t, first, fail)
	}
	if st := status(t, first); st.State != breakerbox.StateClosed || st.FailureThreshold != 5 {
		t.Errorf("after 4 failures with a shared threshold of 5: %+v", st)
	}
	if names, err := admin.Names(ctx, rdb); err != nil || len(names) != 1 || names[0] != "shared" {
		t.Errorf("Names = %v, %v", names, err)
	}
}

func TestNewRefusesBadInputWithoutTouchingRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	good := client.DefaultConfig()
	with := func(f func(*client.Config)) client.Config { c := good; f(&c); return c }
	cases := []struct {
		name string
		cfg  client.Config
		want error
	}{
		{"", good, breakerbox.ErrInvalidName},
		{strings.Repeat("x", 201), good, breakerbox.ErrInvalidName},
		{"a{b}", good, breakerbox.ErrInvalidName},
		{"tab\there", good, breakerbox.ErrInvalidName},
		{"ok", with(func(c *client.Config) { c.FailureThreshold = -1 }), breakerbox.ErrInvalidConfig},
		{"ok", with(func(c *client.Config) { c.FailureThreshold = int(breakerbox.MaxConfigValue + 1) }), breakerbox.ErrInvalidConfig},
		{"ok", with(func(c *client.Config) { c.SuccessThreshold = -1 }), breakerbox.ErrInvalidConfig},
		{"ok", with(func(c *client.Config) { c.HalfOpenMaxCalls = -1 }), breakerbox.ErrInvalidConfig},
		{"ok", with(func(c *client.Config) { c.RecoveryTimeout = time.Microsecond }), breakerbox.ErrInvalidConfig},
		{"ok", with(func(c *client.Config) { c.RequestTimeout = -time.Second }), breakerbox.ErrInvalidConfig},
	}
	for _, c := range cases {
		if _, err := client.New(rdb, c.name, c.cfg); !errors.Is(err, c.want) {
			t.Errorf("New(%q, %+v) = %v, want %v", c.name, c.cfg, err, c.want)
		}
	}
	if _, err := client.New(nil, "ok", good); err == nil {
		t.Error("New with a nil client succeeded")
	}
	if _, err := client.New(rdb, "ok", good, client.WithRedisTimeout(0)); err == nil {
		t.Error("New with a zero redis timeout succeeded")
	}
	if n := mr.CommandCount(); n != 0 {
		t.Errorf("New made %d Redis commands, want none", n)
	}
}

func TestSetConfigChangesItForEveryWorker(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		ctx := context.Background()
		one := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a))
		other := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a))
		_ = run(t, other, ok)
		done := make(chan struct{})
		go func() { // calls while the config changes: the race detector watches
			defer close(done)
			for i := 0; i < 20; i++ {
				_ = one.Execute(ctx, ok)
			}
		}()
		cfg := quickConfig()
		cfg.FailureThreshold = 1
		if err := one.SetConfig(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		<-done
		_ = one.Flush(ctx)
		if got := one.Config().FailureThreshold; got != 1 {
			t.Errorf("Config() after SetConfig: threshold %d", got)
		}
		if err := run(t, other, fail); !errors.Is(err, errBoom) {
			t.Fatal(err)
		}
		if st := status(t, other); st.State != breakerbox.StateOpen || st.FailureThreshold != 1 {
			t.Errorf("another worker's breaker after one failure: %+v, want open on the shared threshold 1", st)
		}
		if err := one.SetConfig(ctx, client.Config{FailureThreshold: -1}); !errors.Is(err, breakerbox.ErrInvalidConfig) {
			t.Errorf("SetConfig with a negative threshold: %v, want ErrInvalidConfig", err)
		}
		if err := one.SetConfig(ctx, client.Config{}); err != nil || one.Config() != client.DefaultConfig().WithDefaults() {
			t.Errorf("SetConfig(Config{}) = %v, config in force %+v: want the defaults stored", err, one.Config())
		}
	})
}

func TestCommandsDefaultToTheSameRedisURL(t *testing.T) {
	if client.DefaultRedisURL != client.DefaultURLOfCommands {
		t.Errorf("client.DefaultRedisURL %q, cbctl and alertd default to %q", client.DefaultRedisURL, client.DefaultURLOfCommands)
	}
}
