package alerts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

func TestNewValidatesConfig(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer rdb.Close()
	sink := &Recorder{}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"group with a space", Config{Group: "a b"}},
		{"group with a brace", Config{Group: "a{b}"}},
		{"consumer with a newline", Config{Consumer: "a\nb"}},
		{"flap window not shorter than stale threshold", Config{FlapWindow: time.Hour, StaleAfter: time.Hour}},
		{"claim min-idle below 10ms", Config{ClaimMinIdle: time.Millisecond}},
		{"retry max below retry min", Config{RetryMin: time.Second, RetryMax: time.Millisecond}},
		{"negative stale threshold", Config{StaleAfter: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(rdb, tt.cfg, sink); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
	t.Run("zero config takes the defaults", func(t *testing.T) {
		d, err := New(rdb, Config{}, sink)
		if err != nil {
			t.Fatal(err)
		}
		c := d.Config()
		if c.Group != DefaultGroup || !regexp.MustCompile(`-\d+$`).MatchString(c.Consumer) ||
			c.FlapWindow != DefaultFlapWindow || c.StaleAfter != DefaultStaleAfter ||
			c.ClaimMinIdle != DefaultClaimMinIdle || c.RetryMin != DefaultRetryMin || c.RetryMax != DefaultRetryMax ||
			c.DiscoveryInterval != DefaultDiscoveryInterval || c.Logger == nil || c.Sleep == nil {
			t.Errorf("defaults not applied: %+v", c)
		}
	})
	t.Run("nil sink and nil client", func(t *testing.T) {
		if _, err := New(rdb, Config{}, nil); err == nil {
			t.Error("New with nil sink succeeded")
		}
		if _, err := New(nil, Config{}, sink); err == nil {
			t.Error("New with nil client succeeded")
		}
	})
}

func TestOpeningPostsOneSlackMessageWithEverySeedField(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	h := newHook(t, nil)
	sink, err := NewSlackSink(h.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := testConfig(t, "alertd-1")
	b := newBreaker(t, rdb, "openai_transcription", client.DefaultConfig())
	d := startDaemon(t, rdb, cfg, sink)

	before := time.Now().UTC().Truncate(time.Second)
	trip(t, b, "OpenAI API error: Connection timeout")
	waitFor(t, "a Slack message", 10*time.Second, func() bool { return len(h.accepted()) > 0 })
	waitDrained(t, d, 1)
	after := time.Now().UTC()

	got := h.accepted()
	if len(got) != 1 {
		t.Fatalf("Slack received %d messages, want 1:\n%s", len(got), strings.Join(got, "\n---\n"))
	}
	text := got[0]
	for _, want := range []string{
		"🚨 Circuit Breaker Alert: openai_transcription\n\n",
		"\nService:     openai_transcription\n",
		"\nState:       OPEN\n",
		"\nFailures:    3\n",
		"\nRecovery In: 30s\n",
		"\nLast Error:\n```\nOpenAI API error: Connection timeout\n```\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("message lacks %q:\n%s", want, text)
		}
	}
	m := regexp.MustCompile(`\n⏰ Alert Time: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("message lacks the alert time in UTC:\n%s", text)
	}
	at, err := time.Parse("2006-01-02 15:04:05", m[1])
	if err != nil || at.Before(before) || at.After(after) {
		t.Errorf("alert time %s, want between %s and %s", m[1], before, after)
	}
}

func TestClosingPostsOneRecoveryMessage(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	rec := &Recorder{}
	cfg, _ := testConfig(t, "alertd-1")
	b := newBreaker(t, rdb, "payments", fastConfig(300*time.Millisecond))
	d := startDaemon(t, rdb, cfg, rec)

	trip(t, b, "timeout")
	refused := recoverBreaker(t, b)
	waitAlerts(t, rec, 3)
	waitDrained(t, d, 1)
	got := rec.Alerts()

	var events []string
	for _, a := range got {
		events = append(events, a.Last().Event)
	}
	if strings.Join(events, ",") != "opened,half_opened,closed" {
		t.Fatalf("alerts %v, want opened, half_opened, closed:\n%s", events, titles(got))
	}
	closing := got[2]
	text := closing.Text()
	for _, want := range []string{
		"✅ Circuit Breaker Recovered: payments\n",
		"\nState:       CLOSED\n",
		fmt.Sprintf("\nRefused:     %d calls while open\n", refused),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("recovery message lacks %q:\n%s", want, text)
		}
	}
	if out := closing.Last().Outage; out < 300*time.Millisecond || out > 10*time.Second {
		t.Errorf("outage %v, want at least the 300ms recovery timeout", out)
	}
	if !strings.Contains(text, "\nWas Open:    "+human(closing.Last().Outage)+"\n") {
		t.Errorf("recovery message lacks how long it was open:\n%s", text)
	}
}

func TestOperatorActionsArePostedWithTheirActor(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	rec := &Recorder{}
	cfg, _ := testConfig(t, "alertd-1")
	b := newBreaker(t, rdb, "search", client.DefaultConfig())
	if _, err := admin.Status(context.Background(), rdb, b.Name()); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, rdb, cfg, rec)

	control(t, rdb, "search", breakerbox.ActionForceOpen, "cbctl:alice@ops")
	control(t, rdb, "search", breakerbox.ActionRelease, "cbctl:alice@ops")
	control(t, rdb, "search", breakerbox.ActionDisable, "cbctl:bob@ops")
	control(t, rdb, "search", breakerbox.ActionReset, "cbctl:bob@ops")
	got := waitAlerts(t, rec, 4)
	waitDrained(t, d, 1)

	want := []struct{ title, by string }{
		{"⛔ Circuit Breaker Forced Open: search", "cbctl:alice@ops"},
		{"▶️ Circuit Breaker Released: search", "cbctl:alice@ops"},
		{"⚠️ Circuit Breaker Disabled: search", "cbctl:bob@ops"},
		{"🛠️ Circuit Breaker Reset: search", "cbctl:bob@ops"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d alerts, want %d:\n%s", len(got), len(want), titles(got))
	}
	for i, w := range want {
		text := got[i].Text()
		if got[i].Title() != w.title || !strings.Contains(text, "\nBy:          "+w.by+"\n") {
			t.Errorf("alert %d:\n%s\nwant title %q by %q", i, text, w.title, w.by)
		}
	}
}

func TestSlackFailingThenRecoveringDeliversEveryAlertOnce(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	h := newHook(t, func(n int, w http.ResponseWriter) int {
		if n < 4 {
			w.WriteHeader(http.StatusInternalServerError)
			return http.StatusInternalServerError
		}
		_, _ = w.Write([]byte("ok"))
		return http.StatusOK
	})
	sink, err := NewSlackSink(h.URL())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var waits []time.Duration
	cfg, logs := testConfig(t, "alertd-1")
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return ctx.Err()
	}
	names := []string{"alpha", "beta", "gamma"}
	for _, n := range names {
		trip(t, newBreaker(t, rdb, n, fastConfig(time.Hour)), "down")
	}
	d := startDaemon(t, rdb, cfg, sink)
	waitFor(t, "three accepted messages", 10*time.Second, func() bool { return len(h.accepted()) >= 3 })
	waitDrained(t, d, 3)

	got := h.accepted()
	if len(got) != 3 {
		t.Fatalf("Slack accepted %d messages, want 3:\n%s", len(got), strings.Join(got, "\n---\n"))
	}
	seen := map[string]int{}
	for _, text := range got {
		for _, n := range names {
			if strings.HasPrefix(text, "🚨 Circuit Breaker Alert: "+n+"\n") {
				seen[n]++
			}
		}
	}
	for _, n := range names {
		if seen[n] != 1 {
			t.Errorf("breaker %s alerted %d times, want 1", n, seen[n])
		}
	}
	if n := len(h.requests()); n != 7 {
		t.Errorf("webhook got %d requests, want 4 failed + 3 accepted", n)
	}
	mu.Lock()
	defer mu.Unlock()
	// Each breaker backs off on its own: the three first attempts failed
	// once each (RetryMin), the fourth failure was a second one (doubled).
	sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
	want := []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Errorf("backoff waits %v, want %v (per breaker, doubling from RetryMin)", waits, want)
	}
	if strings.Contains(logs.String(), "SECRETTOKEN") {
		t.Errorf("logs leak the webhook URL:\n%s", logs)
	}
}

func TestSlack429WaitsRetryAfter(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	var mu sync.Mutex
	var order []string
	note := func(s string) {
		mu.Lock()
		order = append(order, s)
		mu.Unlock()
	}
	h := newHook(t, func(n int, w http.ResponseWriter) int {
		if n == 0 {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			note("429")
			return http.StatusTooManyRequests
		}
		_, _ = w.Write([]byte("ok"))
		note("200")
		return http.StatusOK
	})
	sink, err := NewSlackSink(h.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := testConfig(t, "alertd-1")
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		note("sleep " + d.String())
		return ctx.Err()
	}
	trip(t, newBreaker(t, rdb, "alpha", fastConfig(time.Hour)), "down")
	d := startDaemon(t, rdb, cfg, sink)
	waitFor(t, "an accepted message", 10*time.Second, func() bool { return len(h.accepted()) >= 1 })
	waitDrained(t, d, 1)

	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(order, ", "); got != "429, sleep 7s, 200" {
		t.Errorf("sequence %q, want the 429, a wait of its Retry-After (7s), then the accepted retry", got)
	}
	if n := len(h.accepted()); n != 1 {
		t.Errorf("Slack accepted %d messages, want 1", n)
	}
}

func TestSlackPermanentErrorIsAcknowledgedNotRetried(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	h := newHook(t, status(http.StatusNotFound, ""))
	sink, err := NewSlackSink(h.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg, logs := testConfig(t, "alertd-1")
	trip(t, newBreaker(t, rdb, "alpha", fastConfig(time.Hour)), "down")
	d := startDaemon(t, rdb, cfg, sink)
	waitFor(t, "a request", 10*time.Second, func() bool { return len(h.requests()) >= 1 })
	waitDrained(t, d, 1)
	if n := len(h.requests()); n != 1 {
		t.Errorf("webhook got %d requests, want 1 (a 404 cannot be helped by retrying)", n)
	}
	if !strings.Contains(logs.String(), "refused by the sink for good") || strings.Contains(logs.String(), "SECRETTOKEN") {
		t.Errorf("want the dropped alert logged without the URL:\n%s", logs)
	}
}

func TestTwoDaemonsDeliverEachTransitionOnceInOrder(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	rec := &Recorder{}
	cfg1, _ := testConfig(t, "alertd-1")
	cfg2, _ := testConfig(t, "alertd-2")
	d1 := startDaemon(t, srv.Client(t), cfg1, rec)
	startDaemon(t, srv.Client(t), cfg2, rec)

	const breakers, perBreaker = 6, 6
	var wg sync.WaitGroup
	for i := 0; i < breakers; i++ {
		name := fmt.Sprintf("svc-%d", i)
		b := newBreaker(t, rdb, name, fastConfig(time.Hour))
		wg.Add(1)
		go func() {
			defer wg.Done()
			trip(t, b, "down")                                       // opened
			control(t, rdb, name, breakerbox.ActionReset, "ops")     // reset
			trip(t, b, "down again")                                 // opened
			control(t, rdb, name, breakerbox.ActionForceOpen, "ops") // forced_open
			control(t, rdb, name, breakerbox.ActionRelease, "ops")   // released
			control(t, rdb, name, breakerbox.ActionReset, "ops")     // reset
		}()
	}
	wg.Wait()
	waitAlerts(t, rec, breakers*perBreaker)
	waitDrained(t, d1, breakers)

	got := rec.Alerts()
	if len(got) != breakers*perBreaker {
		t.Fatalf("got %d alerts, want %d", len(got), breakers*perBreaker)
	}
	seen := map[string]bool{}
	lastGen := map[string]int64{}
	for _, a := range got {
		tr := a.Last()
		key := fmt.Sprintf("%s/%d", a.Breaker, tr.Generation)
		if seen[key] {
			t.Errorf("transition %s delivered twice", key)
		}
		seen[key] = true
		if tr.Generation <= lastGen[a.Breaker] {
			t.Errorf("breaker %s: generation %d posted after %d", a.Breaker, tr.Generation, lastGen[a.Breaker])
		}
		lastGen[a.Breaker] = tr.Generation
	}
}

func TestDaemonKilledBeforeAcknowledgingIsTakenOver(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	rdbA := srv.Client(t)
	got := make(chan Alert, 1)
	release := make(chan struct{})
	defer close(release)
	// Daemon A receives the alert and dies: its connection to Redis is
	// gone, so it can neither acknowledge nor renew its lock.
	sinkA := SinkFunc(func(ctx context.Context, a Alert) (bool, error) {
		got <- a
		_ = rdbA.Close()
		<-release
		return true, errors.New("killed")
	})
	cfgA, _ := testConfig(t, "alertd-A")
	startDaemon(t, rdbA, cfgA, sinkA)
	trip(t, newBreaker(t, rdb, "alpha", fastConfig(time.Hour)), "down")
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("daemon A never received the alert")
	}

	rec := &Recorder{}
	cfgB, _ := testConfig(t, "alertd-B")
	b := startDaemon(t, rdb, cfgB, rec)
	alerts := waitAlerts(t, rec, 1)
	waitDrained(t, b, 1)
	if len(rec.Alerts()) != 1 || alerts[0].Last().Event != "opened" || alerts[0].Breaker != "alpha" {
		t.Fatalf("daemon B delivered:\n%s", titles(rec.Alerts()))
	}
	if !alerts[0].Repeat {
		t.Errorf("alert not flagged as a possible repeat although daemon A died while posting it")
	}
}

func TestFlappingBreakerYieldsOneMessageWithACount(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	rec := &Recorder{}
	cfg, _ := testConfig(t, "alertd-1")
	cfg.FlapWindow = 1500 * time.Millisecond
	b := newBreaker(t, rdb, "flaky", fastConfig(time.Millisecond))
	d := startDaemon(t, rdb, cfg, rec)

	const cycles = 4
	for i := 0; i < cycles; i++ {
		trip(t, b, fmt.Sprintf("failure %d", i))
		recoverBreaker(t, b)
	}
	waitAlerts(t, rec, 4)
	waitDrained(t, d, 1)
	got := rec.Alerts()
	if len(got) != 4 {
		t.Fatalf("got %d alerts, want the first outage's 3 and one flapping message:\n%s", len(got), titles(got))
	}
	flap := got[3]
	if flap.Kind != KindFlapping || flap.Count("opened") != cycles-1 || len(flap.Transitions) != 3*(cycles-1) {
		t.Fatalf("last alert %s with %d transitions (%d openings), want a flapping alert folding %d cycles",
			flap.Title(), len(flap.Transitions), flap.Count("opened"), cycles-1)
	}
	text := flap.Text()
	for _, want := range []string{"🔁 Circuit Breaker Flapping: flaky", "opened 3 more times", "State:       CLOSED",
		"```\nfailure 3\n```"} {
		if !strings.Contains(text, want) {
			t.Errorf("flapping message lacks %q:\n%s", want, text)
		}
	}
}

func TestFlapFoldingIsSharedBetweenDaemons(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	rec := &Recorder{}
	for _, c := range []string{"alertd-1", "alertd-2"} {
		cfg, _ := testConfig(t, c)
		cfg.FlapWindow = 1500 * time.Millisecond
		startDaemon(t, srv.Client(t), cfg, rec)
	}
	b := newBreaker(t, rdb, "flaky", fastConfig(time.Millisecond))
	for i := 0; i < 5; i++ {
		trip(t, b, "down")
		recoverBreaker(t, b)
	}
	waitAlerts(t, rec, 4)
	cfg, _ := testConfig(t, "observer")
	waitDrained(t, startDaemon(t, rdb, cfg, rec), 1)
	got := rec.Alerts()
	if len(got) != 4 || got[3].Kind != KindFlapping || got[3].Count("opened") != 4 {
		t.Fatalf("got, from two daemons:\n%s\nwant opened, half_opened, closed and one flapping alert with 4 openings", titles(got))
	}
}

func TestRestartDeliversTransitionsThatHappenedWhileDown(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	rec := &Recorder{}
	alpha := newBreaker(t, rdb, "alpha", fastConfig(time.Hour))
	cfg1, _ := testConfig(t, "alertd-1")
	first := startDaemon(t, srv.Client(t), cfg1, rec)
	trip(t, alpha, "down")
	waitAlerts(t, rec, 1)
	waitDrained(t, first, 1)
	first.stop(t)
	consumers, err := rdb.XInfoConsumers(context.Background(), streamKey("alpha"), DefaultGroup).Result()
	if err != nil || len(consumers) != 0 {
		t.Errorf("after a clean stop the group has consumers %+v (%v), want the stopped daemon gone", consumers, err)
	}

	control(t, rdb, "alpha", breakerbox.ActionReset, "cbctl:alice@ops")
	trip(t, newBreaker(t, rdb, "beta", fastConfig(time.Hour)), "beta down")

	cfg2, _ := testConfig(t, "alertd-2")
	second := startDaemon(t, srv.Client(t), cfg2, rec)
	waitAlerts(t, rec, 3)
	waitDrained(t, second, 2)
	got := rec.Alerts()
	if len(got) != 3 {
		t.Fatalf("got %d alerts, want 3:\n%s", len(got), titles(got))
	}
	after := map[string]string{}
	for _, a := range got[1:] {
		after[a.Breaker] = a.Last().Event
	}
	if after["alpha"] != "reset" || after["beta"] != "opened" {
		t.Errorf("after the restart got:\n%s\nwant alpha's reset and beta's opening", titles(got[1:]))
	}
}

// addEntry writes a transition the way lua/breaker-8.lua does, at a chosen
// time: only for entries that must be old.
func addEntry(t *testing.T, rdb redis.UniversalClient, name string, gen int64, at time.Time, event, from, to string) {
	t.Helper()
	err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: streamKey(name), Values: []any{
		"event", event, "from", from, "to", to, "mode", "normal", "generation", gen,
		"time_ms", at.UnixMilli(), "failures", 3, "failure_threshold", 3, "recovery_timeout_ms", 30000,
		"last_error", "old error", "outage_ms", 0, "refused", 0, "actor", "",
	}}).Err()
	if err != nil {
		t.Fatalf("XADD: %v", err)
	}
	if err := rdb.SAdd(context.Background(), breakerbox.RegistryKey, name).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestStaleTransitionsAreSummarisedOnStart(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	now, err := rdb.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	old := now.Add(-2 * time.Hour)
	for i, e := range [][3]string{{"opened", "closed", "open"}, {"half_opened", "open", "half_open"},
		{"opened", "half_open", "open"}, {"half_opened", "open", "half_open"}, {"closed", "half_open", "closed"}} {
		addEntry(t, rdb, "old", int64(i+1), old.Add(time.Duration(i)*time.Minute), e[0], e[1], e[2])
	}
	addEntry(t, rdb, "lone", 1, old, "opened", "closed", "open")

	rec := &Recorder{}
	cfg, _ := testConfig(t, "alertd-1")
	d := startDaemon(t, rdb, cfg, rec)
	waitAlerts(t, rec, 2)
	waitDrained(t, d, 2)
	got := rec.Alerts()
	if len(got) != 2 {
		t.Fatalf("got %d alerts, want one per breaker:\n%s", len(got), titles(got))
	}
	by := map[string]Alert{}
	for _, a := range got {
		by[a.Breaker] = a
	}
	if s := by["old"]; s.Kind != KindSummary || len(s.Transitions) != 5 || s.Count("opened") != 2 ||
		!strings.Contains(s.Text(), "State:       CLOSED (after the last of them)") {
		t.Errorf("breaker old: %s with %d transitions, want one summary of 5:\n%s", s.Title(), len(s.Transitions), s.Text())
	}
	if l := by["lone"]; l.Kind != KindTransition || l.Late < 2*time.Hour-time.Minute {
		t.Errorf("breaker lone: %s late %v, want its opening flagged as 2h late", l.Title(), l.Late)
	}
}

func TestShutdownFinishesTheAlertInFlight(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	entered := make(chan struct{})
	finish := make(chan struct{})
	var delivered sync.WaitGroup
	delivered.Add(1)
	sink := SinkFunc(func(ctx context.Context, a Alert) (bool, error) {
		close(entered)
		<-finish
		delivered.Done()
		return false, nil
	})
	cfg, _ := testConfig(t, "alertd-1")
	cfg.ShutdownGrace = 5 * time.Second
	trip(t, newBreaker(t, rdb, "alpha", fastConfig(time.Hour)), "down")
	d := startDaemon(t, rdb, cfg, sink)
	<-entered
	d.cancel() // asked to stop while the alert is being posted
	close(finish)
	d.stop(t)
	delivered.Wait()
	assertPending(t, rdb, "alpha", 0)
}

func TestShutdownDuringRetryLeavesTheEntryPending(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	failing := newHook(t, status(http.StatusServiceUnavailable, ""))
	sink, err := NewSlackSink(failing.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := testConfig(t, "alertd-1")
	trip(t, newBreaker(t, rdb, "alpha", fastConfig(time.Hour)), "down")
	d := startDaemon(t, srv.Client(t), cfg, sink)
	waitFor(t, "failed attempts", 10*time.Second, func() bool { return len(failing.requests()) >= 2 })
	d.stop(t)
	assertPending(t, rdb, "alpha", 1)

	rec := &Recorder{}
	cfg2, _ := testConfig(t, "alertd-2")
	next := startDaemon(t, srv.Client(t), cfg2, rec)
	got := waitAlerts(t, rec, 1)
	waitDrained(t, next, 1)
	if len(rec.Alerts()) != 1 || got[0].Last().Event != "opened" || got[0].Repeat {
		t.Errorf("next daemon delivered:\n%s(repeat %v), want the opening once, not flagged", titles(rec.Alerts()), got[0].Repeat)
	}
}

// assertPending checks how many of the breaker's entries the group holds
// unacknowledged.
func assertPending(t *testing.T, rdb redis.UniversalClient, name string, want int64) {
	t.Helper()
	p, err := rdb.XPending(context.Background(), streamKey(name), DefaultGroup).Result()
	if err != nil {
		t.Fatalf("XPENDING: %v", err)
	}
	if p.Count != want {
		t.Errorf("%d entries pending, want %d", p.Count, want)
	}
}

func TestDeliveredButUnacknowledgedEntryIsNotPostedAgain(t *testing.T) {
	// A daemon that recorded the delivery but lost the XACK (the MULTI makes
	// this impossible, but a group recreated at 0 redelivers everything)
	// must not post the entry again.
	rdb := redistest.Start(t).Client(t)
	rec := &Recorder{}
	cfg, _ := testConfig(t, "alertd-1")
	trip(t, newBreaker(t, rdb, "alpha", fastConfig(time.Hour)), "down")
	d := startDaemon(t, rdb, cfg, rec)
	waitAlerts(t, rec, 1)
	waitDrained(t, d, 1)
	d.stop(t)

	ctx := context.Background()
	if err := rdb.XGroupDestroy(ctx, streamKey("alpha"), DefaultGroup).Err(); err != nil {
		t.Fatal(err)
	}
	control(t, rdb, "alpha", breakerbox.ActionReset, "ops")
	cfg2, _ := testConfig(t, "alertd-2")
	d2 := startDaemon(t, rdb, cfg2, rec)
	waitAlerts(t, rec, 2)
	waitDrained(t, d2, 1)
	got := rec.Alerts()
	if len(got) != 2 || got[1].Last().Event != "reset" {
		t.Errorf("after the group was recreated got:\n%s\nwant only the reset posted again", titles(got))
	}
}

func TestClusterDeliversFromEverySlot(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	cc := cl.Client(t)
	rec := &Recorder{}
	cfg, _ := testConfig(t, "alertd-1")
	d := startDaemon(t, cc, cfg, rec)
	names := []string{"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}
	slots := map[int]bool{}
	for _, n := range names {
		slots[int(redisSlot(n))] = true
		trip(t, newBreaker(t, cc, n, fastConfig(time.Hour)), n+" down")
	}
	if len(slots) < 3 {
		t.Fatalf("test names cover %d slots, want several", len(slots))
	}
	waitAlerts(t, rec, len(names))
	waitDrained(t, d, len(names))
	got := rec.Alerts()
	seen := map[string]int{}
	for _, a := range got {
		seen[a.Breaker]++
	}
	for _, n := range names {
		if seen[n] != 1 {
			t.Errorf("breaker %s alerted %d times, want 1:\n%s", n, seen[n], titles(got))
		}
	}
}

// redisSlot is the cluster slot of a breaker's keys.
func redisSlot(name string) uint16 {
	return crc16([]byte(name)) % 16384
}

// crc16 is the CRC16-CCITT (XMODEM) Redis Cluster uses for slots.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func TestDaemonSurvivesARedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	rec := &Recorder{}
	cfg, _ := testConfig(t, "alertd-1")
	d := startDaemon(t, srv.Client(t), cfg, rec)
	trip(t, newBreaker(t, rdb, "alpha", fastConfig(time.Hour)), "before")
	waitAlerts(t, rec, 1)

	srv.Restart(t) // comes back empty: no streams, no groups, no scripts
	trip(t, newBreaker(t, rdb, "beta", fastConfig(time.Hour)), "after")
	got := waitAlerts(t, rec, 2)
	// alpha's stream went with the restart; a daemon reads only breakers
	// whose stream exists (it creates none), so beta is the one it reads.
	waitDrained(t, d, 1)
	if len(rec.Alerts()) != 2 || got[1].Breaker != "beta" || got[1].Last().LastError != "after" {
		t.Errorf("got:\n%s\nwant alpha's opening, then beta's after the restart", titles(rec.Alerts()))
	}
}

// TestDeliveredEntriesAreTrimmedOnceEveryGroupHasThem: the daemon deletes
// the entries every consumer group of a stream has acknowledged, keeps those
// another group still needs, and creates no stream for a breaker that never
// changed state.
func TestDeliveredEntriesAreTrimmedOnceEveryGroupHasThem(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	quiet := newBreaker(t, rdb, "quiet", fastConfig(time.Hour))
	if err := quiet.Execute(ctx, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	rec := &Recorder{}
	cfg, _ := testConfig(t, "alertd-1")
	d := startDaemon(t, srv.Client(t), cfg, rec)
	alpha := newBreaker(t, rdb, "alpha", fastConfig(time.Hour))
	trip(t, alpha, "down")
	waitAlerts(t, rec, 1)
	waitDrained(t, d, 1)
	stream := streamKey("alpha")
	waitFor(t, "the delivered entry to be trimmed", 10*time.Second, func() bool {
		n, err := rdb.XLen(ctx, stream).Result()
		return err == nil && n == 0
	})
	if n, _ := rdb.Exists(ctx, streamKey("quiet")).Result(); n != 0 {
		t.Errorf("the daemon created a stream for a breaker that never changed state")
	}

	// Another group (another team's daemon, not running) still needs what follows.
	if err := rdb.XGroupCreate(ctx, stream, "other-team", "$").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Control(ctx, rdb, "alpha", breakerbox.ActionReset, "test"); err != nil {
		t.Fatal(err)
	}
	waitAlerts(t, rec, 2)
	waitDrained(t, d, 1)
	time.Sleep(100 * time.Millisecond) // a trim, if any, follows the acknowledgement
	if n, err := rdb.XLen(ctx, stream).Result(); err != nil || n != 1 {
		t.Errorf("stream holds %d entries (%v), want the reset kept for the other group", n, err)
	}
}
