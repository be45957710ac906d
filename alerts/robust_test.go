package alerts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// TestBlockingReaderRecoversFromAReconnect: after its connection is cut
// (CLIENT KILL, as a restart or a failover cuts it) the blocking reader
// must read again on a new connection. Nothing else may find the entry:
// no sweep (discovery once an hour) and no announcement (the entry is
// added by hand, without PUBLISH).
func TestBlockingReaderRecoversFromAReconnect(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	rec := &Recorder{}
	cfg, logs := testConfig(t, "alertd-1")
	cfg.DiscoveryInterval = time.Hour
	d := startDaemon(t, srv.Client(t), cfg, rec)
	ctx := context.Background()
	waitFor(t, "the daemon's subscription", 10*time.Second, func() bool {
		n, err := rdb.PubSubNumPat(ctx).Result()
		return err == nil && n == 1
	})
	trip(t, newBreaker(t, rdb, "alpha", fastConfig(time.Hour)), "before")
	waitAlerts(t, rec, 1)
	waitDrained(t, d, 1)

	// Every normal connection, the reader's blocked one included (the
	// test's own client reconnects by itself).
	if err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "normal").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reader to fail once", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "blocking read failed")
	})
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: streamKey("alpha"), Values: map[string]any{"event": "opened",
		"from": "closed", "to": "open", "generation": "7", "last_error": "after"}}).Err(); err != nil {
		t.Fatal(err)
	}
	got := waitAlerts(t, rec, 2)
	if got[1].Last().LastError != "after" {
		t.Fatalf("second alert %s", got[1].Text())
	}
	waitDrained(t, d, 1)
	n := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "blocking read failed") && strings.Contains(line, "bad state") {
			n++
		}
	}
	if n > 1 {
		t.Errorf("the reader logged %d 'bad state' errors: it kept a broken connection", n)
	}
}

// TestAnUndeliverableBreakerDoesNotHoldUpTheOthers: one breaker's alert
// keeps failing at the sink; the others are delivered meanwhile.
func TestAnUndeliverableBreakerDoesNotHoldUpTheOthers(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	rec := &Recorder{}
	var poisonTries sync.WaitGroup
	poisonTries.Add(1)
	var once sync.Once
	sink := SinkFunc(func(ctx context.Context, a Alert) (bool, error) {
		if a.Breaker == "poison" {
			once.Do(poisonTries.Done)
			return true, errors.New("the payload makes the webhook time out")
		}
		return rec.Notify(ctx, a)
	})
	cfg, _ := testConfig(t, "alertd-1")
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, time.Second
	trip(t, newBreaker(t, rdb, "poison", fastConfig(time.Hour)), "down")
	d := startDaemon(t, rdb, cfg, sink)
	poisonTries.Wait()
	for _, n := range []string{"alpha", "beta"} {
		trip(t, newBreaker(t, rdb, n, fastConfig(time.Hour)), "down")
	}
	got := waitAlerts(t, rec, 2)
	if got[0].Breaker == "poison" || got[1].Breaker == "poison" {
		t.Fatalf("got:\n%s", titles(got))
	}
	var h Health
	waitFor(t, "only poison's entry pending", 10*time.Second, func() bool {
		h = d.Health(context.Background())
		return len(h.Streams) == 1 && h.Streams[0].Breaker == "poison" && h.Streams[0].Pending == 1
	})
}

