package breakerbox_test

import (
	"slices"
	"testing"
	"time"
)

func TestOpenRefusesUntilRecoveryTimeoutOnRedisClock(t *testing.T) {
	b := newBB(t, "recovery_timeout_ms", "1000")
	b.trip(3)
	if got := b.refused(); got != 1000 {
		t.Errorf("retry_after at opening = %d, want 1000", got)
	}
	b.advance(999 * time.Millisecond)
	if got := b.refused(); got != 1 {
		t.Errorf("retry_after 1ms before = %d, want 1", got)
	}
	b.want("state", "open", "total_refused", "2")
	b.advance(time.Millisecond)
	p := b.allow() // at exactly recovery_timeout
	if p.lease == "" || b.ord(p.gen) != "2" {
		t.Fatalf("admission at the timeout = %+v, want a probe lease in generation 2", p)
	}
	b.want("state", "half_open")
	if got := b.eventNames(); !slices.Equal(got, []string{"opened", "half_opened"}) {
		t.Errorf("events %v", got)
	}
}

func TestOpenOutcomesOfEarlierAdmissionsAreStale(t *testing.T) {
	b := newBB(t)
	late := b.allow() // admitted while closed, reported after the trip
	b.trip(3)
	r := b.failure(late, "late")
	if r[4] != int64(0) || r[5] != int64(1) {
		t.Fatalf("late failure counted=%v stale=%v, want 0 and 1", r[4], r[5])
	}
	b.success(late)
	b.want("state", "open", "current_failures", "3", "total_failures", "4", "total_successes", "1",
		"last_failure_error", "late", "generation", "1")
}

func TestConfigChangedWhileOpenShortensTheRunningTimer(t *testing.T) {
	b := newBB(t)
	b.trip(3)
	b.advance(5 * time.Second)
	b.refused()
	if r := b.run("configure", "ops", "recovery_timeout_ms", "5000"); r[0] != int64(1) || r[1] != int64(0) {
		t.Fatalf("configure reply %v, want 1 written, 0 overwritten", r)
	}
	b.allow() // 5s after opening: the new timeout has passed
	b.want("state", "half_open")
	h := b.history()
	if h[1].Event != "config_changed" || h[1].Actor != "ops" || h[1].Detail != "recovery_timeout_ms 5000" {
		t.Errorf("history %+v, want a config_changed entry by ops", h[1])
	}
}
