package cbctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
)

// configFlag is one flag of cbctl config: the :config hash field it sets.
type configFlag struct {
	flag, field string
	dur         bool   // a duration (time.ParseDuration), stored in whole milliseconds
	usage       string // help text
}

// configFlags are the flags of cbctl config, in the order of
// breakerbox.ConfigFields: every field of the shared config has one.
var configFlags = []configFlag{
	{"failure-threshold", "failure_threshold", false, "consecutive failures that open the breaker"},
	{"recovery-timeout", "recovery_timeout_ms", true, "how long the breaker stays open before probing"},
	{"success-threshold", "success_threshold", false, "probe successes that close a half-open breaker"},
	{"half-open-max-calls", "half_open_max_calls", false, "probes admitted at once across the fleet"},
	{"request-timeout", "request_timeout_ms", true, "bound on a protected call; a probe lease's lifetime"},
	{"window", "window_ms", true, "time window of the rate rules (0: none)"},
	{"window-calls", "window_calls", false, "count window of the rate rules: the last N calls (0: none)"},
	{"window-buckets", "window_buckets", false, "buckets that keep the window, 1 to 60"},
	{"failure-rate", "failure_rate_threshold", false, "open at this percent of failures in the window (0: off)"},
	{"minimum-calls", "minimum_calls", false, "calls the window needs before a rate rule can open the breaker"},
	{"slow-call", "slow_call_ms", true, "a call at least this long is slow (0: none is)"},
	{"slow-call-rate", "slow_call_rate_threshold", false, "open at this percent of slow calls in the window (0: off)"},
	{"max-retry-after", "max_retry_after_ms", true, "longest an upstream's retry-after keeps the breaker open (0: ignore retry-afters)"},
	{"recovery-backoff", "recovery_backoff", false, "percent the recovery timeout grows by after a failed probe round (100: none)"},
	{"max-recovery-timeout", "max_recovery_timeout_ms", true, "cap of the recovery timeout's growth"},
}

// flagFor returns the flag that sets field.
func flagFor(field string) string {
	for _, f := range configFlags {
		if f.field == field {
			return f.flag
		}
	}
	return field
}

// rawFlag keeps a flag's text; runConfig parses and checks it.
type rawFlag struct{ text string }

func (r *rawFlag) String() string     { return r.text }
func (r *rawFlag) Set(s string) error { r.text = s; return nil }

// configView is the shared config as config prints it: every field of the
// :config hash as stored (durations in ms; 0 where a rule is off).
type configView struct {
	Name                  string   `json:"name"`
	FailureThreshold      int64    `json:"failure_threshold"`
	RecoveryTimeoutMs     int64    `json:"recovery_timeout_ms"`
	SuccessThreshold      int64    `json:"success_threshold"`
	HalfOpenMaxCalls      int64    `json:"half_open_max_calls"`
	RequestTimeoutMs      int64    `json:"request_timeout_ms"`
	WindowMs              int64    `json:"window_ms"`
	WindowCalls           int64    `json:"window_calls"`
	WindowBuckets         int64    `json:"window_buckets"`
	FailureRateThreshold  int64    `json:"failure_rate_threshold"`
	MinimumCalls          int64    `json:"minimum_calls"`
	SlowCallMs            int64    `json:"slow_call_ms"`
	SlowCallRateThreshold int64    `json:"slow_call_rate_threshold"`
	MaxRetryAfterMs       int64    `json:"max_retry_after_ms"`
	RecoveryBackoff       int64    `json:"recovery_backoff"`
	MaxRecoveryTimeoutMs  int64    `json:"max_recovery_timeout_ms"`
	Changed               []string `json:"changed,omitempty"`
}

// values returns the view's fields by :config hash field.
func (v *configView) values() map[string]*int64 {
	return map[string]*int64{"failure_threshold": &v.FailureThreshold, "recovery_timeout_ms": &v.RecoveryTimeoutMs,
		"success_threshold": &v.SuccessThreshold, "half_open_max_calls": &v.HalfOpenMaxCalls,
		"request_timeout_ms": &v.RequestTimeoutMs, "window_ms": &v.WindowMs, "window_calls": &v.WindowCalls,
		"window_buckets": &v.WindowBuckets, "failure_rate_threshold": &v.FailureRateThreshold,
		"minimum_calls": &v.MinimumCalls, "slow_call_ms": &v.SlowCallMs,
		"slow_call_rate_threshold": &v.SlowCallRateThreshold, "max_retry_after_ms": &v.MaxRetryAfterMs,
		"recovery_backoff": &v.RecoveryBackoff, "max_recovery_timeout_ms": &v.MaxRecoveryTimeoutMs}
}

