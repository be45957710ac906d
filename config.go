package breakerbox

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"
)

// Config is a breaker's shared configuration. It is stored in Redis with
// the breaker (the circuit_breaker:{NAME}:config hash) so that every
// worker, in any language, uses the same values. Each field's bounds are
// those of the stored hash field named in its comment (see ConfigFields):
// counts are integers from 1 to MaxConfigCount, durations whole
// milliseconds from 1ms to MaxConfigMs ms.
//
// A zero field means the protocol's default for it, as in gobreaker's
// Settings: Config{} is valid and stands for DefaultConfig(). Each field's
// comment names its default (for a trip rule's field that has none, zero
// means the rule is off).
type Config struct {
	// FailureThreshold is how many consecutive failures open the breaker
	// (failure_threshold). Zero means the default, 3; else 1 to
	// MaxConfigCount.
	FailureThreshold int
	// RecoveryTimeout is how long the breaker stays open before it admits
	// probes, on Redis's clock (recovery_timeout_ms). Zero means the
	// default, 30s; else 1ms to MaxConfigMs ms (30 days), stored in
	// whole milliseconds.
	RecoveryTimeout time.Duration
	// SuccessThreshold is how many probe successes close a half-open
	// breaker (success_threshold). Zero means the default, 2; else 1 to
	// MaxConfigCount.
	SuccessThreshold int
	// HalfOpenMaxCalls is how many probes a half-open breaker admits at
	// once across the fleet (half_open_max_calls). Zero means the
	// default: SuccessThreshold (after its own default); else 1 to
	// MaxConfigCount.
	HalfOpenMaxCalls int
	// RequestTimeout bounds a protected call: the Go client's Execute
	// cancels the call's context after it (a timeout is a failure), and a
	// probe's lease expires after it (request_timeout_ms). Zero means the
	// default, 45s; else 1ms to MaxConfigMs ms (30 days), stored in
	// whole milliseconds.
	RequestTimeout time.Duration

	// Trip rules beside consecutive failures (docs/protocol.md, "Trip
	// rules"): each is off while its field is zero, and whichever rule
	// trips first opens the breaker. The rate rules count the current
	// outcomes recorded in closed across the fleet in one sliding window,
	// a time window (Window) or a count window (WindowCalls).

	// Window is a time window: the outcomes of the last Window on Redis's
	// clock (window_ms). Zero: none. 1ms to MaxConfigMs ms; not with
	// WindowCalls.
	Window time.Duration
	// WindowCalls is a count window: the last WindowCalls calls
	// (window_calls). Zero: none. 1 to MaxConfigCount; not with Window.
	WindowCalls int
	// WindowBuckets is how many buckets keep the window (window_buckets):
	// it moves on a bucket at a time. Zero means the default, 10; else 1
	// to MaxWindowBuckets.
	WindowBuckets int
	// FailureRateThreshold opens the breaker when at least this percent of
	// the window's calls failed (failure_rate_threshold), once it holds
	// MinimumCalls. Zero: off; else 1 to 100. Needs a window.
	FailureRateThreshold int
	// MinimumCalls is how many calls the window must hold before a rate
	// rule can trip (minimum_calls). Zero means the default, 10; else 1 to
	// MaxConfigCount.
	MinimumCalls int
	// SlowCallDuration makes a call slow when it took at least this long
	// (slow_call_ms; the Go client measures every call). A slow success
	// still counts as a success. Zero: no call is slow; else 1ms to
	// MaxConfigMs ms.
	SlowCallDuration time.Duration
	// SlowCallRateThreshold opens the breaker when at least this percent
	// of the window's calls were slow (slow_call_rate_threshold), once it
	// holds MinimumCalls. Zero: off; else 1 to 100. Needs a window and
	// SlowCallDuration.
	SlowCallRateThreshold int
	// MaxRetryAfter bounds how long an upstream's retry-after (an HTTP 429
	// or 503 Retry-After, an SDK's rate-limit error) keeps the breaker open
	// (max_retry_after_ms): a failure carrying one opens the breaker at
	// once, fleet-wide, until at least now + min(retry-after,
	// MaxRetryAfter). Zero means the default, 10 minutes; IgnoreRetryAfter
	// (any negative value, stored as 0) turns the rule off; else 1ms to
	// MaxConfigMs ms.
	MaxRetryAfter time.Duration
	// RecoveryBackoff grows the recovery timeout in force after each failed
	// probe round, in percent (recovery_backoff: 200 doubles it), up to
	// MaxRecoveryTimeout; closing restores RecoveryTimeout. Zero means the
	// default, 100: no growth; else 100 to 1000.
	RecoveryBackoff int
	// MaxRecoveryTimeout caps the recovery timeout RecoveryBackoff grows
	// (max_recovery_timeout_ms; never below RecoveryTimeout). Zero means
	// the default, 10 minutes; else 1ms to MaxConfigMs ms.
	MaxRecoveryTimeout time.Duration
}

