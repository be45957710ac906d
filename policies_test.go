package breakerbox_test

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// rec records one outcome with its duration and retry-after (empty: none).
func (b *bb) rec(p permit, outcome, msg, durationMs, retryAfterMs string) []any {
	b.t.Helper()
	return b.run("record", "0", outcome, p.gen, p.lease, msg, durationMs, retryAfterMs)
}

// metric reads a field of the metrics hash ("" when absent).
func (b *bb) metric(field string) string { return b.e.HGetAll(b.keys[3])[field] }

func TestFailureRateOpensWhenTheWindowReachesTheThreshold(t *testing.T) {
	// The last 20 calls, in 10 buckets of 2; at least 10 calls; 50%.
	b := newBB(t, "failure_threshold", "1000000", "window_calls", "20", "failure_rate_threshold", "50",
		"minimum_calls", "10")
	if got := b.metric("w_spec"); got != "c 2 10 0 50 0 10" {
		t.Fatalf("w_spec = %q after configure, want the window's spec", got)
	}
	// 4 failures in the first 8 calls: 50%, but under minimum_calls.
	for i := 0; i < 8; i++ {
		if i%2 == 0 {
			b.failure(b.allow(), "down")
		} else {
			b.success(b.allow())
		}
	}
	b.want("state", "closed", "calls_in_window", "8", "failures_in_window", "4", "failure_rate", "50.0")
	b.success(b.allow()) // 9 calls, 44.4%
	b.want("state", "closed", "failure_rate", "44.4")
	r := b.failure(b.allow(), "down again") // 10 calls, 5 failures: 50% with the minimum reached
	if r[0] != "open" {
		t.Fatalf("the 10th call at 50%% did not open the breaker: %v", r)
	}
	ev := b.events()[0]
	if ev["detail"] != "failure rate 50% >= 50% over the last 20 calls, 10 calls" || ev["last_error"] != "down again" {
		t.Errorf("opening entry %v", ev)
	}
	if h := b.history()[0]; h.Detail != ev["detail"] || h.Error != "down again" {
		t.Errorf("history %+v, want the rule in detail", h)
	}
	// While open the window keeps what tripped it; nothing current is added.
	b.want("calls_in_window", "10", "failures_in_window", "5")
}

func TestAWindowedSuccessCanTripOnceTheMinimumIsReached(t *testing.T) {
	b := newBB(t, "failure_threshold", "1000000", "window_calls", "10", "window_buckets", "10",
		"failure_rate_threshold", "50", "minimum_calls", "4")
	b.failure(b.allow(), "a")
	b.failure(b.allow(), "b")
	b.failure(b.allow(), "c") // 3 calls: under the minimum
	b.want("state", "closed")
	r := b.success(b.allow()) // 4 calls, 75%: the success makes the window count
	if r[0] != "open" {
		t.Fatalf("record = %v, want open", r)
	}
	if ev := b.events()[0]; ev["last_error"] != "c" || !strings.HasPrefix(ev["detail"], "failure rate 75% >= 50%") {
		t.Errorf("opening %v: want the last failure's error and the rule", ev)
	}
}

func TestCountWindowHoldsItsLastBuckets(t *testing.T) {
	// 6 calls in 3 buckets of 2: it holds between 5 and 6 calls once full.
	b := newBB(t, "failure_threshold", "1000000", "window_calls", "6", "window_buckets", "3")
	for i := 0; i < 6; i++ {
		b.failure(b.allow(), "x")
	}
	b.want("calls_in_window", "6", "failures_in_window", "6")
	b.success(b.allow()) // the oldest bucket (2 failures) leaves
	b.want("calls_in_window", "5", "failures_in_window", "4", "failure_rate", "80.0")
	b.success(b.allow())
	b.want("calls_in_window", "6", "failures_in_window", "4")
	for i := 0; i < 4; i++ {
		b.success(b.allow())
	}
	b.want("calls_in_window", "6", "failures_in_window", "0")
	// A record never sums the buckets: the running sums (then the newest
	// bucket) equal them.
	if w := b.metric("w"); w != "5 6 0 0 2 0 0" {
		t.Errorf("w = %q, want head 5, the sums 6 0 0 and the newest bucket 2 0 0", w)
	}
}

