package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
)

// KeyMemory is one key of a breaker as Redis stores it.
type KeyMemory struct {
	Key   string // the key's suffix: "state", "metrics", ...
	Type  string // string, hash, list, zset, stream
	Len   int64  // elements (0 for a string)
	Bytes int64  // MEMORY USAGE key SAMPLES 0
}

// BreakerMemory is every existing key of one breaker.
type BreakerMemory struct {
	Scenario string
	Keys     []KeyMemory
	Total    int64
}

// KeyList names the keys that exist, with their lengths: "history (100)".
func (m BreakerMemory) KeyList() string {
	parts := make([]string, len(m.Keys))
	for i, k := range m.Keys {
		parts[i] = k.Key
		if k.Type != "string" {
			parts[i] += fmt.Sprintf(" (%s, %d)", k.Type, k.Len)
		}
	}
	return strings.Join(parts, ", ")
}

// Bytes returns the bytes of the named key, 0 when it does not exist.
func (m BreakerMemory) Bytes(suffix string) int64 {
	for _, k := range m.Keys {
		if k.Key == suffix {
			return k.Bytes
		}
	}
	return 0
}

// breakerMemory sums MEMORY USAGE (SAMPLES 0: every element) over the
// eight keys of breaker name.
func breakerMemory(ctx context.Context, rdb *redis.Client, scenario, name string) (BreakerMemory, error) {
	out := BreakerMemory{Scenario: scenario}
	prefix := breakerbox.KeyPrefix + "{" + name + "}:"
	for _, key := range breakerbox.Keys(name) {
		typ, err := rdb.Type(ctx, key).Result()
		if err != nil {
			return out, err
		}
		if typ == "none" {
			continue
		}
		n, err := rdb.MemoryUsage(ctx, key, 0).Result()
		if err != nil {
			return out, fmt.Errorf("MEMORY USAGE %s: %w", key, err)
		}
		var l int64
		switch typ {
		case "hash":
			l, err = rdb.HLen(ctx, key).Result()
		case "list":
			l, err = rdb.LLen(ctx, key).Result()
		case "zset":
			l, err = rdb.ZCard(ctx, key).Result()
		case "stream":
			l, err = rdb.XLen(ctx, key).Result()
		}
		if err != nil {
			return out, err
		}
		out.Keys = append(out.Keys, KeyMemory{Key: strings.TrimPrefix(key, prefix), Type: typ, Len: l, Bytes: n})
		out.Total += n
	}
	return out, nil
}

// realisticError is the kind of failure text a breaker stores.
var realisticError = errors.New(`Post "https://api.openai.com/v1/audio/transcriptions": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`)

// cycle trips b (threshold failures) and resets it: two transitions.
func cycle(ctx context.Context, rdb redis.UniversalClient, b *client.Breaker, threshold int) error {
	for i := 0; i < threshold; i++ {
		if err := b.Execute(ctx, func(context.Context) error { return realisticError }); err == nil || errors.Is(err, client.ErrOpen) {
			return fmt.Errorf("trip: failure %d: %v", i+1, err)
		}
	}
	_, err := admin.Control(ctx, rdb, b.Name(), breakerbox.ActionReset, "bbbench")
	return err
}

