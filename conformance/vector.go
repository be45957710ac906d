package conformance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/breakerbox/breakerbox"
)

// Vector is one named scenario on one fresh breaker: steps in time order,
// each checked by its expectations. The JSON form is documented in
// docs/conformance.md; conformance/python reads the same files.
type Vector struct {
	Name string `json:"name"`
	Doc  string `json:"doc"` // what it proves, citing docs/protocol.md
	// KnownBug, when set, names a disagreement between the script and
	// docs/protocol.md that makes this vector fail today: runners report
	// the failure as a known bug (a skip) instead of a test failure.
	KnownBug string `json:"known_bug,omitempty"`
	Steps    []Step `json:"steps"`

	File string `json:"-"` // file it was read from
}

// Step is one operation at a time offset, with what must hold after it.
type Step struct {
	// At is the offset in milliseconds from the scenario start (Redis's
	// clock). Offsets never decrease. Steps inside a repeat take the
	// repeat's offset.
	At int64 `json:"at"`
	// Op is one of: allow, success, failure, release, record, tally,
	// control, reset, force_open, disable, release_override, configure,
	// seed, status, eval, redis, check, repeat.
	Op string `json:"op"`

	As       string    `json:"as,omitempty"`        // allow: name under which later steps find the permit
	Permit   string    `json:"permit,omitempty"`    // success, failure, release: the permit reported
	Error    string    `json:"error,omitempty"`     // failure: the error text
	Refused  int64     `json:"refused,omitempty"`   // record: calls refused by the worker itself; tally: refusals to add
	Success  int64     `json:"successes,omitempty"` // tally: successes to add
	Failure  int64     `json:"failures,omitempty"`  // tally: failures to add
	Outcomes []Outcome `json:"outcomes,omitempty"`  // record: outcome groups, in order
	Action   string    `json:"action,omitempty"`    // control: the action
	Actor    string    `json:"actor,omitempty"`     // control, configure, seed
	Fields   []any     `json:"fields,omitempty"`    // configure, seed: FIELD VALUE ... (strings or integers)
	Keys     []string  `json:"keys,omitempty"`      // eval: key suffixes instead of the eight keys (or full keys with "=")
	Args     []any     `json:"args,omitempty"`      // eval: ARGV, verbatim
	Script   string    `json:"script,omitempty"`    // eval: "status" runs status-8.lua (default breaker-8.lua)
	Command  []string  `json:"command,omitempty"`   // redis: a raw command; "$suffix" names a key of the breaker
	Times    int       `json:"times,omitempty"`     // repeat: how many times
	Steps    []Step    `json:"steps,omitempty"`     // repeat: the steps repeated
	Expect   *Expect   `json:"expect,omitempty"`
}

// Outcome is one OUTCOME GEN LEASE ERROR DURATION_MS RETRY_AFTER_MS group
// of a record step. GEN and LEASE come from the named permit unless given;
// a given GEN is a generation ordinal (see Expect).
type Outcome struct {
	Outcome      string  `json:"outcome"` // s, f or r
	Permit       string  `json:"permit,omitempty"`
	Gen          *int64  `json:"gen,omitempty"`
	Lease        *string `json:"lease,omitempty"`
	Error        string  `json:"error,omitempty"`
	DurationMs   string  `json:"duration_ms,omitempty"`
	RetryAfterMs string  `json:"retry_after_ms,omitempty"`
}

