package alerts

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
)

// seedOpening is the alert of the seed document, byte for byte.
const seedOpening = "🚨 Circuit Breaker Alert: openai_transcription\n" +
	"\n" +
	"Service:     openai_transcription\n" +
	"State:       OPEN\n" +
	"Failures:    3\n" +
	"Recovery In: 30s\n" +
	"\n" +
	"Last Error:\n" +
	"```\n" +
	"OpenAI API error: Connection timeout\n" +
	"```\n" +
	"\n" +
	"⏰ Alert Time: 2025-10-25 11:30:00 UTC"

func seedTransition() breakerbox.Transition {
	return breakerbox.ParseTransition("1761391800000-0", map[string]any{
		"event": "opened", "from": "closed", "to": "open", "mode": "normal", "generation": "1",
		"time_ms": "1761391800000", "failures": "3", "failure_threshold": "3",
		"recovery_timeout_ms": "30000", "last_error": "OpenAI API error: Connection timeout",
		"outage_ms": "0", "refused": "0", "actor": "",
	})
}

func TestOpeningTextIsTheSeedsAlert(t *testing.T) {
	a := Alert{Kind: KindTransition, Breaker: "openai_transcription", Transitions: []breakerbox.Transition{seedTransition()}}
	if got := a.Text(); got != seedOpening {
		t.Errorf("opening text:\n%s\n--- want ---\n%s", got, seedOpening)
	}
}

func TestAlertTexts(t *testing.T) {
	op := func(event, from, to, mode, actor string) breakerbox.Transition {
		x := tr(5, 0, event, from, to)
		x.Mode, x.Actor, x.Outage, x.Refused = breakerbox.Mode(mode), actor, 135*time.Second, 1234
		return x
	}
	closing := closed(3, 0)
	closing.Outage, closing.Refused = 135*time.Second, 1234
	half := halfOpened(2, 0)
	half.Outage, half.Refused = 30*time.Second, 17
	reopen := tr(4, 0, "opened", "half_open", "open")
	reopen.Failures, reopen.RecoveryTimeout, reopen.Outage, reopen.Refused = 4, 30*time.Second, time.Minute, 99
	flaps := []breakerbox.Transition{opened(4, 3), halfOpened(5, 4), closed(6, 5), opened(7, 6), closed(8, 9)}
	flaps[4].LastError = "dial tcp: refused"
	tests := []struct {
		name string
		a    Alert
		want []string
	}{
		{"closing reports how long it was open and the refused calls",
			Alert{Kind: KindTransition, Breaker: "svc", Transitions: []breakerbox.Transition{closing}},
			[]string{"✅ Circuit Breaker Recovered: svc\n", "State:       CLOSED\n", "Was Open:    2m15s\n",
				"Refused:     1234 calls while open\n", "⏰ Alert Time: 2025-10-25 11:30:00 UTC"}},
		{"half-open reports the outage so far",
			Alert{Kind: KindTransition, Breaker: "svc", Transitions: []breakerbox.Transition{half}},
			[]string{"🔄 Circuit Breaker Half-Open: svc\n", "State:       HALF_OPEN\n", "Open For:    30s so far\n",
				"Refused:     17 calls so far\n"}},
		{"a failed probe's re-opening says so",
			Alert{Kind: KindTransition, Breaker: "svc", Transitions: []breakerbox.Transition{reopen}},
			[]string{"🚨 Circuit Breaker Alert: svc\n", "Failures:    4\n",
				"Reopened:    a recovery probe failed; open for 1m so far, 99 calls refused\n",
				"```\n(no error text recorded)\n```"}},
		{"an opening by a failure rate names the rule",
			Alert{Kind: KindTransition, Breaker: "svc", Transitions: []breakerbox.Transition{withDetail(opened(4, 3), "failure rate 62% >= 50% over 60s, 140 calls")}},
			[]string{"🚨 Circuit Breaker Alert: svc\n", "State:       OPEN\nTripped By:  failure rate 62% >= 50% over 60s, 140 calls\nFailures:"}},
		{"an upstream's retry-after on a probe names it",
			Alert{Kind: KindTransition, Breaker: "svc", Transitions: []breakerbox.Transition{withDetail(reopen, "probe failed; retry-after 2m0s from upstream")}},
			[]string{"Tripped By:  retry-after 2m0s from upstream\n", "Reopened:    a recovery probe failed"}},
		{"consecutive failures and a failed probe need no rule line",
			Alert{Kind: KindTransition, Breaker: "svc", Transitions: []breakerbox.Transition{withDetail(opened(4, 3), "3 consecutive failures")}},
			[]string{"State:       OPEN\nFailures:"}},
		{"reset names its actor and the outage it ended",
			Alert{Kind: KindTransition, Breaker: "svc", Transitions: []breakerbox.Transition{op("reset", "open", "closed", "normal", "cbctl:alice@ops")}},
			[]string{"🛠️ Circuit Breaker Reset: svc\n", "State:       CLOSED (was OPEN)\n", "By:          cbctl:alice@ops\n",
				"Was Open:    2m15s\n", "Refused:     1234 calls while open\n"}},
		{"force-open names its actor and mode",
			Alert{Kind: KindTransition, Breaker: "svc", Transitions: []breakerbox.Transition{op("forced_open", "closed", "open", "forced_open", "go:host:1")}},
			[]string{"⛔ Circuit Breaker Forced Open: svc\n", "State:       OPEN (forced open) (was CLOSED)\n",
				"By:          go:host:1\n", "refused until the breaker is released or reset"}},
		{"disable from closed shows no outage",
			Alert{Kind: KindTransition, Breaker: "svc", Transitions: []breakerbox.Transition{op("disabled", "closed", "closed", "disabled", "")}},
			[]string{"⚠️ Circuit Breaker Disabled: svc\n", "State:       CLOSED (disabled)\n", "By:          unknown\n"}},
		{"release to half-open",
			Alert{Kind: KindTransition, Breaker: "svc", Transitions: []breakerbox.Transition{op("released", "open", "half_open", "normal", "me")}},
			[]string{"▶️ Circuit Breaker Released: svc\n", "probing the upstream before closing"}},
		{"repaired",
			Alert{Kind: KindTransition, Breaker: "svc", Transitions: []breakerbox.Transition{op("repaired", "banana", "closed", "normal", "breakerbox")}},
			[]string{"🩹 Circuit Breaker Repaired: svc\n", "invalid value"}},
		{"flapping counts the re-openings",
			Alert{Kind: KindFlapping, Breaker: "svc", Transitions: flaps, FlapWindow: time.Minute},
			[]string{"🔁 Circuit Breaker Flapping: svc\n", "State:       CLOSED (after the last of them)\n",
				"Flaps:       opened 2 more times in 6s after the opening alert (flap window 1m)\n",
				"Transitions: 5 (opened 2, half_opened 1, closed 2)\n", "```\ndial tcp: refused\n```",
				"⏰ Alert Time: 2025-10-25 11:30:09 UTC"}},
		{"summary of stale transitions",
			Alert{Kind: KindSummary, Breaker: "svc", Transitions: []breakerbox.Transition{opened(1, 0), op("reset", "open", "closed", "normal", "bob")}},
			[]string{"🕰️ Circuit Breaker Summary: svc\n", "2 transitions happened while alerts were not being delivered",
				"Openings:    1\n", "Transitions: 2 (opened 1, reset 1)\n", "By:          bob\n"}},
		{"late, trimmed and repeated alerts say so",
			Alert{Kind: KindTransition, Breaker: "svc", Transitions: []breakerbox.Transition{opened(1, 0)}, Late: time.Hour, Missed: 2, Repeat: true},
			[]string{"Delivered late: this happened 1h before", "2 earlier transition(s) were trimmed", "Possibly a repeat"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := tt.a.Text()
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("text lacks %q:\n%s", w, text)
				}
			}
		})
	}
}