// MeasureMemory builds breakers in the states the issue names and
// measures each one's keys.
func MeasureMemory(ctx context.Context, rdb *redis.Client) ([]BreakerMemory, error) {
	var out []BreakerMemory
	cfg := client.DefaultConfig()
	newB := func(name string) (*client.Breaker, error) {
		return client.New(rdb, name, cfg, client.WithAdmission(client.AdmitStrict), client.WithLogger(quiet))
	}
	use := func(ctx context.Context, b *client.Breaker) error {
		for i := 0; i < 20; i++ {
			if err := b.Execute(ctx, noop); err != nil {
				return err
			}
		}
		// One failure, below the threshold.
		if err := b.Execute(ctx, func(context.Context) error { return realisticError }); !errors.Is(err, realisticError) {
			return fmt.Errorf("one failure: %v", err)
		}
		return nil
	}

	// 1. A worker in another language that only calls allow and record
	// (no configure): no history at all.
	name := "mem-protocol-only"
	keys := breakerbox.Keys(name)
	for i := 0; i < 20; i++ {
		if err := breakerbox.BreakerScript.Run(ctx, rdb, keys, "record", 0, "s", 0, "", "").Err(); err != nil {
			return nil, err
		}
	}
	if err := breakerbox.BreakerScript.Run(ctx, rdb, keys, "record", 0, "f", 0, "", realisticError.Error()).Err(); err != nil {
		return nil, err
	}
	m, err := breakerMemory(ctx, rdb, "used, never tripped, protocol-only worker (no configure: no history)", name)
	if err != nil {
		return nil, err
	}
	out = append(out, m)

	// 2. The Go client: its config is stored (the defaults: no history entry).
	name = "mem-go-closed"
	b, err := newB(name)
	if err != nil {
		return nil, err
	}
	err = use(ctx, b)
	b.Shutdown(ctx)
	if err != nil {
		return nil, err
	}
	if m, err = breakerMemory(ctx, rdb, "used, never tripped, Go client (config registered)", name); err != nil {
		return nil, err
	}
	out = append(out, m)

	// 3 and 4: full history (100 transitions), and the events stream at
	// its cap (1,000 transitions).
	for _, v := range []struct {
		scenario string
		cycles   int
	}{
		{"full history: 100 transitions (50 trips + 50 resets)", 50},
		{"1,000 transitions: history full, events stream at its MAXLEN", 500},
	} {
		name := fmt.Sprintf("mem-cycles-%d", v.cycles)
		b, err := newB(name)
		if err != nil {
			return nil, err
		}
		for i := 0; i < v.cycles && err == nil; i++ {
			err = cycle(ctx, rdb, b, cfg.FailureThreshold)
		}
		if err == nil {
			err = use(ctx, b)
		}
		b.Shutdown(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		m, err := breakerMemory(ctx, rdb, v.scenario, name)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// Scale is memory and listing time with many breakers.
type Scale struct {
	Breakers    int
	Points      [][2]float64 // (breakers, used_memory bytes above the empty baseline)
	PerBreaker  float64      // slope of the least-squares line, bytes
	R2          float64      // of that line
	SampleBytes int64        // MEMORY USAGE over one breaker's keys
	SampleKeys  string
	ListTimes   []time.Duration // admin.List, each run
	ListMedian  time.Duration
	Listed      int
	NamesMedian time.Duration
}

// usedMemory reads used_memory from INFO memory.
func usedMemory(ctx context.Context, rdb *redis.Client) (float64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(InfoField(info, "used_memory"), 64)
}

// MeasureScale creates n breakers the way the Go client leaves them
// (config registered, in the registry, some outcomes; one in ten tripped
// once), in steps, reading used_memory after each, then times admin.List.
// It empties the server first (FLUSHALL: the benchmark's own server).
func MeasureScale(ctx context.Context, rdb *redis.Client, n, steps, listRuns int) (Scale, error) {
	s := Scale{Breakers: n}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return s, err
	}
	if _, err := breakerbox.BreakerScript.Load(ctx, rdb); err != nil {
		return s, err
	}
	base, err := usedMemory(ctx, rdb)
	if err != nil {
		return s, err
	}
	s.Points = append(s.Points, [2]float64{0, 0})
	cfg := client.DefaultConfig()
	cfgArgs := []any{"configure", "go:bench:1",
		"failure_threshold", cfg.FailureThreshold, "recovery_timeout_ms", cfg.RecoveryTimeout.Milliseconds(),
		"success_threshold", cfg.SuccessThreshold, "half_open_max_calls", cfg.SuccessThreshold,
		"request_timeout_ms", cfg.RequestTimeout.Milliseconds()}
	errText := realisticError.Error()
	per := (n + steps - 1) / steps
	for made := 0; made < n; {
		end := min(made+per, n)
		for start := made; start < end; start += 500 {
			pipe := rdb.Pipeline()
			for i := start; i < min(start+500, end); i++ {
				name := fmt.Sprintf("svc-%05d", i)
				keys := breakerbox.Keys(name)
				pipe.SAdd(ctx, breakerbox.RegistryKey, name)
				pipe.EvalSha(ctx, breakerbox.BreakerScript.SHA1, keys, cfgArgs...)
				pipe.EvalSha(ctx, breakerbox.BreakerScript.SHA1, keys, "record", 0,
					"s", 0, "", "", "s", 0, "", "", "f", 0, "", errText, "s", 0, "", "")
				if i%10 == 0 {
					pipe.EvalSha(ctx, breakerbox.BreakerScript.SHA1, keys, "record", 0,
						"f", 0, "", errText, "f", 0, "", errText, "f", 0, "", errText)
				}
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return s, fmt.Errorf("create breakers: %w", err)
			}
		}
		made = end
		used, err := usedMemory(ctx, rdb)
		if err != nil {
			return s, err
		}
		s.Points = append(s.Points, [2]float64{float64(made), used - base})
	}
	s.PerBreaker, s.R2 = LinearFit(s.Points)
	m, err := breakerMemory(ctx, rdb, "", "svc-00001")
	if err != nil {
		return s, err
	}
	s.SampleBytes, s.SampleKeys = m.Total, m.KeyList()
	for i := 0; i < listRuns; i++ {
		t0 := time.Now()
		sts, err := admin.List(ctx, rdb)
		s.ListTimes = append(s.ListTimes, time.Since(t0))
		if err != nil {
			return s, fmt.Errorf("admin.List: %w", err)
		}
		s.Listed = len(sts)
		t0 = time.Now()
		if _, err := admin.Names(ctx, rdb); err != nil {
			return s, err
		}
		s.NamesMedian += time.Since(t0) // summed; divided below
	}
	if listRuns > 0 {
		s.NamesMedian /= time.Duration(listRuns)
	}
	s.ListMedian = Quantile(append([]time.Duration(nil), s.ListTimes...), 0.5)
	return s, nil
}

// LinearFit returns the least-squares slope of y over x and its R².
func LinearFit(pts [][2]float64) (slope, r2 float64) {
	n := float64(len(pts))
	if n < 2 {
		return math.NaN(), math.NaN()
	}
	var sx, sy, sxx, sxy, syy float64
	for _, p := range pts {
		sx += p[0]
		sy += p[1]
		sxx += p[0] * p[0]
		sxy += p[0] * p[1]
		syy += p[1] * p[1]
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return math.NaN(), math.NaN()
	}
	slope = (n*sxy - sx*sy) / den
	vy := n*syy - sy*sy
	if vy == 0 {
		return slope, 1
	}
	r := (n*sxy - sx*sy) / math.Sqrt(den*vy)
	return slope, r * r
}