// TestABreakerWhoseAcknowledgementFailsDoesNotHoldUpTheOthers: the alert
// is posted, its acknowledgement keeps failing (the stream key now holds
// a string: WRONGTYPE); the others are delivered, the alert is not posted
// again, and /healthz says what fails until it is repaired.
func TestABreakerWhoseAcknowledgementFailsDoesNotHoldUpTheOthers(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	rec := &Recorder{}
	ctx := context.Background()
	sink := SinkFunc(func(ctx context.Context, a Alert) (bool, error) {
		if a.Breaker == "poison" {
			k := streamKey("poison")
			if err := rdb.Del(ctx, k).Err(); err != nil {
				return true, err
			}
			if err := rdb.Set(ctx, k, "not a stream", 0).Err(); err != nil {
				return true, err
			}
		}
		return rec.Notify(ctx, a)
	})
	cfg, _ := testConfig(t, "alertd-1")
	trip(t, newBreaker(t, rdb, "poison", fastConfig(time.Hour)), "down")
	d := startDaemon(t, rdb, cfg, sink)
	waitAlerts(t, rec, 1)
	for _, n := range []string{"alpha", "beta"} {
		trip(t, newBreaker(t, rdb, n, fastConfig(time.Hour)), "down")
	}
	got := waitAlerts(t, rec, 3)
	var h Health
	waitFor(t, "/healthz to report the failing acknowledgement", 10*time.Second, func() bool {
		h = d.Health(ctx)
		for _, p := range h.Problems {
			if p.Op == "acknowledge" && p.Breaker == "poison" && strings.Contains(p.Error, "WRONGTYPE") {
				return !h.OK
			}
		}
		return false
	})
	time.Sleep(200 * time.Millisecond) // several more rounds for poison
	if n := len(rec.Alerts()); n != 3 {
		t.Errorf("%d alerts, want 3 (poison's posted once):\n%s", n, titles(rec.Alerts()))
	}
	if got[0].Breaker != "poison" {
		t.Errorf("first alert %s", got[0].Title())
	}
	if err := rdb.Del(ctx, streamKey("poison")).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/healthz OK after the repair", 10*time.Second, func() bool { return d.Health(ctx).OK })
}

// TestARepostAfterAnAttemptWithoutAnswerIsFlagged: the sink fails without
// saying whether it posted (a timeout); the daemon dies in its backoff;
// the next daemon posts the alert flagged as a possible repeat. (A refusal
// the sink reports, such as Slack's 503, is not flagged:
// TestShutdownDuringRetryLeavesTheEntryPending.)
func TestARepostAfterAnAttemptWithoutAnswerIsFlagged(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	rdbA := srv.Client(t)
	failed := make(chan struct{})
	var once sync.Once
	sinkA := SinkFunc(func(ctx context.Context, a Alert) (bool, error) {
		once.Do(func() { close(failed) })
		return true, context.DeadlineExceeded // the request timed out: posted or not, nobody knows
	})
	cfgA, _ := testConfig(t, "alertd-A")
	cfgA.RetryMin, cfgA.RetryMax = time.Hour, time.Hour // it dies in this backoff
	a := startDaemon(t, rdbA, cfgA, sinkA)
	trip(t, newBreaker(t, rdb, "alpha", fastConfig(time.Hour)), "down")
	<-failed
	_ = rdbA.Close() // kill -9: nothing more reaches Redis from A
	a.stop(t)

	rec := &Recorder{}
	cfgB, _ := testConfig(t, "alertd-B")
	b := startDaemon(t, rdb, cfgB, rec)
	got := waitAlerts(t, rec, 1)
	waitDrained(t, b, 1)
	if !got[0].Repeat || !strings.Contains(got[0].Text(), "Possibly a repeat") {
		t.Errorf("the re-post is not flagged:\n%s", got[0].Text())
	}
}

// TestARetryAfterAnAttemptWithoutAnswerIsFlagged: the same daemon retries
// an attempt whose outcome is unknown: flagged; after a refusal: not.
func TestARetryAfterAnAttemptWithoutAnswerIsFlagged(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"timeout", context.DeadlineExceeded, true},
		{"refused", ErrNotDelivered, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := redistest.Start(t).Client(t)
			rec := &Recorder{}
			var mu sync.Mutex
			calls := 0
			sink := SinkFunc(func(ctx context.Context, a Alert) (bool, error) {
				mu.Lock()
				calls++
				n := calls
				mu.Unlock()
				if n == 1 {
					return true, tc.err
				}
				return rec.Notify(ctx, a)
			})
			cfg, _ := testConfig(t, "alertd-1")
			trip(t, newBreaker(t, rdb, "alpha", fastConfig(time.Hour)), "down")
			d := startDaemon(t, rdb, cfg, sink)
			got := waitAlerts(t, rec, 1)
			waitDrained(t, d, 1)
			if got[0].Repeat != tc.want {
				t.Errorf("Repeat = %v after a first attempt that failed with %v, want %v", got[0].Repeat, tc.err, tc.want)
			}
		})
	}
}

