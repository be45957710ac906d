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
//
// The window (docs/protocol.md, "The window") is kept here as a map of
// bucket numbers to counts, summed from scratch whenever it is read: the
// script keeps running sums instead, so a sum that drifted would show.
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

	// Trip rules.
	FailedRounds int64 // probe rounds failed since the breaker left closed (recovery backoff)
	RetryUntil   int64 // an upstream's retry-after: open at least until then
	Buckets      map[int64][3]int64
	Head         int64 // the newest bucket's number
	geometry     string

	leaseSeq int64
}

// ModelEvent is one transition as the stream records it.
type ModelEvent struct {
	Event, From, To, Mode string
	Generation            int64
	Failures              int64
	Recovery              int64  // the stream's recovery_timeout_ms
	Detail                string // the rule that tripped an opening
}

// ModelError is a rejected operation: its code (BADARGS).
type ModelError struct{ Code string }

func (e *ModelError) Error() string { return e.Code }

// NewModel returns a breaker nobody has used, at time now.
func NewModel(now int64) *Model {
	return &Model{Now: now, State: "closed", Mode: "normal", Config: map[string]int64{}, Probes: map[string]int64{},
		Buckets: map[int64][3]int64{}}
}

var modelDefaults = map[string]int64{"failure_threshold": 3, "recovery_timeout_ms": 30000,
	"success_threshold": 2, "request_timeout_ms": 45000, "window_buckets": 10, "minimum_calls": 10,
	"max_retry_after_ms": 600000, "recovery_backoff": 100, "max_recovery_timeout_ms": 600000}

// window is the window the config asks for: kind ("t" or "c", "" for
// none), bucket size (ms or calls) and bucket count, as protocol.md says:
// size = ceil(window / window_buckets), count = ceil(window / size).
func (m *Model) window() (kind string, size, count int64) {
	kind, total := "t", m.Cfg("window_ms")
	if total == 0 {
		kind, total = "c", m.Cfg("window_calls")
	}
	if total == 0 {
		return "", 0, 0
	}
	b := m.Cfg("window_buckets")
	size = (total + b - 1) / b
	return kind, size, (total + size - 1) / size
}

// followWindow drops the window when the config asks for other buckets.
func (m *Model) followWindow() {
	kind, size, count := m.window()
	g := fmt.Sprint(kind, size, count)
	if g != m.geometry {
		m.Buckets, m.Head, m.geometry = map[int64][3]int64{}, 0, g
	}
}

// WindowSums returns calls, failures and slow calls in the window as of
// now: the buckets the clock has not moved past.
func (m *Model) WindowSums() (c, f, s int64) {
	kind, size, count := m.window()
	if kind == "" {
		return 0, 0, 0
	}
	n := m.Head
	if kind == "t" {
		n = max(n, m.Now/size)
	}
	for b, v := range m.Buckets {
		if b > n-count && b <= n {
			c, f, s = c+v[0], f+v[1], s+v[2]
		}
	}
	return c, f, s
}

// addToWindow counts one current outcome recorded in closed.
func (m *Model) addToWindow(failure bool, durationMs string) {
	kind, size, count := m.window()
	if kind == "" {
		return
	}
	if kind == "t" && m.Now/size > m.Head {
		m.Head = m.Now / size
	} else if kind == "c" && m.Buckets[m.Head][0] >= size {
		m.Head++
	}
	for b := range m.Buckets {
		if b <= m.Head-count {
			delete(m.Buckets, b)
		}
	}
	v := m.Buckets[m.Head]
	v[0]++
	if failure {
		v[1]++
	}
	if slow := m.Cfg("slow_call_ms"); slow > 0 && durationMs != "" {
		if d, _ := strconv.ParseInt(durationMs, 10, 64); d >= slow {
			v[2]++
		}
	}
	m.Buckets[m.Head] = v
}

// windowRule is the rate rule the window trips ("failure", "slow") or "".
func (m *Model) windowRule() string {
	c, f, s := m.WindowSums()
	if c == 0 || c < m.Cfg("minimum_calls") {
		return ""
	}
	if fr := m.Cfg("failure_rate_threshold"); fr > 0 && f*100 >= fr*c {
		return "failure"
	}
	if sr := m.Cfg("slow_call_rate_threshold"); sr > 0 && s*100 >= sr*c {
		return "slow"
	}
	return ""
}

// Recovery is the recovery timeout in force: recovery_timeout_ms grown by
// recovery_backoff percent per failed probe round, in whole ms steps of
// at least 1 ms, capped at max(max_recovery_timeout_ms, recovery_timeout_ms).
func (m *Model) Recovery() int64 {
	t := m.Cfg("recovery_timeout_ms")
	b := m.Cfg("recovery_backoff")
	if b <= 100 {
		return t
	}
	ceiling := max(m.Cfg("max_recovery_timeout_ms"), t)
	for i := int64(0); i < m.FailedRounds && t < ceiling; i++ {
		t = min(ceiling, max(t+1, t*b/100))
	}
	return t
}