func TestTimeWindowForgetsWithRedisClock(t *testing.T) {
	// 1s in 10 buckets of 100 ms.
	b := newBB(t, "failure_threshold", "1000000", "window_ms", "1000", "failure_rate_threshold", "70",
		"minimum_calls", "5")
	for i := 0; i < 4; i++ {
		b.failure(b.allow(), "x")
		b.advance(100 * time.Millisecond)
	}
	b.want("calls_in_window", "4", "failures_in_window", "4", "state", "closed")
	b.advance(600 * time.Millisecond) // at 1s: the first failure's bucket has left
	b.want("calls_in_window", "3")
	for i := 0; i < 3; i++ {
		b.success(b.allow())
	}
	b.want("calls_in_window", "6", "failures_in_window", "3", "state", "closed") // never 70%
	b.advance(2 * time.Second)
	b.want("calls_in_window", "0", "failure_rate", "0.0")
	r := b.failure(b.allow(), "y")
	if w := strings.Fields(b.metric("w")); r[0] != "closed" || len(w) != 7 || strings.Join(w[1:], " ") != "1 1 0 1 1 0" {
		t.Errorf("after an idle window: %v, w %q", r, b.metric("w"))
	}
	for _, f := range []string{"w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "w9"} {
		if v := b.metric(f); v != "" {
			t.Errorf("%s = %q after the window emptied, want absent", f, v)
		}
	}
}

func TestSlowCallsOpenTheBreakerAndStaySuccesses(t *testing.T) {
	b := newBB(t, "window_calls", "10", "slow_call_ms", "500", "slow_call_rate_threshold", "50", "minimum_calls", "4")
	b.rec(b.allow(), "s", "", "499", "")
	b.rec(b.allow(), "s", "", "500", "") // at the threshold: slow
	b.rec(b.allow(), "s", "", "", "")    // unknown duration: not slow
	b.want("slow_in_window", "1", "calls_in_window", "3", "total_successes", "3", "slow_call_rate", "33.3")
	r := b.rec(b.allow(), "s", "", "2000", "")
	if r[0] != "open" {
		t.Fatalf("record = %v, want open at 2 slow of 4", r)
	}
	b.want("total_successes", "4", "total_failures", "0")
	if ev := b.events()[0]; ev["detail"] != "slow calls 50% >= 50% (500ms or slower) over the last 10 calls, 4 calls" {
		t.Errorf("opening detail %q", ev["detail"])
	}
}

func TestRetryAfterOpensAtOnceAndKeepsTheBreakerOpen(t *testing.T) {
	b := newBB(t, "recovery_timeout_ms", "1000")
	p1, p2, p3 := b.allow(), b.allow(), b.allow()
	r := b.rec(p1, "f", "429 Too Many Requests", "", "5000")
	if r[0] != "open" || r[3] != int64(5000) {
		t.Fatalf("a failure with a retry-after: %v, want open for 5000 ms", r)
	}
	if ev := b.events()[0]; ev["detail"] != "retry-after 5s from upstream" || ev["recovery_timeout_ms"] != "5000" {
		t.Errorf("opening %v", ev)
	}
	if h := b.history()[0]; h.Detail != "retry-after 5s from upstream" {
		t.Errorf("history %+v", h)
	}
	b.advance(2 * time.Second)
	// A late failure (admitted before the opening) asks for longer: the
	// breaker stays open until then, and says so on its channel.
	b.e.Published()
	r = b.rec(p2, "f", "429", "", "8000")
	if r[5] != int64(1) || r[3] != int64(8000) {
		t.Fatalf("a stale failure with a retry-after: %v, want stale and 8000 ms left", r)
	}
	if msgs := b.e.Published(); len(msgs) != 1 || !strings.HasSuffix(msgs[0].Payload, " normal 8000") {
		t.Errorf("announced %v, want the new retry_after_ms", msgs)
	}
	b.rec(p3, "f", "429", "", "1000") // shorter: changes nothing
	b.advance(7999 * time.Millisecond)
	if ra := b.refused(); ra != 1 {
		t.Errorf("retry_after_ms = %d just before the retry-after, want 1", ra)
	}
	b.advance(time.Millisecond)
	if p := b.allow(); p.lease == "" {
		t.Errorf("no probe at the retry-after: %+v", p)
	}
	b.want("state", "half_open", "retry_until", "0")
}

func TestRetryAfterIsCappedAndCanBeTurnedOff(t *testing.T) {
	b := newBB(t, "max_retry_after_ms", "60000")
	r := b.rec(b.allow(), "f", "503", "", "3600000")
	if r[0] != "open" || r[3] != int64(60000) {
		t.Fatalf("record = %v, want open for the 60000 ms cap", r)
	}
	if d := b.events()[0]["detail"]; d != "retry-after 3600s from upstream, capped at 60s" {
		t.Errorf("detail %q", d)
	}
	off := newBB(t, "max_retry_after_ms", "0")
	if r := off.rec(off.allow(), "f", "503", "", "5000"); r[0] != "closed" {
		t.Errorf("retry-afters ignored: %v, want closed", r)
	}
	dis := newBB(t)
	dis.run("control", "disable", "ops")
	if r := dis.rec(dis.allow(), "f", "503", "", "5000"); r[0] != "closed" {
		t.Errorf("a disabled breaker opened on a retry-after: %v", r)
	}
	ok := newBB(t)
	if r := ok.rec(ok.allow(), "s", "", "", "5000"); r[0] != "closed" {
		t.Errorf("a success's retry-after opened the breaker: %v", r)
	}
}