// TestAnOpeningRemadeAfterAFailoverIsPostedAsSuch: the daemon posted an
// opening; a failover loses it (here: the breaker's keys, stream and
// delivery record vanish, as on a replica that never got them) and the
// workers trip the breaker again. The second opening says it is the same
// outage; after a recovery, the next opening is news again.
func TestAnOpeningRemadeAfterAFailoverIsPostedAsSuch(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	rec := &Recorder{}
	cfg, _ := testConfig(t, "alertd-1")
	cfg.FlapWindow = time.Minute // a second opening would be folded, were it not re-made
	cfg.StaleAfter = time.Hour
	d := startDaemon(t, rdb, cfg, rec)
	b := newBreaker(t, rdb, "alpha", fastConfig(50*time.Millisecond))
	trip(t, b, "first")
	first := waitAlerts(t, rec, 1)[0]
	waitDrained(t, d, 1)

	lost := append(breakerbox.Keys("alpha"), deliveryKey("alpha", DefaultGroup))
	if err := rdb.Del(ctx, lost...).Err(); err != nil {
		t.Fatal(err)
	}
	// A worker that starts afresh (the old one's view says open).
	b = newBreaker(t, rdb, "alpha", fastConfig(50*time.Millisecond))
	trip(t, b, "again")
	got := waitAlerts(t, rec, 2)
	again := got[1]
	if again.Kind != KindTransition || again.Last().Event != "opened" || again.Remade == nil || again.Remade.ID != first.Last().ID {
		t.Fatalf("second alert %s (remade %+v), want the opening marked as re-made after %s", again.Title(), again.Remade, first.Last().ID)
	}
	if !strings.Contains(again.Text(), "Same outage, re-made after a Redis failover") {
		t.Errorf("text:\n%s", again.Text())
	}

	recoverBreaker(t, b)
	control(t, rdb, "alpha", breakerbox.ActionForceOpen, "ops")
	control(t, rdb, "alpha", breakerbox.ActionReset, "ops")
	trip(t, b, "third")
	waitDrained(t, d, 1)
	for _, a := range rec.Alerts()[2:] {
		if a.Remade != nil {
			t.Errorf("%s marked re-made after a recovery:\n%s", a.Title(), titles(rec.Alerts()))
		}
	}
}

// TestAnEntryThisDaemonPostedIsNotPostedAgain: a failover loses the
// acknowledgement, the trimming and the delivery record, so the posted
// entry is back in the stream, undelivered to the group: the daemon that
// posted it acknowledges it, once.
func TestAnEntryThisDaemonPostedIsNotPostedAgain(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	rec := &Recorder{}
	cfg, logs := testConfig(t, "alertd-1")
	d := startDaemon(t, rdb, cfg, rec)
	trip(t, newBreaker(t, rdb, "alpha", fastConfig(time.Hour)), "down")
	first := waitAlerts(t, rec, 1)[0].Last()
	waitDrained(t, d, 1)

	// The promoted replica's copy: the entry, a group at 0, no record.
	values := map[string]any{"event": fmt.Sprint(first.Event), "from": fmt.Sprint(first.From), "to": fmt.Sprint(first.To),
		"mode": fmt.Sprint(first.Mode), "generation": first.Generation, "last_error": first.LastError}
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, streamKey("alpha"), deliveryKey("alpha", DefaultGroup))
		p.XAdd(ctx, &redis.XAddArgs{Stream: streamKey("alpha"), ID: first.ID, Values: values})
		p.XGroupCreate(ctx, streamKey("alpha"), DefaultGroup, "0")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the entry to be acknowledged again", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "acknowledged entries delivered before")
	})
	waitDrained(t, d, 1)
	if n := len(rec.Alerts()); n != 1 {
		t.Errorf("%d alerts, want the opening once:\n%s", n, titles(rec.Alerts()))
	}
}

