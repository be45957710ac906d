package conformance

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Field kinds that depend on time. Instants are written "@T" or "@T+D";
// durations are plain numbers; duration config values are scaled exactly.
var (
	durationFields = map[string]bool{"retry_after_ms": true, "outage_ms": true}
)

// clockView is how a run relates vector time to what the engine reports.
type clockView struct {
	exact bool
	scale int64 // real milliseconds per vector millisecond (1 when exact)
	tol   int64 // tolerance for reported durations on real clocks, ms
	base  int64 // exact: Redis time at offset 0
	// window returns the Redis-clock interval in which the steps at offset
	// at ran (real clocks only).
	window func(at int64) (lo, hi int64, err error)
	// gen maps an engine's generation to its ordinal (nil: no mapping).
	gen func(v any) (any, error)
	// durationMissed is set when a reported duration fell outside the
	// tolerance on a real clock (see run.lateness).
	durationMissed bool
}

// match compares one expected value (from a vector) with one actual value
// (int64, string, nil, or decoded JSON) of the field named field.
func (c *clockView) match(field string, want, got any) error {
	if m, ok := want.(map[string]any); ok {
		return c.matchMatcher(field, m, got)
	}
	want = number(want)
	instant := false
	if s, ok := want.(string); ok && strings.HasPrefix(s, "@") {
		instant = true // a generation written as an instant is compared raw
	}
	if field == "generation" && c.gen != nil && !instant {
		var err error
		if got, err = c.gen(got); err != nil {
			return err
		}
	}
	if s, ok := want.(string); ok && strings.HasPrefix(s, "@") {
		return c.matchInstant(s, got)
	}
	switch {
	case durationConfigFields[field]:
		want = c.scaleValue(want)
	case durationFields[field]:
		return c.matchDuration(want, got)
	case field == "detail":
		if s, ok := want.(string); ok {
			want = c.scaleDetail(s)
		}
	}
	if !sameValue(want, got) {
		return fmt.Errorf("want %s, got %s", show(want), show(got))
	}
	return nil
}

// matchMatcher handles {"contains": "text"}, {"contains": ["a", "b"]}
// and {"nonempty": true}.
func (c *clockView) matchMatcher(field string, m map[string]any, got any) error {
	s, isStr := got.(string)
	if len(m) != 1 {
		return fmt.Errorf("matcher %v: want exactly one of contains, nonempty", m)
	}
	if ne, ok := m["nonempty"]; ok {
		if ne != true {
			return fmt.Errorf("matcher %v: nonempty takes true", m)
		}
		if !isStr || s == "" {
			return fmt.Errorf("want a non-empty string, got %s", show(got))
		}
		return nil
	}
	var subs []string
	switch x := m["contains"].(type) {
	case string:
		subs = []string{x}
	case []any:
		for _, v := range x {
			sub, ok := v.(string)
			if !ok {
				return fmt.Errorf("matcher %v: contains takes strings", m)
			}
			subs = append(subs, sub)
		}
	default:
		return fmt.Errorf("unknown matcher %v (want {\"contains\": text or [texts]} or {\"nonempty\": true})", m)
	}
	for _, sub := range subs {
		if field == "detail" {
			sub = c.scaleDetail(sub)
		}
		if !isStr || !strings.Contains(s, sub) {
			return fmt.Errorf("want a string containing %q, got %s", sub, show(got))
		}
	}
	return nil
}

// matchInstant checks an "@T" or "@T+D" expectation.
func (c *clockView) matchInstant(spec string, got any) error {
	at, plus, err := parseInstant(spec)
	if err != nil {
		return err
	}
	n, ok := asInt64(got)
	if !ok {
		return fmt.Errorf("want the instant %s, got %s", spec, show(got))
	}
	if c.exact {
		if want := c.base + at + plus; n != want {
			return fmt.Errorf("want %s (%d), got %d (offset %+d)", spec, want, n, n-c.base)
		}
		return nil
	}
	lo, hi, err := c.window(at)
	if err != nil {
		return fmt.Errorf("%s: %w", spec, err)
	}
	lo, hi = lo+c.scale*plus, hi+c.scale*plus
	if n < lo || n > hi {
		return fmt.Errorf("want %s: within [%d, %d] on Redis's clock, got %d", spec, lo, hi, n)
	}
	return nil
}

