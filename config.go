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
// comment names its default.
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
}

// DefaultConfig returns the protocol's defaults, the seed's: 3 failures
// open the breaker, 30s recovery timeout, 2 successes close it, 45s
// request timeout.
func DefaultConfig() Config {
	return Config{FailureThreshold: 3, RecoveryTimeout: 30 * time.Second,
		SuccessThreshold: 2, RequestTimeout: 45 * time.Second}
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
}

var configFields = [...]ConfigField{
	{Field: "failure_threshold", GoName: "FailureThreshold", Min: 1, Max: MaxConfigCount, Default: 3},
	{Field: "recovery_timeout_ms", GoName: "RecoveryTimeout", Min: 1, Max: MaxConfigMs, Default: 30000, Unit: time.Millisecond},
	{Field: "success_threshold", GoName: "SuccessThreshold", Min: 1, Max: MaxConfigCount, Default: 2},
	{Field: "half_open_max_calls", GoName: "HalfOpenMaxCalls", Min: 1, Max: MaxConfigCount},
	{Field: "request_timeout_ms", GoName: "RequestTimeout", Min: 1, Max: MaxConfigMs, Default: 45000, Unit: time.Millisecond},
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
	}
	panic("breakerbox: config field " + f.GoName + " has no Config field")
}

// Validate reports whether c can be used, naming the first field out of
// its bounds. Zero fields are valid: they stand for their defaults. The
// error matches ErrInvalidConfig.
func (c Config) Validate() error {
	for _, f := range configFields {
		switch p := c.get(f).(type) {
		case *int:
			if v := int64(*p); v != 0 && (v < f.Min || v > f.Max) {
				return fmt.Errorf("%w: %s is %d, want 0 (the default) or %d to %d", ErrInvalidConfig, f.GoName, v, f.Min, f.Max)
			}
		case *time.Duration:
			if d := *p; d != 0 && (d < time.Duration(f.Min)*f.Unit || d/f.Unit > time.Duration(f.Max)) {
				return fmt.Errorf("%w: %s is %s, want 0 (the default) or %s to %d%s", ErrInvalidConfig, f.GoName, d,
					time.Duration(f.Min)*f.Unit, f.Max, unitName(f.Unit))
			}
		}
	}
	return nil
}

// WithDefaults returns c with every zero field replaced by its default
// (HalfOpenMaxCalls by SuccessThreshold): the config that storing c puts
// in force.
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

func unitName(u time.Duration) string {
	if u == time.Millisecond {
		return "ms"
	}
	return ""
}

// Fields returns c as the :config hash's fields and values, in the order
// of ConfigFields: the FIELD VALUE arguments of the script's configure
// and seed operations. Zero fields are written as their defaults (see
// WithDefaults); durations are written in whole milliseconds. Validate c
// first.
func (c Config) Fields() []string {
	c = c.WithDefaults()
	out := make([]string, 0, 2*len(configFields))
	for _, f := range configFields {
		var v int64
		switch p := c.get(f).(type) {
		case *int:
			v = int64(*p)
		case *time.Duration:
			v = int64(*p / f.Unit)
		}
		out = append(out, f.Field, strconv.FormatInt(v, 10))
	}
	return out
}

// ConfigFromFields reads a :config hash: an absent field takes its
// default; a field holding anything but decimal digits within its bounds
// is invalid (the script refuses such a hash with BADCONFIG).
// It returns the config with defaults in place of invalid fields, and the
// invalid fields' names, sorted. Unknown fields are ignored.
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
		}
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

// isDecimal reports whether s is digits only (ParseInt also takes a sign).
func isDecimal(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
