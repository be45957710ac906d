package alerts

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
)

var t0 = time.Date(2025, 10, 25, 11, 30, 0, 0, time.UTC)

// tr makes a transition at t0+sec with ID "ms-0" and generation gen.
func tr(gen int64, sec float64, event, from, to string) breakerbox.Transition {
	at := t0.Add(time.Duration(sec * float64(time.Second)))
	return breakerbox.Transition{ID: fmt.Sprintf("%d-0", at.UnixMilli()), Event: event, From: from, To: to,
		Mode: "normal", Generation: gen, Time: at}
}

func opened(gen int64, sec float64) breakerbox.Transition {
	return tr(gen, sec, "opened", "closed", "open")
}
func halfOpened(gen int64, sec float64) breakerbox.Transition {
	return tr(gen, sec, "half_opened", "open", "half_open")
}
func closed(gen int64, sec float64) breakerbox.Transition {
	return tr(gen, sec, "closed", "half_open", "closed")
}
func reset(gen int64, sec float64) breakerbox.Transition {
	return tr(gen, sec, "reset", "open", "closed")
}

// describe prints steps as "kind:events" for comparison, e.g.
// "transition:opened flapping:opened,closed".
func describe(steps []step) string {
	var parts []string
	for _, s := range steps {
		var ev []string
		for _, t := range s.alert.Transitions {
			ev = append(ev, t.Event)
		}
		p := string(s.alert.Kind) + ":" + strings.Join(ev, ",")
		if s.alert.Late > 0 {
			p += "(late)"
		}
		if s.alert.Missed > 0 {
			p += fmt.Sprintf("(missed %d)", s.alert.Missed)
		}
		if s.alert.Remade != nil {
			p += "(remade)"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

func TestPlan(t *testing.T) {
	cfg := Config{FlapWindow: time.Minute, StaleAfter: 10 * time.Minute}
	noFold := Config{FlapWindow: -1, StaleAfter: 10 * time.Minute}
	tests := []struct {
		name      string
		cfg       Config
		rec       record
		entries   []breakerbox.Transition
		now       time.Time
		want      string
		wantWake  time.Time
		wantStart time.Time // window start recorded with the last step
	}{
		{
			name:      "a single opening is posted at once and opens a window",
			cfg:       cfg,
			entries:   []breakerbox.Transition{opened(1, 0)},
			now:       t0.Add(time.Second),
			want:      "transition:opened",
			wantStart: t0,
		},
		{
			name:      "an outage without re-opening is posted transition by transition",
			cfg:       cfg,
			entries:   []breakerbox.Transition{opened(1, 0), halfOpened(2, 30), closed(3, 31)},
			now:       t0.Add(40 * time.Second),
			want:      "transition:opened transition:half_opened transition:closed",
			wantStart: t0,
		},
		{
			name: "re-openings inside the window wait for the window's end",
			cfg:  cfg,
			entries: []breakerbox.Transition{opened(1, 0), halfOpened(2, 1), closed(3, 2),
				opened(4, 3), halfOpened(5, 4), closed(6, 5), opened(7, 6)},
			now:       t0.Add(10 * time.Second),
			want:      "transition:opened transition:half_opened transition:closed",
			wantWake:  t0.Add(time.Minute),
			wantStart: t0,
		},
		{
			name: "after the window the re-openings are one flapping alert",
			cfg:  cfg,
			entries: []breakerbox.Transition{opened(1, 0), halfOpened(2, 1), closed(3, 2),
				opened(4, 3), halfOpened(5, 4), closed(6, 5), opened(7, 6)},
			now:       t0.Add(61 * time.Second),
			want:      "transition:opened transition:half_opened transition:closed flapping:opened,half_opened,closed,opened",
			wantStart: t0.Add(time.Minute),
		},
		{
			name:      "a window recorded by another daemon folds the next opening",
			cfg:       cfg,
			rec:       record{WindowStart: t0, AckedGen: 3},
			entries:   []breakerbox.Transition{opened(4, 3), closed(5, 5)},
			now:       t0.Add(90 * time.Second),
			want:      "flapping:opened,closed",
			wantStart: t0.Add(time.Minute),
		},
		{
			name:      "an opening re-made after a failover is posted as such, inside a window too, and opens none",
			cfg:       cfg,
			rec:       record{WindowStart: t0, AckedGen: 3, remade: map[string]breakerbox.Transition{opened(4, 3).ID: opened(1, 0)}},
			entries:   []breakerbox.Transition{opened(4, 3), halfOpened(5, 5), closed(6, 6), opened(7, 7)},
			now:       t0.Add(10 * time.Second),
			want:      "transition:opened(remade) transition:half_opened transition:closed",
			wantWake:  t0.Add(time.Minute),
			wantStart: t0,
		},
		{
			name:      "an entry after the window's end flushes the fold first",
			cfg:       cfg,
			rec:       record{WindowStart: t0, AckedGen: 3},
			entries:   []breakerbox.Transition{opened(4, 3), closed(5, 5), halfOpened(6, 61)},
			now:       t0.Add(62 * time.Second),
			want:      "flapping:opened,closed transition:half_opened",
			wantStart: t0.Add(time.Minute),
		},
		{
			name:      "a breaker that keeps flapping gets one message per window",
			cfg:       cfg,
			rec:       record{WindowStart: t0, AckedGen: 3},
			entries:   []breakerbox.Transition{opened(4, 3), closed(5, 5), opened(6, 65), closed(7, 66)},
			now:       t0.Add(70 * time.Second),
			want:      "flapping:opened,closed",
			wantWake:  t0.Add(2 * time.Minute),
			wantStart: t0.Add(time.Minute),
		},
		{
			name:      "an opening after a quiet window is posted on its own",
			cfg:       cfg,
			rec:       record{WindowStart: t0, AckedGen: 3},
			entries:   []breakerbox.Transition{opened(4, 300)},
			now:       t0.Add(301 * time.Second),
			want:      "transition:opened",
			wantStart: t0.Add(300 * time.Second),
		},
		{
			name:    "an operator action ends the fold early, is posted on its own and closes the window",
			cfg:     cfg,
			rec:     record{WindowStart: t0, AckedGen: 3},
			entries: []breakerbox.Transition{opened(4, 3), reset(5, 4)},
			now:     t0.Add(5 * time.Second),
			want:    "flapping:opened transition:reset",
		},
		{
			name:      "an opening after an operator action is posted at once",
			cfg:       cfg,
			entries:   []breakerbox.Transition{opened(1, 0), reset(2, 5), opened(3, 10)},
			now:       t0.Add(11 * time.Second),
			want:      "transition:opened transition:reset transition:opened",
			wantStart: t0.Add(10 * time.Second),
		},
		{
			name:      "folding off: every opening is posted",
			cfg:       noFold,
			entries:   []breakerbox.Transition{opened(1, 0), closed(2, 1), opened(3, 2)},
			now:       t0.Add(3 * time.Second),
			want:      "transition:opened transition:closed transition:opened",
			wantStart: t0.Add(2 * time.Second),
		},
		{
			name:    "stale entries are summarised in one alert",
			cfg:     cfg,
			entries: []breakerbox.Transition{opened(1, 0), halfOpened(2, 30), opened(3, 31), reset(4, 60)},
			now:     t0.Add(time.Hour),
			want:    "summary:opened,half_opened,opened,reset",
		},
		{
			name:    "one stale entry is posted on its own, marked late",
			cfg:     cfg,
			entries: []breakerbox.Transition{opened(1, 0)},
			now:     t0.Add(time.Hour),
			want:    "transition:opened(late)",
		},
		{
			name:      "stale entries are summarised and fresh ones follow",
			cfg:       cfg,
			entries:   []breakerbox.Transition{opened(1, 0), closed(2, 60), opened(3, 3600)},
			now:       t0.Add(3601 * time.Second),
			want:      "summary:opened,closed transition:opened",
			wantStart: t0.Add(time.Hour),
		},
		{
			name:      "a gap in generations counts trimmed transitions",
			cfg:       cfg,
			rec:       record{AckedGen: 10},
			entries:   []breakerbox.Transition{opened(14, 0)},
			now:       t0.Add(time.Second),
			want:      "transition:opened(missed 3)",
			wantStart: t0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, wake := plan("svc", tt.entries, tt.rec, tt.now, tt.cfg)
			if got := describe(steps); got != tt.want {
				t.Errorf("steps = %q, want %q", got, tt.want)
			}
			if !wake.Equal(tt.wantWake) {
				t.Errorf("wake = %v, want %v", wake, tt.wantWake)
			}
			if len(steps) > 0 {
				if got := steps[len(steps)-1].windowStart; !got.Equal(tt.wantStart) {
					t.Errorf("window start = %v, want %v", got, tt.wantStart)
				}
			}
			// Steps cover a prefix of the entries, contiguously and in order.
			i := 0
			for _, s := range steps {
				if s.alert.Breaker != "svc" {
					t.Errorf("alert breaker = %q", s.alert.Breaker)
				}
				for _, e := range s.alert.Transitions {
					if e.ID != tt.entries[i].ID {
						t.Fatalf("step covers %s, want entry %d (%s)", e.ID, i, tt.entries[i].ID)
					}
					i++
				}
			}
			if wake.IsZero() && i != len(tt.entries) {
				t.Errorf("steps cover %d of %d entries and nothing is deferred", i, len(tt.entries))
			}
		})
	}
}

func TestSendingOverlaps(t *testing.T) {
	ts := []breakerbox.Transition{{ID: "100-0"}, {ID: "200-0"}, {ID: "300-1"}}
	tests := []struct {
		sending string
		want    bool
	}{
		{"", false},
		{"100-0 100-0 alertd-1 5", true},
		{"300-1 400-0 alertd-1 5", true},
		{"50-0 99-9 alertd-1 5", false},
		{"300-2 400-0 alertd-1 5", false},
		{"garbage", false},
	}
	for _, tt := range tests {
		if got := sendingOverlaps(tt.sending, ts); got != tt.want {
			t.Errorf("sendingOverlaps(%q) = %v, want %v", tt.sending, got, tt.want)
		}
	}
}

func TestIDOrder(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"1-0", "1-0", true},
		{"1-1", "1-0", false},
		{"9-0", "10-0", true}, // numeric, not lexical
		{"10-0", "9-5", false},
		{"x", "1-0", false},
		{"1-0", "y", false},
	}
	for _, tt := range tests {
		if got := idLessEq(tt.a, tt.b); got != tt.want {
			t.Errorf("idLessEq(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