// matchDuration compares a reported duration: exactly on a settable clock,
// scaled and within the tolerance on a real one (values <= 0 are exact).
func (c *clockView) matchDuration(want, got any) error {
	w, wok := asInt64(want)
	g, gok := asInt64(got)
	_, wantStr := want.(string)
	_, gotStr := got.(string)
	if !wok || !gok || wantStr != gotStr {
		return fmt.Errorf("want %s, got %s", show(want), show(got))
	}
	if c.exact || w <= 0 {
		if w != g {
			return fmt.Errorf("want %s, got %s", show(want), show(got))
		}
		return nil
	}
	if d := g - c.scale*w; d < -c.tol || d > c.tol {
		c.durationMissed = true
		return fmt.Errorf("want %d ms (%d x scale %d, tolerance %d), got %d", c.scale*w, w, c.scale, c.tol, g)
	}
	return nil
}

// scaleValue multiplies a positive integer (int64 or numeric string) by the scale.
func (c *clockView) scaleValue(v any) any {
	switch x := v.(type) {
	case int64:
		if x > 0 {
			return x * c.scale
		}
	case string:
		if n, err := strconv.ParseInt(x, 10, 64); err == nil && n > 0 {
			return strconv.FormatInt(n*c.scale, 10)
		}
	}
	return v
}

// scaleDetail scales the values after duration field names in a
// "field value field value" text.
func (c *clockView) scaleDetail(s string) string {
	if c.scale == 1 {
		return s
	}
	f := strings.Split(s, " ")
	for i := 0; i+1 < len(f); i++ {
		if durationConfigFields[f[i]] {
			if v, ok := c.scaleValue(f[i+1]).(string); ok {
				f[i+1] = v
			}
		}
	}
	return strings.Join(f, " ")
}

func parseInstant(spec string) (at, plus int64, err error) {
	body := strings.TrimPrefix(spec, "@")
	a, p, hasPlus := strings.Cut(body, "+")
	if at, err = strconv.ParseInt(a, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("bad instant %q: want @T or @T+D", spec)
	}
	if hasPlus {
		if plus, err = strconv.ParseInt(p, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("bad instant %q: want @T or @T+D", spec)
		}
	}
	return at, plus, nil
}

// number converts json.Number to int64 (or float64 when not integral).
func number(v any) any {
	if n, ok := v.(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			return i
		}
		if f, err := n.Float64(); err == nil {
			return f
		}
	}
	return v
}

func asInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case float64:
		if x == math.Trunc(x) {
			return int64(x), true
		}
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	}
	return 0, false
}

// sameValue is strict: an integer never equals a string.
func sameValue(want, got any) bool {
	want, got = number(want), number(got)
	switch w := want.(type) {
	case nil:
		return got == nil
	case int64:
		g, ok := got.(int64)
		return ok && g == w
	case float64:
		g, ok := got.(float64)
		return ok && g == w
	case string:
		g, ok := got.(string)
		return ok && g == w
	case bool:
		g, ok := got.(bool)
		return ok && g == w
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !sameValue(w[i], g[i]) {
				return false
			}
		}
		return true
	}
	return false
}

// show renders a value with its type visible: 1 versus "1".
func show(v any) string {
	switch x := number(v).(type) {
	case nil:
		return "nil"
	case string:
		return strconv.Quote(x)
	case int64:
		return strconv.FormatInt(x, 10) + " (integer)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// decodeJSON decodes a history entry keeping integers exact; ok is false
// when the text is not a JSON object.
func decodeJSON(text string) (map[string]any, bool) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil || dec.More() {
		return nil, false
	}
	for k, v := range m {
		m[k] = number(v)
	}
	return m, true
}