// Expect is what must hold after a step. Every part is optional. Map
// expectations are partial (fields not named are not checked) and a null
// value means "absent"; lists are exact in length unless named _head or
// _tail. Instants are written "@T" or "@T+D": the Redis-clock time of the
// steps at offset T, plus D milliseconds. Generations are written as
// ordinals: 0 for a breaker that never changed, 1 for its first
// generation, and so on (an engine's values are max(gen+1, now_ms)).
type Expect struct {
	Reply       map[string]any    `json:"reply,omitempty"`     // reply fields by name (see breakerbox.ReplyFields)
	ReplyRaw    []any             `json:"reply_raw,omitempty"` // the whole reply, for eval steps
	Error       string            `json:"error,omitempty"`     // the reply is an error starting with this code
	Keys        map[string]any    `json:"keys,omitempty"`      // GET of state, failures, last_failure_time
	Types       map[string]string `json:"types,omitempty"`     // TYPE of keys by suffix ("none" when absent)
	Metrics     map[string]any    `json:"metrics,omitempty"`   // fields of the metrics hash
	Config      map[string]any    `json:"config,omitempty"`    // fields of the config hash
	Probes      map[string]any    `json:"probes,omitempty"`    // the exact probe leases and their expiry
	ProbeCount  *int              `json:"probe_count,omitempty"`
	History     *[]map[string]any `json:"history,omitempty"` // whole history, newest first
	HistoryLen  *int              `json:"history_len,omitempty"`
	HistoryHead []map[string]any  `json:"history_head,omitempty"` // newest entries
	Stream      *[]map[string]any `json:"stream,omitempty"`       // whole stream, oldest first
	StreamLen   *int              `json:"stream_len,omitempty"`
	StreamHead  []map[string]any  `json:"stream_head,omitempty"` // oldest entries
	StreamTail  []map[string]any  `json:"stream_tail,omitempty"` // newest entries, oldest first
	Published   *[]map[string]any `json:"published,omitempty"`   // announcements since the last published check
}

// opKind maps each step operation to the script operation whose reply it gets.
var opKind = map[string]string{
	"allow": "allow", "success": "record", "failure": "record", "release": "record",
	"record": "record", "tally": "tally", "control": "control", "reset": "control", "force_open": "control",
	"disable": "control", "release_override": "control", "configure": "configure", "seed": "seed",
	"status": "status", "eval": "", "redis": "", "check": "", "repeat": "",
}

// controlSugar maps the shorthand operations to control actions.
var controlSugar = map[string]string{"reset": "reset", "force_open": "force_open",
	"disable": "disable", "release_override": "release"}

// rawCommands are the commands a redis step may send: the ones every
// engine (gopher-lua's in-memory store included) implements.
var rawCommands = map[string]bool{"SET": true, "HSET": true, "DEL": true, "LPUSH": true,
	"ZADD": true, "XADD": true}

// DefaultRecoveryTimeoutMs and DefaultRequestTimeoutMs are the config
// defaults of docs/protocol.md, used when a vector does not configure them.
const (
	DefaultRecoveryTimeoutMs = 30000
	DefaultRequestTimeoutMs  = 45000
)

// durationConfigFields are config fields that hold durations; real-clock
// runs scale them (and the outcomes' DURATION_MS and RETRY_AFTER_MS, and
// the status field current_recovery_timeout_ms, derived from them).
var durationConfigFields = map[string]bool{"recovery_timeout_ms": true, "request_timeout_ms": true,
	"window_ms": true, "slow_call_ms": true, "max_retry_after_ms": true, "max_recovery_timeout_ms": true,
	"current_recovery_timeout_ms": true}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

// LoadVectors reads every *.json file of dir (one vector per file), sorted
// by name, and validates each.
func LoadVectors(dir string) ([]Vector, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no vectors in %s", dir)
	}
	var out []Vector
	seen := map[string]string{}
	for _, f := range files {
		v, err := ReadVector(f)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[v.Name]; dup {
			return nil, fmt.Errorf("%s: vector name %q also used by %s", f, v.Name, prev)
		}
		seen[v.Name] = f
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ReadVector reads and validates one vector file.
func ReadVector(path string) (Vector, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Vector{}, err
	}
	v, err := ParseVector(data)
	if err != nil {
		return Vector{}, fmt.Errorf("%s: %w", path, err)
	}
	v.File = path
	if want := v.Name + ".json"; filepath.Base(path) != want {
		return Vector{}, fmt.Errorf("%s: vector %q belongs in a file named %s", path, v.Name, want)
	}
	return v, nil
}

// ParseVector decodes one vector (numbers kept exact) and validates it.
func ParseVector(data []byte) (Vector, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var v Vector
	if err := dec.Decode(&v); err != nil {
		return Vector{}, fmt.Errorf("decode: %w", err)
	}
	if err := v.Validate(); err != nil {
		return Vector{}, fmt.Errorf("vector %q: %w", v.Name, err)
	}
	return v, nil
}