// fieldsOf returns cfg as the :config hash holds it, every field.
func fieldsOf(cfg breakerbox.Config) map[string]string {
	all := cfg.AllFields()
	out := make(map[string]string, len(all)/2)
	for i := 0; i+1 < len(all); i += 2 {
		out[all[i]] = all[i+1]
	}
	return out
}

func viewOf(name string, cfg breakerbox.Config) configView {
	v := configView{Name: name}
	vals := v.values()
	for f, s := range fieldsOf(cfg) {
		if p := vals[f]; p != nil {
			*p, _ = strconv.ParseInt(s, 10, 64)
		}
	}
	return v
}

func (v configView) diff(old configView) []string {
	var out []string
	now, was := v.values(), old.values()
	for _, f := range breakerbox.ConfigFields() {
		if a, b := *now[f.Field], *was[f.Field]; a != b {
			out = append(out, fmt.Sprintf("%s %d -> %d", f.Field, b, a))
		}
	}
	return out
}

func setupConfig(fs *flag.FlagSet) runFunc {
	vals := map[string]*rawFlag{}
	for _, f := range configFlags {
		v := &rawFlag{}
		vals[f.flag] = v
		fs.Var(v, f.flag, f.usage)
	}
	return func(ctx context.Context, e *env, args []string) error {
		given := map[string]string{}
		fs.Visit(func(f *flag.Flag) {
			if v, ok := vals[f.Name]; ok {
				given[f.Name] = v.text
			}
		})
		return runConfig(ctx, e, args, given)
	}
}

// storedValue reads a flag's text as the value its field stores, checked
// against the field's bounds (a zero that the field cannot hold is the
// usage error of a flag given as 0).
func storedValue(cf configFlag, text string) (string, error) {
	f, _ := breakerbox.ConfigFieldByName(cf.field)
	var n int64
	if cf.dur {
		d, err := time.ParseDuration(text)
		if err != nil || d < 0 {
			return "", usageErrorf("--%s %q: want a duration such as 30s or 1500ms", cf.flag, text)
		}
		if d%time.Millisecond != 0 {
			return "", usageErrorf("--%s %s: durations are stored in whole milliseconds", cf.flag, d)
		}
		n = d.Milliseconds()
	} else {
		v, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return "", usageErrorf("--%s %q: want an integer", cf.flag, text)
		}
		n = v
	}
	if n < f.Min || n > f.Max {
		lo, hi := strconv.FormatInt(f.Min, 10), strconv.FormatInt(f.Max, 10)
		if cf.dur {
			lo, hi = (time.Duration(f.Min) * time.Millisecond).String(), (time.Duration(f.Max) * time.Millisecond).String()
		}
		return "", usageErrorf("--%s %s: want %s to %s", cf.flag, text, lo, hi)
	}
	return strconv.FormatInt(n, 10), nil
}

func runConfig(ctx context.Context, e *env, args []string, given map[string]string) error {
	name, err := oneName("config", args)
	if err != nil {
		return err
	}
	ctx, cancel, err := e.openBreaker(ctx, name)
	if err != nil {
		return err
	}
	defer cancel()
	changing := len(given) > 0
	st, err := admin.Status(ctx, e.rdb, name)
	var base breakerbox.Config
	switch {
	case err != nil && changing && errors.Is(err, breakerbox.ErrBadConfig):
		// The stored config holds an invalid value: start from the hash
		// itself, and insist that the flags replace every invalid field.
		base, err = e.repairBase(ctx, name, given, err)
	case err == nil:
		base = st.Config()
	}
	if err != nil {
		return e.explainBreaker(ctx, name, "", err)
	}
	before := viewOf(name, base)
	found := e.problems(ctx, st) // described now: the change may delete the keys
	if !changing {
		defer e.warn(found)
		if e.g.output == "json" {
			return e.json(before)
		}
		writeConfig(e.stdout, before)
		return nil
	}
	fields := fieldsOf(base)
	for _, cf := range configFlags {
		text, ok := given[cf.flag]
		if !ok {
			continue
		}
		if fields[cf.field], err = storedValue(cf, text); err != nil {
			return err
		}
	}
	// A half_open_max_calls equal to success_threshold follows it, as the
	// default does, unless it is given too.
	if _, ok := given["success-threshold"]; ok && given["half-open-max-calls"] == "" && base.HalfOpenMaxCalls == base.SuccessThreshold {
		fields["half_open_max_calls"] = fields["success_threshold"]
	}
	cfg, _ := breakerbox.ConfigFromFields(fields) // every value was checked; Validate explains what does not go together
	if err := cfg.Validate(); err != nil {
		return usageErrorf("config %s: %v", name, err)
	}
	if _, err := admin.Configure(ctx, e.rdb, name, cfg, e.actor()); err != nil {
		return e.explainBreaker(ctx, name, "", err)
	}
	st, err = admin.Status(ctx, e.rdb, name)
	if err != nil {
		return e.explainBreaker(ctx, name, "", err)
	}
	defer e.reportRepairs(ctx, "the config change", found, st)
	after := viewOf(name, st.Config())
	after.Changed = after.diff(before)
	if e.g.output == "json" {
		if after.Changed == nil {
			after.Changed = []string{}
		}
		return e.json(after)
	}
	if len(after.Changed) == 0 {
		fmt.Fprintf(e.stdout, "breaker %q: config unchanged\n", name)
	} else {
		fmt.Fprintf(e.stdout, "breaker %q: config changed by %s: %s\n", name, e.actor(), strings.Join(after.Changed, ", "))
	}
	writeConfig(e.stdout, after)
	fmt.Fprintln(e.stdout, "note: every worker follows it; the config a worker starts with only seeds a breaker that has none stored")
	return nil
}

