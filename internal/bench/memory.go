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
	"github.com/breakerbox/breakerbox/alerts"
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

// breakerMemory sums MEMORY USAGE (SAMPLES 0: every element) over every
// key of breaker name: its eight keys (the events stream includes its
// consumer groups) and the alert daemon's delivery record and lock.
func breakerMemory(ctx context.Context, rdb *redis.Client, scenario, name string) (BreakerMemory, error) {
	out := BreakerMemory{Scenario: scenario}
	prefix := breakerbox.KeyPrefix + "{" + name + "}:"
	keys := breakerbox.Keys(name)
	extra, err := rdb.Keys(ctx, prefix+"alerts:*").Result() // the bench's own server: KEYS is fine
	if err != nil {
		return out, err
	}
	for _, key := range append(keys, extra...) {
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

// The failure texts of the memory scenarios: the seed's (41 bytes), a
// realistic HTTP client error (130 bytes) and the longest the Go client
// stores (500 bytes).
var (
	seedError      = errors.New("OpenAI API error: 503 Service Unavailable")
	realisticError = errors.New(`Post "https://api.openai.com/v1/audio/transcriptions": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`)
	longError      = errors.New(strings.Repeat("upstream said no; ", 28)[:500])
)

// transitionGap separates the transitions of the memory scenarios. A
// real breaker's transitions are seconds apart (its recovery timeout, an
// operator's action), so its generation, max(generation + 1, now_ms),
// equals the transition's time and the history entry leaves it out; a
// burst of transitions less than a millisecond apart runs the generation
// ahead of the clock, and every entry then carries it (about 27 bytes).
const transitionGap = 2 * time.Millisecond

// cycle trips b (threshold failures with err) and resets it: two
// transitions, each transitionGap after the one before.
func cycle(ctx context.Context, rdb redis.UniversalClient, b *client.Breaker, threshold int, fail error) error {
	time.Sleep(transitionGap)
	for i := 0; i < threshold; i++ {
		if err := b.Execute(ctx, func(context.Context) error { return fail }); err == nil || errors.Is(err, client.ErrOpen) {
			return fmt.Errorf("trip: failure %d: %v", i+1, err)
		}
	}
	time.Sleep(transitionGap)
	_, err := admin.Control(ctx, rdb, b.Name(), breakerbox.ActionReset, "bbbench")
	return err
}

// alertDaemon runs the alert daemon on rdb with a sink that accepts every
// alert, until stop is called.
func alertDaemon(rdb *redis.Client) (stop func(), err error) {
	d, err := alerts.New(rdb, alerts.Config{Consumer: "bbbench", FlapWindow: -1, StaleAfter: time.Hour,
		DiscoveryInterval: 100 * time.Millisecond, Logger: quiet},
		alerts.SinkFunc(func(context.Context, alerts.Alert) (bool, error) { return false, nil }))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	return func() { cancel(); <-done }, nil
}

// drained waits until the daemon has handled every entry of the breakers'
// streams: nothing pending or unread in its group, and the handled entries
// trimmed.
func drained(ctx context.Context, rdb *redis.Client, names ...string) error {
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range names {
		for {
			groups, err := rdb.XInfoGroups(ctx, breakerbox.Key(n, "events")).Result()
			length, _ := rdb.XLen(ctx, breakerbox.Key(n, "events")).Result()
			if err == nil && len(groups) > 0 && groups[0].Pending == 0 && length == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("breaker %s: the alert daemon did not drain its stream (%v, %v, length %d)", n, groups, err, length)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// MeasureMemory builds breakers in the states issue 10 names, through the
// Go client in Strict mode, and measures every key of each. With daemon,
// an alert daemon runs meanwhile and has delivered (and trimmed) every
// transition before the breaker is measured.
func MeasureMemory(ctx context.Context, rdb *redis.Client, daemon bool) ([]BreakerMemory, error) {
	suffix, how := "", "no alert daemon"
	if daemon {
		suffix, how = "-d", "alert daemon running"
		stop, err := alertDaemon(rdb)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	var out []BreakerMemory
	cfg := client.DefaultConfig()
	newB := func(name string) (*client.Breaker, error) {
		return client.New(rdb, name, cfg, client.WithAdmission(client.AdmitStrict), client.WithLogger(quiet))
	}
	measure := func(name, scenario string, transitions bool) error {
		if daemon && transitions {
			if err := drained(ctx, rdb, name); err != nil {
				return err
			}
		}
		m, err := breakerMemory(ctx, rdb, scenario+" ("+how+")", name)
		out = append(out, m)
		return err
	}

	// 1. Registered (config stored), 20 successes, never failed.
	name := "mem-registered" + suffix
	b, err := newB(name)
	if err != nil {
		return nil, err
	}
	for i := 0; i < 20 && err == nil; i++ {
		err = b.Execute(ctx, noop)
	}
	b.Shutdown(ctx)
	if err == nil {
		err = measure(name, "registered, 20 successes, never failed", false)
	}
	if err != nil {
		return nil, err
	}

	// 2. One opening with a 130-byte error.
	name = "mem-one-opening" + suffix
	if b, err = newB(name); err != nil {
		return nil, err
	}
	for i := 0; i < cfg.FailureThreshold && err == nil; i++ {
		if e := b.Execute(ctx, func(context.Context) error { return realisticError }); !errors.Is(e, realisticError) {
			err = fmt.Errorf("failure %d: %v", i+1, e)
		}
	}
	b.Shutdown(ctx)
	if err == nil {
		err = measure(name, "one opening, 130-byte error", true)
	}
	if err != nil {
		return nil, err
	}

	// 3-5. Full history: 100 transitions (50 trips + 50 resets) with each
	// error length, and 1,000 transitions.
	for _, v := range []struct {
		scenario string
		cycles   int
		fail     error
	}{
		{"full history: 100 transitions (50 trips + 50 resets), 41-byte errors", 50, seedError},
		{"full history: 100 transitions, 500-byte errors", 50, longError},
		{"1,000 transitions, 130-byte errors: history and stream at their caps", 500, realisticError},
	} {
		name := fmt.Sprintf("mem-cycles-%d-%d%s", v.cycles, len(v.fail.Error()), suffix)
		b, err := newB(name)
		if err != nil {
			return nil, err
		}
		for i := 0; i < v.cycles && err == nil; i++ {
			err = cycle(ctx, rdb, b, cfg.FailureThreshold, v.fail)
		}
		b.Shutdown(ctx)
		if err == nil {
			err = measure(name, v.scenario, true)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return out, nil
}

// Scale is memory and listing time with many breakers.
type Scale struct {
	Breakers    int
	Daemon      bool            // an alert daemon ran and delivered every transition
	Points      [][2]float64    // (breakers, used_memory bytes above the empty baseline)
	PerBreaker  float64         // slope of the least-squares line, bytes
	R2          float64         // of that line
	Samples     []BreakerMemory // MEMORY USAGE over a never-failed and a tripped breaker
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
// once), reading used_memory when 1, 100, 1,000, ... and n exist, then
// times admin.List. With daemon, an alert daemon runs and has delivered
// every transition before each reading. It empties the server first
// (FLUSHALL: the benchmark's own server).
func MeasureScale(ctx context.Context, rdb *redis.Client, n, listRuns int, daemon bool) (Scale, error) {
	s := Scale{Breakers: n, Daemon: daemon}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return s, err
	}
	if _, err := breakerbox.BreakerScript.Load(ctx, rdb); err != nil {
		return s, err
	}
	if daemon {
		stop, err := alertDaemon(rdb)
		if err != nil {
			return s, err
		}
		defer stop()
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
	var stops []int
	for c := 1; c < n; c *= 10 {
		if c == 1 || c >= 100 {
			stops = append(stops, c)
		}
	}
	stops = append(stops, n)
	made := 0
	for _, end := range stops {
		var tripped []string
		for start := made; start < end; start += 500 {
			pipe := rdb.Pipeline()
			for i := start; i < min(start+500, end); i++ {
				name := fmt.Sprintf("svc-%05d", i)
				keys := breakerbox.Keys(name)
				pipe.SAdd(ctx, breakerbox.RegistryKey, name)
				pipe.EvalSha(ctx, breakerbox.BreakerScript.SHA1, keys, cfgArgs...)
				pipe.EvalSha(ctx, breakerbox.BreakerScript.SHA1, keys, "record", 0,
					"s", 0, "", "", "", "", "s", 0, "", "", "", "", "f", 0, "", errText, "", "", "s", 0, "", "", "", "")
				if i%10 == 0 {
					pipe.EvalSha(ctx, breakerbox.BreakerScript.SHA1, keys, "record", 0,
						"f", 0, "", errText, "", "", "f", 0, "", errText, "", "", "f", 0, "", errText, "", "")
					tripped = append(tripped, name)
				}
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return s, fmt.Errorf("create breakers: %w", err)
			}
		}
		made = end
		if daemon {
			if err := drained(ctx, rdb, tripped...); err != nil {
				return s, err
			}
		}
		used, err := usedMemory(ctx, rdb)
		if err != nil {
			return s, err
		}
		s.Points = append(s.Points, [2]float64{float64(made), used - base})
	}
	s.PerBreaker, s.R2 = LinearFit(s.Points)
	for _, name := range []string{"svc-00001", "svc-00000"} { // never failed; tripped once
		m, err := breakerMemory(ctx, rdb, "", name)
		if err != nil {
			return s, err
		}
		s.Samples = append(s.Samples, m)
	}
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
