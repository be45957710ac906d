package breakerbox_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
)

func TestStateWireNames(t *testing.T) {
	for _, s := range []breakerbox.State{breakerbox.StateClosed, breakerbox.StateOpen, breakerbox.StateHalfOpen} {
		got, err := breakerbox.ParseState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %v, %v", s.String(), got, err)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back breakerbox.State
		if err := json.Unmarshal(b, &back); err != nil || back != s {
			t.Errorf("JSON %s read back as %v, %v", b, back, err)
		}
	}
	if b, _ := json.Marshal(breakerbox.StateHalfOpen); string(b) != `"half_open"` {
		t.Errorf("JSON of StateHalfOpen = %s, want \"half_open\"", b)
	}
	if _, err := breakerbox.ParseState("Open"); err == nil {
		t.Error("ParseState(\"Open\") succeeded; wire names are lower case")
	}
	var s breakerbox.State = breakerbox.StateOpen
	if err := s.UnmarshalText([]byte("ajar")); err == nil || s != breakerbox.StateOpen {
		t.Errorf("UnmarshalText(ajar) = %v and changed the state to %v", err, s)
	}
	if _, err := json.Marshal(breakerbox.State(7)); err == nil {
		t.Error("an unknown state marshalled")
	}
}

func TestModeAndActionWireNames(t *testing.T) {
	for _, m := range []breakerbox.Mode{breakerbox.ModeNormal, breakerbox.ModeForcedOpen, breakerbox.ModeDisabled} {
		if got, err := breakerbox.ParseMode(m.String()); err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m, got, err)
		}
	}
	if _, err := breakerbox.ParseMode("forced"); err == nil {
		t.Error("ParseMode(forced) succeeded")
	}
	for _, a := range []breakerbox.Action{breakerbox.ActionReset, breakerbox.ActionForceOpen, breakerbox.ActionDisable, breakerbox.ActionRelease} {
		if got, err := breakerbox.ParseAction(a.String()); err != nil || got != a {
			t.Errorf("ParseAction(%q) = %v, %v", a, got, err)
		}
	}
	if _, err := breakerbox.ParseAction("open"); err == nil {
		t.Error("ParseAction(open) succeeded")
	}
}

