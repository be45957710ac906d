package alerts

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/breakerbox/breakerbox"
)

// Kind says what an Alert is about.
type Kind string

// The kinds of alerts.
const (
	// KindTransition is one transition posted on its own.
	KindTransition Kind = "transition"
	// KindFlapping folds the openings (and the transitions between them)
	// that followed an opening alert within the flap window.
	KindFlapping Kind = "flapping"
	// KindSummary summarises transitions that were stale when read.
	KindSummary Kind = "summary"
)

// Alert is one message for a sink: a single transition, or several folded
// together. Text renders it for people.
type Alert struct {
	// Kind says how Transitions are to be read.
	Kind Kind
	// Breaker is the breaker's name.
	Breaker string
	// Transitions covered, in stream order; exactly one for KindTransition.
	Transitions []breakerbox.Transition
	// FlapWindow is the window the transitions of a KindFlapping alert
	// were folded in.
	FlapWindow time.Duration
	// Late is set on a single transition read more than StaleAfter after it
	// happened: how long after.
	Late time.Duration
	// Missed counts transitions trimmed from the stream (it keeps 1,000)
	// before they could be read, from the gap in generations.
	Missed int64
	// Repeat is set when an earlier attempt to post this alert may have
	// reached the channel already: its daemon died while posting, or the
	// request failed without the sink saying it did not post.
	Repeat bool
	// Remade is set on an opening that repeats one already posted, with no
	// closing posted in between: a Redis failover lost the first opening
	// (the promoted replica had the breaker closed) and the workers
	// tripped the breaker again. It is that first opening.
	Remade *breakerbox.Transition
}

// First returns the first transition covered.
func (a Alert) First() breakerbox.Transition {
	if len(a.Transitions) == 0 {
		return breakerbox.Transition{}
	}
	return a.Transitions[0]
}

// Last returns the last transition covered: the breaker's state after it
// is the state the alert reports.
func (a Alert) Last() breakerbox.Transition {
	if len(a.Transitions) == 0 {
		return breakerbox.Transition{}
	}
	return a.Transitions[len(a.Transitions)-1]
}

// Count returns how many covered transitions have the given event name.
func (a Alert) Count(event string) int {
	n := 0
	for _, t := range a.Transitions {
		if t.Event == event {
			n++
		}
	}
	return n
}

// Title is the alert's first line, without the breaker name's escaping.
func (a Alert) Title() string { return a.title(plain) }

// Text renders the alert as plain text: the seed's format for an opening,
// and the same style for every other kind.
func (a Alert) Text() string { return a.render(plain) }

// SlackText renders the alert for Slack: as Text, with &, < and > escaped
// as Slack's message formatting requires.
func (a Alert) SlackText() string { return a.render(slackEscape) }

func plain(s string) string { return s }

var slackReplacer = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func slackEscape(s string) string { return slackReplacer.Replace(s) }

// TimeLayout is how alerts print times, as in the seed ("2025-10-25 11:30:00 UTC").
const TimeLayout = "2006-01-02 15:04:05 UTC"

var eventTitles = map[string]string{
	"opened":      "🚨 Circuit Breaker Alert",
	"half_opened": "🔄 Circuit Breaker Half-Open",
	"closed":      "✅ Circuit Breaker Recovered",
	"reset":       "🛠️ Circuit Breaker Reset",
	"forced_open": "⛔ Circuit Breaker Forced Open",
	"disabled":    "⚠️ Circuit Breaker Disabled",
	"released":    "▶️ Circuit Breaker Released",
	"repaired":    "🩹 Circuit Breaker Repaired",
}

func (a Alert) title(esc func(string) string) string {
	switch a.Kind {
	case KindFlapping:
		return "🔁 Circuit Breaker Flapping: " + esc(a.Breaker)
	case KindSummary:
		return "🕰️ Circuit Breaker Summary: " + esc(a.Breaker)
	}
	t := a.Last()
	if title, ok := eventTitles[t.Event]; ok {
		return title + ": " + esc(a.Breaker)
	}
	return "ℹ️ Circuit Breaker " + esc(t.Event) + ": " + esc(a.Breaker)
}

// lines collects "Label:       value" lines aligned as in the seed.
type lines struct{ b strings.Builder }

