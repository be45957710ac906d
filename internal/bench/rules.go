package bench

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

// baselineScript is lua/breaker-8.lua as it was before the trip rules of
// issue 11 (protocol v2, main at 232e630): the default rule's cost is
// measured beside it, in the same run, on the same server.
//
//go:embed baseline/breaker-8.v2.lua
var baselineScript string

// ScriptCost is what one script operation costs on the server, measured by
// calling the script directly (EVALSHA, pipelined) so that the client
// does not matter: the script's own time (commandstats) and the server's
// CPU time per call (INFO cpu: the script plus reading the command and
// writing the reply).
type ScriptCost struct {
	Name     string  // the case
	Desc     string  // what it runs
	ScriptUs float64 // median over repetitions, µs per call (commandstats usec of EVALSHA)
	CPUUs    float64 // median, µs per call (used_cpu_sys + used_cpu_user), 20 calls per round trip
	// SingleCPUUs is the server's CPU per call when each call is its own
	// round trip, as a Strict worker sends them (median).
	SingleCPUUs float64
	Calls       int // per repetition, pipelined (and half as many one by one)
}

// scriptCase is one operation to measure: the script, the config of its
// breaker, and the arguments of each call.
type scriptCase struct {
	name, desc string
	source     string
	config     []any
	args       func(i int) []any // the i-th call's arguments
}

// A success in closed, as Strict and the Fast batcher send it (one group);
// DURATION_MS 12 (under any slow-call threshold here).
func recordSuccess(int) []any { return []any{"record", 0, "s", 0, "", "", "12", ""} }
func allowCall(int) []any     { return []any{"allow"} }

func scriptCases() []scriptCase {
	cur := breakerbox.BreakerScript.Source
	window := func(extra ...any) []any {
		return append([]any{"configure", "bench", "window_ms", 60000, "window_buckets", 60,
			"failure_rate_threshold", 50, "minimum_calls", 20}, extra...)
	}
	return []scriptCase{
		{"v2-record", "record of one success, default rule, before issue 11 (main's script)", baselineScript, nil, recordSuccess},
		{"record", "record of one success, default rule", cur, nil, recordSuccess},
		{"record-count-window", "record of one success, count window of 600 calls in 60 buckets, failure-rate rule", cur,
			[]any{"configure", "bench", "window_calls", 600, "window_buckets", 60, "failure_rate_threshold", 50, "minimum_calls", 20}, recordSuccess},
		{"record-time-window", "record of one success, time window of 60s in 60 buckets, failure-rate rule", cur, window(), recordSuccess},
		{"record-time-window-slow", "the same with the slow-call rule (slow_call_ms 1000, 80%)", cur,
			window("slow_call_ms", 1000, "slow_call_rate_threshold", 80), recordSuccess},
		{"v2-allow", "allow in closed, default rule, before issue 11 (main's script)", baselineScript, nil, allowCall},
		{"allow", "allow in closed, default rule", cur, nil, allowCall},
		{"allow-time-window", "allow in closed, time window of 60s in 60 buckets", cur, window(), allowCall},
	}
}

// MeasureScriptCosts runs each script case reps times, interleaved (each
// repetition runs every case once, in a rotating order), with calls calls
// of 20 pipelined per round trip, each case on its own breaker that has
// seen calls outcomes before the first repetition (a time window's 60
// buckets are then in place: the clock moves them on about once a second).
func MeasureScriptCosts(ctx context.Context, rdb *redis.Client, reps, calls int) ([]ScriptCost, error) {
	cases := scriptCases()
	shas := make([]string, len(cases))
	for i, c := range cases {
		sha, err := rdb.ScriptLoad(ctx, c.source).Result()
		if err != nil {
			return nil, fmt.Errorf("%s: SCRIPT LOAD: %w", c.name, err)
		}
		sum := sha1.Sum([]byte(c.source))
		if sha != hex.EncodeToString(sum[:]) {
			return nil, fmt.Errorf("%s: SCRIPT LOAD answered %s", c.name, sha)
		}
		shas[i] = sha
		keys := breakerbox.Keys("cost-" + c.name)
		if err := rdb.Del(ctx, keys...).Err(); err != nil {
			return nil, err
		}
		if c.config != nil {
			if err := rdb.EvalSha(ctx, sha, keys, c.config...).Err(); err != nil {
				return nil, fmt.Errorf("%s: configure: %w", c.name, err)
			}
		}
		if _, err := runScriptCalls(ctx, rdb, sha, keys, c, calls); err != nil {
			return nil, fmt.Errorf("%s: warm-up: %w", c.name, err)
		}
	}
	script := map[string][]float64{}
	cpu := map[string][]float64{}
	single := map[string][]float64{}
	for r := 0; r < reps; r++ {
		for k := range cases {
			i := (k + r) % len(cases)
			c := cases[i]
			keys := breakerbox.Keys("cost-" + c.name)
			s0, err := Snapshot(ctx, rdb)
			if err != nil {
				return nil, err
			}
			n, err := runScriptCalls(ctx, rdb, shas[i], keys, c, calls)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			s1, err := Snapshot(ctx, rdb)
			if err != nil {
				return nil, err
			}
			d := s1.Cmds.Sub(s0.Cmds)
			script[c.name] = append(script[c.name], float64(d["evalsha"].Usec)/float64(n))
			// INFO itself and the round trips of the pipeline are in the
			// CPU delta: a few µs over thousands of calls.
			cpu[c.name] = append(cpu[c.name], (s1.CPUSec-s0.CPUSec)*1e6/float64(n))
			if single[c.name], err = appendSingle(ctx, rdb, shas[i], keys, c, max(calls/2, 1), single[c.name]); err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
		}
	}
	out := make([]ScriptCost, len(cases))
	for i, c := range cases {
		out[i] = ScriptCost{Name: c.name, Desc: c.desc, ScriptUs: Median(script[c.name]), CPUUs: Median(cpu[c.name]),
			SingleCPUUs: Median(single[c.name]), Calls: calls}
	}
	return out, nil
}

