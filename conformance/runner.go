package conformance

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/breakerbox/breakerbox"
)

// BaseTime is Redis's clock at offset 0 on engines whose clock the runner
// sets: 2026-01-01T00:00:00Z in unix milliseconds.
const BaseTime int64 = 1767225600000

// Options tune runs on engines whose clock cannot be moved.
type Options struct {
	// Scale is how many real milliseconds a vector millisecond lasts in a
	// timed vector on a real clock (default 20).
	Scale int64
	// Tolerance bounds the difference between a reported duration and the
	// scaled expectation on a real clock, in ms (default 2*Scale+25).
	Tolerance int64
	// Attempts is how many fresh breakers a timed vector may use on a real
	// clock before a run that kept landing late counts as a failure (default
	// 4: scales 20, 40, 80, 160).
	Attempts int
}

func (o Options) withDefaults() Options {
	if o.Scale <= 0 {
		o.Scale = 20
	}
	if o.Tolerance <= 0 {
		o.Tolerance = 2*o.Scale + 25
	}
	if o.Attempts <= 0 {
		o.Attempts = 4
	}
	return o
}

// Result is the outcome of one vector on one engine.
type Result struct {
	Vector   string
	Engine   string
	Errors   []string // what did not hold; empty when the vector passed
	Attempts int      // breakers used (more than 1 when a real clock ran late)
	Late     []string // why earlier attempts were discarded
}

// Passed reports whether every expectation held.
func (r Result) Passed() bool { return len(r.Errors) == 0 }

// RunVector runs v on a fresh breaker of engine e called name (with an
// attempt suffix). On a real clock a timed vector whose steps ran too late
// to be meaningful is run again on a new breaker, up to opt.Attempts times,
// each attempt with twice the scale of the one before (a busy machine gets
// longer deadlines; decisions stay exact at any scale).
func RunVector(ctx context.Context, e Engine, v Vector, name string, opt Options) Result {
	userTol := opt.Tolerance
	opt = opt.withDefaults()
	res := Result{Vector: v.Name, Engine: e.Name}
	for attempt := 1; attempt <= opt.Attempts; attempt++ {
		res.Attempts = attempt
		t, err := e.Open(ctx, fmt.Sprintf("%s.%d", name, attempt))
		if err != nil {
			res.Errors = []string{fmt.Sprintf("open engine: %v", err)}
			return res
		}
		o := opt
		o.Scale = opt.Scale << (attempt - 1)
		if userTol <= 0 {
			o.Tolerance = 2*o.Scale + 25
		}
		errs, late := runOnce(ctx, t, v, o)
		_ = t.Close()
		if late == nil {
			res.Errors = errs
			return res
		}
		res.Late = append(res.Late, late.Error())
	}
	res.Errors = append([]string{fmt.Sprintf("every attempt ran too late on the real clock to judge the deadlines: %s",
		strings.Join(res.Late, "; "))}, res.Errors...)
	return res
}

// permit is what an allow step returned: what its outcome is reported with.
type permit struct {
	gen   int64
	lease string
}

type run struct {
	t       Target
	v       Vector
	opt     Options
	keys    []string
	permits map[string]permit
	clock   clockView
	exact   bool
	timed   bool
	timeWin bool // the vector keeps a time window: every record step starts deadlines
	scale   int64
	start   int64
	mark    int64   // max over timer steps j of after_j - scale*at_j
	lastGen int64   // generation in the last reply that had one (-1: none yet)
	gens    []int64 // the engine's generations in order: gens[k] is ordinal k
	ats     []int64
	before  []int64
	after   []int64
	timer   []bool // the step may have started a deadline (see startsTimer)
}