// IgnoreRetryAfter is the MaxRetryAfter that turns upstream-directed
// opening off: retry-afters are ignored (max_retry_after_ms 0).
const IgnoreRetryAfter time.Duration = -1

// MaxWindowBuckets is the most buckets a window keeps (window_buckets).
const MaxWindowBuckets = 60

// DefaultConfig returns the protocol's defaults, the seed's: 3 failures
// open the breaker, 30s recovery timeout, 2 successes close it, 45s
// request timeout; no window and no rate rule (10 buckets and 10 calls at
// least once one is set), retry-afters honoured up to 10 minutes, no
// recovery backoff (capped at 10 minutes once one is set).
func DefaultConfig() Config {
	return Config{FailureThreshold: 3, RecoveryTimeout: 30 * time.Second,
		SuccessThreshold: 2, RequestTimeout: 45 * time.Second,
		WindowBuckets: 10, MinimumCalls: 10, MaxRetryAfter: 10 * time.Minute, RecoveryBackoff: 100,
		MaxRecoveryTimeout: 10 * time.Minute}
}

// ErrInvalidConfig is matched by the error of a config that cannot be used.
var ErrInvalidConfig = errors.New("invalid breaker config")

// MaxConfigCount is the largest count a field of the :config hash holds
// (failure_threshold, success_threshold, half_open_max_calls), and
// MaxConfigMs the longest duration, in ms (30 days): the BOUNDS table of
// lua/breaker-8.lua and lua/status-8.lua (a test checks that they agree).
const (
	MaxConfigCount int64 = 1_000_000
	MaxConfigMs    int64 = 2_592_000_000
)

// MaxConfigValue is the largest integer any field of the :config hash
// holds (MaxConfigMs).
const MaxConfigValue = MaxConfigMs

// ConfigField describes one field of the :config hash: its bounds, its
// protocol default and the Config field it maps to. ConfigFields is the
// one table of bounds; Config.Validate and ConfigFromFields enforce it,
// and the script enforces the same bounds.
type ConfigField struct {
	// Field is the hash field, for example "failure_threshold".
	Field string
	// GoName is the Config field, for example "FailureThreshold".
	GoName string
	// Min and Max bound the stored integer, inclusive.
	Min, Max int64
	// Default is the value in force while the field is not stored; 0 for
	// half_open_max_calls, which then follows success_threshold.
	Default int64
	// Unit is time.Millisecond for a duration stored in milliseconds, 0
	// for a count.
	Unit time.Duration
	// Rule marks the fields of the trip rules beside consecutive failures
	// (issue 11): a zero Config field means the default, and Fields leaves
	// a field at its default out.
	Rule bool
}

var configFields = [...]ConfigField{
	{Field: "failure_threshold", GoName: "FailureThreshold", Min: 1, Max: MaxConfigCount, Default: 3},
	{Field: "recovery_timeout_ms", GoName: "RecoveryTimeout", Min: 1, Max: MaxConfigMs, Default: 30000, Unit: time.Millisecond},
	{Field: "success_threshold", GoName: "SuccessThreshold", Min: 1, Max: MaxConfigCount, Default: 2},
	{Field: "half_open_max_calls", GoName: "HalfOpenMaxCalls", Min: 1, Max: MaxConfigCount},
	{Field: "request_timeout_ms", GoName: "RequestTimeout", Min: 1, Max: MaxConfigMs, Default: 45000, Unit: time.Millisecond},
	{Field: "window_ms", GoName: "Window", Min: 0, Max: MaxConfigMs, Unit: time.Millisecond, Rule: true},
	{Field: "window_calls", GoName: "WindowCalls", Min: 0, Max: MaxConfigCount, Rule: true},
	{Field: "window_buckets", GoName: "WindowBuckets", Min: 1, Max: MaxWindowBuckets, Default: 10, Rule: true},
	{Field: "failure_rate_threshold", GoName: "FailureRateThreshold", Min: 0, Max: 100, Rule: true},
	{Field: "minimum_calls", GoName: "MinimumCalls", Min: 1, Max: MaxConfigCount, Default: 10, Rule: true},
	{Field: "slow_call_ms", GoName: "SlowCallDuration", Min: 0, Max: MaxConfigMs, Unit: time.Millisecond, Rule: true},
	{Field: "slow_call_rate_threshold", GoName: "SlowCallRateThreshold", Min: 0, Max: 100, Rule: true},
	{Field: "max_retry_after_ms", GoName: "MaxRetryAfter", Min: 0, Max: MaxConfigMs, Default: 600000, Unit: time.Millisecond, Rule: true},
	{Field: "recovery_backoff", GoName: "RecoveryBackoff", Min: 100, Max: 1000, Default: 100, Rule: true},
	{Field: "max_recovery_timeout_ms", GoName: "MaxRecoveryTimeout", Min: 1, Max: MaxConfigMs, Default: 600000, Unit: time.Millisecond, Rule: true},
}

