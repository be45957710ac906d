package breakerbox

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

var eventFields = []string{"ts", "event"}

var transitionFields = []string{"event", "from", "to", "mode", "generation", "time_ms",
	"failures", "failure_threshold", "recovery_timeout_ms", "last_error",
	"outage_ms", "refused", "actor", "transitions", "detail"}

// EventFields returns the fields every JSON entry of a breaker's history
// list (circuit_breaker:{NAME}:history) has. The entries are compact:
// generation appears only where it differs from ts, and from, to, actor,
// error and detail only where the entry needs them (see ParseEvent and
// ParseHistory).
func EventFields() []string { return append([]string(nil), eventFields...) }

// TransitionFields returns the fields of every entry of a breaker's
// transition stream (circuit_breaker:{NAME}:events).
func TransitionFields() []string { return append([]string(nil), transitionFields...) }

// Event is one entry of a breaker's history (circuit_breaker:{NAME}:history,
// newest first): a transition, an operator action or a config change.
type Event struct {
	// Time is TS as a time, UTC; zero when TS is 0.
	Time time.Time `json:"-"`
	// TS is the time of the event in unix ms, Redis's clock.
	TS int64 `json:"ts"`
	// Event is opened, half_opened, closed, reset, forced_open, disabled,
	// released, repaired or config_changed (docs/protocol.md, "Events"),
	// or "unreadable" for an entry that is not valid JSON.
	Event string `json:"event"`
	// From and To are the wire names of the states before and after.
	From string `json:"from"`
	// To: see From.
	To string `json:"to"`
	// Generation after the event (the stored entry leaves it out when it
	// equals TS; ParseEvent fills it in).
	Generation int64 `json:"generation"`
	// Actor names who triggered an operator action.
	Actor string `json:"actor"`
	// Error is the failure that tripped the breaker, on openings.
	Error string `json:"error"`
	// Detail says more: the rule that tripped an opening (see
	// ParseHistory), the changed fields of a config_changed, or the raw
	// text of an unreadable entry.
	Detail string `json:"detail"`
}

// ParseHistory reads history entries, newest first, and fills in what the
// compact entries leave out (docs/protocol.md, Events): To where the event
// says it, From from the entry below (older), a config change's From and
// To from the state it left alone, an opening's rule (Detail) where its
// From implies it ("consecutive failures" from closed, "probe failed" from
// half-open). whole says the list was read to its end
// and was never trimmed (fewer than 100 entries): its oldest entry then
// starts from a new breaker's closed; otherwise the oldest From stays
// empty unless the entry says it.
func ParseHistory(raw []string, whole bool) []Event {
	out := make([]Event, len(raw))
	for i, r := range raw {
		out[i] = ParseEvent(r)
		if out[i].To == "" {
			out[i].To = impliedTo[out[i].Event]
		}
	}
	for i := len(out) - 1; i >= 0; i-- { // oldest first
		if out[i].Event == "unreadable" {
			continue
		}
		prev := ""
		switch {
		case i+1 < len(out) && out[i+1].Event != "unreadable":
			prev = out[i+1].To
		case i+1 == len(out) && whole && len(out) < 100:
			prev = StateClosed.String()
		}
		if out[i].Event == "config_changed" && out[i].To == "" {
			out[i].To = prev
		}
		if out[i].From == "" {
			out[i].From = prev
		}
		if out[i].Event == "opened" && out[i].Detail == "" {
			out[i].Detail = impliedRule[out[i].From]
		}
	}
	return out
}

// impliedRule is the rule an opening's history entry leaves out: from
// closed, consecutive failures (the default rule); from half-open, a
// failed probe. Entries tripped by any other rule say it in detail.
var impliedRule = map[string]string{"closed": "consecutive failures", "half_open": "probe failed"}

// impliedTo is the state each event leaves the breaker in, where the event
// alone says it (released depends on the mode it ends, so it is stored).
var impliedTo = map[string]string{"opened": "open", "half_opened": "half_open", "closed": "closed",
	"reset": "closed", "forced_open": "open", "disabled": "closed", "repaired": "closed"}