// runOnce runs every step of v on t. late is non-nil when a real clock ran
// a step so late that the deadline checks would be meaningless.
func runOnce(ctx context.Context, t Target, v Vector, opt Options) (errs []string, late error) {
	r := &run{t: t, v: v, opt: opt, keys: breakerbox.Keys(t.Name()), permits: map[string]permit{}, lastGen: -1}
	r.exact = t.SetNow(BaseTime)
	r.timed, r.timeWin = v.Timed(), v.timeWindow()
	r.scale = 1
	if !r.exact && r.timed {
		r.scale = opt.Scale
	}
	r.clock = clockView{exact: r.exact, scale: r.scale, tol: opt.Tolerance, base: BaseTime, window: r.window,
		gen: func(v any) (any, error) { return r.ordinal(ctx, v) }}
	r.gens = []int64{0}
	if !r.exact {
		now, err := t.Now(ctx)
		if err != nil {
			return []string{fmt.Sprintf("read Redis TIME: %v", err)}, nil
		}
		r.start, r.mark = now, now
	}
	if _, err := t.Published(ctx); err != nil { // start the subscription before the first step
		return []string{fmt.Sprintf("subscribe: %v", err)}, nil
	}
	steps := Flatten(v.Steps)
	for i, s := range steps {
		label := fmt.Sprintf("step %d (%s at %d)", i+1, describe(s), s.At)
		if err := r.wait(ctx, s.At); err != nil {
			return append(errs, fmt.Sprintf("%s: %v", label, err)), nil
		}
		kind, reply, err := r.exec(ctx, s)
		if err2 := r.stamp(ctx, s.At, r.startsTimer(kind, reply)); err2 != nil && err == nil {
			err = err2
		}
		if err == nil {
			if err := r.observe(ctx, kind, reply); err != nil {
				errs = append(errs, label+": "+err.Error())
			}
		}
		if err != nil {
			var rerr *ReplyError
			if !errors.As(err, &rerr) {
				return append(errs, fmt.Sprintf("%s: engine failed: %v", label, err)), nil
			}
		}
		for _, msg := range r.check(ctx, s, kind, reply, err) {
			errs = append(errs, label+": "+msg)
		}
		if len(errs) > 20 {
			errs = append(errs, "stopped after 20 errors")
			break
		}
	}
	if !r.exact && r.timed {
		if err := r.validateTiming(); err != nil {
			return errs, err
		}
		// A reported duration measures real time between two steps; when the
		// run fell behind its schedule by more than the tolerance, a duration
		// off by as much says nothing about the script (on the exact clocks
		// every duration is checked to the millisecond).
		if late := r.lateness(); r.clock.durationMissed && late > r.clock.tol {
			return errs, fmt.Errorf("reported durations are off after the run fell %d ms behind its schedule (tolerance %d ms, x%d)",
				late, r.clock.tol, r.scale)
		}
	}
	return errs, nil
}

func describe(s Step) string {
	switch s.Op {
	case "allow":
		if s.As != "" {
			return "allow as " + s.As
		}
	case "success", "failure", "release":
		return s.Op + " " + s.Permit
	case "control":
		return "control " + s.Action
	case "redis", "eval":
		parts := s.Command
		if s.Op == "eval" {
			parts = nil
			for _, a := range s.Args {
				parts = append(parts, fmt.Sprint(a))
			}
		}
		return s.Op + " " + strings.Join(parts, " ")
	}
	return s.Op
}

// wait brings the engine's clock to the step's offset: set exactly, or
// (real clock, timed vector) wait until at least scale*(at - at_j) has
// passed since the end of every earlier step j that may have started a
// deadline.
func (r *run) wait(ctx context.Context, at int64) error {
	if r.exact {
		r.t.SetNow(BaseTime + at)
		return nil
	}
	if !r.timed {
		return nil
	}
	target := r.mark + r.scale*at
	for {
		now, err := r.t.Now(ctx)
		if err != nil {
			return fmt.Errorf("read Redis TIME: %w", err)
		}
		if now >= target {
			r.ats = append(r.ats, at)
			r.before = append(r.before, now)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(target-now) * time.Millisecond):
		}
	}
}