func (l *lines) field(label, value string) {
	fmt.Fprintf(&l.b, "%-13s%s\n", label+":", value)
}

func (l *lines) line(s string) { l.b.WriteString(s + "\n") }

func (l *lines) codeBlock(label, text string) {
	if text == "" {
		text = "(no error text recorded)"
	}
	l.line(label + ":")
	l.line("```")
	l.line(text)
	l.line("```")
}

func (a Alert) render(esc func(string) string) string {
	var l lines
	l.line(a.title(esc))
	l.line("")
	switch a.Kind {
	case KindFlapping:
		a.renderFlapping(&l, esc)
	case KindSummary:
		a.renderSummary(&l, esc)
	default:
		a.renderTransition(&l, esc)
	}
	l.line("")
	if a.Late > 0 {
		l.line("⏳ Delivered late: this happened " + human(a.Late) + " before the alerts daemon read it.")
	}
	if a.Missed > 0 {
		l.line(fmt.Sprintf("ℹ️ %d earlier transition(s) were trimmed from the stream before they could be read.", a.Missed))
	}
	if a.Remade != nil {
		l.line("🔂 Same outage, re-made after a Redis failover: its opening was posted at " +
			a.Remade.Time.UTC().Format(TimeLayout) + " and no recovery since; the failover lost that transition and the workers tripped the breaker again.")
	}
	if a.Repeat {
		l.line("⚠️ Possibly a repeat: an earlier attempt to post this alert may have reached the channel (a daemon stopped while posting it, or the request failed without an answer).")
	}
	l.line("⏰ Alert Time: " + a.Last().Time.UTC().Format(TimeLayout))
	return strings.TrimRight(l.b.String(), "\n")
}

// stateText prints a state and its mode when the mode is not normal.
func stateText(state string, mode breakerbox.Mode) string {
	s := strings.ToUpper(state)
	if s == "" {
		s = "UNKNOWN"
	}
	if mode != "" && mode != "normal" {
		s += " (" + strings.ReplaceAll(string(mode), "_", " ") + ")"
	}
	return s
}

func (a Alert) renderTransition(l *lines, esc func(string) string) {
	t := a.Last()
	l.field("Service", esc(a.Breaker))
	switch t.Event {
	case "opened":
		l.field("State", stateText(t.To, t.Mode))
		if rule := tripRule(t); rule != "" {
			l.field("Tripped By", esc(rule))
		}
		l.field("Failures", strconv.FormatInt(t.Failures, 10))
		l.field("Recovery In", human(t.RecoveryTimeout))
		if t.From == "half_open" {
			l.field("Reopened", fmt.Sprintf("a recovery probe failed; open for %s so far, %d calls refused", human(t.Outage), t.Refused))
		}
		l.line("")
		l.codeBlock("Last Error", esc(t.LastError))
		return
	case "half_opened":
		l.field("State", stateText(t.To, t.Mode))
		l.field("Open For", human(t.Outage)+" so far")
		l.field("Refused", fmt.Sprintf("%d calls so far", t.Refused))
		l.line("")
		l.line("Recovery timeout passed: probing the upstream with a few calls.")
		return
	case "closed":
		l.field("State", stateText(t.To, t.Mode))
		l.field("Was Open", human(t.Outage))
		l.field("Refused", fmt.Sprintf("%d calls while open", t.Refused))
		return
	}
	// Operator actions and repairs.
	state := stateText(t.To, t.Mode)
	if t.From != "" && t.From != t.To {
		state += " (was " + strings.ToUpper(t.From) + ")"
	}
	l.field("State", state)
	actor := t.Actor
	if actor == "" {
		actor = "unknown"
	}
	l.field("By", esc(actor))
	if t.From != "" && t.From != "closed" {
		l.field("Was Open", human(t.Outage))
		l.field("Refused", fmt.Sprintf("%d calls while open", t.Refused))
	}
	l.line("")
	l.line(operatorNote(t))
}

// tripRule is the rule an opening names when it is not what the seed's
// alert already says: consecutive failures (its Failures line) and a
// failed probe (its Reopened line) go without one; a failure rate, slow
// calls or an upstream's retry-after are named (docs/protocol.md, Trip
// rules).
func tripRule(t breakerbox.Transition) string {
	switch d := t.Detail; {
	case d == "", strings.HasSuffix(d, " consecutive failures"), d == "probe failed":
		return ""
	default:
		return strings.TrimPrefix(d, "probe failed; ")
	}
}