func TestConfigValidateUsesTheBoundsTable(t *testing.T) {
	with := func(f func(*breakerbox.Config)) breakerbox.Config {
		c := breakerbox.DefaultConfig()
		f(&c)
		return c
	}
	max := breakerbox.MaxConfigCount
	tests := []struct {
		name  string
		cfg   breakerbox.Config
		field string // named in the error; "" when valid
	}{
		{"defaults", breakerbox.DefaultConfig(), ""},
		{"zero config stands for the defaults", breakerbox.Config{}, ""},
		{"failure threshold 0 is the default", with(func(c *breakerbox.Config) { c.FailureThreshold = 0 }), ""},
		{"failure threshold negative", with(func(c *breakerbox.Config) { c.FailureThreshold = -3 }), "FailureThreshold"},
		{"recovery timeout 0 is the default", with(func(c *breakerbox.Config) { c.RecoveryTimeout = 0 }), ""},
		{"failure threshold at the bound", with(func(c *breakerbox.Config) { c.FailureThreshold = int(max) }), ""},
		{"failure threshold past the bound", with(func(c *breakerbox.Config) { c.FailureThreshold = int(max + 1) }), "FailureThreshold"},
		{"success threshold negative", with(func(c *breakerbox.Config) { c.SuccessThreshold = -1 }), "SuccessThreshold"},
		{"half-open max calls 0 follows the success threshold", with(func(c *breakerbox.Config) { c.HalfOpenMaxCalls = 0 }), ""},
		{"half-open max calls negative", with(func(c *breakerbox.Config) { c.HalfOpenMaxCalls = -1 }), "HalfOpenMaxCalls"},
		{"half-open max calls past the bound", with(func(c *breakerbox.Config) { c.HalfOpenMaxCalls = int(max + 1) }), "HalfOpenMaxCalls"},
		{"recovery timeout under 1ms", with(func(c *breakerbox.Config) { c.RecoveryTimeout = 999 * time.Microsecond }), "RecoveryTimeout"},
		{"recovery timeout 1ms", with(func(c *breakerbox.Config) { c.RecoveryTimeout = time.Millisecond }), ""},
		{"recovery timeout 30 days", with(func(c *breakerbox.Config) { c.RecoveryTimeout = 720 * time.Hour }), ""},
		{"recovery timeout past 30 days", with(func(c *breakerbox.Config) { c.RecoveryTimeout = 720*time.Hour + time.Millisecond }), "RecoveryTimeout"},
		{"request timeout the longest Duration", with(func(c *breakerbox.Config) { c.RequestTimeout = math.MaxInt64 }), "RequestTimeout"},
		{"request timeout negative", with(func(c *breakerbox.Config) { c.RequestTimeout = -time.Second }), "RequestTimeout"},
		{"rules all zero: off and defaults", with(func(c *breakerbox.Config) {
			*c = breakerbox.Config{FailureThreshold: 3, RecoveryTimeout: time.Second, SuccessThreshold: 1, RequestTimeout: time.Second}
		}), ""},
		{"a time window with a rate", with(func(c *breakerbox.Config) { c.Window, c.FailureRateThreshold, c.MinimumCalls = time.Minute, 50, 20 }), ""},
		{"a count window with a slow rate", with(func(c *breakerbox.Config) {
			c.WindowCalls, c.SlowCallDuration, c.SlowCallRateThreshold = 100, time.Second, 30
		}), ""},
		{"both windows", with(func(c *breakerbox.Config) { c.Window, c.WindowCalls = time.Minute, 100 }), "Window and WindowCalls"},
		{"a rate without a window", with(func(c *breakerbox.Config) { c.FailureRateThreshold = 50 }), "FailureRateThreshold and SlowCallRateThreshold"},
		{"a slow rate without a duration", with(func(c *breakerbox.Config) { c.WindowCalls, c.SlowCallRateThreshold = 100, 30 }), "SlowCallRateThreshold needs"},
		{"failure rate past 100", with(func(c *breakerbox.Config) { c.WindowCalls, c.FailureRateThreshold = 100, 101 }), "FailureRateThreshold"},
		{"failure rate negative", with(func(c *breakerbox.Config) { c.WindowCalls, c.FailureRateThreshold = 100, -1 }), "FailureRateThreshold"},
		{"61 buckets", with(func(c *breakerbox.Config) { c.WindowCalls, c.WindowBuckets = 100, 61 }), "WindowBuckets"},
		{"a window under 1ms", with(func(c *breakerbox.Config) { c.Window = time.Microsecond }), "Window"},
		{"retry-after ignored", with(func(c *breakerbox.Config) { c.MaxRetryAfter = breakerbox.IgnoreRetryAfter }), ""},
		{"backoff under 100", with(func(c *breakerbox.Config) { c.RecoveryBackoff = 50 }), "RecoveryBackoff"},
		{"backoff past 1000", with(func(c *breakerbox.Config) { c.RecoveryBackoff = 1001 }), "RecoveryBackoff"},
		{"max recovery timeout negative", with(func(c *breakerbox.Config) { c.MaxRecoveryTimeout = -time.Second }), "MaxRecoveryTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tt.field != "" && !errors.Is(err, breakerbox.ErrInvalidConfig):
				t.Errorf("Validate = %v, want ErrInvalidConfig", err)
			case tt.field != "" && !strings.Contains(err.Error(), tt.field+" is") && !strings.Contains(err.Error(), ": "+tt.field):
				t.Errorf("Validate = %v, want it to name %s", err, tt.field)
			}
		})
	}
}