// startsTimer reports whether a step's reply shows that it may have set a
// time that later steps are measured against: a change of generation (an
// opening sets opened_at) or an admitted probe (its lease expires
// request_timeout_ms later); with a time window, any record (its outcomes
// leave the window later); a record that leaves the breaker open (a
// retry-after may have moved its deadline). Status, configure and raw
// commands never do.
func (r *run) startsTimer(kind string, reply any) bool {
	var a breakerbox.Announcement
	var err error
	timer := r.timeWin && kind == "record"
	switch kind {
	case "allow":
		var ar breakerbox.AllowReply
		if ar, err = breakerbox.ParseAllowReply(reply); err == nil && ar.Admitted && ar.Lease != "" {
			r.lastGen = ar.Generation
			return true
		}
		a = ar.Announcement
	case "record":
		var rr breakerbox.RecordReply
		rr, err = breakerbox.ParseRecordReply(reply)
		a = rr.Announcement
		// A failure recorded while open may move the breaker's deadline (an
		// upstream's retry-after) without a new generation.
		timer = timer || (err == nil && rr.State == breakerbox.StateOpen)
	case "control":
		a, err = breakerbox.ParseControlReply(reply)
	default:
		return false
	}
	if err != nil {
		return timer
	}
	g := a.Generation
	changed := g != r.lastGen
	r.lastGen = g
	return changed || timer
}

// stamp records when a step ended on a real clock.
func (r *run) stamp(ctx context.Context, at int64, timer bool) error {
	if r.exact || !r.timed {
		return nil
	}
	now, err := r.t.Now(ctx)
	if err != nil {
		return fmt.Errorf("read Redis TIME: %w", err)
	}
	r.after = append(r.after, now)
	r.timer = append(r.timer, timer)
	if timer {
		r.mark = max(r.mark, now-r.scale*at)
	}
	return nil
}

// lateness is how far behind the ideal schedule (start + scale*at) the
// latest step of a real-clock run ended, in ms.
func (r *run) lateness() int64 {
	var late int64
	for i, at := range r.ats {
		if i < len(r.after) {
			late = max(late, r.after[i]-(r.start+r.scale*at))
		}
	}
	return late
}

// window is the Redis-clock interval in which the steps at offset at ran.
func (r *run) window(at int64) (int64, int64, error) {
	if !r.timed {
		now, err := r.t.Now(context.Background())
		return r.start, now, err
	}
	lo, hi, found := int64(0), int64(0), false
	for i, a := range r.ats {
		if a != at || i >= len(r.after) {
			continue
		}
		if !found || r.before[i] < lo {
			lo = r.before[i]
		}
		if !found || r.after[i] > hi {
			hi = r.after[i]
		}
		found = true
	}
	if !found {
		return 0, 0, fmt.Errorf("no step at offset %d has run", at)
	}
	return lo, hi, nil
}

// validateTiming checks that no step i ran so long after a timer step j
// that a configured duration D the vector places beyond their distance
// (at_i - at_j < D) was in fact reached (after_i - before_j >= scale*D).
// The wait rule already guarantees the other direction: steps at least D
// after a timer step in the vector are at least scale*D after it on the
// clock.
func (r *run) validateTiming() error {
	durs := r.v.configDurations()
	for i := range r.after {
		for j := 0; j < i; j++ {
			if !r.timer[j] {
				continue
			}
			dt := r.ats[i] - r.ats[j]
			k := sort.Search(len(durs), func(n int) bool { return durs[n] > dt })
			if k == len(durs) {
				continue
			}
			if span := r.after[i] - r.before[j]; span >= r.scale*durs[k] {
				return fmt.Errorf("steps %d (at %d) and %d (at %d) are %d vector ms apart but ran %d real ms apart, reaching the %d ms deadline (x%d)",
					j+1, r.ats[j], i+1, r.ats[i], dt, span, durs[k], r.scale)
			}
		}
	}
	return nil
}

