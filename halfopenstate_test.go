package breakerbox_test

import (
	"slices"
	"strconv"
	"testing"
	"time"
)

// halfOpen returns a breaker that has just entered half-open, and its first probe.
func halfOpen(t *testing.T, config ...string) (*bb, permit) {
	b := newBB(t, append([]string{"recovery_timeout_ms", "1000", "request_timeout_ms", "500"}, config...)...)
	b.trip(3)
	b.advance(time.Second)
	return b, b.allow()
}

func TestHalfOpenAdmitsAtMostMaxCallsProbes(t *testing.T) {
	b, first := halfOpen(t, "success_threshold", "3", "half_open_max_calls", "2")
	second := b.allow()
	if first.lease == second.lease || second.lease == "" {
		t.Fatalf("leases %q and %q, want two distinct", first.lease, second.lease)
	}
	if got := b.refused(); got != 500 {
		t.Errorf("third caller retry_after = %d, want 500 (until the first lease expires)", got)
	}
	b.want("probes", "2")
	b.success(first)
	third := b.allow() // a slot is free again
	b.success(second)
	b.want("state", "half_open", "half_open_successes", "2")
	b.success(third)
	b.want("state", "closed", "current_failures", "0", "probes", "0")
	ev := b.events()
	last := ev[len(ev)-1]
	if last["event"] != "closed" || last["outage_ms"] != "1000" || last["refused"] != "1" {
		t.Errorf("closing entry %v, want outage_ms=1000 refused=1", last)
	}
}

func TestHalfOpenClosesAfterSuccessThreshold(t *testing.T) {
	b, p1 := halfOpen(t)
	p2 := b.allow()
	b.success(p1)
	b.want("state", "half_open")
	r := b.success(p2)
	if r[0] != "closed" || b.ord(r[1]) != "3" {
		t.Fatalf("reply %v, want closed in generation 3", r)
	}
	if got := b.eventNames(); !slices.Equal(got, []string{"opened", "half_opened", "closed"}) {
		t.Errorf("events %v", got)
	}
}

func TestHalfOpenFailureReopensWithFreshTimer(t *testing.T) {
	b, p := halfOpen(t)
	b.advance(200 * time.Millisecond)
	r := b.failure(p, "still down")
	if r[0] != "open" || r[3] != int64(1000) {
		t.Fatalf("reply %v, want open with a full 1000ms timer", r)
	}
	b.want("opened_at", strconv.FormatInt(b.now.UnixMilli(), 10), "current_failures", "4")
	ev := b.events()
	if last := ev[len(ev)-1]; last["from"] != "half_open" || last["outage_ms"] != "1200" {
		t.Errorf("re-opening entry %v, want from half_open with outage_ms 1200", last)
	}
}

func TestExpiredProbeLeaseFreesItsSlotAndCountsNothing(t *testing.T) {
	b, dead := halfOpen(t, "half_open_max_calls", "1")
	b.refused()
	b.advance(500 * time.Millisecond) // the lease expires: its worker died
	fresh := b.allow()
	r := b.success(dead) // the dead worker's late report
	if r[4] != int64(0) || r[5] != int64(1) {
		t.Fatalf("expired probe counted=%v stale=%v, want 0 and 1", r[4], r[5])
	}
	b.want("half_open_successes", "0", "state", "half_open")
	b.success(fresh)
	b.want("half_open_successes", "1")
}

func TestStaleOutcomesCannotCloseOrReopenHalfOpen(t *testing.T) {
	b := newBB(t, "recovery_timeout_ms", "1000")
	early := b.allow() // generation 0, closed
	b.trip(3)
	b.advance(time.Second)
	b.allow() // half-open, generation 2
	b.failure(early, "from closed")
	b.success(early)
	b.success(permit{gen: "2", lease: ""})      // right generation, no lease
	b.success(permit{gen: "2", lease: "2-999"}) // a lease never granted
	b.want("state", "half_open", "half_open_successes", "0", "total_failures", "4")
}

func TestReleaseFreesAProbeLease(t *testing.T) {
	b, p := halfOpen(t, "half_open_max_calls", "1")
	b.refused()
	b.run("record", "0", "r", p.gen, p.lease, "", "", "")
	b.allow()
	b.want("total_requests", "4") // 3 failures and the one refusal; the release is not a request
}
