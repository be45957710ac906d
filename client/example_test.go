package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
)

func exampleRedis() (redis.UniversalClient, func()) {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	return rdb, func() { rdb.Close(); mr.Close() }
}

var quietLogs = client.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

// Execute is the context-manager style: the function runs only if the
// breaker admits it, and its error is recorded.
func ExampleBreaker_Execute() {
	rdb, done := exampleRedis()
	defer done()
	ctx := context.Background()
	cb, err := client.New(rdb, "openai_transcription", client.DefaultConfig(), quietLogs,
		client.WithAdmission(client.AdmitStrict))
	if err != nil {
		panic(err)
	}
	defer cb.Shutdown(ctx)

	for i := 1; i <= 4; i++ {
		err := cb.Execute(ctx, func(ctx context.Context) error {
			return errors.New("OpenAI API error: Connection timeout")
		})
		if errors.Is(err, client.ErrOpen) {
			fmt.Printf("call %d: refused, use the fallback\n", i)
			continue
		}
		fmt.Printf("call %d: %v\n", i, err)
	}
	st, _ := admin.Status(ctx, rdb, cb.Name())
	fmt.Printf("%s: %s, failures %d/%d\n", st.Name, st.State, st.CurrentFailures, st.FailureThreshold)
	// Output:
	// call 1: OpenAI API error: Connection timeout
	// call 2: OpenAI API error: Connection timeout
	// call 3: OpenAI API error: Connection timeout
	// call 4: refused, use the fallback
	// openai_transcription: open, failures 3/3
}

// Wrap is the decorator style.
func ExampleWrap() {
	rdb, done := exampleRedis()
	defer done()
	ctx := context.Background()
	cb, err := client.New(rdb, "anthropic_api", client.DefaultConfig(), quietLogs)
	if err != nil {
		panic(err)
	}
	defer cb.Shutdown(ctx)

	complete := client.Wrap(cb, func(ctx context.Context, prompt string) (string, error) {
		return "echo: " + prompt, nil
	})
	out, err := complete(ctx, "Hello")
	fmt.Println(out, err)
	// Output: echo: Hello <nil>
}

// Allow is the manual style: can_execute, then record_success or record_failure.
func ExampleBreaker_Allow() {
	rdb, done := exampleRedis()
	defer done()
	ctx := context.Background()
	cb, err := client.New(rdb, "my_service", client.DefaultConfig(), quietLogs)
	if err != nil {
		panic(err)
	}
	defer cb.Shutdown(ctx)

	p, err := cb.Allow(ctx)
	if err != nil {
		fmt.Println("open: fall back")
		return
	}
	if callErr := error(nil); callErr != nil {
		_ = p.Failure(ctx, callErr)
	} else {
		_ = p.Success(ctx)
	}
	_ = cb.Flush(ctx)
	st, _ := admin.Status(ctx, rdb, cb.Name())
	fmt.Println(st.State, st.TotalSuccesses)
	// Output: closed 1
}

// Do is the decorator style for one call: it returns the function's
// result, or an error matching ErrOpen without calling it.
func ExampleDo() {
	rdb, done := exampleRedis()
	defer done()
	ctx := context.Background()
	cb, err := client.New(rdb, "geocoder", client.DefaultConfig(), quietLogs)
	if err != nil {
		panic(err)
	}
	defer cb.Shutdown(ctx)

	type place struct{ Lat, Lng float64 }
	p, err := client.Do(ctx, cb, func(ctx context.Context) (place, error) {
		return place{48.8566, 2.3522}, nil // the upstream call
	})
	if errors.Is(err, client.ErrOpen) {
		p = place{} // the fallback
	}
	fmt.Println(p, err)
	// Output: {48.8566 2.3522} <nil>
}

// A classifier says how an error counts. A 404 means the upstream answered
// (a success for the breaker); a request refused before it was sent says
// nothing about the upstream (ignored); anything else is a failure.
func ExampleWithClassifier() {
	rdb, done := exampleRedis()
	defer done()
	ctx := context.Background()
	errNotFound := errors.New("404 not found")
	errInvalid := errors.New("invalid request: empty prompt")
	classify := func(err error) client.Verdict {
		switch {
		case errors.Is(err, errNotFound):
			return client.VerdictSuccess
		case errors.Is(err, errInvalid):
			return client.VerdictIgnore
		}
		return client.VerdictFailure
	}
	cb, err := client.New(rdb, "search", client.DefaultConfig(), quietLogs,
		client.WithAdmission(client.AdmitStrict), client.WithClassifier(classify))
	if err != nil {
		panic(err)
	}
	defer cb.Shutdown(ctx)

	for _, callErr := range []error{errNotFound, errInvalid, errInvalid, errors.New("timeout"), errNotFound} {
		_ = cb.Execute(ctx, func(context.Context) error { return callErr })
	}
	st, _ := admin.Status(ctx, rdb, "search")
	fmt.Printf("%s: %d successes, %d failures, %d consecutive\n", st.State, st.TotalSuccesses, st.TotalFailures, st.CurrentFailures)
	// Output: closed: 2 successes, 1 failures, 0 consecutive
}