// exec runs one step and returns the script operation whose reply it got.
func (r *run) exec(ctx context.Context, s Step) (string, any, error) {
	switch s.Op {
	case "check":
		return "", nil, nil
	case "allow":
		reply, err := r.eval(ctx, r.keys, "allow")
		if err == nil && s.As != "" {
			arr, _ := reply.([]any)
			if len(arr) == 6 {
				gen, _ := arr[2].(int64)
				lease, _ := arr[5].(string)
				r.permits[s.As] = permit{gen: gen, lease: lease}
			}
		}
		return "allow", reply, err
	case "success", "failure", "release":
		kind := map[string]string{"success": "s", "failure": "f", "release": "r"}[s.Op]
		args, err := r.outcomeArgs([]Outcome{{Outcome: kind, Permit: s.Permit, Error: s.Error}})
		if err != nil {
			return "", nil, err
		}
		reply, err := r.eval(ctx, r.keys, append([]string{"record", "0"}, args...)...)
		return "record", reply, err
	case "record":
		args, err := r.outcomeArgs(s.Outcomes)
		if err != nil {
			return "", nil, err
		}
		reply, err := r.eval(ctx, r.keys, append([]string{"record", strconv.FormatInt(s.Refused, 10)}, args...)...)
		return "record", reply, err
	case "tally":
		reply, err := r.eval(ctx, r.keys, "tally", strconv.FormatInt(s.Success, 10),
			strconv.FormatInt(s.Failure, 10), strconv.FormatInt(s.Refused, 10))
		return "tally", reply, err
	case "control", "reset", "force_open", "disable", "release_override":
		action := s.Action
		if a, ok := controlSugar[s.Op]; ok {
			action = a
		}
		reply, err := r.eval(ctx, r.keys, "control", action, s.Actor)
		return "control", reply, err
	case "configure", "seed":
		args := []string{s.Op, s.Actor}
		for i := 0; i+1 < len(s.Fields); i += 2 {
			field, value := fmt.Sprint(s.Fields[i]), fmt.Sprint(s.Fields[i+1])
			if durationConfigFields[field] {
				value = fmt.Sprint(r.clock.scaleValue(value))
			}
			args = append(args, field, value)
		}
		reply, err := r.eval(ctx, r.keys, args...)
		return s.Op, reply, err
	case "status":
		reply, err := r.evalScript(ctx, breakerbox.StatusScript, r.keys, "status")
		return "status", reply, err
	case "eval":
		keys := r.keys
		if s.Keys != nil {
			keys = make([]string, len(s.Keys))
			for i, k := range s.Keys {
				keys[i] = r.key(k)
			}
		}
		args := make([]string, len(s.Args))
		for i, a := range s.Args {
			args[i] = fmt.Sprint(a)
		}
		kind := ""
		if breakerbox.ReplyFields(args[0]) != nil || args[0] == "status" {
			kind = args[0]
		}
		script := breakerbox.BreakerScript
		if s.Script == "status" {
			script = breakerbox.StatusScript
		}
		reply, err := r.evalScript(ctx, script, keys, args...)
		return kind, reply, err
	case "redis":
		args := make([]string, len(s.Command))
		for i, a := range s.Command {
			if suffix, ok := strings.CutPrefix(a, "$"); ok {
				a = breakerbox.Key(r.t.Name(), suffix)
			} else if strings.Contains(a, "{$name") {
				a = r.key(a)
			}
			args[i] = a
		}
		if strings.EqualFold(args[0], "HSET") && s.Command[1] == "$config" {
			for i := 2; i+1 < len(args); i += 2 {
				if durationConfigFields[args[i]] {
					args[i+1] = fmt.Sprint(r.clock.scaleValue(args[i+1]))
				}
			}
		}
		reply, err := r.t.Do(ctx, args...)
		return "", reply, err
	}
	return "", nil, fmt.Errorf("unknown op %q", s.Op)
}

func (r *run) eval(ctx context.Context, keys []string, args ...string) (any, error) {
	return r.evalScript(ctx, breakerbox.BreakerScript, keys, args...)
}

func (r *run) evalScript(ctx context.Context, script *breakerbox.Script, keys []string, args ...string) (any, error) {
	reply, err := r.t.Eval(ctx, script, keys, args...)
	if err != nil {
		return nil, err
	}
	return normalize(reply)
}