func TestZeroConfigFieldsStandForTheirDefaults(t *testing.T) {
	if got := (breakerbox.Config{}).Fields(); !reflect.DeepEqual(got, breakerbox.DefaultConfig().Fields()) {
		t.Errorf("Config{}.Fields() = %v, want the defaults' %v", got, breakerbox.DefaultConfig().Fields())
	}
	partial := breakerbox.Config{SuccessThreshold: 5, RequestTimeout: time.Second}
	want := breakerbox.Config{FailureThreshold: 3, RecoveryTimeout: 30 * time.Second, SuccessThreshold: 5,
		HalfOpenMaxCalls: 5, RequestTimeout: time.Second,
		WindowBuckets: 10, MinimumCalls: 10, MaxRetryAfter: 10 * time.Minute, RecoveryBackoff: 100,
		MaxRecoveryTimeout: 10 * time.Minute} // the trip rules without a default stay off
	if got := partial.WithDefaults(); got != want {
		t.Errorf("WithDefaults() = %+v, want %+v (HalfOpenMaxCalls follows SuccessThreshold)", got, want)
	}
	ignoring := breakerbox.Config{MaxRetryAfter: breakerbox.IgnoreRetryAfter, WindowCalls: 50, FailureRateThreshold: 40}
	if got := ignoring.WithDefaults(); got.MaxRetryAfter != breakerbox.IgnoreRetryAfter || got.WindowCalls != 50 ||
		got.FailureRateThreshold != 40 || got.Window != 0 || got.SlowCallDuration != 0 {
		t.Errorf("WithDefaults() = %+v: rules given kept, IgnoreRetryAfter kept, rules left off stay off", got)
	}
	wantFields := []string{"failure_threshold", "3", "recovery_timeout_ms", "30000", "success_threshold", "2",
		"half_open_max_calls", "2", "request_timeout_ms", "45000", "window_calls", "50",
		"failure_rate_threshold", "40", "max_retry_after_ms", "0"}
	if got := ignoring.Fields(); !reflect.DeepEqual(got, wantFields) {
		t.Errorf("Fields() = %v, want %v (zero base fields written as their defaults, rules at theirs left out)", got, wantFields)
	}
	if got := breakerbox.DefaultConfig().WithDefaults(); got.HalfOpenMaxCalls != 2 {
		t.Errorf("DefaultConfig().WithDefaults().HalfOpenMaxCalls = %d, want 2", got.HalfOpenMaxCalls)
	}
}