// appendSingle makes n calls of case c one round trip each and appends the
// server's CPU per call.
func appendSingle(ctx context.Context, rdb *redis.Client, sha string, keys []string, c scriptCase, n int, to []float64) ([]float64, error) {
	s0, err := Snapshot(ctx, rdb)
	if err != nil {
		return to, err
	}
	for j := 0; j < n; j++ {
		if err := rdb.EvalSha(ctx, sha, keys, c.args(j)...).Err(); err != nil {
			return to, err
		}
	}
	s1, err := Snapshot(ctx, rdb)
	if err != nil {
		return to, err
	}
	return append(to, (s1.CPUSec-s0.CPUSec)*1e6/float64(n)), nil
}

// runScriptCalls makes n calls of case c, 20 per pipeline, and checks
// that none failed.
func runScriptCalls(ctx context.Context, rdb *redis.Client, sha string, keys []string, c scriptCase, n int) (int, error) {
	const batch = 20
	done := 0
	for done < n {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.Cmd, 0, batch)
		for j := 0; j < batch && done+j < n; j++ {
			cmds = append(cmds, pipe.EvalSha(ctx, sha, keys, c.args(done+j)...))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return done, err
		}
		for _, cmd := range cmds {
			if err := cmd.Err(); err != nil {
				return done, err
			}
		}
		done += len(cmds)
	}
	return done, nil
}

// costOf returns the named cost.
func costOf(cs []ScriptCost, name string) (ScriptCost, bool) {
	for _, c := range cs {
		if c.Name == name {
			return c, true
		}
	}
	return ScriptCost{}, false
}