// key names a key of a step: a suffix of the breaker's keys ("state"), or,
// when it holds a ':', a key written out in full in which "$name" stands
// for the breaker's name ("circuit_breaker:{$name}:unrelated",
// "circuit_breaker:{$name-b}:state" for another breaker).
func (r *run) key(k string) string {
	if !strings.Contains(k, ":") {
		return breakerbox.Key(r.t.Name(), k)
	}
	return strings.ReplaceAll(k, "$name", r.t.Name())
}

// ordinal maps a generation the engine reported (an integer, or a decimal
// string from a hash or stream) to its ordinal: 0 before the first
// transition, then 1, 2, ... in order. A value not seen before is looked
// up in the stream, which holds every transition's generation, so that
// transitions made inside one call get their ordinals too. Anything that
// is not a decimal generation is returned unchanged.
func (r *run) ordinal(ctx context.Context, v any) (any, error) {
	raw, isStr := int64(0), false
	switch x := v.(type) {
	case int64:
		raw = x
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil || n < 0 {
			return v, nil
		}
		raw, isStr = n, true
	default:
		return v, nil
	}
	out := func(k int) (any, error) {
		if isStr {
			return strconv.Itoa(k), nil
		}
		return int64(k), nil
	}
	find := func() int {
		for k, g := range r.gens {
			if g == raw {
				return k
			}
		}
		return -1
	}
	if k := find(); k >= 0 {
		return out(k)
	}
	if xs, err := r.t.XRange(ctx, breakerbox.Key(r.t.Name(), "events")); err == nil {
		for _, x := range xs {
			if g, err := strconv.ParseInt(x.Fields["generation"], 10, 64); err == nil && g > r.gens[len(r.gens)-1] {
				r.gens = append(r.gens, g)
			}
		}
	}
	if k := find(); k >= 0 {
		return out(k)
	}
	if last := r.gens[len(r.gens)-1]; raw > last {
		r.gens = append(r.gens, raw)
		return out(len(r.gens) - 1)
	}
	return nil, fmt.Errorf("generation %d is neither a known generation nor after the last one (%d): generations went backwards", raw, r.gens[len(r.gens)-1])
}

// observe registers the generation a reply reports, so that every
// generation gets its ordinal even when no expectation looks at it.
func (r *run) observe(ctx context.Context, kind string, reply any) error {
	arr, _ := reply.([]any)
	var g any
	switch {
	case kind == "allow" && len(arr) == 6:
		g = arr[2]
	case (kind == "record" || kind == "control") && len(arr) >= 4:
		g = arr[1]
	case kind == "status":
		for i := 0; i+1 < len(arr); i += 2 {
			if arr[i] == "generation" {
				g = arr[i+1]
			}
		}
	}
	if g == nil {
		return nil
	}
	_, err := r.ordinal(ctx, g)
	return err
}

// rawGen is the engine's generation for an ordinal a vector names.
func (r *run) rawGen(k int64) (int64, error) {
	if k < 0 || k >= int64(len(r.gens)) {
		return 0, fmt.Errorf("the vector names generation %d, but only %d generations were seen", k, len(r.gens)-1)
	}
	return r.gens[k], nil
}

func (r *run) outcomeArgs(outcomes []Outcome) ([]string, error) {
	var args []string
	for _, o := range outcomes {
		p := r.permits[o.Permit]
		if o.Permit != "" {
			if _, ok := r.permits[o.Permit]; !ok {
				return nil, fmt.Errorf("permit %q was not admitted by an earlier allow", o.Permit)
			}
		}
		if o.Gen != nil {
			g, err := r.rawGen(*o.Gen)
			if err != nil {
				return nil, err
			}
			p.gen = g
		}
		if o.Lease != nil {
			p.lease = *o.Lease
		}
		args = append(args, o.Outcome, strconv.FormatInt(p.gen, 10), p.lease, o.Error,
			fmt.Sprint(r.clock.scaleValue(o.DurationMs)), fmt.Sprint(r.clock.scaleValue(o.RetryAfterMs)))
	}
	return args, nil
}
