package conformance

import (
	"fmt"
	"sort"
	"strconv"
)

// Model is a reference implementation of one breaker's state machine,
// written from docs/protocol.md alone (not from lua/breaker-8.lua), used to
// check the script on random operation sequences. Time is Now, in ms.
//
// Where the protocol is silent the model makes these choices, each listed
// in docs/conformance.md: every transition drops the probe leases (they
// belong to one half-open period); entering closed sets failures to 0;
// current failures count while disabled (the breaker just never opens);
// force_open is an opening (opened_at, and outage_started_at when it
// leaves closed).
type Model struct {
	Now int64

	State           string // closed, open, half_open
	Mode            string // normal, forced_open, disabled
	Generation      int64
	Failures        int64
	OpenedAt        int64
	HalfOpenSucc    int64
	OutageStartedAt int64
	OutageRefused   int64
	TotalSuccesses  int64
	TotalFailures   int64
	TotalRefused    int64
	LastError       string
	LastFailureTime int64

	Config  map[string]int64 // stored config fields
	Probes  map[string]int64 // lease -> expiry
	Events  []ModelEvent     // every transition, oldest first (the stream before trimming)
	History int              // history entries written (events and config changes)

	leaseSeq int64
}

// ModelEvent is one transition as the stream records it.
type ModelEvent struct {
	Event, From, To, Mode string
	Generation            int64
	Failures              int64
}

// ModelError is a rejected operation: its code (BADARGS).
type ModelError struct{ Code string }

func (e *ModelError) Error() string { return e.Code }

// NewModel returns a breaker nobody has used, at time now.
func NewModel(now int64) *Model {
	return &Model{Now: now, State: "closed", Mode: "normal", Config: map[string]int64{}, Probes: map[string]int64{}}
}

var modelDefaults = map[string]int64{"failure_threshold": 3, "recovery_timeout_ms": 30000,
	"success_threshold": 2, "request_timeout_ms": 45000}

// Cfg returns the config value in force: stored, else the default
// (half_open_max_calls defaults to success_threshold).
func (m *Model) Cfg(field string) int64 {
	if v, ok := m.Config[field]; ok {
		return v
	}
	if field == "half_open_max_calls" {
		return m.Cfg("success_threshold")
	}
	return modelDefaults[field]
}

// RetryAfter is retry_after_ms: -1 while forced open, 0 when not refusing,
// time left of the recovery timeout when open, time until the first lease
// expires when half-open and full.
func (m *Model) RetryAfter() int64 {
	switch {
	case m.Mode == "forced_open":
		return -1
	case m.Mode == "disabled" || m.State == "closed":
		return 0
	case m.State == "open":
		return max(0, m.OpenedAt+m.Cfg("recovery_timeout_ms")-m.Now)
	}
	if int64(len(m.Probes)) < m.Cfg("half_open_max_calls") {
		return 0
	}
	first := int64(-1)
	for _, exp := range m.Probes {
		if first < 0 || exp < first {
			first = exp
		}
	}
	return max(0, first-m.Now)
}

func (m *Model) transition(event, to string) {
	from := m.State
	if from == "closed" && to == "open" {
		m.OutageStartedAt, m.OutageRefused = m.Now, 0
	}
	if to == "open" {
		m.OpenedAt = m.Now
	}
	if to == "closed" {
		m.Failures = 0
	}
	m.State = to
	m.Generation = max(m.Generation+1, m.Now) // never repeats, never goes back
	m.HalfOpenSucc = 0
	m.Probes = map[string]int64{}
	m.leaseSeq = 0 // lease ids are numbered per generation
	m.Events = append(m.Events, ModelEvent{Event: event, From: from, To: to, Mode: m.Mode,
		Generation: m.Generation, Failures: m.Failures})
	m.History++
}

// Allow is the allow operation: admitted, and the probe lease (the model's
// own id) when admitted as a half-open probe.
func (m *Model) Allow() (admitted bool, lease string) {
	if m.Mode == "disabled" || (m.Mode == "normal" && m.State == "closed") {
		return true, ""
	}
	if m.Mode == "normal" && m.State == "open" && m.Now >= m.OpenedAt+m.Cfg("recovery_timeout_ms") {
		m.transition("half_opened", "half_open")
	}
	if m.Mode == "normal" && m.State == "half_open" {
		for l, exp := range m.Probes {
			if exp <= m.Now {
				delete(m.Probes, l)
			}
		}
		if int64(len(m.Probes)) < m.Cfg("half_open_max_calls") {
			m.leaseSeq++
			lease := strconv.FormatInt(m.leaseSeq, 10)
			m.Probes[lease] = m.Now + m.Cfg("request_timeout_ms")
			return true, lease
		}
	}
	m.TotalRefused++
	m.OutageRefused++
	return false, ""
}

// ModelOutcome is one reported outcome.
type ModelOutcome struct {
	Kind  string // s, f, r
	Gen   int64
	Lease string
	Error string
}

