package dashboard

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// BenchmarkRefresh1000 measures the dashboard's bulk read of 1,000
// breakers on a real redis-server over loopback (the read behind the rates,
// once per interval), and reports the size of the snapshot a page receives
// when it connects.
//
//	go test -run '^$' -bench Refresh1000 -benchtime 50x ./client/dashboard
func BenchmarkRefresh1000(b *testing.B) {
	s := redistest.Start(b)
	rdb := s.Client(b)
	ctx := context.Background()
	if _, err := breakerbox.BreakerScript.Load(ctx, rdb); err != nil {
		b.Fatal(err)
	}
	pipe := rdb.Pipeline()
	for i := range 1000 {
		name := fmt.Sprintf("svc-%04d", i)
		pipe.SAdd(ctx, breakerbox.RegistryKey, name)
		args := []any{"record", 0, "s", 0, "", "", "f", 0, "", "timeout"}
		if i%10 == 0 { // one in ten tripped
			args = append(args, "f", 0, "", "timeout", "f", 0, "", "timeout")
		}
		breakerbox.BreakerScript.Run(ctx, pipe, breakerbox.Keys(name), args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	f := newFeed(redisStore{rdb: rdb}, time.Second, 10*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.refresh(ctx, true) // the first read also looks up every breaker's time in state
	if f.health.readErr != nil || len(f.rows) != 1000 {
		b.Fatalf("first read: %v, %d rows", f.health.readErr, len(f.rows))
	}
	for b.Loop() {
		f.refresh(ctx, false)
	}
	f.health.running = true
	l, first := f.listen()
	f.unlisten(l)
	b.ReportMetric(float64(len(first))/1000, "snapshot-KB")
}
