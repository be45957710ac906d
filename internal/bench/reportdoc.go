package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Report is everything one run measured.
type Report struct {
	Opts        Options
	Args        []string
	Machine     Machine
	Cases       []*Case
	Modes       []Mode
	Rows        []Row
	Propagation []Propagation
	TripLoads   []TripLoad
	Runtime     *RuntimeFigures
	Stall       *StallFigures
	Memory      []BreakerMemory
	Scales      []Scale
	// ScriptCosts and WindowMemory are the trip rules' costs (issue 11).
	ScriptCosts  []ScriptCost
	WindowMemory []BreakerMemory
	Took         time.Duration
}

// Target is one goal of issue 6 and what the run measured for it.
type Target struct {
	Goal     string
	Measured string
	Met      bool
	Checked  bool // false when the run did not measure it
	Info     bool // not one of the targets: shown without a verdict
}

func (r *Report) row(cs string, m Mode) (Row, bool) { return FindRow(r.Rows, cs, m) }

// Targets checks the targets against the run.
func (r *Report) Targets() []Target {
	var ts []Target
	seq := Mode{Conc: 1}
	if row, ok := r.row("bb-fast-closed", seq); ok {
		worst := max(row.P50Ratio, row.NsRatio)
		ts = append(ts, Target{Goal: "closed, sequential, default (Fast) mode: overhead ≤ 1.2× a PING round trip",
			Measured: fmt.Sprintf("p50 %s = %s PING's; ns/op (flush included) %s PING's",
				FormatDuration(row.P50), ratioText(row.P50Ratio), ratioText(row.NsRatio)),
			Met: worst <= 1.2, Checked: true})
	}
	for _, m := range r.Modes {
		if m == seq {
			continue
		}
		row, ok := r.row("bb-fast-closed", m)
		if !ok {
			continue
		}
		ts = append(ts, Target{Goal: fmt.Sprintf("closed, %s callers, Fast: calls/s ≥ 70%% of PING's", m.Label()),
			Measured: fmt.Sprintf("%.0f calls/s = %s of PING's", row.PerSec, pctText(row.TputRatio)),
			Met:      row.TputRatio >= 0.7, Checked: true})
	}
	var openRT []string
	openMet, openSeen := true, false
	for _, m := range r.Modes {
		if row, ok := r.row("bb-fast-open", m); ok {
			openSeen = true
			openRT = append(openRT, fmt.Sprintf("%s: %s", m.Label(), perCall(row.CallerRTPerCall)))
			openMet = openMet && row.CallerRTPerCall < 0.001 && row.RTPerCall < 0.01
		}
	}
	if openSeen {
		ts = append(ts, Target{Goal: "open, Fast: a refused call costs no round trip in the common case",
			Measured: "round trips per refused call on the caller's path, by callers: " + strings.Join(openRT, ", "),
			Met:      openMet, Checked: true})
	}
	strictMet, strictSeen := true, false
	var strictRT []string
	for _, cs := range []string{"bb-strict-closed", "bb-strict-halfopen", "bb-strict-open"} {
		worst := 0.0
		for _, m := range r.Modes {
			if row, ok := r.row(cs, m); ok {
				strictSeen = true
				worst = max(worst, row.CallerRTPerCall)
			}
		}
		strictRT = append(strictRT, fmt.Sprintf("%s ≤ %s", cs, perCall(worst)))
		strictMet = strictMet && worst <= 2.0001
	}
	if strictSeen {
		ts = append(ts, Target{Goal: "Strict: ≤ 2 round trips per call", Measured: strings.Join(strictRT, "; "),
			Met: strictMet, Checked: true})
	}
	for _, m := range r.Modes {
		row, ok := r.row("bb-strict-closed", m)
		if !ok {
			continue
		}
		ts = append(ts, Target{Goal: fmt.Sprintf("issue 10: the script's Redis CPU per Strict call (allow + record, commandstats), %s callers, ≤ 20 µs", m.Label()),
			Measured: fmt.Sprintf("%.1f µs", row.ScriptUsPerCall), Met: row.ScriptUsPerCall <= 20, Checked: true})
		if m.Conc == 8 || m.Conc == 64 {
			ts = append(ts, Target{Goal: fmt.Sprintf("issue 10: Strict, closed, %s callers: calls/s ≥ 0.5× PING's", m.Label()),
				Measured: fmt.Sprintf("%.0f calls/s = %s PING's", row.PerSec, ratioText(row.TputRatio)),
				Met:      row.TputRatio >= 0.5, Checked: true})
		}
	}
	exactMet, exactSeen := true, false
	var inexact []string
	for _, row := range r.Rows {
		if strings.HasPrefix(row.Case, "bb-") && row.Checked {
			exactSeen = true
			if !row.Exact {
				exactMet = false
				inexact = append(inexact, row.Case+"/"+row.Mode.Label()+": "+row.Note)
			}
		}
	}
	if exactSeen {
		m := "every breakerbox case, every mode, every repetition: recorded = calls"
		if !exactMet {
			m = strings.Join(inexact, "; ")
		}
		ts = append(ts, Target{Goal: "counts exact in every mode (after Flush)", Measured: m, Met: exactMet, Checked: true})
	}
	for _, p := range r.Propagation {
		goal := "trip reaches another worker (" + p.Where + ") in ≤ 1 ms"
		if p.Loaded {
			goal = "(not an issue target) from the start of an outage until another worker refuses, while worker A is saturated: " + p.Where
		}
		ts = append(ts, Target{Goal: goal, Info: p.Loaded,
			Measured: fmt.Sprintf("p50 %s, p99 %s over %d trips", FormatDuration(p.P50), FormatDuration(p.P99), p.Trips),
			Met:      p.P99 <= time.Millisecond, Checked: true})
	}
	ts = append(ts, r.runtimeTargets()...)
	for _, m := range r.Memory {
		var goal string
		var limit int64
		switch {
		case strings.HasPrefix(m.Scenario, "registered"):
			goal, limit = "issue 10: a registered breaker that never failed ≤ 600 B", 600
		case strings.HasPrefix(m.Scenario, "one opening"):
			goal, limit = "issue 10: one opening with a 130-byte error ≤ 2 KB", 2048
		case strings.Contains(m.Scenario, "41-byte"):
			goal, limit = "issue 10: a full 100-event history, ~40-byte errors, ≤ 10 KB", 10240
		case strings.Contains(m.Scenario, "500-byte"):
			goal, limit = "issue 10: a full 100-event history, 500-byte errors, ≤ 20 KB", 20480
		default:
			continue
		}
		_, how, _ := strings.Cut(m.Scenario, " (")
		ts = append(ts, Target{Goal: goal + " (" + how,
			Measured: fmt.Sprintf("%d bytes", m.Total), Met: m.Total <= limit, Checked: true})
	}
	ts = append(ts, r.ruleTargets()...)
	for _, s := range r.Scales {
		ts = append(ts, Target{Goal: fmt.Sprintf("%d breakers%s: memory grows linearly", s.Breakers, s.label()),
			Measured: fmt.Sprintf("%.0f bytes per breaker (least squares over %d points), R² = %.5f", s.PerBreaker, len(s.Points), s.R2),
			Met:      s.R2 >= 0.999, Checked: true})
		ts = append(ts, Target{Goal: fmt.Sprintf("%d breakers%s: admin.List < 1 s", s.Breakers, s.label()),
			Measured: fmt.Sprintf("median %s over %d runs (%d listed)", FormatDuration(s.ListMedian), len(s.ListTimes), s.Listed),
			Met:      s.ListMedian < time.Second && s.Listed == s.Breakers, Checked: true})
	}
	return ts
}