func TestConfigFieldsRoundTrip(t *testing.T) {
	got := breakerbox.DefaultConfig().Fields()
	want := []string{"failure_threshold", "3", "recovery_timeout_ms", "30000", "success_threshold", "2",
		"half_open_max_calls", "2", "request_timeout_ms", "45000"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultConfig().Fields() = %v, want %v", got, want)
	}
	if all := breakerbox.DefaultConfig().AllFields(); len(all) != 2*len(breakerbox.ConfigFields()) || all[len(all)-2] != "max_recovery_timeout_ms" {
		t.Errorf("DefaultConfig().AllFields() = %v, want every field", all)
	}
	cfg := breakerbox.Config{FailureThreshold: 7, RecoveryTimeout: 1500 * time.Millisecond, SuccessThreshold: 4,
		HalfOpenMaxCalls: 9, RequestTimeout: 2 * time.Second, Window: time.Minute, WindowBuckets: 60,
		FailureRateThreshold: 50, MinimumCalls: 20, SlowCallDuration: 800 * time.Millisecond,
		SlowCallRateThreshold: 30, MaxRetryAfter: breakerbox.IgnoreRetryAfter, RecoveryBackoff: 200,
		MaxRecoveryTimeout: time.Hour}
	for _, all := range []bool{false, true} {
		hash := map[string]string{}
		f := cfg.Fields()
		if all {
			f = cfg.AllFields()
		}
		for i := 0; i < len(f); i += 2 {
			hash[f[i]] = f[i+1]
		}
		back, invalid := breakerbox.ConfigFromFields(hash)
		if back != cfg || invalid != nil {
			t.Errorf("ConfigFromFields(%v) = %+v, %v, want %+v", hash, back, invalid, cfg)
		}
	}
	// A rule left at its default is not written by Fields, and reads back
	// as the default; zero rule fields stand for their defaults.
	partial := breakerbox.DefaultConfig()
	partial.WindowCalls, partial.FailureRateThreshold, partial.MinimumCalls, partial.WindowBuckets = 100, 60, 0, 0
	f := partial.Fields()
	if want := []string{"window_calls", "100", "failure_rate_threshold", "60"}; !reflect.DeepEqual(f[10:], want) {
		t.Errorf("Fields() = %v, want the five fields then %v", f, want)
	}
	def, invalid := breakerbox.ConfigFromFields(nil)
	if def != breakerbox.DefaultConfig() || invalid != nil {
		t.Errorf("ConfigFromFields(nil) = %+v, %v, want the defaults", def, invalid)
	}
	bad, invalid := breakerbox.ConfigFromFields(map[string]string{"failure_threshold": "0", "success_threshold": "5",
		"request_timeout_ms": "1e3", "recovery_timeout_ms": strconv.FormatInt(breakerbox.MaxConfigValue+1, 10), "other": "x"})
	if !reflect.DeepEqual(invalid, []string{"failure_threshold", "recovery_timeout_ms", "request_timeout_ms"}) {
		t.Errorf("invalid fields = %v", invalid)
	}
	if bad.FailureThreshold != 3 || bad.SuccessThreshold != 5 || bad.RequestTimeout != 45*time.Second {
		t.Errorf("ConfigFromFields kept %+v, want defaults in place of invalid fields", bad)
	}
	// Leading zeros: the scripts refuse "03" (BADCONFIG), so Go reads it as invalid too.
	if _, invalid := breakerbox.ConfigFromFields(map[string]string{"failure_threshold": "03", "success_threshold": "0"}); !reflect.DeepEqual(invalid, []string{"failure_threshold", "success_threshold"}) {
		t.Errorf("invalid fields of 03 and 0 = %v, want both (03: a leading zero; 0: out of bounds)", invalid)
	}
	if _, invalid := breakerbox.ConfigFromFields(map[string]string{"max_retry_after_ms": "0"}); invalid != nil {
		t.Errorf("max_retry_after_ms 0 read as invalid (%v); 0 is in its bounds", invalid)
	}
	long, invalid := breakerbox.ConfigFromFields(map[string]string{"recovery_timeout_ms": strconv.FormatInt(breakerbox.MaxConfigMs, 10)})
	if long.RecoveryTimeout != 720*time.Hour || invalid != nil {
		t.Errorf("the longest stored duration read as %v, %v; want 720h", long.RecoveryTimeout, invalid)
	}
}

// TestConfigBoundsAgreeWithTheScript configures every field at its bounds
// and just past them through the script itself (a rate threshold with the
// window it needs).
func TestConfigBoundsAgreeWithTheScript(t *testing.T) {
	needs := map[string][]string{"failure_rate_threshold": {"window_calls", "10"},
		"slow_call_rate_threshold": {"window_ms", "1000", "slow_call_ms", "5"}}
	for _, f := range breakerbox.ConfigFields() {
		for _, c := range []struct {
			value int64
			ok    bool
		}{{f.Min, true}, {f.Max, true}, {f.Min - 1, false}, {f.Max + 1, false}} {
			b := newBB(t)
			args := append([]string{"configure", "test", f.Field, strconv.FormatInt(c.value, 10)}, needs[f.Field]...)
			_, err := b.e.Eval(breakerbox.BreakerScript.Source, b.keys, args...)
			if c.ok && err != nil {
				t.Errorf("%s = %d: script refused it: %v", f.Field, c.value, err)
			}
			if !c.ok && err == nil {
				t.Errorf("%s = %d: script accepted a value out of the table's bounds", f.Field, c.value)
			}
		}
	}
}