// ParseEvent reads one history entry as stored. A generation left out
// means the generation equals TS (the script writes it only where it
// differs); see ParseHistory for the other fields a compact entry leaves
// out. An entry that is not valid JSON (a hand-edited list) is returned as
// an event named "unreadable" with the raw text in Detail.
func ParseEvent(raw string) Event {
	var e struct {
		Event
		Generation *int64 `json:"generation"`
	}
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		return Event{Event: "unreadable", Detail: raw}
	}
	out := e.Event
	out.Generation = out.TS
	if e.Generation != nil {
		out.Generation = *e.Generation
	}
	out.Time = msTime(out.TS)
	return out
}

// Transition is one entry of a breaker's transition stream
// (circuit_breaker:{NAME}:events), as lua/breaker-8.lua writes it: the
// alert daemon's outbox.
type Transition struct {
	// ID is the stream entry ID.
	ID string
	// Event is opened, half_opened, closed, reset, forced_open, disabled,
	// released or repaired (docs/protocol.md, "Events").
	Event string
	// From and To are the wire names of the states before and after:
	// closed, open, half_open (kept as written, so that a hand-written
	// entry still reads).
	From, To string
	// Mode after the transition.
	Mode Mode
	// Generation after the transition: max(previous + 1, Redis ms), so it
	// orders transitions but does not count them.
	Generation int64
	// Transitions counts the breaker's transitions up to this one (0 in
	// entries written before the field existed): a gap means entries were
	// trimmed before they were read.
	Transitions int64
	// Time of the transition on Redis's clock, UTC.
	Time time.Time
	// Failures is the consecutive failure count after the transition.
	Failures int64
	// FailureThreshold is the breaker's config then.
	FailureThreshold int64
	// RecoveryTimeout is, on an opening, how long the breaker stays open
	// before it admits probes (the recovery timeout in force, grown by
	// backoff, or longer when an upstream's retry-after asks); on other
	// transitions, the recovery timeout in force.
	RecoveryTimeout time.Duration
	// Detail names the rule that tripped an opening ("3 consecutive
	// failures", "failure rate 62% >= 50% over 60s, 140 calls", "slow calls
	// ...", "retry-after 30s from upstream", "probe failed"); empty on
	// other transitions and in entries written before the field existed.
	Detail string
	// LastError is the failure that tripped the breaker, on openings only
	// (the script leaves it empty on other transitions).
	LastError string
	// Outage is how long the breaker had been away from closed (0 on the
	// opening itself). Meaningful only when From is not closed.
	Outage time.Duration
	// Refused counts calls refused since the outage began (same caveat).
	Refused int64
	// Actor names who triggered an operator action; empty for automatic
	// transitions.
	Actor string
}

// ParseTransition reads a stream entry (values as go-redis's XMessage
// holds them). Missing or malformed numbers read as 0, and a missing time
// is taken from the entry ID: an entry written by hand must still be read,
// never block the stream.
func ParseTransition(id string, values map[string]any) Transition {
	str := func(k string) string {
		switch v := values[k].(type) {
		case string:
			return v
		case nil:
			return ""
		default:
			return fmt.Sprint(v)
		}
	}
	num := func(k string) int64 {
		n, err := strconv.ParseInt(str(k), 10, 64)
		if err != nil {
			return 0
		}
		return n
	}
	tr := Transition{
		ID: id, Event: str("event"), From: str("from"), To: str("to"), Mode: Mode(str("mode")),
		Generation: num("generation"), Transitions: num("transitions"), Failures: num("failures"),
		FailureThreshold: num("failure_threshold"),
		RecoveryTimeout:  msDuration(num("recovery_timeout_ms")),
		LastError:        str("last_error"),
		Outage:           msDuration(num("outage_ms")),
		Refused:          num("refused"), Actor: str("actor"), Detail: str("detail"),
	}
	ms := num("time_ms")
	if ms <= 0 {
		// The entry ID's first part is Redis's clock too.
		ms, _ = strconv.ParseInt(strings.SplitN(id, "-", 2)[0], 10, 64)
	}
	tr.Time = time.UnixMilli(ms).UTC()
	if tr.Event == "" {
		tr.Event = "unknown"
	}
	return tr
}

// Seq is the entry's place in the breaker's transitions: Transitions, or,
// for an entry written before that field existed, the generation (which
// counted transitions then).
func (t Transition) Seq() int64 {
	if t.Transitions > 0 {
		return t.Transitions
	}
	return t.Generation
}

// Operator reports whether the transition is an operator action (or a
// repair of a corrupted key) rather than a move of the state machine.
func (t Transition) Operator() bool {
	switch t.Event {
	case "opened", "half_opened", "closed":
		return false
	}
	return true
}