// Write writes the report as markdown.
func (r *Report) Write(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "## Run\n\n")
	fmt.Fprintf(w, "- Machine: %d CPUs (%s), GOMAXPROCS %d, Linux %s; shared with other jobs.\n", m.CPUs, m.CPUModel, m.GOMAXPROCS, m.Kernel)
	fmt.Fprintf(w, "- Go %s, redis-server %s (started by the benchmark on 127.0.0.1, `--save \"\" --appendonly no`), go-redis default pool (10 × GOMAXPROCS connections per client).\n", m.GoVersion, m.Redis)
	fmt.Fprintf(w, "- Command: `go run ./cmd/bbbench %s` — took %s.\n", strings.Join(r.Args, " "), r.Took.Round(time.Second))
	var labels []string
	for _, md := range r.Modes {
		labels = append(labels, md.Label())
	}
	fmt.Fprintf(w, "- Each case ran %s (after a %s warm-up) per callers setting (%s; \"4p×8\" is 4 worker processes of 8 goroutines), %d repetitions in shuffled order. Numbers are medians over the repetitions; ratios are computed against PING in the same repetition and setting, then medianed.\n\n",
		r.Opts.Dur, r.Opts.Warm, strings.Join(labels, ", "), r.Opts.Reps)
	fmt.Fprintf(w, "Cases:\n\n")
	for _, c := range r.Cases {
		fmt.Fprintf(w, "- `%s`: %s\n", c.Name, c.Desc)
	}
	fmt.Fprintf(w, "\n### Speed\n\n")
	WriteSpeedTable(w, r.Rows)
	fmt.Fprintf(w, "\n### Cost per call\n\n")
	WriteCostTable(w, r.Rows)

	var cpuRows []Row
	for _, row := range r.Rows {
		if strings.HasPrefix(row.Case, "bb-") && row.ScriptsPerCall > 0 {
			cpuRows = append(cpuRows, row)
		}
	}
	if len(cpuRows) > 0 {
		fmt.Fprintf(w, "\n### Redis CPU per protected call\n\n")
		fmt.Fprintln(w, "| case | callers | script calls per protected call | usec_per_call of EVALSHA | script µs per protected call | Redis CPU µs per call (INFO cpu) |")
		fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|")
		for _, row := range cpuRows {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", row.Case, row.Mode.Label(), perCall(row.ScriptsPerCall),
				sig3(row.ScriptUsPerCall/row.ScriptsPerCall), perCall(row.ScriptUsPerCall), perCall(row.CPUUsPerCall))
		}
	}
	if len(r.Propagation) > 0 {
		fmt.Fprintf(w, "\n### Trip propagation\n\n")
		fmt.Fprintln(w, "From worker A calling Failure for the threshold-th consecutive failure (Fast admission: it waits for its batch) until worker B's local view says open. B makes no call; it learns from the script's PUBLISH. After each trip B's next Allow is checked to refuse with no round trip; the breaker is reset between trips.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| worker B | trips | p50 | p99 | max | A's own Failure call, p50 | B refused locally (0 round trips) |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|")
		for _, p := range r.Propagation {
			self := FormatDuration(p.ASelfP50)
			if p.Loaded {
				self = "– (from the outage's start)"
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %d of %d |\n", p.Where, p.Trips, FormatDuration(p.P50),
				FormatDuration(p.P99), FormatDuration(p.Max), self, p.LocalRefus, p.Trips)
		}
	}
	r.writeRuntime(w)
	if len(r.Memory) > 0 {
		fmt.Fprintf(w, "\n### Memory per breaker\n\n")
		fmt.Fprintln(w, "`MEMORY USAGE key SAMPLES 0` summed over the breaker's keys that exist (the registry set adds one member per breaker, not counted).")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| breaker | keys that exist (type, length) | bytes per key | total bytes |")
		fmt.Fprintln(w, "|---|---|---|--:|")
		for _, mem := range r.Memory {
			var per []string
			for _, k := range mem.Keys {
				per = append(per, fmt.Sprintf("%s %d", k.Key, k.Bytes))
			}
			fmt.Fprintf(w, "| %s | %s | %s | %d |\n", mem.Scenario, mem.KeyList(), strings.Join(per, ", "), mem.Total)
		}
	}
	for _, s := range r.Scales {
		fmt.Fprintf(w, "\n### %d breakers%s\n\n", s.Breakers, s.label())
		fmt.Fprintln(w, "Created as the Go client leaves them (config registered, in the registry, 3 successes and a failure each; one in ten tripped once), in steps, reading `used_memory` after each step:")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| breakers | used_memory above empty | per breaker |")
		fmt.Fprintln(w, "|--:|--:|--:|")
		for _, p := range s.Points[1:] {
			fmt.Fprintf(w, "| %.0f | %.0f | %.0f |\n", p[0], p[1], p[1]/p[0])
		}
		fmt.Fprintf(w, "\nLeast-squares slope %.0f bytes per breaker, R² = %.5f.", s.PerBreaker, s.R2)
		for i, m := range s.Samples {
			what := []string{"a never-failed one", "a tripped one"}[min(i, 1)]
			fmt.Fprintf(w, " By MEMORY USAGE, %s: %d bytes (%s).", what, m.Total, m.KeyList())
		}
		fmt.Fprint(w, "\n\n")
		var lt []string
		for _, d := range s.ListTimes {
			lt = append(lt, FormatDuration(d))
		}
		fmt.Fprintf(w, "`admin.List` (registry SMEMBERS + SCAN + pipelined status, 1,000 per round trip; what `cbctl list` and a metrics scrape do): median %s (runs: %s), %d breakers listed; `admin.Names` alone: %s on average.\n",
			FormatDuration(s.ListMedian), strings.Join(lt, ", "), s.Listed, FormatDuration(s.NamesMedian))
	}
	fmt.Fprintln(w)
	r.writeRules(w)
	fmt.Fprintf(w, "\n### Targets (issue 6)\n\n")
	fmt.Fprintln(w, "| target | measured | met |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, t := range r.Targets() {
		met := "yes"
		switch {
		case t.Info:
			met = "informational"
		case !t.Met:
			met = "**no**"
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", t.Goal, t.Measured, met)
	}
	row, ok := r.row("bb-fast-closed", Mode{Conc: 1})
	ping, okp := r.row("ping", Mode{Conc: 1})
	if ok && okp && !math.IsNaN(row.P50Ratio) {
		fmt.Fprintf(w, "\nHeadline: sequentially, a protected call in the closed state (default Fast admission) takes %s at the median, %s a PING round trip (%s); with Strict admission it takes %s.\n",
			FormatDuration(row.P50), ratioText(row.P50Ratio), FormatDuration(ping.P50), strictHeadline(r))
	}
}

func strictHeadline(r *Report) string {
	row, ok := r.row("bb-strict-closed", Mode{Conc: 1})
	if !ok {
		return "(not measured)"
	}
	return fmt.Sprintf("%s, %s PING, in 2 round trips", FormatDuration(row.P50), ratioText(row.P50Ratio))
}

func (s Scale) label() string {
	if s.Daemon {
		return ", alert daemon running"
	}
	return ", no alert daemon"
}
