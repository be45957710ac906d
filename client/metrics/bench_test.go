package metrics_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/metrics"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// BenchmarkScrape1000 measures one Prometheus scrape (Gather) of 1,000
// breakers on a real redis-server over loopback: every breaker (SMEMBERS +
// SCAN + pipelined status reads) and a fixed list of names (pipelined only).
//
//	go test -run '^$' -bench Scrape1000 -benchtime 100x ./client/metrics
func BenchmarkScrape1000(b *testing.B) {
	s := redistest.Start(b)
	rdb := s.Client(b)
	ctx := context.Background()
	names := make([]string, 1000)
	pipe := rdb.Pipeline()
	for i := range names {
		names[i] = fmt.Sprintf("svc-%04d", i)
		pipe.SAdd(ctx, breakerbox.RegistryKey, names[i])
		// A few outcomes each, one in ten tripped, so every series has data.
		args := []any{"record", 0, "s", 0, "", "", "f", 0, "", "timeout"}
		if i%10 == 0 {
			args = append(args, "f", 0, "", "timeout", "f", 0, "", "timeout")
		}
		breakerbox.BreakerScript.Run(ctx, pipe, breakerbox.Keys(names[i]), args...)
	}
	if _, err := breakerbox.BreakerScript.Load(ctx, rdb); err != nil {
		b.Fatal(err)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name string
		opts []metrics.Option
	}{
		{"all", nil},
		{"names", []metrics.Option{metrics.WithNames(names...)}},
	} {
		b.Run(v.name, func(b *testing.B) {
			c, err := metrics.NewCollector(rdb, v.opts...)
			if err != nil {
				b.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(c)
			for b.Loop() {
				mfs, err := reg.Gather()
				if err != nil {
					b.Fatal(err)
				}
				if len(mfs) != 12 || len(mfs[0].GetMetric()) != 1000 {
					b.Fatalf("gathered %d families, the first with %d series; want 12, 1000", len(mfs), len(mfs[0].GetMetric()))
				}
			}
			b.StopTimer()
			// Where the time goes: Redis's own time per status call.
			if info, err := rdb.Info(ctx, "commandstats").Result(); err == nil {
				if _, rest, ok := strings.Cut(info, "cmdstat_evalsha:"); ok {
					if _, v, ok := strings.Cut(rest, "usec_per_call="); ok {
						v, _, _ = strings.Cut(v, ",")
						if us, err := strconv.ParseFloat(v, 64); err == nil {
							b.ReportMetric(us, "redis-µs/status")
						}
					}
				}
			}
		})
	}
}
