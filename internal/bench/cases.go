package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/knobs"
)

// instance is one process's handle on a case: call makes one protected
// call (nil when it ended as the case expects: done for a closed breaker,
// refused for an open one); flush waits until outcomes are recorded; local
// returns what an in-process breaker counted (gobreaker without Redis).
type instance struct {
	call  func(ctx context.Context) error
	flush func(ctx context.Context) error
	local func() int64
	close func()
}

// Case is one thing measured side by side.
type Case struct {
	Name string
	Desc string
	// prepare puts the shared state in place, once per cell, before any
	// worker opens it (nil: nothing to do).
	prepare func(ctx context.Context, ctl *redis.Client, name string) error
	// open makes one process's handle, on that process's client.
	open func(ctx context.Context, rdb *redis.Client, name string) (*instance, error)
	// recorded reads how many of the case's expected outcomes the shared
	// store has counted so far (nil: nothing shared to check).
	recorded func(ctx context.Context, ctl *redis.Client, name string) (int64, error)
}

// Cases returns every case, in table order.
func Cases() []*Case {
	return []*Case{
		{Name: "ping", Desc: "go-redis PING round trip (the floor)",
			open: openPing},
		bbCase("bb-fast-closed", "breakerbox Execute, closed, Fast (default)", client.AdmitFast, closedCfg(), nil, false),
		bbCase("bb-strict-closed", "breakerbox Execute, closed, Strict", client.AdmitStrict, closedCfg(), nil, false),
		bbCase("bb-fast-closed-window", "breakerbox Execute, closed, Fast, with a 60-bucket time window and rate rules", client.AdmitFast, windowCfg(), nil, false),
		bbCase("bb-strict-closed-window", "breakerbox Execute, closed, Strict, with a 60-bucket time window and rate rules", client.AdmitStrict, windowCfg(), nil, false),
		bbCase("bb-fast-open", "breakerbox Execute, open (refused), Fast", client.AdmitFast, openCfg(), prepareOpen, true),
		bbCase("bb-strict-open", "breakerbox Execute, open (refused), Strict", client.AdmitStrict, openCfg(), prepareOpen, true),
		bbCase("bb-fast-halfopen", "breakerbox Execute, half-open probe, Fast", client.AdmitFast, halfOpenCfg(), prepareHalfOpen, false),
		bbCase("bb-strict-halfopen", "breakerbox Execute, half-open probe, Strict", client.AdmitStrict, halfOpenCfg(), prepareHalfOpen, false),
		unbatched(bbCase("bb-strict-closed-unbatched", "breakerbox Execute, closed, Strict, each script call an EVALSHA of its own (internal/knobs.NoStrictBatch)", client.AdmitStrict, closedCfg(), nil, false)),
		unbatched(bbCase("bb-strict-open-unbatched", "breakerbox Execute, open (refused), Strict, each script call an EVALSHA of its own", client.AdmitStrict, openCfg(), prepareOpen, true)),
		unbatched(bbCase("bb-strict-halfopen-unbatched", "breakerbox Execute, half-open probe, Strict, each script call an EVALSHA of its own", client.AdmitStrict, halfOpenCfg(), prepareHalfOpen, false)),
		{Name: "gobreaker-local", Desc: "sony/gobreaker/v2 Execute, in process (no Redis)",
			open: openGobreakerLocal},
		{Name: "gobreaker-redis", Desc: "sony/gobreaker/v2 DistributedCircuitBreaker, go-redis store",
			open: openGobreakerRedis, recorded: gobreakerRequests},
	}
}