// MeasureWindowMemory builds breakers with a full window (every bucket
// holding calls) and measures every key of each, beside a breaker without
// one that saw the same calls.
func MeasureWindowMemory(ctx context.Context, rdb *redis.Client) ([]BreakerMemory, error) {
	sha, err := breakerbox.BreakerScript.Load(ctx, rdb)
	if err != nil {
		return nil, err
	}
	type scenario struct {
		name, label string
		config      []any
		spread      time.Duration // the calls are spread over this much of Redis's clock
		fail        string        // error text of the failures (every 10th call)
	}
	base := []any{"failure_threshold", 1000000, "recovery_timeout_ms", 30000, "success_threshold", 2,
		"half_open_max_calls", 2, "request_timeout_ms", 45000}
	with := func(extra ...any) []any { return append(append([]any{"configure", "bbbench"}, base...), extra...) }
	scenarios := []scenario{
		{"mem-rules-none", "600 calls, no window (the default rule)", with(), 0, seedError.Error()},
		{"mem-rules-count60", "600 calls, count window of 600 in 60 buckets, every bucket full, 41-byte errors",
			with("window_calls", 600, "window_buckets", 60, "failure_rate_threshold", 50, "minimum_calls", 20), 0, seedError.Error()},
		{"mem-rules-time60", "600 calls over 1.2s, time window of 600ms in 60 buckets, every bucket full, 41-byte errors",
			with("window_ms", 600, "window_buckets", 60, "failure_rate_threshold", 50, "minimum_calls", 20,
				"slow_call_ms", 1000, "slow_call_rate_threshold", 80), 1200 * time.Millisecond, seedError.Error()},
		{"mem-rules-count60-long", "the count window with 130-byte errors (the metrics hash turns into a hash table)",
			with("window_calls", 600, "window_buckets", 60, "failure_rate_threshold", 50, "minimum_calls", 20), 0, realisticError.Error()},
		{"mem-rules-idle", "a window configured, no call yet", with("window_ms", 60000, "window_buckets", 60, "failure_rate_threshold", 50), -1, ""},
	}
	var out []BreakerMemory
	for _, sc := range scenarios {
		keys := breakerbox.Keys(sc.name)
		if err := rdb.Del(ctx, keys...).Err(); err != nil {
			return nil, err
		}
		if err := rdb.EvalSha(ctx, sha, keys, sc.config...).Err(); err != nil {
			return nil, fmt.Errorf("%s: configure: %w", sc.name, err)
		}
		if sc.spread >= 0 {
			start := time.Now()
			for i := 0; i < 600; i++ {
				if sc.spread > 0 {
					if wait := time.Until(start.Add(sc.spread * time.Duration(i) / 600)); wait > 0 {
						time.Sleep(wait)
					}
				}
				args := []any{"record", 0, "s", 0, "", "", "12", ""}
				if i%10 == 9 {
					args = []any{"record", 0, "f", 0, "", sc.fail, "12", ""}
				}
				if err := rdb.EvalSha(ctx, sha, keys, args...).Err(); err != nil {
					return nil, fmt.Errorf("%s: record: %w", sc.name, err)
				}
			}
		}
		m, err := breakerMemory(ctx, rdb, sc.label, sc.name)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// windowBytes is what the window adds to a breaker: in all (every key,
// against the same breaker without one: its config hash also holds the
// rules' fields, and its history's config_changed entry names them), and
// in the metrics hash alone (the window's own fields).
func windowBytes(mem []BreakerMemory, label string) (all, metrics int64, ok bool) {
	var with, without *BreakerMemory
	for i := range mem {
		switch {
		case mem[i].Scenario == label:
			with = &mem[i]
		case strings.HasPrefix(mem[i].Scenario, "600 calls, no window"):
			without = &mem[i]
		}
	}
	if with == nil || without == nil {
		return 0, 0, false
	}
	return with.Total - without.Total, with.Bytes("metrics") - without.Bytes("metrics"), true
}

// writeRules writes the trip rules' section of the report.
func (r *Report) writeRules(w io.Writer) {
	if len(r.ScriptCosts) == 0 && len(r.WindowMemory) == 0 {
		return
	}
	fmt.Fprintln(w, "### Trip rules (issue 11): what a window costs")
	fmt.Fprintln(w)
	if len(r.ScriptCosts) > 0 {
		fmt.Fprintf(w, "The script called directly (EVALSHA, 20 per pipeline, %d calls per repetition, %d repetitions interleaved, medians), each case on its own breaker already holding that many outcomes; `v2` is main's script before issue 11, run beside it. \"Server CPU\" is INFO cpu per call: the script plus reading the command and writing the reply.\n\n",
			r.ScriptCosts[0].Calls, r.Opts.RuleReps)
		fmt.Fprintln(w, "| case | what | script µs per call | ÷ default rule | server CPU µs, 20 per round trip | ÷ default rule | server CPU µs, one per round trip | ÷ default rule |")
		fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|")
		for _, c := range r.ScriptCosts {
			ref := "record"
			if strings.Contains(c.Name, "allow") {
				ref = "allow"
			}
			b, _ := costOf(r.ScriptCosts, ref)
			fmt.Fprintf(w, "| %s | %s | %.2f | %s | %.2f | %s | %.2f | %s |\n", c.Name, c.Desc, c.ScriptUs, ratioText(c.ScriptUs/b.ScriptUs),
				c.CPUUs, ratioText(c.CPUUs/b.CPUUs), c.SingleCPUUs, ratioText(c.SingleCPUUs/b.SingleCPUUs))
		}
		fmt.Fprintln(w)
	}
	if len(r.WindowMemory) > 0 {
		fmt.Fprintln(w, "Memory, `MEMORY USAGE key SAMPLES 0` over every key of the breaker (600 calls each, every 10th a failure):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| breaker | keys that exist (type, length) | bytes per key | total bytes |")
		fmt.Fprintln(w, "|---|---|---|--:|")
		for _, m := range r.WindowMemory {
			var parts []string
			for _, k := range m.Keys {
				parts = append(parts, fmt.Sprintf("%s %d", k.Key, k.Bytes))
			}
			fmt.Fprintf(w, "| %s | %s | %s | %d |\n", m.Scenario, m.KeyList(), strings.Join(parts, ", "), m.Total)
		}
		fmt.Fprintln(w)
	}
}

// ruleTargets checks issue 11's cost targets against the run.
func (r *Report) ruleTargets() []Target {
	var ts []Target
	if v2, ok := costOf(r.ScriptCosts, "v2-record"); ok {
		cur, _ := costOf(r.ScriptCosts, "record")
		ts = append(ts, Target{Goal: "issue 11: a breaker with only the default rule costs nothing extra (record of a success, beside main's script; within 5%, the noise of this machine)",
			Measured: fmt.Sprintf("script %.2f µs against %.2f (%s), server CPU %.2f µs against %.2f (%s), one per round trip %.2f against %.2f (%s)",
				cur.ScriptUs, v2.ScriptUs, ratioText(cur.ScriptUs/v2.ScriptUs), cur.CPUUs, v2.CPUUs, ratioText(cur.CPUUs/v2.CPUUs),
				cur.SingleCPUUs, v2.SingleCPUUs, ratioText(cur.SingleCPUUs/v2.SingleCPUUs)),
			Met: cur.ScriptUs <= v2.ScriptUs*1.05, Checked: true})
		av2, _ := costOf(r.ScriptCosts, "v2-allow")
		acur, _ := costOf(r.ScriptCosts, "allow")
		ts = append(ts, Target{Goal: "issue 11: ... and an allow in closed",
			Measured: fmt.Sprintf("script %.2f µs against %.2f (%s), server CPU %.2f µs against %.2f (%s)", acur.ScriptUs, av2.ScriptUs,
				ratioText(acur.ScriptUs/av2.ScriptUs), acur.CPUUs, av2.CPUUs, ratioText(acur.CPUUs/av2.CPUUs)),
			Met: acur.ScriptUs <= av2.ScriptUs*1.05, Checked: true})
		for _, name := range []string{"record-count-window", "record-time-window", "record-time-window-slow"} {
			c, ok := costOf(r.ScriptCosts, name)
			if !ok {
				continue
			}
			ts = append(ts, Target{Goal: fmt.Sprintf("issue 11: a record with a window (%s) costs ≤ 1.25× the Redis CPU of one without, one per round trip", name),
				Measured: fmt.Sprintf("server CPU %.2f µs against %.2f (%s); 20 per round trip %.2f against %.2f (%s); the script alone %.2f µs against %.2f (%s)",
					c.SingleCPUUs, cur.SingleCPUUs, ratioText(c.SingleCPUUs/cur.SingleCPUUs), c.CPUUs, cur.CPUUs,
					ratioText(c.CPUUs/cur.CPUUs), c.ScriptUs, cur.ScriptUs, ratioText(c.ScriptUs/cur.ScriptUs)),
				Met: c.SingleCPUUs <= cur.SingleCPUUs*1.25, Checked: true})
		}
	}
	for _, m := range r.WindowMemory {
		if !strings.Contains(m.Scenario, "every bucket full") && !strings.Contains(m.Scenario, "130-byte") {
			continue
		}
		if all, metrics, ok := windowBytes(r.WindowMemory, m.Scenario); ok {
			ts = append(ts, Target{Goal: "issue 11: a 60-bucket window adds ≤ 1 KB to a breaker (" + m.Scenario + ")",
				Measured: fmt.Sprintf("%d bytes in all (%d in the metrics hash, the window's own fields; the rest is the rules' config fields and the config_changed entry naming them); %d bytes for the breaker",
					all, metrics, m.Total), Met: all <= 1024, Checked: true})
		}
	}
	for _, row := range r.Rows {
		if row.Case != "bb-strict-closed-window" {
			continue
		}
		plain, ok := r.row("bb-strict-closed", row.Mode)
		if !ok || plain.CPUUsPerCall == 0 {
			continue
		}
		ts = append(ts, Target{Goal: fmt.Sprintf("issue 11: Strict with a window, %s callers: Redis CPU per call (allow + record) beside without", row.Mode.Label()),
			Measured: fmt.Sprintf("%.1f µs against %.1f (%s); script %.1f µs against %.1f", row.CPUUsPerCall, plain.CPUUsPerCall,
				ratioText(row.CPUUsPerCall/plain.CPUUsPerCall), row.ScriptUsPerCall, plain.ScriptUsPerCall),
			Info: true, Checked: true})
	}
	return ts
}
