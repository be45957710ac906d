package client_test

// The seed's three fallback strategies, runnable: docs/fallbacks.md explains
// when to use which. Each example trips a breaker on miniredis with a fake
// upstream. They use Strict admission so that every outcome is in Redis
// before the next call and the output is exact; in production the default
// Fast admission behaves the same within a few milliseconds.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
)

// fbRedis starts a miniredis with a fixed clock and a client on it.
func fbRedis() (*miniredis.Miniredis, *redis.Client) {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	mr.SetTime(time.Date(2025, 10, 25, 11, 30, 0, 0, time.UTC))
	return mr, redis.NewClient(&redis.Options{Addr: mr.Addr()})
}

// fbBreaker makes a breaker with the seed's defaults (3 failures open it,
// 30s recovery, 2 probe successes close it).
func fbBreaker(rdb *redis.Client, name string) *client.Breaker {
	b, err := client.New(rdb, name, client.DefaultConfig(), client.WithAdmission(client.AdmitStrict),
		client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	return b
}

// fbUpstream is a fake transcription API that is down until up is set.
type fbUpstream struct {
	name  string
	up    bool
	calls int
}

func (u *fbUpstream) transcribe(_ context.Context, audio string) (string, error) {
	u.calls++
	if !u.up {
		return "", fmt.Errorf("%s: connection timeout", u.name)
	}
	return u.name + " transcript of " + audio, nil
}

// Strategy 1, return an empty result: the caller gets "" (the seed's None)
// whenever the breaker refuses, and carries on.
func Example_fallbackEmptyResult() {
	mr, rdb := fbRedis()
	defer mr.Close()
	defer rdb.Close()
	ctx := context.Background()
	b := fbBreaker(rdb, "openai_transcription")
	defer b.Shutdown(ctx)
	openai := &fbUpstream{name: "openai"}

	transcribe := func(ctx context.Context, audio string) string {
		text, err := client.Do(ctx, b, func(ctx context.Context) (string, error) {
			return openai.transcribe(ctx, audio)
		})
		if errors.Is(err, client.ErrOpen) {
			return "" // circuit open: empty transcript, no call made
		}
		if err != nil {
			return "" // the call failed (and was counted): empty transcript too
		}
		return text
	}

	for i := 1; i <= 5; i++ {
		fmt.Printf("call %d: %q\n", i, transcribe(ctx, "a.wav"))
	}
	st, _ := admin.Status(ctx, rdb, b.Name())
	fmt.Println("breaker:", st.State, "- upstream called", openai.calls, "times")
	// Output:
	// call 1: ""
	// call 2: ""
	// call 3: ""
	// call 4: ""
	// call 5: ""
	// breaker: open - upstream called 3 times
}

// Strategy 2, queue for later: while the breaker refuses, the work goes to
// a Redis list and the caller is told it is queued; once the breaker
// admits calls again, a worker drains the list through the same breaker.
func Example_fallbackQueueForLater() {
	mr, rdb := fbRedis()
	defer mr.Close()
	defer rdb.Close()
	ctx := context.Background()
	b := fbBreaker(rdb, "openai_transcription")
	defer b.Shutdown(ctx)
	openai := &fbUpstream{name: "openai"}
	const queue = "transcription_queue"

	type reply struct{ Status, Text string }
	transcribe := func(ctx context.Context, audio, user string) (reply, error) {
		p, err := b.Allow(ctx) // the seed's cb.can_execute()
		if errors.Is(err, client.ErrOpen) {
			if err := rdb.RPush(ctx, queue, audio+" "+user).Err(); err != nil {
				return reply{}, err
			}
			return reply{Status: "queued", Text: "Service temporarily unavailable"}, nil
		}
		if err != nil {
			return reply{}, err
		}
		text, err := openai.transcribe(ctx, audio)
		_ = p.Done(ctx, err) // success or failure, counted by the breaker
		if err != nil {
			return reply{}, err
		}
		return reply{Status: "done", Text: text}, nil
	}

	for _, audio := range []string{"a1.wav", "a2.wav", "a3.wav", "a4.wav", "a5.wav"} {
		r, err := transcribe(ctx, audio, "user42")
		fmt.Printf("%s: %+v %v\n", audio, r, err)
	}

	// 30 seconds later the API is back; the drain loop stops at the first
	// refusal and leaves the rest queued.
	mr.SetTime(time.Date(2025, 10, 25, 11, 30, 31, 0, time.UTC))
	openai.up = true
	for {
		item, err := rdb.LPop(ctx, queue).Result()
		if err != nil {
			break // queue empty
		}
		var audio, user string
		fmt.Sscan(item, &audio, &user)
		text, err := client.Do(ctx, b, func(ctx context.Context) (string, error) {
			return openai.transcribe(ctx, audio)
		})
		if errors.Is(err, client.ErrOpen) {
			rdb.LPush(ctx, queue, item) // put it back; try again later
			break
		}
		fmt.Printf("drained %s for %s: %q\n", audio, user, text)
	}
	st, _ := admin.Status(ctx, rdb, b.Name())
	fmt.Println("breaker:", st.State)
	// Output:
	// a1.wav: {Status: Text:} openai: connection timeout
	// a2.wav: {Status: Text:} openai: connection timeout
	// a3.wav: {Status: Text:} openai: connection timeout
	// a4.wav: {Status:queued Text:Service temporarily unavailable} <nil>
	// a5.wav: {Status:queued Text:Service temporarily unavailable} <nil>
	// drained a4.wav for user42: "openai transcript of a4.wav"
	// drained a5.wav for user42: "openai transcript of a5.wav"
	// breaker: closed
}

// Strategy 3, use an alternative service: when the primary's breaker
// refuses, call a backup instead. The backup has its own breaker, so a
// failing backup is not hammered either.
func Example_fallbackAlternativeService() {
	mr, rdb := fbRedis()
	defer mr.Close()
	defer rdb.Close()
	ctx := context.Background()
	primary, backup := fbBreaker(rdb, "openai_transcription"), fbBreaker(rdb, "backup_transcription")
	defer primary.Shutdown(ctx)
	defer backup.Shutdown(ctx)
	openai := &fbUpstream{name: "openai"}
	local := &fbUpstream{name: "local-whisper", up: true}

	transcribe := func(ctx context.Context, audio string) (string, error) {
		text, err := client.Do(ctx, primary, func(ctx context.Context) (string, error) {
			return openai.transcribe(ctx, audio)
		})
		if errors.Is(err, client.ErrOpen) {
			return client.Do(ctx, backup, func(ctx context.Context) (string, error) {
				return local.transcribe(ctx, audio)
			})
		}
		return text, err
	}

	for i := 1; i <= 5; i++ {
		text, err := transcribe(ctx, "a.wav")
		fmt.Printf("call %d: %q %v\n", i, text, err)
	}
	p, _ := admin.Status(ctx, rdb, primary.Name())
	bk, _ := admin.Status(ctx, rdb, backup.Name())
	fmt.Println("primary:", p.State, "- backup:", bk.State)
	// Output:
	// call 1: "" openai: connection timeout
	// call 2: "" openai: connection timeout
	// call 3: "" openai: connection timeout
	// call 4: "local-whisper transcript of a.wav" <nil>
	// call 5: "local-whisper transcript of a.wav" <nil>
	// primary: open - backup: closed
}