// Record is the record operation; it returns counted and stale.
func (m *Model) Record(refused int64, outcomes []ModelOutcome) (counted, stale int64) {
	for _, o := range outcomes {
		current := o.Gen == m.Generation
		if current && m.State == "half_open" {
			exp, held := m.Probes[o.Lease]
			current = o.Lease != "" && held && exp > m.Now
		} else if current && m.State == "open" {
			current = false // nothing is admitted in open: such an outcome cannot be current
		}
		if o.Lease != "" && o.Gen == m.Generation {
			delete(m.Probes, o.Lease) // lease ids are per generation: an older one is another lease
		}
		if o.Kind == "r" {
			continue
		}
		if o.Kind == "s" {
			m.TotalSuccesses++
		} else {
			m.TotalFailures++
			m.LastError, m.LastFailureTime = o.Error, m.Now
		}
		if !current {
			stale++
			continue
		}
		counted++
		if o.Kind == "s" {
			m.Failures = 0
			if m.State == "half_open" {
				m.HalfOpenSucc++
				if m.HalfOpenSucc >= m.Cfg("success_threshold") {
					m.transition("closed", "closed")
				}
			}
			continue
		}
		m.Failures++
		if m.State == "half_open" {
			m.transition("opened", "open")
		} else if m.Mode == "normal" && m.Failures >= m.Cfg("failure_threshold") {
			m.transition("opened", "open")
		}
	}
	if m.State != "closed" {
		m.OutageRefused += refused
	}
	m.TotalRefused += refused
	return counted, stale
}

// Control is the control operation.
func (m *Model) Control(action string) error {
	switch action {
	case "reset":
		m.Mode, m.Failures = "normal", 0
		m.transition("reset", "closed")
	case "force_open":
		m.Mode = "forced_open"
		m.transition("forced_open", "open")
	case "disable":
		m.Mode = "disabled"
		m.transition("disabled", "closed")
	case "release":
		switch m.Mode {
		case "forced_open":
			m.Mode = "normal"
			m.transition("released", "half_open")
		case "disabled":
			m.Mode, m.Failures = "normal", 0
			m.transition("released", "closed")
		}
	default:
		return &ModelError{Code: "BADARGS"}
	}
	return nil
}

// modelMax bounds config values (protocol.md, Integers and bounds).
var modelMax = map[string]int64{"failure_threshold": 1000000, "success_threshold": 1000000,
	"half_open_max_calls": 1000000, "recovery_timeout_ms": 2592000000, "request_timeout_ms": 2592000000}

// Configure is the configure operation with FIELD VALUE pairs.
func (m *Model) Configure(pairs []string) (written, overwritten int64, err error) {
	if len(pairs)%2 != 0 {
		return 0, 0, &ModelError{Code: "BADARGS"}
	}
	values := map[string]int64{}
	var order []string
	for i := 0; i < len(pairs); i += 2 {
		n, perr := strconv.ParseInt(pairs[i+1], 10, 64)
		hi, known := modelMax[pairs[i]]
		if !known || perr != nil || n < 1 || n > hi || strconv.FormatInt(n, 10) != pairs[i+1] {
			return 0, 0, &ModelError{Code: "BADARGS"}
		}
		values[pairs[i]] = n
		order = append(order, pairs[i])
	}
	before := map[string]int64{}
	for f := range modelMax {
		before[f] = m.Cfg(f)
	}
	for _, f := range order {
		old, had := m.Config[f]
		if had && old == values[f] {
			continue
		}
		written++
		if had {
			overwritten++
		}
		m.Config[f] = values[f]
	}
	for f := range modelMax {
		if _, set := values[f]; set && before[f] != m.Cfg(f) {
			m.History++ // one config_changed entry for the call
			break
		}
	}
	return written, overwritten, nil
}

// Seed is the seed operation: the fields are stored only when no config is
// stored at all.
func (m *Model) Seed(pairs []string) (written, overwritten int64, err error) {
	if len(m.Config) > 0 {
		if _, _, err := NewModel(0).Configure(pairs); err != nil {
			return 0, 0, err
		}
		return 0, 0, nil
	}
	return m.Configure(pairs)
}

// Tally adds to the lifetime totals only.
func (m *Model) Tally(successes, failures, refused int64) []any {
	m.TotalSuccesses += successes
	m.TotalFailures += failures
	m.TotalRefused += refused
	return []any{m.TotalSuccesses, m.TotalFailures, m.TotalRefused}
}

// Status returns the status fields the model knows, as the script reports
// them (integers as int64, texts as strings). success_rate is left out:
// protocol.md gives only an example of its format.
func (m *Model) Status() map[string]any {
	return map[string]any{
		"state": m.State, "mode": m.Mode, "generation": m.Generation, "transitions": int64(len(m.Events)),
		"current_failures":  m.Failures,
		"failure_threshold": m.Cfg("failure_threshold"), "success_threshold": m.Cfg("success_threshold"),
		"half_open_max_calls": m.Cfg("half_open_max_calls"), "recovery_timeout_ms": m.Cfg("recovery_timeout_ms"),
		"request_timeout_ms": m.Cfg("request_timeout_ms"), "total_successes": m.TotalSuccesses,
		"total_failures": m.TotalFailures, "total_refused": m.TotalRefused,
		"total_requests":      m.TotalSuccesses + m.TotalFailures + m.TotalRefused,
		"half_open_successes": m.HalfOpenSucc, "probes": int64(len(m.Probes)), "opened_at": m.OpenedAt,
		"retry_after_ms": m.RetryAfter(), "last_failure_time": m.LastFailureTime,
		"last_failure_error": m.LastError, "time_ms": m.Now, "corrupt": "",
	}
}

// diffStatus lists the fields where a status reply differs from the model.
func diffStatus(want map[string]any, got map[string]any) []string {
	var out []string
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !sameValue(want[k], got[k]) {
			out = append(out, fmt.Sprintf("%s: model %s, script %s", k, show(want[k]), show(got[k])))
		}
	}
	return out
}