func TestRepliesParsedFromTheScript(t *testing.T) {
	b := newBB(t, "failure_threshold", "1", "success_threshold", "1")
	allow, err := breakerbox.ParseAllowReply(any(b.run("allow")))
	if err != nil || !allow.Admitted || allow.State != breakerbox.StateClosed || allow.Mode != breakerbox.ModeNormal {
		t.Fatalf("allow = %+v, %v", allow, err)
	}
	rec, err := breakerbox.ParseRecordReply(any(b.failure(permit{gen: strconv.FormatInt(allow.Generation, 10)}, "boom")))
	if err != nil || rec.State != breakerbox.StateOpen || rec.Generation <= allow.Generation || rec.Counted != 1 ||
		rec.RetryAfter != 30*time.Second {
		t.Fatalf("record = %+v, %v", rec, err)
	}
	refused, err := breakerbox.ParseAllowReply(any(b.run("allow")))
	if err != nil || refused.Admitted || refused.RetryAfter != 30*time.Second {
		t.Fatalf("refused allow = %+v, %v", refused, err)
	}
	ctl, err := breakerbox.ParseControlReply(any(b.run("control", "force_open", "ops")))
	if err != nil || ctl.Mode != breakerbox.ModeForcedOpen || ctl.RetryAfter != -1 || ctl.RetryAfterMs() != -1 {
		t.Fatalf("control = %+v, %v", ctl, err)
	}
	conf, err := breakerbox.ParseConfigureReply(any(b.run("configure", "ops", "failure_threshold", "5", "success_threshold", "1")))
	if err != nil || conf.Written != 1 || conf.Overwritten != 1 {
		t.Fatalf("configure = %+v, %v", conf, err)
	}
	st, err := breakerbox.ParseStatus("svc", any(b.run("status")))
	if err != nil || st.Name != "svc" || st.State != breakerbox.StateOpen || st.Mode != breakerbox.ModeForcedOpen ||
		st.FailureThreshold != 5 || st.RetryAfter != -1 || st.TotalFailures != 1 || st.LastFailureError != "boom" ||
		st.Time.IsZero() || st.Config().FailureThreshold != 5 {
		t.Fatalf("status = %+v, %v", st, err)
	}
	if st.Announcement() != ctl {
		t.Errorf("status announcement %+v, control said %+v", st.Announcement(), ctl)
	}
	pub := b.e.Published()
	a, err := breakerbox.ParseAnnouncement(pub[len(pub)-1].Payload)
	if err != nil || a != ctl {
		t.Errorf("last announcement = %+v, %v, want %+v", a, err, ctl)
	}
	ev := breakerbox.ParseEvent(b.e.LRange(b.keys[4])[0])
	if ev.Event != "config_changed" || ev.Actor != "ops" || ev.Time.IsZero() {
		t.Errorf("newest history entry = %+v", ev)
	}
	xs := b.e.XRange(b.keys[7])
	values := map[string]any{}
	for i := 0; i+1 < len(xs[0].Fields); i += 2 {
		values[xs[0].Fields[i]] = xs[0].Fields[i+1]
	}
	tr := breakerbox.ParseTransition(xs[0].ID, values)
	if tr.Event != "opened" || tr.From != "closed" || tr.To != "open" || tr.LastError != "boom" || tr.Operator() {
		t.Errorf("first transition = %+v", tr)
	}
}

