package breakerbox

import (
	"fmt"
	"strconv"
	"time"
)

// Status is a snapshot of one breaker, read atomically by the script's
// status operation. JSON names follow the seed's get_all_circuit_breakers.
type Status struct {
	Name              string        `json:"name"`
	State             State         `json:"state"`
	Mode              Mode          `json:"mode"`
	Generation        int64         `json:"generation"`  // max(previous+1, Redis ms) at each transition
	Transitions       int64         `json:"transitions"` // changes of state or mode so far
	CurrentFailures   int64         `json:"current_failures"`
	FailureThreshold  int64         `json:"failure_threshold"`
	SuccessThreshold  int64         `json:"success_threshold"`
	HalfOpenMaxCalls  int64         `json:"half_open_max_calls"`
	RecoveryTimeout   time.Duration `json:"recovery_timeout_ns"`
	RequestTimeout    time.Duration `json:"request_timeout_ns"`
	TotalSuccesses    int64         `json:"total_successes"`
	TotalFailures     int64         `json:"total_failures"`
	TotalRefused      int64         `json:"total_refused"`
	TotalRequests     int64         `json:"total_requests"`
	SuccessRate       float64       `json:"success_rate"` // percent of recorded outcomes
	HalfOpenSuccesses int64         `json:"half_open_successes"`
	Probes            int64         `json:"probes"` // probe leases held, including expired ones not yet swept
	OpenedAt          time.Time     `json:"opened_at,omitzero"`
	RetryAfter        time.Duration `json:"retry_after_ns"` // -1 while forced open
	LastFailureTime   time.Time     `json:"last_failure_time,omitzero"`
	LastFailureError  string        `json:"last_failure_error"`
	Time              time.Time     `json:"time"` // Redis's clock when read
	// Corrupt says what status-8.lua found corrupted (values it read as
	// lua/breaker-8.lua would, which repairs them at its next write);
	// empty when nothing is.
	Corrupt string `json:"corrupt,omitempty"`
}

// Config returns the config in force that the status reports.
func (s Status) Config() Config {
	return Config{FailureThreshold: int(s.FailureThreshold), RecoveryTimeout: s.RecoveryTimeout,
		SuccessThreshold: int(s.SuccessThreshold), HalfOpenMaxCalls: int(s.HalfOpenMaxCalls),
		RequestTimeout: s.RequestTimeout}
}

// Announcement returns where the breaker stood when the status was read,
// as an announcement would say it.
func (s Status) Announcement() Announcement {
	return Announcement{State: s.State, Generation: s.Generation, Mode: s.Mode, RetryAfter: s.RetryAfter}
}

// msTime converts unix milliseconds of Redis's clock; 0 is the zero time.
func msTime(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// ParseStatus reads the status operation's reply for breaker name: a
// field/value list holding every field of StatusFields. Unknown fields are
// ignored, so that older clients read newer scripts.
func ParseStatus(name string, reply any) (Status, error) {
	m, err := statusMap(reply)
	if err != nil {
		return Status{}, err
	}
	st := Status{Name: name}
	for field, p := range map[string]*int64{
		"generation": &st.Generation, "transitions": &st.Transitions, "current_failures": &st.CurrentFailures,
		"failure_threshold": &st.FailureThreshold, "success_threshold": &st.SuccessThreshold,
		"half_open_max_calls": &st.HalfOpenMaxCalls, "total_successes": &st.TotalSuccesses,
		"total_failures": &st.TotalFailures, "total_refused": &st.TotalRefused,
		"total_requests": &st.TotalRequests, "half_open_successes": &st.HalfOpenSuccesses,
		"probes": &st.Probes,
	} {
		*p = m[field].(int64)
	}
	if st.State, err = ParseState(m["state"].(string)); err != nil {
		return st, fmt.Errorf("status field state: %w", err)
	}
	if st.Mode, err = ParseMode(m["mode"].(string)); err != nil {
		return st, fmt.Errorf("status field mode: %w", err)
	}
	if st.SuccessRate, err = strconv.ParseFloat(m["success_rate"].(string), 64); err != nil {
		return st, fmt.Errorf("status field success_rate: %w", err)
	}
	st.LastFailureError = m["last_failure_error"].(string)
	st.Corrupt = m["corrupt"].(string)
	ms := func(f string) int64 { return m[f].(int64) }
	st.RecoveryTimeout = msDuration(ms("recovery_timeout_ms"))
	st.RequestTimeout = msDuration(ms("request_timeout_ms"))
	st.RetryAfter = retryAfter(ms("retry_after_ms"))
	st.OpenedAt = msTime(ms("opened_at"))
	st.LastFailureTime = msTime(ms("last_failure_time"))
	st.Time = msTime(ms("time_ms"))
	return st, nil
}
