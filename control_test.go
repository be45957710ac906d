package breakerbox_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

func TestOperatorControlsInEveryState(t *testing.T) {
	type setup func(*bb)
	states := map[string]setup{
		"closed":    func(b *bb) {},
		"open":      func(b *bb) { b.trip(3) },
		"half_open": func(b *bb) { b.trip(3); b.advance(30 * time.Second); b.allow() },
	}
	cases := []struct {
		action, event, wantState, wantMode string
		admits                             bool
	}{
		{"reset", "reset", "closed", "normal", true},
		{"force_open", "forced_open", "open", "forced_open", false},
		{"disable", "disabled", "closed", "disabled", true},
	}
	for from, prepare := range states {
		for _, c := range cases {
			t.Run(c.action+" from "+from, func(t *testing.T) {
				b := newBB(t)
				prepare(b)
				before := len(b.events())
				r := b.run("control", c.action, "alice")
				if r[0] != c.wantState || r[2] != c.wantMode {
					t.Fatalf("reply %v, want %s/%s", r, c.wantState, c.wantMode)
				}
				ev := b.events()
				if len(ev) != before+1 || ev[before]["event"] != c.event ||
					ev[before]["actor"] != "alice" || ev[before]["from"] != from {
					t.Errorf("stream after %s: %v, want one entry by alice from %s", c.action, ev[before:], from)
				}
				b.want("probes", "0")
				admitted := b.run("allow")[0] == int64(1)
				if admitted != c.admits {
					t.Errorf("allow after %s admitted=%v, want %v", c.action, admitted, c.admits)
				}
			})
		}
	}
}

func TestResetClearsCountsButKeepsTotals(t *testing.T) {
	b := newBB(t)
	b.trip(3)
	b.run("control", "reset", "ops")
	b.want("state", "closed", "current_failures", "0", "total_failures", "3", "mode", "normal")
	b.failure(b.allow(), "after reset")
	b.want("current_failures", "1")
}

func TestForceOpenRefusesEvenAfterRecoveryTimeout(t *testing.T) {
	b := newBB(t)
	b.run("control", "force_open", "ops")
	b.advance(time.Hour)
	if got := b.refused(); got != -1 {
		t.Errorf("retry_after while forced open = %d, want -1", got)
	}
	b.want("state", "open", "mode", "forced_open")
}

func TestReleaseFromForceOpenProbesFirst(t *testing.T) {
	b := newBB(t)
	b.run("control", "force_open", "ops")
	r := b.run("control", "release", "ops")
	if r[0] != "half_open" || r[2] != "normal" {
		t.Fatalf("release reply %v, want half_open/normal", r)
	}
	if p := b.allow(); p.lease == "" {
		t.Error("first call after release is not a probe")
	}
}

func TestDisableAdmitsEverythingCountsAndNeverOpens(t *testing.T) {
	b := newBB(t)
	b.run("control", "disable", "ops")
	for i := 0; i < 5; i++ {
		b.failure(b.allow(), "down")
	}
	b.want("state", "closed", "mode", "disabled", "current_failures", "5", "total_failures", "5")
	r := b.run("control", "release", "ops")
	if r[0] != "closed" || r[2] != "normal" {
		t.Fatalf("release reply %v, want closed/normal", r)
	}
	b.want("current_failures", "0")
	b.trip(3) // normal operation again
}

func TestReleaseInNormalModeChangesNothing(t *testing.T) {
	b := newBB(t)
	b.failure(b.allow(), "one")
	b.run("control", "release", "ops")
	b.want("generation", "0", "current_failures", "1")
	if n := len(b.events()); n != 0 {
		t.Errorf("%d stream entries, want none", n)
	}
}

func TestEveryGenerationHasExactlyOneStreamEntryAndAnnouncement(t *testing.T) {
	b := newBB(t, "recovery_timeout_ms", "10")
	for cycle := 0; cycle < 3; cycle++ {
		b.trip(3)
		b.advance(10 * time.Millisecond)
		b.success(b.allow())
		b.success(b.allow())
	}
	b.run("control", "force_open", "ops")
	b.run("control", "release", "ops")
	b.run("control", "reset", "ops")
	ev := b.events()
	pub := b.e.Published()[1:] // the first announces the test's config
	b.want("generation", "12")
	if len(ev) != 12 || len(pub) != 12 {
		t.Fatalf("%d stream entries and %d announcements, want 12 each", len(ev), len(pub))
	}
	prev := int64(0)
	for i, e := range ev {
		g, _ := strconv.ParseInt(e["generation"], 10, 64)
		if g <= prev || g < b.now.UnixMilli()-40 {
			t.Errorf("entry %d has generation %s after %d: want max(previous+1, now)", i, e["generation"], prev)
		}
		prev = g
		if pub[i].Channel != "circuit_breaker:{svc}:changed" {
			t.Errorf("announced on %q", pub[i].Channel)
		}
	}
	if pub[len(pub)-1].Payload != fmt.Sprintf("closed %d normal 0", prev) {
		t.Errorf("last announcement %q", pub[len(pub)-1].Payload)
	}
}