func withDetail(t breakerbox.Transition, d string) breakerbox.Transition {
	t.Detail = d
	return t
}

func TestSlackTextEscapesControlCharacters(t *testing.T) {
	x := opened(1, 0)
	x.LastError = "<html>502 & co</html>"
	a := Alert{Kind: KindTransition, Breaker: "a<b>", Transitions: []breakerbox.Transition{x}}
	got := a.SlackText()
	for _, w := range []string{"Alert: a&lt;b&gt;", "&lt;html&gt;502 &amp; co&lt;/html&gt;"} {
		if !strings.Contains(got, w) {
			t.Errorf("slack text lacks %q:\n%s", w, got)
		}
	}
	if !strings.Contains(a.Text(), "<html>502 & co</html>") {
		t.Errorf("plain text is escaped:\n%s", a.Text())
	}
}

func TestHuman(t *testing.T) {
	tests := map[time.Duration]string{
		0: "0ms", 250 * time.Millisecond: "250ms", 30 * time.Second: "30s", 90 * time.Second: "1m30s",
		2 * time.Hour: "2h", time.Hour + 5*time.Second: "1h5s", 1499 * time.Millisecond: "1s", -time.Second: "0ms",
	}
	for d, want := range tests {
		if got := human(d); got != want {
			t.Errorf("human(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestWriterSinkSeparatesAlerts(t *testing.T) {
	var b strings.Builder
	s, err := NewWriterSink(&b)
	if err != nil {
		t.Fatal(err)
	}
	a := Alert{Kind: KindTransition, Breaker: "openai_transcription", Transitions: []breakerbox.Transition{seedTransition()}}
	for range 2 {
		if retry, err := s.Notify(context.Background(), a); err != nil || retry {
			t.Fatalf("Notify = %v, %v", retry, err)
		}
	}
	if want := seedOpening + "\n\n" + seedOpening + "\n\n"; b.String() != want {
		t.Errorf("written:\n%s", b.String())
	}
	if _, err := NewWriterSink(nil); err == nil {
		t.Error("NewWriterSink(nil) succeeded")
	}
}

// The standard-output sink prints the seed's alert.
func ExampleWriterSink() {
	s, _ := NewWriterSink(os.Stdout)
	a := Alert{Kind: KindTransition, Breaker: "openai_transcription", Transitions: []breakerbox.Transition{seedTransition()}}
	_, _ = s.Notify(context.Background(), a)
	// Output:
	// 🚨 Circuit Breaker Alert: openai_transcription
	//
	// Service:     openai_transcription
	// State:       OPEN
	// Failures:    3
	// Recovery In: 30s
	//
	// Last Error:
	// ```
	// OpenAI API error: Connection timeout
	// ```
	//
	// ⏰ Alert Time: 2025-10-25 11:30:00 UTC
}