// OpenUntil is when an open breaker admits its first probe.
func (m *Model) OpenUntil() int64 { return max(m.OpenedAt+m.Recovery(), m.RetryUntil) }

// duration prints ms as the script's texts do: "30s" or "1500ms".
func duration(ms int64) string {
	if ms%1000 == 0 {
		return strconv.FormatInt(ms/1000, 10) + "s"
	}
	return strconv.FormatInt(ms, 10) + "ms"
}

// retryText is the rule text of a retry-after.
func (m *Model) retryText(ra int64) string {
	t := "retry-after " + duration(ra) + " from upstream"
	if c := m.Cfg("max_retry_after_ms"); ra > c {
		t += ", capped at " + duration(c)
	}
	return t
}

// windowText is the rule text of a rate rule.
func (m *Model) windowText(rule string) string {
	c, f, s := m.WindowSums()
	over := "the last " + strconv.FormatInt(m.Cfg("window_calls"), 10) + " calls"
	if w := m.Cfg("window_ms"); w > 0 {
		over = duration(w)
	}
	if rule == "failure" {
		return fmt.Sprintf("failure rate %d%% >= %d%% over %s, %d calls", f*100/c, m.Cfg("failure_rate_threshold"), over, c)
	}
	return fmt.Sprintf("slow calls %d%% >= %d%% (%s or slower) over %s, %d calls", s*100/c,
		m.Cfg("slow_call_rate_threshold"), duration(m.Cfg("slow_call_ms")), over, c)
}

// Percent is a rate as status reports it: one decimal, rounded half up.
func Percent(part, whole int64) string {
	if whole == 0 {
		return "0.0"
	}
	tenths := (2000*part + whole) / (2 * whole)
	return fmt.Sprintf("%d.%d", tenths/10, tenths%10)
}

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
		return max(0, m.OpenUntil()-m.Now)
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

func (m *Model) transition(event, to string) { m.transitionFor(event, to, "", 0) }

// transitionFor is a transition; an opening names its rule (detail) and
// may carry a retry-after's deadline.
func (m *Model) transitionFor(event, to, detail string, retryUntil int64) {
	from := m.State
	if from == "closed" && to == "open" {
		m.OutageStartedAt, m.OutageRefused = m.Now, 0
	}
	if to == "open" {
		m.OpenedAt = m.Now
	}
	m.RetryUntil = retryUntil
	if to == "closed" {
		m.Failures, m.FailedRounds = 0, 0
		m.Buckets, m.Head = map[int64][3]int64{}, 0 // the window counts the closed period that begins
	}
	m.State = to
	m.Generation = max(m.Generation+1, m.Now) // never repeats, never goes back
	m.HalfOpenSucc = 0
	m.Probes = map[string]int64{}
	m.leaseSeq = 0 // lease ids are numbered per generation
	recovery := m.Recovery()
	if to == "open" {
		recovery = m.OpenUntil() - m.Now
	}
	m.Events = append(m.Events, ModelEvent{Event: event, From: from, To: to, Mode: m.Mode,
		Generation: m.Generation, Failures: m.Failures, Recovery: recovery, Detail: detail})
	m.History++
}

