package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
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
}

// MarshalText writes the wire name, so JSON shows "open", not 1.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a wire name.
func (s *State) UnmarshalText(b []byte) error {
	st, err := ParseState(string(b))
	*s = st
	return err
}

func msTime(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// parseStatus reads the status operation's field/value list. Unknown fields
// are ignored so that older clients read newer scripts.
func parseStatus(name string, res any) (Status, error) {
	arr, ok := res.([]any)
	if !ok || len(arr)%2 != 0 {
		return Status{}, fmt.Errorf("status reply is %T of odd length or not an array", res)
	}
	st := Status{Name: name}
	ints := map[string]*int64{
		"generation": &st.Generation, "transitions": &st.Transitions, "current_failures": &st.CurrentFailures,
		"failure_threshold": &st.FailureThreshold, "success_threshold": &st.SuccessThreshold,
		"half_open_max_calls": &st.HalfOpenMaxCalls, "total_successes": &st.TotalSuccesses,
		"total_failures": &st.TotalFailures, "total_refused": &st.TotalRefused,
		"total_requests": &st.TotalRequests, "half_open_successes": &st.HalfOpenSuccesses,
		"probes": &st.Probes,
	}
	var ms = map[string]int64{}
	for i := 0; i < len(arr); i += 2 {
		field, err := asString(arr[i])
		if err != nil {
			return st, err
		}
		if p, ok := ints[field]; ok {
			if *p, err = asInt(arr[i+1]); err != nil {
				return st, fmt.Errorf("status field %s: %w", field, err)
			}
			continue
		}
		switch field {
		case "state", "mode", "success_rate", "last_failure_error":
			s, err := asString(arr[i+1])
			if err != nil {
				return st, fmt.Errorf("status field %s: %w", field, err)
			}
			switch field {
			case "state":
				st.State, err = ParseState(s)
			case "mode":
				st.Mode = Mode(s)
			case "success_rate":
				st.SuccessRate, err = strconv.ParseFloat(s, 64)
			default:
				st.LastFailureError = s
			}
			if err != nil {
				return st, fmt.Errorf("status field %s: %w", field, err)
			}
		case "recovery_timeout_ms", "request_timeout_ms", "opened_at", "retry_after_ms",
			"last_failure_time", "time_ms":
			if ms[field], err = asInt(arr[i+1]); err != nil {
				return st, fmt.Errorf("status field %s: %w", field, err)
			}
		}
	}
	st.RecoveryTimeout = time.Duration(ms["recovery_timeout_ms"]) * time.Millisecond
	st.RequestTimeout = time.Duration(ms["request_timeout_ms"]) * time.Millisecond
	st.RetryAfter = time.Duration(ms["retry_after_ms"]) * time.Millisecond
	if ms["retry_after_ms"] < 0 {
		st.RetryAfter = -1
	}
	st.OpenedAt = msTime(ms["opened_at"])
	st.LastFailureTime = msTime(ms["last_failure_time"])
	st.Time = msTime(ms["time_ms"])
	return st, nil
}

func evalOp(ctx context.Context, rdb redis.UniversalClient, name string, args ...any) (any, error) {
	if err := breakerbox.ValidateName(name); err != nil {
		return nil, err
	}
	script := breakerbox.Breaker
	if args[0] == "status" {
		script = breakerbox.StatusScript // read-only: EVALSHA_RO, on replicas too
	}
	res, err := script.Run(ctx, rdb, breakerbox.Keys(name), args...).Result()
	if err != nil {
		return nil, fmt.Errorf("breaker %q: %s: %w", name, args[0], breakerbox.ScriptError(err))
	}
	return res, nil
}

// ReadStatus returns a snapshot of breaker name. A breaker nobody has used
// reads as closed with the seed defaults.
func ReadStatus(ctx context.Context, rdb redis.UniversalClient, name string) (Status, error) {
	res, err := evalOp(ctx, rdb, name, "status")
	if err != nil {
		return Status{}, err
	}
	return parseStatus(name, res)
}

// Event is one entry of a breaker's history (circuit_breaker:{NAME}:history).
type Event struct {
	Time       time.Time `json:"-"`
	TS         int64     `json:"ts"` // unix ms, Redis's clock
	Event      string    `json:"event"`
	From       string    `json:"from"`
	To         string    `json:"to"`
	Generation int64     `json:"generation"`
	Actor      string    `json:"actor"`
	Error      string    `json:"error"`
	Detail     string    `json:"detail"`
}

// ReadHistory returns up to limit of the breaker's latest events, newest
// first. An entry that is not valid JSON (a hand-edited list) is returned
// as an event named "unreadable" with the raw text in Detail.
//
// The stored entries are compact (docs/protocol.md, Events): "to" is left
// out where the event says it and "from" where the previous entry says
// it; ReadHistory fills both in. The oldest entry's From stays empty when
// nothing older says it.
func ReadHistory(ctx context.Context, rdb redis.UniversalClient, name string, limit int) ([]Event, error) {
	if err := breakerbox.ValidateName(name); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	// One entry more than asked: the oldest entry's "from" is its "to".
	raw, err := rdb.LRange(ctx, breakerbox.Key(name, "history"), 0, int64(limit)).Result()
	if err != nil {
		return nil, fmt.Errorf("breaker %q: history: %w", name, err)
	}
	out := make([]Event, 0, len(raw))
	readable := make([]bool, 0, len(raw))
	for _, r := range raw {
		var e Event
		ok := json.Unmarshal([]byte(r), &e) == nil
		if !ok {
			e = Event{Event: "unreadable", Detail: r}
		} else if e.To == "" {
			e.To = impliedTo[e.Event]
		}
		e.Time = msTime(e.TS)
		out = append(out, e)
		readable = append(readable, ok)
	}
	// Oldest first: a config change keeps the state; a transition starts
	// where the previous entry left the breaker.
	for i := len(out) - 1; i >= 0; i-- {
		if !readable[i] {
			continue
		}
		prev := ""
		if i+1 < len(out) && readable[i+1] {
			prev = out[i+1].To
		}
		if out[i].Event == "config_changed" && out[i].To == "" {
			out[i].To = prev
		}
		if out[i].From == "" {
			out[i].From = prev
			if out[i].Event == "config_changed" {
				out[i].From = out[i].To
			}
		}
	}
	// A list that was read to its end and never reached the cap was never
	// trimmed: its oldest entry starts from a new breaker's closed.
	if n := len(out); n > 0 && n <= limit && n < 100 && readable[n-1] && out[n-1].From == "" {
		out[n-1].From = "closed"
		if out[n-1].Event == "config_changed" {
			out[n-1].To = "closed"
		}
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// impliedTo is the state each event leaves the breaker in, where the event
// alone says it (released depends on the mode it ends, so it is stored).
var impliedTo = map[string]string{"opened": "open", "half_opened": "half_open", "closed": "closed",
	"reset": "closed", "forced_open": "open", "disabled": "closed", "repaired": "closed"}

// Action is an operator control.
type Action string

// The operator controls.
const (
	ActionReset     Action = "reset"      // to closed, consecutive counts cleared, overrides lifted
	ActionForceOpen Action = "force_open" // refuse everything until released
	ActionDisable   Action = "disable"    // admit everything, still count, never open
	ActionRelease   Action = "release"    // end force_open (to half-open) or disable (to closed)
)

// Control applies an operator action to breaker name; actor says who did it
// (it is written to the history and the transition stream).
func Control(ctx context.Context, rdb redis.UniversalClient, name string, action Action, actor string) (Status, error) {
	if _, err := evalOp(ctx, rdb, name, "control", string(action), actor); err != nil {
		return Status{}, err
	}
	return ReadStatus(ctx, rdb, name)
}

// Configure writes cfg as breaker name's shared config and reports how many
// fields changed. Every worker uses it from its next call.
func Configure(ctx context.Context, rdb redis.UniversalClient, name string, cfg Config, actor string) (int, error) {
	if err := cfg.Validate(); err != nil {
		return 0, fmt.Errorf("breaker %q: %w", name, err)
	}
	res, err := evalOp(ctx, rdb, name, append([]any{"configure", actor}, cfg.fields()...)...)
	if err != nil {
		return 0, err
	}
	arr, ok := res.([]any)
	if !ok || len(arr) != 2 {
		return 0, fmt.Errorf("breaker %q: configure reply %v, want 2 integers", name, res)
	}
	n, err := asInt(arr[0])
	return int(n), err
}

// Status reads the breaker's snapshot.
func (b *Breaker) Status(ctx context.Context) (Status, error) { return ReadStatus(ctx, b.rdb, b.name) }

// History returns up to limit latest events, newest first.
func (b *Breaker) History(ctx context.Context, limit int) ([]Event, error) {
	return ReadHistory(ctx, b.rdb, b.name, limit)
}

func (b *Breaker) control(ctx context.Context, a Action) error {
	res, err := evalOp(ctx, b.rdb, b.name, "control", string(a), b.o.actor)
	if err != nil {
		return err
	}
	arr, _ := res.([]any)
	r, err := parseView(arr, 0)
	if err != nil {
		return fmt.Errorf("breaker %q: control: %w", b.name, err)
	}
	b.observe(r, false)
	return nil
}

// Reset forces the breaker to closed, clears its consecutive counts and
// lifts force-open or disable. Lifetime totals are kept.
func (b *Breaker) Reset(ctx context.Context) error { return b.control(ctx, ActionReset) }

// ForceOpen makes the breaker refuse every call until Release or Reset.
func (b *Breaker) ForceOpen(ctx context.Context) error { return b.control(ctx, ActionForceOpen) }

// Disable makes the breaker admit every call (still counting) until Release or Reset.
func (b *Breaker) Disable(ctx context.Context) error { return b.control(ctx, ActionDisable) }

// Release returns to normal operation: from force-open to half-open (probes
// first), from disable to closed.
func (b *Breaker) Release(ctx context.Context) error { return b.control(ctx, ActionRelease) }

// SetConfig changes the shared config for every worker (this handle too).
func (b *Breaker) SetConfig(ctx context.Context, cfg Config) error {
	// Under regMu, so a first-use registration of the old config cannot
	// land after this one.
	b.regMu.Lock()
	defer b.regMu.Unlock()
	if _, err := Configure(ctx, b.rdb, b.name, cfg, b.o.actor); err != nil {
		return err
	}
	b.cfg.Store(&cfg)
	b.registered = true
	return nil
}

// Names returns every breaker in Redis, sorted: those in the registry set
// and those found by SCAN (on a cluster, on every master).
func Names(ctx context.Context, rdb redis.UniversalClient) ([]string, error) {
	seen := map[string]bool{}
	members, err := rdb.SMembers(ctx, breakerbox.RegistryKey).Result()
	if err != nil {
		return nil, fmt.Errorf("list breakers: %w", err)
	}
	for _, n := range members {
		if breakerbox.ValidateName(n) == nil {
			seen[n] = true
		}
	}
	var mu sync.Mutex // ForEachMaster scans the masters concurrently
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, breakerbox.KeyPrefix+"{*}:state", 1000).Iterator()
		for iter.Next(ctx) {
			if n, ok := breakerbox.NameFromKey(iter.Val()); ok {
				mu.Lock()
				seen[n] = true
				mu.Unlock()
			}
		}
		return iter.Err()
	}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	default:
		err = fmt.Errorf("SCAN over %T is not supported; use *redis.Client or *redis.ClusterClient", rdb)
	}
	if err != nil {
		return nil, fmt.Errorf("list breakers: %w", err)
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// statusChunk is how many status reads go in one pipeline.
const statusChunk = 1000

// ReadStatuses reads many breakers' snapshots with pipelined EVALSHA, a
// round trip per 1,000 names, in the order given. A breaker that cannot be
// read on its own (a corrupted config: ErrBadConfig) is left out of the
// result and named in the returned error, joined with errors.Join, so one
// broken breaker does not hide the others. A failure of Redis itself
// returns no statuses.
func ReadStatuses(ctx context.Context, rdb redis.UniversalClient, names []string) ([]Status, error) {
	for _, n := range names {
		if err := breakerbox.ValidateName(n); err != nil {
			return nil, err
		}
	}
	out := make([]Status, 0, len(names))
	var errs []error
	for start := 0; start < len(names); start += statusChunk {
		chunk := names[start:min(start+statusChunk, len(names))]
		results, err := statusPipeline(ctx, rdb, chunk)
		if err != nil {
			return nil, err
		}
		for i, res := range results {
			st, err := parseStatus(chunk[i], res.val)
			if res.err != nil {
				err = res.err
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("breaker %q: status: %w", chunk[i], err))
				continue
			}
			out = append(out, st)
		}
	}
	return out, errors.Join(errs...)
}

type result struct {
	val any
	err error // an error reply of the script for this breaker alone
}

// statusPipeline runs lua/status-8.lua for names in one pipeline. If the
// server lost the script (NOSCRIPT), it loads it and runs the pipeline
// again; if the server cannot run it as sent (no usable EVALSHA_RO, no
// shebang), one status read through Script.Run learns what it needs first.
func statusPipeline(ctx context.Context, rdb redis.UniversalClient, names []string) ([]result, error) {
	script := breakerbox.StatusScript
	for attempt := 0; ; attempt++ {
		cmds := make([]*redis.Cmd, len(names))
		pipe := rdb.Pipeline()
		for i, n := range names {
			cmds[i] = script.Queue(ctx, pipe, rdb, breakerbox.Keys(n), "status")
		}
		_, _ = pipe.Exec(ctx) // errors are read per command below
		out := make([]result, len(cmds))
		noscript, unusable := false, -1
		for i, cmd := range cmds {
			val, err := cmd.Result()
			var rerr redis.Error
			switch {
			case err == nil:
				out[i] = result{val: val}
			case redis.HasErrorPrefix(err, "NOSCRIPT"):
				noscript = true
			case errors.As(err, &rerr) && !strings.HasPrefix(err.Error(), "BAD"):
				unusable = i // an unknown EVALSHA_RO, a refused read-only run
			case errors.As(err, &rerr):
				out[i] = result{err: breakerbox.ScriptError(err)}
			default:
				return nil, fmt.Errorf("read breakers: %w", err)
			}
		}
		if !noscript && unusable < 0 {
			return out, nil
		}
		if attempt > 1 {
			return nil, fmt.Errorf("read breakers: the status script still cannot run: %w", cmds[max(unusable, 0)].Err())
		}
		if unusable >= 0 {
			if err := script.Run(ctx, rdb, breakerbox.Keys(names[unusable]), "status").Err(); err != nil &&
				!strings.HasPrefix(err.Error(), "BAD") {
				return nil, fmt.Errorf("read breakers: %w", err)
			}
		}
		if noscript {
			if _, err := script.Load(ctx, rdb); err != nil {
				return nil, fmt.Errorf("read breakers: load script: %w", err)
			}
		}
	}
}

// List returns every breaker's snapshot, sorted by name: the seed's
// get_all_circuit_breakers.
func List(ctx context.Context, rdb redis.UniversalClient) ([]Status, error) {
	names, err := Names(ctx, rdb)
	if err != nil {
		return nil, err
	}
	return ReadStatuses(ctx, rdb, names)
}