func TestRepliesOfAnotherShapeAreErrors(t *testing.T) {
	tests := []struct {
		name  string
		parse func(any) error
		reply any
	}{
		{"allow not an array", func(r any) error { _, err := breakerbox.ParseAllowReply(r); return err }, "OK"},
		{"allow short", func(r any) error { _, err := breakerbox.ParseAllowReply(r); return err },
			[]any{int64(1), "closed", int64(0), "normal", int64(0)}},
		{"allow integer as string", func(r any) error { _, err := breakerbox.ParseAllowReply(r); return err },
			[]any{"1", "closed", int64(0), "normal", int64(0), ""}},
		{"allow unknown state", func(r any) error { _, err := breakerbox.ParseAllowReply(r); return err },
			[]any{int64(1), "ajar", int64(0), "normal", int64(0), ""}},
		{"record unknown mode", func(r any) error { _, err := breakerbox.ParseRecordReply(r); return err },
			[]any{"open", int64(1), "sleepy", int64(0), int64(0), int64(0)}},
		{"control lease where none", func(r any) error { _, err := breakerbox.ParseControlReply(r); return err },
			[]any{"open", int64(1), "normal", int64(0), ""}},
		{"configure strings", func(r any) error { _, err := breakerbox.ParseConfigureReply(r); return err },
			[]any{"1", "0"}},
		{"status odd", func(r any) error { _, err := breakerbox.ParseStatus("svc", r); return err },
			[]any{"state"}},
		{"status missing fields", func(r any) error { _, err := breakerbox.ParseStatus("svc", r); return err },
			[]any{"state", "open", "mode", "normal"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.parse(tt.reply); err == nil {
				t.Errorf("parsed %v without an error", tt.reply)
			}
		})
	}
	for _, p := range []string{"open 1 normal", "open x normal 0", "ajar 1 normal 0", "open 1 normal 0 extra", "open  1 normal 0"} {
		if _, err := breakerbox.ParseAnnouncement(p); err == nil {
			t.Errorf("ParseAnnouncement(%q) succeeded", p)
		}
	}
}

func TestNamedReply(t *testing.T) {
	got, err := breakerbox.NamedReply("configure", []any{int64(2), int64(1)})
	if err != nil || !reflect.DeepEqual(got, map[string]any{"written": int64(2), "overwritten": int64(1)}) {
		t.Errorf("NamedReply(configure) = %v, %v", got, err)
	}
	if _, err := breakerbox.NamedReply("explode", []any{}); err == nil {
		t.Error("NamedReply of an unknown operation succeeded")
	}
}

func TestParseEventAndTransitionAreLenient(t *testing.T) {
	ev := breakerbox.ParseEvent("not json")
	if ev.Event != "unreadable" || ev.Detail != "not json" {
		t.Errorf("ParseEvent(not json) = %+v", ev)
	}
	t0 := time.Date(2025, 10, 25, 11, 30, 0, 0, time.UTC)
	got := breakerbox.ParseTransition("1761391800000-0", map[string]any{
		"event": "opened", "from": "closed", "to": "open", "mode": "normal", "generation": "1",
		"time_ms": "1761391800000", "failures": "3", "failure_threshold": "3",
		"recovery_timeout_ms": "30000", "last_error": "OpenAI API error: Connection timeout",
		"outage_ms": "0", "refused": "0", "actor": "",
	})
	want := breakerbox.Transition{ID: "1761391800000-0", Event: "opened", From: "closed", To: "open", Mode: "normal",
		Generation: 1, Time: t0, Failures: 3, FailureThreshold: 3, RecoveryTimeout: 30 * time.Second,
		LastError: "OpenAI API error: Connection timeout"}
	if got != want {
		t.Errorf("ParseTransition = %+v\nwant %+v", got, want)
	}
	hand := breakerbox.ParseTransition("1761391800000-3", map[string]any{"failures": "many"})
	if hand.Event != "unknown" || !hand.Time.Equal(t0) || hand.Failures != 0 {
		t.Errorf("a hand-written entry without fields: ParseTransition = %+v", hand)
	}
}