// TestHealthReportsABacklogPastItsBound: alerts are not getting out
// (Slack refuses them) and pile up past MaxBacklog.
func TestHealthReportsABacklogPastItsBound(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	refusing := SinkFunc(func(ctx context.Context, a Alert) (bool, error) { return true, ErrNotDelivered })
	cfg, _ := testConfig(t, "alertd-1")
	cfg.MaxBacklog = 1
	d := startDaemon(t, rdb, cfg, refusing)
	if h := d.Health(context.Background()); !h.OK {
		t.Fatalf("health before any alert: %+v", h)
	}
	for _, n := range []string{"alpha", "beta"} {
		trip(t, newBreaker(t, rdb, n, fastConfig(time.Hour)), "down")
	}
	var h Health
	waitFor(t, "/healthz to report the backlog", 10*time.Second, func() bool {
		h = d.Health(context.Background())
		return !h.OK
	})
	if !strings.Contains(h.Backlog, "2 entries pending or not yet read, more than 1") || len(h.Problems) != 0 {
		t.Errorf("health %+v", h)
	}
}

// TestALockThisConsumerLeftBehindIsTakenOver: a failover promotes a
// replica that still has this daemon's delivery lock (the DEL of its
// release never reached it). The daemon takes its own lock over at once
// instead of waiting out the lease; another consumer's lock is still
// respected until it is gone.
func TestALockThisConsumerLeftBehindIsTakenOver(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	rec := &Recorder{}
	cfg, logs := testConfig(t, "alertd-1")
	cfg.ClaimMinIdle = time.Minute // the lease a left-behind lock keeps
	cfg.DiscoveryInterval = time.Hour
	for name, holder := range map[string]string{"alpha": "alertd-1 0123456789abcdef", "beta": "alertd-2 0123456789abcdef"} {
		if err := rdb.Set(ctx, lockKey(name, DefaultGroup), holder, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemon(t, rdb, cfg, rec)
	waitFor(t, "the daemon's subscription", 10*time.Second, func() bool {
		n, err := rdb.PubSubNumPat(ctx).Result()
		return err == nil && n == 1
	})
	trip(t, newBreaker(t, rdb, "alpha", fastConfig(time.Hour)), "down")
	trip(t, newBreaker(t, rdb, "beta", fastConfig(time.Hour)), "down")
	got := waitAlerts(t, rec, 1) // well within the lease
	if got[0].Breaker != "alpha" {
		t.Fatalf("first alert %s, want alpha's (beta's lock is another daemon's)", got[0].Title())
	}
	if !strings.Contains(logs.String(), "took over a delivery lock this consumer left behind") {
		t.Errorf("the takeover is not logged")
	}
	waitFor(t, "alpha's lock released", 10*time.Second, func() bool {
		n, err := rdb.Exists(ctx, lockKey("alpha", DefaultGroup)).Result()
		return err == nil && n == 0
	})
	time.Sleep(100 * time.Millisecond) // beta is tried every lockRetry meanwhile
	if n := len(rec.Alerts()); n != 1 {
		t.Fatalf("%d alerts while alertd-2 holds beta's lock:\n%s", n, titles(rec.Alerts()))
	}
	if err := rdb.Del(ctx, lockKey("beta", DefaultGroup)).Err(); err != nil {
		t.Fatal(err)
	}
	if got = waitAlerts(t, rec, 2); got[1].Breaker != "beta" {
		t.Fatalf("second alert %s", got[1].Title())
	}
	waitDrained(t, d, 2)
}
