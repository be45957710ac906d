package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

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

// List is the seed's get_all_circuit_breakers.
func ExampleList() {
	rdb, done := exampleRedis()
	defer done()
	ctx := context.Background()
	for _, name := range []string{"openai_transcription", "payments"} {
		cb, _ := client.New(rdb, name, client.DefaultConfig(), quietLogs)
		_ = cb.Execute(ctx, func(context.Context) error { return nil })
		_ = cb.Shutdown(ctx)
	}
	breakers, err := admin.List(ctx, rdb)
	if err != nil {
		panic(err)
	}
	for _, cb := range breakers {
		fmt.Printf("%s: %s\n", cb.Name, cb.State)
		fmt.Printf("  Failures: %d/%d\n", cb.CurrentFailures, cb.FailureThreshold)
		fmt.Printf("  Success Rate: %.1f%%\n", cb.SuccessRate)
	}
	// Output:
	// openai_transcription: closed
	//   Failures: 0/3
	//   Success Rate: 100.0%
	// payments: closed
	//   Failures: 0/3
	//   Success Rate: 100.0%
}