func TestParseEventTakesTsForAnAbsentGeneration(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want int64
	}{
		{`{"ts":1767225600004,"event":"opened","error":"down"}`, 1767225600004},
		{`{"ts":1767225600311,"event":"config_changed","generation":1767225600310}`, 1767225600310},
		{`{"ts":1767225600311,"event":"config_changed","generation":0}`, 0},
	} {
		ev := breakerbox.ParseEvent(c.raw)
		if ev.Generation != c.want || ev.TS == 0 || !ev.Time.Equal(time.UnixMilli(ev.TS)) {
			t.Errorf("ParseEvent(%s) = %+v, want generation %d", c.raw, ev, c.want)
		}
	}
	hist := breakerbox.ParseHistory([]string{`{"ts":20,"event":"reset","actor":"ops"}`, `{"ts":10,"event":"opened"}`}, true)
	if hist[0].Generation != 20 || hist[1].Generation != 10 || hist[0].From != "open" || hist[1].From != "closed" {
		t.Errorf("ParseHistory = %+v", hist)
	}
	rules := breakerbox.ParseHistory([]string{
		`{"ts":50,"event":"opened","detail":"failure rate 62% >= 50% over 60s, 140 calls"}`,
		`{"ts":40,"event":"closed"}`, `{"ts":30,"event":"half_opened"}`, `{"ts":20,"event":"opened"}`,
		`{"ts":15,"event":"half_opened"}`, `{"ts":10,"event":"opened"}`}, true)
	for i, want := range map[int]string{0: "failure rate 62% >= 50% over 60s, 140 calls", 3: "probe failed", 5: "consecutive failures"} {
		if rules[i].Detail != want {
			t.Errorf("ParseHistory entry %d detail %q, want %q", i, rules[i].Detail, want)
		}
	}
}

// TestRulesThatDoNotGoTogetherAgreeWithTheScript: the Go Config refuses
// exactly the combinations of rule fields the script refuses, with
// configure (BADARGS, nothing stored) and in a stored hash (BADCONFIG).
func TestRulesThatDoNotGoTogetherAgreeWithTheScript(t *testing.T) {
	for _, c := range []struct {
		name   string
		fields []string
		cfg    func(*breakerbox.Config)
	}{
		{"both windows", []string{"window_ms", "1000", "window_calls", "10"},
			func(c *breakerbox.Config) { c.Window, c.WindowCalls = time.Second, 10 }},
		{"a failure rate without a window", []string{"failure_rate_threshold", "50"},
			func(c *breakerbox.Config) { c.FailureRateThreshold = 50 }},
		{"a slow rate without a window", []string{"slow_call_ms", "5", "slow_call_rate_threshold", "50"},
			func(c *breakerbox.Config) { c.SlowCallDuration, c.SlowCallRateThreshold = 5*time.Millisecond, 50 }},
		{"a slow rate without a duration", []string{"window_calls", "10", "slow_call_rate_threshold", "50"},
			func(c *breakerbox.Config) { c.WindowCalls, c.SlowCallRateThreshold = 10, 50 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := breakerbox.DefaultConfig()
			c.cfg(&cfg)
			if err := cfg.Validate(); !errors.Is(err, breakerbox.ErrInvalidConfig) {
				t.Errorf("Validate = %v, want ErrInvalidConfig", err)
			}
			b := newBB(t)
			if _, err := b.e.Eval(breakerbox.BreakerScript.Source, b.keys, append([]string{"configure", "t"}, c.fields...)...); err == nil ||
				!strings.HasPrefix(err.Error(), "BADARGS configure: ") {
				t.Errorf("configure %v: %v, want BADARGS", c.fields, err)
			}
			if n := len(b.e.HGetAll(breakerbox.Key("svc", "config"))); n != 0 {
				t.Errorf("configure refused stored %d fields", n)
			}
			// Stored one at a time (each call alone is consistent), the
			// pair is refused where it is read.
			if len(c.fields) == 4 {
				b.run("configure", "t", c.fields[0], c.fields[1])
				h := b.e.HGetAll(breakerbox.Key("svc", "config"))
				h[c.fields[2]] = c.fields[3]
				b.e.SetHash(breakerbox.Key("svc", "config"), h)
			} else {
				b.e.SetHash(breakerbox.Key("svc", "config"), map[string]string{c.fields[0]: c.fields[1]})
			}
			for _, s := range []*breakerbox.Script{breakerbox.BreakerScript, breakerbox.StatusScript} {
				op := "control"
				if s == breakerbox.StatusScript {
					op = "status"
				}
				if _, err := b.e.Eval(s.Source, b.keys, op, "reset", "t"); err == nil || !strings.HasPrefix(err.Error(), "BADCONFIG") {
					t.Errorf("%s with the pair stored: %v, want BADCONFIG", s.File, err)
				}
			}
		})
	}
}