// ConfigFields returns the fields of the :config hash, in the order the
// client writes them, with their bounds.
func ConfigFields() []ConfigField { return configFields[:] }

// ConfigFieldByName returns the field of the :config hash called field.
func ConfigFieldByName(field string) (ConfigField, bool) {
	for _, f := range configFields {
		if f.Field == field {
			return f, true
		}
	}
	return ConfigField{}, false
}

// get returns the Config field f maps to, as a pointer to an int or a
// time.Duration.
func (c *Config) get(f ConfigField) any {
	switch f.GoName {
	case "FailureThreshold":
		return &c.FailureThreshold
	case "RecoveryTimeout":
		return &c.RecoveryTimeout
	case "SuccessThreshold":
		return &c.SuccessThreshold
	case "HalfOpenMaxCalls":
		return &c.HalfOpenMaxCalls
	case "RequestTimeout":
		return &c.RequestTimeout
	case "Window":
		return &c.Window
	case "WindowCalls":
		return &c.WindowCalls
	case "WindowBuckets":
		return &c.WindowBuckets
	case "FailureRateThreshold":
		return &c.FailureRateThreshold
	case "MinimumCalls":
		return &c.MinimumCalls
	case "SlowCallDuration":
		return &c.SlowCallDuration
	case "SlowCallRateThreshold":
		return &c.SlowCallRateThreshold
	case "MaxRetryAfter":
		return &c.MaxRetryAfter
	case "RecoveryBackoff":
		return &c.RecoveryBackoff
	case "MaxRecoveryTimeout":
		return &c.MaxRecoveryTimeout
	}
	panic("breakerbox: config field " + f.GoName + " has no Config field")
}

// Validate reports whether c can be used, naming the first field out of
// its bounds or the rule fields that do not go together. Zero fields are
// valid: they stand for their defaults (a trip rule without one is off);
// MaxRetryAfter may also be negative (IgnoreRetryAfter). The error
// matches ErrInvalidConfig.
func (c Config) Validate() error {
	for _, f := range configFields {
		zero := "0 (the default)"
		switch {
		case f.Field == "half_open_max_calls":
			zero = "0 (same as SuccessThreshold)"
		case f.Rule && f.Default == 0:
			zero = "0 (off)"
		case f.Rule && f.Unit == 0:
			zero = fmt.Sprintf("0 (the default, %d)", f.Default)
		case f.Rule:
			zero = fmt.Sprintf("0 (the default, %s)", msDuration(f.Default))
		}
		switch p := c.get(f).(type) {
		case *int:
			v := int64(*p)
			if v == 0 {
				continue
			}
			if lo := max(f.Min, 1); v < lo || v > f.Max {
				return fmt.Errorf("%w: %s is %d, want %s or %d to %d", ErrInvalidConfig, f.GoName, v, zero, lo, f.Max)
			}
		case *time.Duration:
			d := *p
			if d == 0 || (d < 0 && f.GoName == "MaxRetryAfter") {
				continue
			}
			if lo := time.Duration(max(f.Min, 1)) * f.Unit; d < lo || d/f.Unit > time.Duration(f.Max) {
				return fmt.Errorf("%w: %s is %s, want %s or %s to %d%s", ErrInvalidConfig, f.GoName, d,
					zero, lo, f.Max, unitName(f.Unit))
			}
		}
	}
	switch {
	case c.Window != 0 && c.WindowCalls != 0:
		return fmt.Errorf("%w: Window and WindowCalls are both set: a window is one or the other", ErrInvalidConfig)
	case (c.FailureRateThreshold != 0 || c.SlowCallRateThreshold != 0) && c.Window == 0 && c.WindowCalls == 0:
		return fmt.Errorf("%w: FailureRateThreshold and SlowCallRateThreshold need Window or WindowCalls", ErrInvalidConfig)
	case c.SlowCallRateThreshold != 0 && c.SlowCallDuration == 0:
		return fmt.Errorf("%w: SlowCallRateThreshold needs SlowCallDuration", ErrInvalidConfig)
	}
	return nil
}

func unitName(u time.Duration) string {
	if u == time.Millisecond {
		return "ms"
	}
	return ""
}

