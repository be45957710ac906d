package breakerbox_test

import (
	"strconv"
	"testing"
)

func TestClosedAdmitsAndCountsConsecutiveFailures(t *testing.T) {
	b := newBB(t)
	p := b.allow()
	if p.gen != "0" || p.lease != "" {
		t.Fatalf("first admission = %+v, want generation 0 and no lease", p)
	}
	b.failure(p, "one")
	b.failure(b.allow(), "two")
	b.want("state", "closed", "current_failures", "2", "total_failures", "2")
	if got, _ := b.e.Get(b.keys[1]); got != "2" {
		t.Errorf("GET failures = %q, want 2", got)
	}
}

func TestClosedSuccessResetsConsecutiveFailures(t *testing.T) {
	b := newBB(t)
	b.failure(b.allow(), "one")
	b.failure(b.allow(), "two")
	b.success(b.allow())
	b.failure(b.allow(), "three")
	b.failure(b.allow(), "four")
	b.want("state", "closed", "current_failures", "2", "total_failures", "4", "total_successes", "1")
}

func TestClosedOpensOnExactlyTheThresholdthFailure(t *testing.T) {
	for _, threshold := range []int{1, 3, 5} {
		b := newBB(t, "failure_threshold", strconv.Itoa(threshold))
		for i := 1; i < threshold; i++ {
			b.failure(b.allow(), "boom")
			b.want("state", "closed")
		}
		r := b.failure(b.allow(), "last boom")
		if r[0] != "open" || b.ord(r[1]) != "1" || r[3] != int64(30000) {
			t.Fatalf("threshold %d: record reply %v, want open, generation 1, retry 30000", threshold, r)
		}
		ev := b.events()
		if len(ev) != 1 || ev[0]["event"] != "opened" || ev[0]["failures"] != strconv.Itoa(threshold) ||
			ev[0]["last_error"] != "last boom" || ev[0]["from"] != "closed" {
			t.Errorf("threshold %d: stream %v, want one opened entry with failures=%d", threshold, ev, threshold)
		}
		if got, _ := b.e.Get(b.keys[2]); got != strconv.FormatInt(b.now.UnixMilli(), 10) {
			t.Errorf("last_failure_time = %q, want %d", got, b.now.UnixMilli())
		}
	}
}

func TestRecordAppliesABatchInOrderAndLaterOutcomesAreStale(t *testing.T) {
	b := newBB(t)
	r := b.run("record", "4",
		"f", "0", "", "a", "", "",
		"s", "0", "", "", "12", "",
		"f", "0", "", "b", "", "",
		"f", "0", "", "c", "", "",
		"f", "0", "", "d", "", "", // the trip: third consecutive
		"f", "0", "", "e", "", "", // admitted before the trip: stale
		"s", "0", "", "", "", "")
	if r[0] != "open" || r[4] != int64(5) || r[5] != int64(2) {
		t.Fatalf("reply %v, want open with 5 counted and 2 stale", r)
	}
	b.want("current_failures", "3", "total_failures", "5", "total_successes", "2",
		"total_refused", "4", "last_failure_error", "e")
	if ev := b.events(); len(ev) != 1 || ev[0]["last_error"] != "d" {
		t.Errorf("stream %v, want one opening whose last error is the tripping one", ev)
	}
}

func TestReleaseCountsNothing(t *testing.T) {
	b := newBB(t)
	b.failure(b.allow(), "one")
	b.run("record", "0", "r", "0", "", "", "", "")
	b.want("current_failures", "1", "total_requests", "1")
}

func TestDefaultsWithoutStoredConfig(t *testing.T) {
	b := newBB(t)
	b.want("failure_threshold", "3", "recovery_timeout_ms", "30000", "success_threshold", "2",
		"half_open_max_calls", "2", "request_timeout_ms", "45000", "state", "closed", "generation", "0")
	if keys := b.e.Keys(); len(keys) != 0 {
		t.Errorf("status wrote keys %v", keys)
	}
}