// timeWindow reports whether a configure or seed step sets window_ms: a
// time window's buckets leave it with Redis's clock.
func (v Vector) timeWindow() bool {
	for _, s := range Flatten(v.Steps) {
		if s.Op != "configure" && s.Op != "seed" {
			continue
		}
		for i := 0; i+1 < len(s.Fields); i += 2 {
			if fmt.Sprint(s.Fields[i]) == "window_ms" && fmt.Sprint(s.Fields[i+1]) != "0" {
				return true
			}
		}
	}
	return false
}

// Timed reports whether any step happens after offset 0.
func (v Vector) Timed() bool {
	for _, s := range v.Steps {
		if s.At > 0 {
			return true
		}
	}
	return false
}

// Validate checks the vector's structure: known operations with their
// arguments, offsets that never decrease, permits defined before use,
// raw commands every engine implements, and, for timed vectors, both
// duration config fields set by the first step (so real-clock runs can
// scale every duration).
func (v Vector) Validate() error {
	if !nameRE.MatchString(v.Name) {
		return fmt.Errorf("name %q: want lower-case letters, digits, '_', '.', '-'", v.Name)
	}
	if strings.TrimSpace(v.Doc) == "" {
		return errors.New("doc is empty: say what the vector proves")
	}
	if len(v.Steps) == 0 {
		return errors.New("no steps")
	}
	permits := map[string]bool{}
	var last int64
	for i, s := range v.Steps {
		if s.At < last {
			return fmt.Errorf("step %d: at %d before the previous step's %d", i+1, s.At, last)
		}
		last = s.At
		if err := s.validate(permits, false); err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, s.Op, err)
		}
	}
	if v.Timed() {
		first := v.Steps[0]
		set := map[string]bool{}
		for i := 0; i+1 < len(first.Fields); i += 2 {
			set[fmt.Sprint(first.Fields[i])] = true
		}
		if (first.Op != "configure" && first.Op != "seed") || !set["recovery_timeout_ms"] || !set["request_timeout_ms"] {
			return errors.New("a timed vector must start with a configure or seed step setting recovery_timeout_ms and request_timeout_ms")
		}
		if n := len(Flatten(v.Steps)); n > 300 {
			return fmt.Errorf("a timed vector may have at most 300 steps, has %d", n)
		}
	}
	return nil
}

func (s Step) validate(permits map[string]bool, inRepeat bool) error {
	kind, known := opKind[s.Op]
	if !known {
		return fmt.Errorf("unknown op %q", s.Op)
	}
	if inRepeat && s.At != 0 {
		return errors.New("steps inside a repeat take the repeat's offset; leave at out")
	}
	need := func(ok bool, what string) error {
		if !ok {
			return fmt.Errorf("needs %s", what)
		}
		return nil
	}
	usePermit := func(name string) error {
		if !permits[name] {
			return fmt.Errorf("permit %q is not defined by an earlier allow step", name)
		}
		return nil
	}
	var err error
	switch s.Op {
	case "allow":
		if s.As != "" {
			permits[s.As] = true
		}
	case "success", "failure", "release":
		if err = need(s.Permit != "", "a permit"); err == nil {
			err = usePermit(s.Permit)
		}
	case "record":
		for _, o := range s.Outcomes {
			if o.Permit != "" {
				if err := usePermit(o.Permit); err != nil {
					return err
				}
			} else if o.Gen == nil {
				return errors.New("an outcome needs a permit or a gen")
			}
		}
	case "control":
		err = need(s.Action != "", "an action")
	case "configure", "seed":
		err = need(len(s.Fields)%2 == 0, "FIELD VALUE pairs")
	case "eval":
		err = need(len(s.Args) > 0, "args")
	case "redis":
		if err = need(len(s.Command) >= 2, "a command and a key"); err == nil {
			if !rawCommands[strings.ToUpper(s.Command[0])] {
				return fmt.Errorf("command %s: use one of SET HSET DEL LPUSH ZADD XADD", s.Command[0])
			}
			for _, a := range s.Command[1:] {
				if suffix, ok := strings.CutPrefix(a, "$"); ok && !isSuffix(suffix) {
					return fmt.Errorf("unknown key $%s", suffix)
				}
			}
		}
	case "repeat":
		if err = need(s.Times >= 1 && len(s.Steps) > 0, "times >= 1 and steps"); err == nil {
			for i, sub := range s.Steps {
				if sub.Op == "repeat" {
					return errors.New("repeats do not nest")
				}
				if err := sub.validate(permits, true); err != nil {
					return fmt.Errorf("repeated step %d (%s): %w", i+1, sub.Op, err)
				}
			}
		}
	}
	if err != nil {
		return err
	}
	if s.Expect != nil {
		return s.Expect.validate(kind, s)
	}
	return nil
}