// WithDefaults returns c with every zero field replaced by its default
// (HalfOpenMaxCalls by SuccessThreshold; a trip rule's field without a
// default stays zero, off): the config that storing c puts in force.
// A negative MaxRetryAfter (IgnoreRetryAfter) is kept.
func (c Config) WithDefaults() Config {
	for _, f := range configFields {
		switch p := c.get(f).(type) {
		case *int:
			if *p == 0 {
				*p = int(f.Default)
			}
		case *time.Duration:
			if *p == 0 {
				*p = msDuration(f.Default)
			}
		}
	}
	if c.HalfOpenMaxCalls == 0 {
		c.HalfOpenMaxCalls = c.SuccessThreshold
	}
	return c
}

// Fields returns c as the :config hash's fields and values, in the order
// of ConfigFields: the FIELD VALUE arguments of the script's configure and
// seed operations. The five fields of consecutive failures and timeouts
// are always written; a trip rule's field only when it differs from its
// default (a breaker without them keeps its config hash small). Zero
// fields are written as their defaults (see WithDefaults); durations are
// written in whole milliseconds. Validate c first. To overwrite every
// field, rules turned off included, use AllFields.
func (c Config) Fields() []string { return c.fields(false) }

// AllFields is Fields with every trip rule's field written too: an
// explicit change that also turns off the rules c leaves off.
func (c Config) AllFields() []string { return c.fields(true) }

func (c Config) fields(all bool) []string {
	c = c.WithDefaults()
	out := make([]string, 0, 2*len(configFields))
	for _, f := range configFields {
		v := c.stored(f)
		if f.Rule && !all && v == f.Default {
			continue
		}
		out = append(out, f.Field, strconv.FormatInt(v, 10))
	}
	return out
}

// stored is the value field f holds for c.
func (c Config) stored(f ConfigField) int64 {
	var v int64
	switch p := c.get(f).(type) {
	case *int:
		v = int64(*p)
	case *time.Duration:
		if *p < 0 && f.GoName == "MaxRetryAfter" {
			return 0 // IgnoreRetryAfter
		}
		v = int64(*p / f.Unit)
	}
	switch {
	case f.Field == "half_open_max_calls" && v == 0:
		v = int64(c.SuccessThreshold)
	case f.Rule && v == 0:
		v = f.Default
	}
	return v
}

// ConfigFromFields reads a :config hash: an absent field takes its
// default; a field holding anything but decimal digits within its bounds
// is invalid, and so are trip-rule fields that do not go together (the
// script refuses such a hash with BADCONFIG). It returns the config with
// defaults in place of values out of bounds (rule fields that do not go
// together keep theirs: Validate names the problem), and the invalid
// fields' names, sorted. Unknown fields are ignored.
func ConfigFromFields(hash map[string]string) (cfg Config, invalid []string) {
	for _, f := range configFields {
		v := f.Default
		if s, ok := hash[f.Field]; ok {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < f.Min || n > f.Max || !isDecimal(s) {
				invalid = append(invalid, f.Field)
			} else {
				v = n
			}
		}
		switch p := cfg.get(f).(type) {
		case *int:
			*p = int(v)
		case *time.Duration:
			*p = msDuration(v)
			if f.GoName == "MaxRetryAfter" && v == 0 {
				*p = IgnoreRetryAfter
			}
		}
	}
	// Rule fields that do not go together (the script refuses the hash
	// with BADCONFIG too) are invalid, the later of a pair; cfg keeps
	// their values, so that Validate says what is wrong.
	if cfg.Window != 0 && cfg.WindowCalls != 0 {
		invalid = append(invalid, "window_calls")
	}
	if cfg.Window == 0 && cfg.WindowCalls == 0 {
		if cfg.FailureRateThreshold != 0 {
			invalid = append(invalid, "failure_rate_threshold")
		}
		if cfg.SlowCallRateThreshold != 0 {
			invalid = append(invalid, "slow_call_rate_threshold")
		}
	} else if cfg.SlowCallRateThreshold != 0 && cfg.SlowCallDuration == 0 {
		invalid = append(invalid, "slow_call_rate_threshold")
	}
	sort.Strings(invalid)
	return cfg, invalid
}

// msDuration converts stored milliseconds to a Duration, saturating at
// the longest Duration instead of wrapping around.
func msDuration(ms int64) time.Duration {
	if ms > math.MaxInt64/int64(time.Millisecond) {
		return math.MaxInt64
	}
	return time.Duration(ms) * time.Millisecond
}

// isDecimal reports whether s is an integer as the scripts write and
// accept one: "0", or digits without a leading zero (ParseInt also takes a
// sign and leading zeros, which the scripts refuse).
func isDecimal(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s == "0" || (s != "" && s[0] != '0')
}