// Allow is the allow operation: admitted, and the probe lease (the model's
// own id) when admitted as a half-open probe.
func (m *Model) Allow() (admitted bool, lease string) {
	if m.Mode == "disabled" || (m.Mode == "normal" && m.State == "closed") {
		return true, ""
	}
	if m.Mode == "normal" && m.State == "open" && m.Now >= m.OpenUntil() {
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
	Kind       string // s, f, r
	Gen        int64
	Lease      string
	Error      string
	DurationMs string // "" or decimal digits
	RetryAfter int64  // ms; 0 for none
}

// retryDeadline is a retry-after's deadline, or 0 when there is none or
// the config ignores them.
func (m *Model) retryDeadline(ra int64) int64 {
	if c := m.Cfg("max_retry_after_ms"); ra > 0 && c > 0 {
		return m.Now + min(ra, c)
	}
	return 0
}

// closedOutcome counts a current outcome in closed and checks the rules,
// whichever trips first: a retry-after, consecutive failures, the rates.
func (m *Model) closedOutcome(o ModelOutcome) {
	m.addToWindow(o.Kind == "f", o.DurationMs)
	if m.Mode != "normal" {
		return
	}
	if d := m.retryDeadline(o.RetryAfter); o.Kind == "f" && d > 0 {
		m.transitionFor("opened", "open", m.retryText(o.RetryAfter), d)
	} else if o.Kind == "f" && m.Failures >= m.Cfg("failure_threshold") {
		m.transitionFor("opened", "open", fmt.Sprintf("%d consecutive failures", m.Failures), 0)
	} else if rule := m.windowRule(); rule != "" {
		m.transitionFor("opened", "open", m.windowText(rule), 0)
	}
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
			// A failure while open may carry the upstream's retry-after.
			if d := m.retryDeadline(o.RetryAfter); o.Kind == "f" && m.State == "open" && m.Mode == "normal" && d > m.OpenUntil() {
				m.RetryUntil = d
			}
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
			} else {
				m.closedOutcome(o)
			}
			continue
		}
		m.Failures++
		if m.State == "half_open" {
			// A failed probe round: the recovery timeout in force grows.
			if m.Cfg("recovery_backoff") > 100 && m.Recovery() < max(m.Cfg("max_recovery_timeout_ms"), m.Cfg("recovery_timeout_ms")) {
				m.FailedRounds++
			}
			detail, d := "probe failed", m.retryDeadline(o.RetryAfter)
			if d > 0 {
				detail += "; " + m.retryText(o.RetryAfter)
			}
			m.transitionFor("opened", "open", detail, d)
		} else {
			m.closedOutcome(o)
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

// modelMin and modelMax bound config values (protocol.md, Integers and bounds).
var (
	modelMin = map[string]int64{"failure_threshold": 1, "success_threshold": 1, "half_open_max_calls": 1,
		"recovery_timeout_ms": 1, "request_timeout_ms": 1, "window_ms": 0, "window_calls": 0, "window_buckets": 1,
		"failure_rate_threshold": 0, "slow_call_ms": 0, "slow_call_rate_threshold": 0, "minimum_calls": 1,
		"max_retry_after_ms": 0, "recovery_backoff": 100, "max_recovery_timeout_ms": 1}
	modelMax = map[string]int64{"failure_threshold": 1000000, "success_threshold": 1000000,
		"half_open_max_calls": 1000000, "recovery_timeout_ms": 2592000000, "request_timeout_ms": 2592000000,
		"window_ms": 2592000000, "window_calls": 1000000, "window_buckets": 60, "failure_rate_threshold": 100,
		"slow_call_ms": 2592000000, "slow_call_rate_threshold": 100, "minimum_calls": 1000000,
		"max_retry_after_ms": 2592000000, "recovery_backoff": 1000, "max_recovery_timeout_ms": 2592000000}
)

// conflict says whether the config in force breaks a rule across fields
// (protocol.md, "Trip rules").
func (m *Model) conflict() bool {
	w := m.Cfg("window_ms") > 0 || m.Cfg("window_calls") > 0
	return (m.Cfg("window_ms") > 0 && m.Cfg("window_calls") > 0) ||
		((m.Cfg("failure_rate_threshold") > 0 || m.Cfg("slow_call_rate_threshold") > 0) && !w) ||
		(m.Cfg("slow_call_rate_threshold") > 0 && m.Cfg("slow_call_ms") == 0)
}

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
		if !known || perr != nil || n < modelMin[pairs[i]] || n > hi || strconv.FormatInt(n, 10) != pairs[i+1] {
			return 0, 0, &ModelError{Code: "BADARGS"}
		}
		if _, twice := values[pairs[i]]; !twice {
			order = append(order, pairs[i]) // a field given twice takes its last value
		}
		values[pairs[i]] = n
	}
	before := map[string]int64{}
	for f := range modelMax {
		before[f] = m.Cfg(f)
	}
	// The config these fields leave must hold together; else nothing is stored.
	saved := map[string]int64{}
	for f, v := range m.Config {
		saved[f] = v
	}
	for f, v := range values {
		m.Config[f] = v
	}
	bad := m.conflict()
	m.Config = saved
	if bad {
		return 0, 0, &ModelError{Code: "BADARGS"}
	}
	defer m.followWindow()
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
		// Each value is checked; the fields together are not (nothing is
		// stored, and the stored config is not read).
		for i := 0; i+1 < len(pairs); i += 2 {
			if _, _, err := NewModel(0).Configure(seedAlone(pairs[i], pairs[i+1])); err != nil {
				return 0, 0, err
			}
		}
		if len(pairs)%2 != 0 {
			return 0, 0, &ModelError{Code: "BADARGS"}
		}
		return 0, 0, nil
	}
	return m.Configure(pairs)
}

// seedAlone is one field with the fields it needs to be valid on its own.
func seedAlone(field, value string) []string {
	switch field {
	case "failure_rate_threshold":
		return []string{"window_calls", "1", field, value}
	case "slow_call_rate_threshold":
		return []string{"window_calls", "1", "slow_call_ms", "1", field, value}
	}
	return []string{field, value}
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
	st := map[string]any{
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
		"current_recovery_timeout_ms": m.Recovery(), "retry_until": m.RetryUntil,
	}
	for _, f := range []string{"window_ms", "window_calls", "window_buckets", "failure_rate_threshold",
		"minimum_calls", "slow_call_ms", "slow_call_rate_threshold", "max_retry_after_ms", "recovery_backoff",
		"max_recovery_timeout_ms"} {
		st[f] = m.Cfg(f)
	}
	c, f, s := m.WindowSums()
	st["calls_in_window"], st["failures_in_window"], st["slow_in_window"] = c, f, s
	st["failure_rate"], st["slow_call_rate"] = Percent(f, c), Percent(s, c)
	return st
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