func operatorNote(t breakerbox.Transition) string {
	switch t.Event {
	case "reset":
		return "Consecutive failures cleared and overrides lifted: calls are admitted again."
	case "forced_open":
		return "Every call is refused until the breaker is released or reset."
	case "disabled":
		return "Every call is admitted and the breaker will not open until it is released or reset."
	case "released":
		if t.To == "half_open" {
			return "Override lifted: probing the upstream before closing."
		}
		return "Override lifted: back to normal operation."
	case "repaired":
		return "The state key held an invalid value and was repaired to closed."
	}
	return "breakerbox.Transition " + t.Event + "."
}

// eventOrder lists the event names in the order counts are printed.
var eventOrder = []string{"opened", "half_opened", "closed", "reset", "forced_open", "disabled", "released", "repaired"}

// eventCounts prints "12 (opened 4, half_opened 4, closed 4)".
func (a Alert) eventCounts(esc func(string) string) string {
	counts := map[string]int{}
	for _, t := range a.Transitions {
		counts[t.Event]++
	}
	var parts []string
	for _, e := range eventOrder {
		if counts[e] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", e, counts[e]))
			delete(counts, e)
		}
	}
	rest := make([]string, 0, len(counts))
	for e := range counts {
		rest = append(rest, e)
	}
	sort.Strings(rest)
	for _, e := range rest {
		parts = append(parts, fmt.Sprintf("%s %d", esc(e), counts[e]))
	}
	return fmt.Sprintf("%d (%s)", len(a.Transitions), strings.Join(parts, ", "))
}

// actors lists the distinct non-empty actors, in order of appearance.
func (a Alert) actors() []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range a.Transitions {
		if t.Actor != "" && !seen[t.Actor] {
			seen[t.Actor] = true
			out = append(out, t.Actor)
		}
	}
	return out
}

func (a Alert) renderFlapping(l *lines, esc func(string) string) {
	first, last := a.First(), a.Last()
	l.field("Service", esc(a.Breaker))
	l.field("State", stateText(last.To, last.Mode)+" (after the last of them)")
	times := "times"
	if a.Count("opened") == 1 {
		times = "time"
	}
	l.field("Flaps", fmt.Sprintf("opened %d more %s in %s after the opening alert (flap window %s)",
		a.Count("opened"), times, human(last.Time.Sub(first.Time)), human(a.FlapWindow)))
	l.field("Transitions", a.eventCounts(esc))
	l.field("Between", first.Time.UTC().Format("15:04:05")+" and "+last.Time.UTC().Format("15:04:05")+" UTC")
	l.line("")
	l.codeBlock("Last Error", esc(a.lastError()))
}

func (a Alert) renderSummary(l *lines, esc func(string) string) {
	first, last := a.First(), a.Last()
	l.line(fmt.Sprintf("%d transitions happened while alerts were not being delivered; here they are in one message.", len(a.Transitions)))
	l.line("")
	l.field("Service", esc(a.Breaker))
	l.field("State", stateText(last.To, last.Mode)+" (after the last of them)")
	l.field("Openings", strconv.Itoa(a.Count("opened")))
	l.field("Transitions", a.eventCounts(esc))
	l.field("Between", first.Time.UTC().Format("2006-01-02 15:04:05")+" and "+last.Time.UTC().Format(TimeLayout))
	if actors := a.actors(); len(actors) > 0 {
		for i := range actors {
			actors[i] = esc(actors[i])
		}
		l.field("By", strings.Join(actors, ", "))
	}
	l.line("")
	l.codeBlock("Last Error", esc(a.lastError()))
}

// lastError is the error of the latest opening the alert covers.
func (a Alert) lastError() string {
	for i := len(a.Transitions) - 1; i >= 0; i-- {
		if e := a.Transitions[i].LastError; e != "" {
			return e
		}
	}
	return ""
}

// human prints a duration the way people write it: 30s, 1m30s, 2h, 250ms.
func human(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	d = d.Round(time.Second)
	h, m, s := int64(d/time.Hour), int64(d/time.Minute%60), int64(d/time.Second%60)
	var b strings.Builder
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if s > 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}