// repairBase reads the config hash of a breaker whose stored config is
// invalid (readErr) and returns it with the valid fields (defaults for
// absent ones). Every invalid field must be replaced by a flag in given,
// or it is a usage error naming the flags needed.
func (e *env) repairBase(ctx context.Context, name string, given map[string]string, readErr error) (breakerbox.Config, error) {
	raw, err := e.rdb.HGetAll(ctx, breakerbox.Key(name, "config")).Result()
	if err != nil {
		return breakerbox.Config{}, fmt.Errorf("%w (reading the config hash: %v; if it is not a hash, "+
			"redis-cli DEL 'circuit_breaker:{%s}:config' and set the config again)", readErr, err, name)
	}
	cfg, invalid := breakerbox.ConfigFromFields(raw)
	var missing []string
	for _, field := range invalid {
		if flagName := flagFor(field); given[flagName] == "" {
			missing = append(missing, fmt.Sprintf("--%s (%s holds %q)", flagName, field, raw[field]))
		}
	}
	if len(missing) > 0 {
		return breakerbox.Config{}, usageErrorf("breaker %q has an invalid stored config; give %s to repair it",
			name, strings.Join(missing, ", "))
	}
	if cfg.HalfOpenMaxCalls == 0 {
		cfg.HalfOpenMaxCalls = cfg.SuccessThreshold
	}
	return cfg, nil
}

func writeConfig(w io.Writer, v configView) {
	ms := func(n int64) string { return (time.Duration(n) * time.Millisecond).String() }
	off := func(n int64, s string) string {
		if n == 0 {
			return "off"
		}
		return s
	}
	window := "off"
	switch {
	case v.WindowMs > 0:
		window = ms(v.WindowMs)
	case v.WindowCalls > 0:
		window = fmt.Sprintf("the last %d calls", v.WindowCalls)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "failure_threshold:\t%d\n", v.FailureThreshold)
	fmt.Fprintf(tw, "recovery_timeout:\t%s\n", ms(v.RecoveryTimeoutMs))
	fmt.Fprintf(tw, "success_threshold:\t%d\n", v.SuccessThreshold)
	fmt.Fprintf(tw, "half_open_max_calls:\t%d\n", v.HalfOpenMaxCalls)
	fmt.Fprintf(tw, "request_timeout:\t%s\n", ms(v.RequestTimeoutMs))
	fmt.Fprintf(tw, "window:\t%s in %d buckets\n", window, v.WindowBuckets)
	fmt.Fprintf(tw, "failure_rate_threshold:\t%s\n", off(v.FailureRateThreshold, fmt.Sprintf("%d%%", v.FailureRateThreshold)))
	fmt.Fprintf(tw, "minimum_calls:\t%d\n", v.MinimumCalls)
	fmt.Fprintf(tw, "slow_call:\t%s\n", off(v.SlowCallMs, ms(v.SlowCallMs)))
	fmt.Fprintf(tw, "slow_call_rate_threshold:\t%s\n", off(v.SlowCallRateThreshold, fmt.Sprintf("%d%%", v.SlowCallRateThreshold)))
	fmt.Fprintf(tw, "max_retry_after:\t%s\n", off(v.MaxRetryAfterMs, ms(v.MaxRetryAfterMs)))
	fmt.Fprintf(tw, "recovery_backoff:\t%s\n", off(v.RecoveryBackoff-100, fmt.Sprintf("%d%%", v.RecoveryBackoff)))
	fmt.Fprintf(tw, "max_recovery_timeout:\t%s\n", ms(v.MaxRecoveryTimeoutMs))
	_ = tw.Flush()
}
