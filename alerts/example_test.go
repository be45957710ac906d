package alerts_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/alerts"
	"github.com/breakerbox/breakerbox/client"
)

// A daemon run in-process, printing alerts to standard output: the
// breaker opens, and the seed's alert appears.
func Example() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	mr.SetTime(time.Date(2025, 10, 25, 11, 30, 0, 0, time.UTC)) // Redis's clock, for a fixed Alert Time
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	stdout, _ := alerts.NewWriterSink(os.Stdout)
	printed := make(chan struct{}, 1)
	sink := alerts.SinkFunc(func(ctx context.Context, a alerts.Alert) (bool, error) {
		defer func() { printed <- struct{}{} }()
		return stdout.Notify(ctx, a)
	})
	var d *alerts.Daemon
	d, err = alerts.New(rdb, alerts.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, sink)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()

	b, _ := client.New(rdb, "openai_transcription", client.DefaultConfig(),
		client.WithAdmission(client.AdmitStrict), client.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer b.Shutdown(context.Background())
	for range 3 {
		p, _ := b.Allow(ctx)
		_ = p.Failure(ctx, errors.New("OpenAI API error: Connection timeout"))
	}
	<-printed
	cancel()
	<-done
	// Output:
	// 🚨 Circuit Breaker Alert: openai_transcription
	//
	// Service:     openai_transcription
	// State:       OPEN
	// Failures:    3
	// Recovery In: 30s
	//
	// Last Error:
	// ```
	// OpenAI API error: Connection timeout
	// ```
	//
	// ⏰ Alert Time: 2025-10-25 11:30:00 UTC
}
