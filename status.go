package breakerbox

import (
	"fmt"
	"strconv"
	"time"
)

// Status is a snapshot of one breaker, read atomically by the script's
// status operation. JSON names follow the seed's get_all_circuit_breakers.
type Status struct {
	Name             string        `json:"name"`
	State            State         `json:"state"`
	Mode             Mode          `json:"mode"`
	Generation       int64         `json:"generation"`  // max(previous+1, Redis ms) at each transition
	Transitions      int64         `json:"transitions"` // changes of state or mode so far
	CurrentFailures  int64         `json:"current_failures"`
	FailureThreshold int64         `json:"failure_threshold"`
	SuccessThreshold int64         `json:"success_threshold"`
	HalfOpenMaxCalls int64         `json:"half_open_max_calls"`
	RecoveryTimeout  time.Duration `json:"recovery_timeout_ns"`
	RequestTimeout   time.Duration `json:"request_timeout_ns"`
	// The trip rules' config (see Config).
	Window                time.Duration `json:"window_ns"`
	WindowCalls           int64         `json:"window_calls"`
	WindowBuckets         int64         `json:"window_buckets"`
	FailureRateThreshold  int64         `json:"failure_rate_threshold"`
	MinimumCalls          int64         `json:"minimum_calls"`
	SlowCallDuration      time.Duration `json:"slow_call_ns"`
	SlowCallRateThreshold int64         `json:"slow_call_rate_threshold"`
	MaxRetryAfter         time.Duration `json:"max_retry_after_ns"` // IgnoreRetryAfter when off
	RecoveryBackoff       int64         `json:"recovery_backoff"`
	MaxRecoveryTimeout    time.Duration `json:"max_recovery_timeout_ns"`
	TotalSuccesses        int64         `json:"total_successes"`
	TotalFailures         int64         `json:"total_failures"`
	TotalRefused          int64         `json:"total_refused"`
	TotalRequests         int64         `json:"total_requests"`
	SuccessRate           float64       `json:"success_rate"` // percent of recorded outcomes
	HalfOpenSuccesses     int64         `json:"half_open_successes"`
	Probes                int64         `json:"probes"` // probe leases held, including expired ones not yet swept
	OpenedAt              time.Time     `json:"opened_at,omitzero"`
	RetryAfter            time.Duration `json:"retry_after_ns"` // -1 while forced open
	// CurrentRecoveryTimeout is the recovery timeout in force: the
	// configured one, grown by RecoveryBackoff after failed probe rounds.
	CurrentRecoveryTimeout time.Duration `json:"current_recovery_timeout_ns"`
	// RetryUntil is how long an upstream's retry-after keeps the breaker
	// open (zero: none).
	RetryUntil time.Time `json:"retry_until,omitzero"`
	// The window as of Time: current outcomes recorded in closed (cleared
	// at every transition to closed), and its rates in percent.
	CallsInWindow    int64     `json:"calls_in_window"`
	FailuresInWindow int64     `json:"failures_in_window"`
	SlowInWindow     int64     `json:"slow_in_window"`
	FailureRate      float64   `json:"failure_rate"`
	SlowCallRate     float64   `json:"slow_call_rate"`
	LastFailureTime  time.Time `json:"last_failure_time,omitzero"`
	LastFailureError string    `json:"last_failure_error"`
	Time             time.Time `json:"time"` // Redis's clock when read
	// Corrupt says what status-8.lua found corrupted (values it read as
	// lua/breaker-8.lua would, which repairs them at its next write);
	// empty when nothing is.
	Corrupt string `json:"corrupt,omitempty"`
}

// Config returns the config in force that the status reports.
func (s Status) Config() Config {
	return Config{FailureThreshold: int(s.FailureThreshold), RecoveryTimeout: s.RecoveryTimeout,
		SuccessThreshold: int(s.SuccessThreshold), HalfOpenMaxCalls: int(s.HalfOpenMaxCalls),
		RequestTimeout: s.RequestTimeout, Window: s.Window, WindowCalls: int(s.WindowCalls),
		WindowBuckets: int(s.WindowBuckets), FailureRateThreshold: int(s.FailureRateThreshold),
		MinimumCalls: int(s.MinimumCalls), SlowCallDuration: s.SlowCallDuration,
		SlowCallRateThreshold: int(s.SlowCallRateThreshold), MaxRetryAfter: s.MaxRetryAfter,
		RecoveryBackoff: int(s.RecoveryBackoff), MaxRecoveryTimeout: s.MaxRecoveryTimeout}
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
		"probes": &st.Probes, "window_calls": &st.WindowCalls, "window_buckets": &st.WindowBuckets,
		"failure_rate_threshold": &st.FailureRateThreshold, "minimum_calls": &st.MinimumCalls,
		"slow_call_rate_threshold": &st.SlowCallRateThreshold, "recovery_backoff": &st.RecoveryBackoff,
		"calls_in_window": &st.CallsInWindow, "failures_in_window": &st.FailuresInWindow,
		"slow_in_window": &st.SlowInWindow,
	} {
		*p = m[field].(int64)
	}
	if st.State, err = ParseState(m["state"].(string)); err != nil {
		return st, fmt.Errorf("status field state: %w", err)
	}
	if st.Mode, err = ParseMode(m["mode"].(string)); err != nil {
		return st, fmt.Errorf("status field mode: %w", err)
	}
	for field, p := range map[string]*float64{"success_rate": &st.SuccessRate, "failure_rate": &st.FailureRate,
		"slow_call_rate": &st.SlowCallRate} {
		if *p, err = strconv.ParseFloat(m[field].(string), 64); err != nil {
			return st, fmt.Errorf("status field %s: %w", field, err)
		}
	}
	st.LastFailureError = m["last_failure_error"].(string)
	st.Corrupt = m["corrupt"].(string)
	ms := func(f string) int64 { return m[f].(int64) }
	st.RecoveryTimeout = msDuration(ms("recovery_timeout_ms"))
	st.RequestTimeout = msDuration(ms("request_timeout_ms"))
	st.Window = msDuration(ms("window_ms"))
	st.SlowCallDuration = msDuration(ms("slow_call_ms"))
	st.MaxRetryAfter = msDuration(ms("max_retry_after_ms"))
	if st.MaxRetryAfter == 0 {
		st.MaxRetryAfter = IgnoreRetryAfter
	}
	st.MaxRecoveryTimeout = msDuration(ms("max_recovery_timeout_ms"))
	st.CurrentRecoveryTimeout = msDuration(ms("current_recovery_timeout_ms"))
	st.RetryUntil = msTime(ms("retry_until"))
	st.RetryAfter = retryAfter(ms("retry_after_ms"))
	st.OpenedAt = msTime(ms("opened_at"))
	st.LastFailureTime = msTime(ms("last_failure_time"))
	st.Time = msTime(ms("time_ms"))
	return st, nil
}