func TestRecoveryBackoffGrowsAfterFailedProbesAndResetsOnClose(t *testing.T) {
	b := newBB(t, "failure_threshold", "1", "recovery_timeout_ms", "1000", "success_threshold", "1",
		"recovery_backoff", "200", "max_recovery_timeout_ms", "3500")
	b.trip(1)
	for i, want := range []int64{1000, 2000, 3500, 3500} {
		if ra := b.refused(); ra != want {
			t.Fatalf("round %d: retry_after_ms %d, want %d", i, ra, want)
		}
		b.want("current_recovery_timeout_ms", strconv.FormatInt(want, 10))
		b.advance(time.Duration(want) * time.Millisecond)
		b.failure(b.allow(), "still down") // the probe fails
		if ev := b.events(); ev[len(ev)-1]["recovery_timeout_ms"] != strconv.FormatInt(min(want*2, 3500), 10) {
			t.Errorf("round %d: reopening entry %v", i, ev[len(ev)-1])
		}
	}
	b.advance(3500 * time.Millisecond)
	b.success(b.allow())
	b.want("state", "closed", "current_recovery_timeout_ms", "1000")
	b.trip(1)
	if ra := b.refused(); ra != 1000 {
		t.Errorf("after closing, retry_after_ms %d, want the configured 1000", ra)
	}
}

func TestWindowCountsOnlyCurrentOutcomesInClosedAndIsClearedOnClose(t *testing.T) {
	b := newBB(t, "failure_threshold", "2", "window_calls", "100", "recovery_timeout_ms", "10", "success_threshold", "1")
	old := b.allow()
	b.success(b.allow())
	b.failure(b.allow(), "a")
	b.failure(b.allow(), "b") // opens: 2 consecutive failures
	b.want("state", "open", "calls_in_window", "3")
	if d := b.events()[0]["detail"]; d != "2 consecutive failures" {
		t.Errorf("detail %q", d)
	}
	if h := b.history()[0]; h.Detail != "" {
		t.Errorf("history detail %q: the default rule is implied", h.Detail)
	}
	b.success(old) // stale: totals only
	b.want("calls_in_window", "3", "total_successes", "2")
	b.advance(10 * time.Millisecond)
	b.success(b.allow()) // the probe closes the breaker
	b.want("state", "closed", "calls_in_window", "0")
	for f, want := range map[string]string{"w": "0 0 0 0 0 0 0", "w0": "", "w1": ""} {
		if v := b.metric(f); v != want {
			t.Errorf("%s = %q after closing, want %q", f, v, want)
		}
	}
	b.success(b.allow())
	b.want("calls_in_window", "1")
}

func TestChangingTheWindowsBucketsStartsItAfresh(t *testing.T) {
	b := newBB(t, "failure_threshold", "100", "window_calls", "4", "window_buckets", "2")
	for i := 0; i < 4; i++ {
		b.failure(b.allow(), "x")
	}
	b.want("calls_in_window", "4")
	b.run("configure", "ops", "failure_rate_threshold", "90") // thresholds only: the window stays
	b.want("calls_in_window", "4")
	b.run("configure", "ops", "window_calls", "10") // other buckets: a new window
	b.want("calls_in_window", "0")
	if f := b.metric("w0"); f != "" {
		t.Errorf("w0 = %q, want the old window dropped", f)
	}
	b.run("configure", "ops", "window_calls", "0", "failure_rate_threshold", "0")
	for f := range b.e.HGetAll(b.keys[3]) {
		if strings.HasPrefix(f, "w") {
			t.Errorf("metrics field %s with no window configured", f)
		}
	}
}

func TestDefaultRuleKeepsTheFastPathFree(t *testing.T) {
	// A breaker without a window writes no window field, whatever it records.
	b := newBB(t)
	b.rec(b.allow(), "s", "", "12", "")
	b.rec(b.allow(), "f", "x", "12", "")
	for f := range b.e.HGetAll(b.keys[3]) {
		if strings.HasPrefix(f, "w") {
			t.Errorf("metrics field %s on a breaker without a window", f)
		}
	}
}