func (e *Expect) validate(kind string, s Step) error {
	if e.Reply != nil {
		k := kind
		if s.Op == "eval" && len(s.Args) > 0 {
			k = fmt.Sprint(s.Args[0])
		}
		names := breakerbox.ReplyFields(k)
		if k == "status" {
			names = breakerbox.StatusFields()
		}
		if names == nil {
			return fmt.Errorf("expect.reply: op %s has no named reply; use reply_raw", s.Op)
		}
		for f := range e.Reply {
			if !contains(names, f) {
				return fmt.Errorf("expect.reply: %s has no field %q", k, f)
			}
		}
	}
	for k := range e.Keys {
		if k != "state" && k != "failures" && k != "last_failure_time" {
			return fmt.Errorf("expect.keys: %q is not a string key (state, failures, last_failure_time)", k)
		}
	}
	for k := range e.Types {
		if !isSuffix(k) && !strings.Contains(k, ":") {
			return fmt.Errorf("expect.types: unknown key %q", k)
		}
	}
	return nil
}

func isSuffix(s string) bool { return contains(breakerbox.KeySuffixes, s) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Flatten expands repeat steps, giving each repeated step the repeat's offset.
func Flatten(steps []Step) []Step {
	var out []Step
	for _, s := range steps {
		if s.Op != "repeat" {
			out = append(out, s)
			continue
		}
		for n := 0; n < s.Times; n++ {
			for _, sub := range s.Steps {
				sub.At = s.At
				out = append(out, sub)
			}
		}
		if s.Expect != nil {
			out = append(out, Step{At: s.At, Op: "check", Expect: s.Expect})
		}
	}
	return out
}

// configDurations returns every duration (vector milliseconds) the vector
// configures, plus the defaults: the deadlines a real-clock run must not
// let a step cross by running late (an outcome's retry-after included). A
// time window adds two: an outcome leaves it between window_ms minus one
// bucket and window_ms after it was recorded (bucket boundaries fall where
// Redis's clock puts them).
func (v Vector) configDurations() []int64 {
	durs := map[int64]bool{DefaultRecoveryTimeoutMs: true, DefaultRequestTimeoutMs: true}
	add := func(field, value string) {
		if durationConfigFields[field] {
			if n, err := strconv.ParseInt(value, 10, 64); err == nil && n > 0 {
				durs[n] = true
			}
		}
	}
	for _, s := range Flatten(v.Steps) {
		switch {
		case s.Op == "configure" || s.Op == "seed":
			buckets, window := int64(10), int64(0)
			for i := 0; i+1 < len(s.Fields); i += 2 {
				f, val := fmt.Sprint(s.Fields[i]), fmt.Sprint(s.Fields[i+1])
				add(f, val)
				n, _ := strconv.ParseInt(val, 10, 64)
				switch f {
				case "window_buckets":
					buckets = n
				case "window_ms":
					window = n
				}
			}
			if window > 0 && buckets > 0 {
				if early := window - (window+buckets-1)/buckets; early > 0 {
					durs[early] = true
				}
			}
		case s.Op == "record":
			// An upstream's retry-after is a deadline too.
			for _, o := range s.Outcomes {
				add("max_retry_after_ms", o.RetryAfterMs)
			}
		case s.Op == "redis" && strings.EqualFold(s.Command[0], "HSET") && s.Command[1] == "$config":
			for i := 2; i+1 < len(s.Command); i += 2 {
				add(s.Command[i], s.Command[i+1])
			}
		}
	}
	out := make([]int64, 0, len(durs))
	for d := range durs {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
