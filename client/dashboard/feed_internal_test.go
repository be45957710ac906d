package dashboard

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

func TestRatesAreTheDifferenceOfTwoReadsOnRedisClock(t *testing.T) {
	var e entry
	if req, ref := e.rate(Breaker{TimeMS: 10_000, Requests: 100, Refused: 10}); req != 0 || ref != 0 || len(e.spark) != 0 {
		t.Fatalf("first read: %v %v, sparkline %v; want no rate yet", req, ref, e.spark)
	}
	if req, ref := e.rate(Breaker{TimeMS: 12_000, Requests: 160, Refused: 30}); req != 30 || ref != 10 {
		t.Fatalf("60 requests and 20 refusals over 2s: %v %v, want 30 and 10", req, ref)
	}
	// The breaker was deleted and made again: totals went down.
	if req, ref := e.rate(Breaker{TimeMS: 13_000, Requests: 5, Refused: 0}); req != 0 || ref != 0 {
		t.Fatalf("after totals went down: %v %v, want 0", req, ref)
	}
	for i := range 2 * sparkLen {
		e.rate(Breaker{TimeMS: 14_000 + int64(i)*1000, Requests: 5 + int64(i)})
	}
	if len(e.spark) != sparkLen || e.spark[sparkLen-1] != [2]float64{1, 0} {
		t.Fatalf("sparkline of %d points ending %v, want %d ending [1 0]", len(e.spark), e.spark[len(e.spark)-1], sparkLen)
	}
}

func TestRowsThatDifferOnlyByTheClockAreNotSentAgain(t *testing.T) {
	a := Breaker{Name: "x", State: "open", RetryAfterMS: 5000, TimeMS: 1, Config: map[string]int64{"failure_threshold": 3}}
	b := a
	b.RetryAfterMS, b.TimeMS, b.RequestRate = 3000, 2001, 7
	if !sameRow(a, b) {
		t.Error("rows differing by the clock alone are reported as changed")
	}
	b.Config = map[string]int64{"failure_threshold": 4}
	if sameRow(a, b) {
		t.Error("a config change is not seen")
	}
}

// sinceHook is the Redis store with hook run before each history read:
// what happens to a breaker between the feed's two reads.
type sinceHook struct {
	redisStore
	hook func(name string)
}

func (s sinceHook) since(ctx context.Context, name string, gen int64) (int64, error) {
	s.hook(name)
	return s.redisStore.since(ctx, name, gen)
}

// TestATransitionBetweenTheStatusAndHistoryReadsLendsTheRowNoTime: the
// feed reads a breaker's status (forced open), then its history to learn
// since when; in between an operator resets it. The row shows the forced
// opening with the forced opening's time, not the reset's.
func TestATransitionBetweenTheStatusAndHistoryReadsLendsTheRowNoTime(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	if _, err := admin.Control(ctx, rdb, "alpha", breakerbox.ActionForceOpen, "ops"); err != nil {
		t.Fatal(err)
	}
	forced, err := admin.History(ctx, rdb, "alpha", 1)
	if err != nil || len(forced) != 1 {
		t.Fatalf("history: %v, %v", forced, err)
	}
	var once sync.Once
	st := sinceHook{redisStore{rdb}, func(name string) {
		once.Do(func() {
			// A later millisecond on Redis's clock, so that the two
			// entries' times differ.
			for {
				now, err := rdb.Time(ctx).Result()
				if err != nil {
					t.Error(err)
					return
				}
				if now.UnixMilli() > forced[0].TS {
					break
				}
			}
			if _, err := admin.Control(ctx, rdb, name, breakerbox.ActionReset, "ops"); err != nil {
				t.Error(err)
			}
		})
	}}
	f := newFeed(st, time.Hour, 5*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.refresh(ctx, true)
	row, ok := f.row("alpha")
	if !ok {
		t.Fatal("no row for alpha")
	}
	if row.Mode != "forced_open" || row.Generation != forced[0].Generation {
		t.Fatalf("row %s/%s generation %d; want the forced opening's (generation %d), read before the reset",
			row.State, row.Mode, row.Generation, forced[0].Generation)
	}
	if row.SinceMS != forced[0].TS {
		h, _ := admin.History(ctx, rdb, "alpha", 2)
		t.Errorf("row of generation %d since %d; want %d, the forced opening's time (history: %+v)",
			row.Generation, row.SinceMS, forced[0].TS, h)
	}
}

// TestAQuietBreakersHistoryIsReadOncePerGeneration: a breaker whose
// history holds no transition has no "since" time to show; the feed looks
// once per generation, not on every refresh (with 1,000 quiet breakers,
// 1,000 history reads a second).
func TestAQuietBreakersHistoryIsReadOncePerGeneration(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	if _, err := admin.Configure(ctx, rdb, "quiet", breakerbox.DefaultConfig(), "ops"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	reads := 0
	st := sinceHook{redisStore{rdb}, func(string) { mu.Lock(); reads++; mu.Unlock() }}
	f := newFeed(st, time.Hour, 5*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for range 5 {
		f.refresh(ctx, true)
	}
	if row, ok := f.row("quiet"); !ok || row.SinceMS != 0 {
		t.Fatalf("row %+v (%v), want one with no since time", row, ok)
	}
	mu.Lock()
	if reads != 1 {
		t.Errorf("history read %d times over 5 refreshes, want once", reads)
	}
	mu.Unlock()
	if _, err := admin.Control(ctx, rdb, "quiet", breakerbox.ActionForceOpen, "ops"); err != nil {
		t.Fatal(err)
	}
	f.refresh(ctx, true)
	if row, _ := f.row("quiet"); row.SinceMS == 0 || reads != 2 {
		t.Errorf("after a transition: since %d after %d reads, want its time after a second read", row.SinceMS, reads)
	}
}