// CaseByName returns the named case.
func CaseByName(name string) (*Case, error) {
	for _, c := range Cases() {
		if c.Name == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("unknown case %q", name)
}

func noop(context.Context) error { return nil }

var errProbe = errors.New("bench: injected failure")

func openPing(_ context.Context, rdb *redis.Client, _ string) (*instance, error) {
	return &instance{
		call:  func(ctx context.Context) error { return rdb.Ping(OnCallerPath(ctx)).Err() },
		flush: func(context.Context) error { return nil },
		close: func() {},
	}, nil
}

func closedCfg() client.Config { return client.DefaultConfig() }

// windowCfg adds the trip rules of issue 11 to the defaults: a minute in
// 60 buckets, failure-rate and slow-call rules (no-op calls trip neither).
func windowCfg() client.Config {
	c := client.DefaultConfig()
	c.Window, c.WindowBuckets, c.FailureRateThreshold, c.MinimumCalls = time.Minute, 60, 50, 20
	c.SlowCallDuration, c.SlowCallRateThreshold = time.Second, 80
	return c
}

// openCfg trips on the first failure and stays open for an hour.
func openCfg() client.Config {
	c := client.DefaultConfig()
	c.FailureThreshold = 1
	c.RecoveryTimeout = time.Hour
	return c
}

// halfOpenCfg keeps a half-open breaker half-open: every call is a probe
// and no number of successes closes it within a benchmark.
func halfOpenCfg() client.Config {
	c := client.DefaultConfig()
	c.SuccessThreshold = 1_000_000 // the largest the protocol accepts
	c.HalfOpenMaxCalls = 1_000_000
	return c
}

// quiet is the breakers' logger: silent, unless BBBENCH_LOG is set (then
// warnings and errors go to stderr, for finding out what a run did).
var quiet = func() *slog.Logger {
	if os.Getenv("BBBENCH_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}()

func bbCase(name, desc string, adm client.Admission, cfg client.Config,
	prepare func(context.Context, *redis.Client, string, client.Config) error, refused bool) *Case {
	c := &Case{Name: name, Desc: desc}
	if prepare != nil {
		c.prepare = func(ctx context.Context, ctl *redis.Client, n string) error { return prepare(ctx, ctl, n, cfg) }
	}
	c.open = func(ctx context.Context, rdb *redis.Client, n string) (*instance, error) {
		b, err := client.New(rdb, n, cfg, client.WithAdmission(adm), client.WithLogger(quiet))
		if err != nil {
			return nil, err
		}
		if err := b.Ready(ctx); err != nil {
			return nil, fmt.Errorf("breaker %s ready: %w", n, err)
		}
		return &instance{
			call: func(ctx context.Context) error {
				err := b.Execute(OnCallerPath(ctx), noop)
				if refused {
					if errors.Is(err, client.ErrOpen) {
						return nil
					}
					if err == nil {
						return errors.New("admitted by an open breaker")
					}
				}
				return err
			},
			flush: b.Flush,
			close: func() { _ = b.Shutdown(context.Background()) },
		}, nil
	}
	c.recorded = func(ctx context.Context, ctl *redis.Client, n string) (int64, error) {
		st, err := admin.Status(ctx, ctl, n)
		if err != nil {
			return 0, err
		}
		if refused {
			return st.TotalRefused, nil
		}
		return st.TotalSuccesses + st.TotalFailures, nil
	}
	return c
}

// unbatched is c with the coalescing of Strict script calls turned off
// while its handle is open (the before of bbbench's before-and-after).
func unbatched(c *Case) *Case {
	open := c.open
	c.open = func(ctx context.Context, rdb *redis.Client, n string) (*instance, error) {
		knobs.NoStrictBatch.Store(true)
		inst, err := open(ctx, rdb, n)
		if err != nil {
			knobs.NoStrictBatch.Store(false)
			return nil, err
		}
		closeInst := inst.close
		inst.close = func() {
			closeInst()
			knobs.NoStrictBatch.Store(false)
		}
		return inst, nil
	}
	return c
}

// prepareOpen trips the breaker with one recorded failure.
func prepareOpen(ctx context.Context, ctl *redis.Client, name string, cfg client.Config) error {
	b, err := client.New(ctl, name, cfg, client.WithAdmission(client.AdmitStrict), client.WithLogger(quiet))
	if err != nil {
		return err
	}
	defer b.Shutdown(ctx)
	if err := b.Execute(ctx, func(context.Context) error { return errProbe }); !errors.Is(err, errProbe) {
		return fmt.Errorf("trip %s: %v", name, err)
	}
	st, err := admin.Status(ctx, ctl, name)
	if err != nil {
		return err
	}
	if st.State != breakerbox.StateOpen {
		return fmt.Errorf("trip %s: state %s, want open", name, st.State)
	}
	return nil
}

// prepareHalfOpen forces the breaker open and releases it: released from
// forced_open, it goes to half-open.
func prepareHalfOpen(ctx context.Context, ctl *redis.Client, name string, cfg client.Config) error {
	if _, err := admin.Configure(ctx, ctl, name, cfg, "bbbench"); err != nil {
		return err
	}
	if _, err := admin.Control(ctx, ctl, name, breakerbox.ActionForceOpen, "bbbench"); err != nil {
		return err
	}
	st, err := admin.Control(ctx, ctl, name, breakerbox.ActionRelease, "bbbench")
	if err != nil {
		return err
	}
	if st.State != breakerbox.StateHalfOpen {
		return fmt.Errorf("half-open %s: state %s", name, st.State)
	}
	return nil
}

func openGobreakerLocal(_ context.Context, _ *redis.Client, name string) (*instance, error) {
	cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Name: name})
	fn := func() (struct{}, error) { return struct{}{}, nil }
	return &instance{
		call: func(context.Context) error {
			_, err := cb.Execute(fn)
			return err
		},
		flush: func(context.Context) error { return nil },
		local: func() int64 { return int64(cb.Counts().Requests) },
		close: func() {},
	}, nil
}

// gobreakerLockWait bounds how long the store retries a busy lock before
// gobreaker's own 500ms sleep; its own mutex timeout is 5s.
const gobreakerLockWait = 5 * time.Second

func openGobreakerRedis(_ context.Context, rdb *redis.Client, name string) (*instance, error) {
	store, err := NewGoRedisStore(rdb, 5*time.Second, gobreakerLockWait)
	if err != nil {
		return nil, err
	}
	dcb, err := gobreaker.NewDistributedCircuitBreaker[struct{}](store, gobreaker.Settings{Name: name})
	if err != nil {
		return nil, fmt.Errorf("gobreaker %s: %w", name, err)
	}
	fn := func() (struct{}, error) { return struct{}{}, nil }
	return &instance{
		call: func(context.Context) error {
			_, err := dcb.Execute(fn)
			return err
		},
		flush: func(context.Context) error { return nil },
		close: func() {},
	}, nil
}

// gobreakerRequests reads Counts.Requests from the shared JSON state.
func gobreakerRequests(ctx context.Context, ctl *redis.Client, name string) (int64, error) {
	data, err := ctl.Get(ctx, "gobreaker:state:"+name).Bytes()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var st gobreaker.SharedState
	if err := json.Unmarshal(data, &st); err != nil {
		return 0, fmt.Errorf("gobreaker state %s: %w", name, err)
	}
	return int64(st.Counts.Requests), nil
}