// The hook is told of every transition the handle learns of, in order, on
// a goroutine of its own: log it, count it, page someone.
func ExampleWithOnStateChange() {
	rdb, done := exampleRedis()
	defer done()
	ctx := context.Background()
	cfg := client.DefaultConfig()
	cfg.FailureThreshold = 2
	cb, err := client.New(rdb, "payments", cfg, quietLogs, client.WithAdmission(client.AdmitStrict),
		client.WithOnStateChange(func(c client.StateChange) {
			fmt.Printf("%s: %s -> %s (%s)\n", c.Name, c.From, c.To, c.Cause)
		}))
	if err != nil {
		panic(err)
	}
	for i := 0; i < 2; i++ {
		_ = cb.Execute(ctx, func(context.Context) error { return errors.New("timeout") })
	}
	// An operator resets it; this worker learns of it on its next call.
	_, _ = admin.Control(ctx, rdb, "payments", breakerbox.ActionReset, "alice@ops")
	_ = cb.Execute(ctx, func(context.Context) error { return nil })

	_ = cb.Shutdown(ctx) // hands the hook every change before it returns
	// Output:
	// payments: closed -> open (opened)
	// payments: open -> closed (reset)
}

// State is the handle's view of the breaker: no round trip.
func ExampleBreaker_State() {
	rdb, done := exampleRedis()
	defer done()
	ctx := context.Background()
	cfg := client.DefaultConfig()
	cfg.FailureThreshold = 1
	cb, err := client.New(rdb, "email", cfg, quietLogs, client.WithAdmission(client.AdmitStrict))
	if err != nil {
		panic(err)
	}
	defer cb.Shutdown(ctx)
	fmt.Println(cb.State())
	_ = cb.Execute(ctx, func(context.Context) error { return errors.New("smtp: connection refused") })
	fmt.Println(cb.State())
	// Output:
	// closed
	// open
}

// A Hub is the runtime every breaker of a process shares on one Redis
// client: one pub/sub connection, one outcome sender, one outage detector
// per Redis node. Set the process options once on it and hand out
// breakers; New does the same on a Hub shared per client.
func ExampleHub() {
	rdb, done := exampleRedis()
	defer done()
	ctx := context.Background()
	hub, err := client.NewHub(rdb,
		client.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), // process options...
		client.WithRedisTimeout(500*time.Millisecond),
		client.WithOnStateChange(func(c client.StateChange) { fmt.Printf("%s: %s -> %s\n", c.Name, c.From, c.To) }),
		client.WithAdmission(client.AdmitStrict)) // ...and a default for every breaker
	if err != nil {
		panic(err)
	}
	defer hub.Shutdown(ctx) // flushes every breaker's outcomes

	cfg := client.Config{FailureThreshold: 1} // zero fields: the defaults
	upstreams := []string{"geocoder", "payments", "search"}
	breakers := map[string]*client.Breaker{}
	for _, name := range upstreams {
		if breakers[name], err = hub.New(name, cfg); err != nil {
			panic(err)
		}
	}
	for _, name := range upstreams {
		_ = breakers[name].Execute(ctx, func(context.Context) error {
			if name == "payments" {
				return errors.New("503 Service Unavailable")
			}
			return nil
		})
	}
	_ = hub.Shutdown(ctx) // hands the hook every change before it returns
	for _, name := range upstreams {
		fmt.Println(name, breakers[name].State())
	}
	// Output:
	// payments: closed -> open
	// geocoder closed
	// payments open
	// search closed
}

// Config{} stands for the defaults, and the Config given to New only
// seeds a breaker that has none stored: the config in Redis is the
// fleet's, and Config reports it.
func ExampleNew_seed() {
	rdb, done := exampleRedis()
	defer done()
	ctx := context.Background()
	_, _ = admin.Configure(ctx, rdb, "search", client.Config{FailureThreshold: 10}, "ops") // an operator's change
	cb, err := client.New(rdb, "search", client.Config{}, quietLogs)
	if err != nil {
		panic(err)
	}
	defer cb.Shutdown(ctx)
	_ = cb.Ready(ctx)
	fmt.Println(cb.Config().FailureThreshold, cb.Config().RecoveryTimeout)
	// Output: 10 30s
}
