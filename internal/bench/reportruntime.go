package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// runtimeTargets are issue 9's targets: the shared runtime, trips under
// load, and a stalled Redis.
func (r *Report) runtimeTargets() []Target {
	var ts []Target
	for _, tl := range r.TripLoads {
		if tl.NoPeek || tl.Procs != 4 || tl.Conc != 8 {
			continue // the load; the others are shown in their table
		}
		label := fmt.Sprintf("%d processes × %d goroutines calling in a tight loop", tl.Procs, tl.Conc)
		ts = append(ts, Target{Goal: "issue 9: a trip reaches every worker's view in ≤ 1 ms at p99 (" + label + ")",
			Measured: fmt.Sprintf("p50 %s, p99 %s, max %s over %d views (%d trips)", FormatDuration(tl.P50),
				FormatDuration(tl.P99), FormatDuration(tl.Max), len(tl.Lag), tl.Trips),
			Met: tl.P99 <= time.Millisecond, Checked: true})
		ts = append(ts, Target{Goal: "issue 9: no call admitted from a stale view more than 1 ms after the trip (" + label + ")",
			Measured: fmt.Sprintf("latest admission %s after the trip; %d of %d worker-trips admitted past 1 ms",
				signedDuration(tl.StaleMax), tl.StaleOver1ms, len(tl.Stale)),
			Met: tl.StaleOver1ms == 0, Checked: true})
	}
	if rt := r.Runtime; rt != nil {
		n := rt.Breakers
		ts = append(ts,
			Target{Goal: fmt.Sprintf("issue 9: %d Fast breakers: ≤ 2 Redis connections beyond go-redis's pool", n),
				Measured: fmt.Sprintf("%d connections: the pool's %d + %d (%d pub/sub, subscribing %d channels)",
					rt.Conns, rt.PoolConns, rt.Conns-rt.PoolConns, rt.PubSubConns, rt.Channels),
				Met: rt.Conns-rt.PoolConns <= 2, Checked: true},
			Target{Goal: fmt.Sprintf("issue 9: %d Fast breakers: idle Redis commands ≤ 10/s, independent of the number of breakers", n),
				Measured: fmt.Sprintf("%.1f/s over %s (%s)", rt.IdleCommands, rt.IdleWindow, rt.IdleCommandList),
				Met:      rt.IdleCommands <= 10, Checked: true},
			Target{Goal: fmt.Sprintf("issue 9: %d Fast breakers: ≤ 20 goroutines of ours per process", n),
				Measured: fmt.Sprintf("%d (of %d in the process)", rt.OurGoroutines, rt.Goroutines),
				Met:      rt.OurGoroutines <= 20, Checked: true},
			Target{Goal: fmt.Sprintf("issue 9: %d Fast breakers: Go heap ≤ 4 KB per breaker", n),
				Measured: fmt.Sprintf("%.0f bytes per breaker", rt.HeapPerBreaker),
				Met:      rt.HeapPerBreaker <= 4096, Checked: true},
			Target{Goal: fmt.Sprintf("issue 9: creating %d breakers < 200 ms", n),
				Measured: fmt.Sprintf("New ×%d: %s; until every one is Ready (registered, subscribed, view confirmed): %s",
					n, FormatDuration(rt.Create), FormatDuration(rt.Ready)),
				Met: rt.Create < 200*time.Millisecond, Checked: true})
	}
	if st := r.Stall; st != nil {
		ts = append(ts,
			Target{Goal: fmt.Sprintf("issue 9: Redis stalled %s: max caller latency ≤ the Redis timeout (%s) + 50 ms", st.Stall, st.Timeout),
				Measured: fmt.Sprintf("max %s (%s), p99 %s over %d calls", FormatDuration(st.Max), st.MaxWhat,
					FormatDuration(st.P99), st.Calls),
				Met: st.Max <= st.Timeout+50*time.Millisecond, Checked: true},
			Target{Goal: fmt.Sprintf("issue 9: Redis stalled: /health answers within its timeout (%s)", st.HealthTimeout),
				Measured: fmt.Sprintf("slowest answer %s; codes %s", FormatDuration(st.HealthMax), codesText(st.HealthCodes)),
				Met:      st.HealthMax <= st.HealthTimeout+50*time.Millisecond, Checked: true})
	}
	return ts
}

// writeRuntime writes the sections of issue 9's measurements.
func (r *Report) writeRuntime(w io.Writer) {
	if len(r.TripLoads) > 0 {
		fmt.Fprintf(w, "\n### Trip propagation under load\n\n")
		fmt.Fprintln(w, "Worker processes each call one Fast breaker from goroutines in a tight loop (`Allow`, then `Success` around nothing); a failure recorded by the harness (failure threshold 1, so the workers' successes cannot hold it off) trips it. The trip's instant is when an idle subscriber in the harness receives the script's announcement. Each worker reports when its view opened (its transition log line) and when it last admitted a call. The breaker is reset between trips. \"Peek off\" is the client without its peek at the subscription's socket (`internal/knobs.NoPeek`): what the runtime gave before it. The last two columns time the same views from when the harness sent the tripping record (that record's own round trip included).")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| load | peek | trips | views | view open p50 | p99 | max | latest admission after the trip | worker-trips admitting past 1 ms | calls admitted | tripping record p50 | view open p99 from its send | a worker's threads waiting for a CPU |")
		fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
		for _, tl := range r.TripLoads {
			peek := "on"
			if tl.NoPeek {
				peek = "off (before)"
			}
			fmt.Fprintf(w, "| %dp×%d | %s | %d | %d | %s | %s | %s | %s | %d | %d | %s | %s | %s per s |\n", tl.Procs, tl.Conc, peek, tl.Trips,
				len(tl.Lag), FormatDuration(tl.P50), FormatDuration(tl.P99), FormatDuration(tl.Max),
				signedDuration(tl.StaleMax), tl.StaleOver1ms, tl.Admitted, FormatDuration(tl.RecordP50), FormatDuration(tl.SentP99),
				FormatDuration(tl.RunqueueWait))
		}
	}
	if rt := r.Runtime; rt != nil {
		fmt.Fprintf(w, "\n### %d breakers in one process\n\n", rt.Breakers)
		fmt.Fprintf(w, "One process (re-executed by the benchmark) makes %d Fast breakers with `client.New` on one go-redis client (default options), waits until each is `Ready`, calls each once, flushes, and idles; the harness counts the process's connections in `CLIENT LIST` and the commands Redis runs over %s of idling (`INFO commandstats`).\n\n", rt.Breakers, rt.IdleWindow)
		fmt.Fprintln(w, "| New ×N | until all Ready | Go heap per breaker | goroutines (ours / all) | connections (pool + ours) | pub/sub connections (channels) | idle commands/s |")
		fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|--:|")
		fmt.Fprintf(w, "| %s | %s | %.0f B | %d / %d | %d + %d | %d (%d) | %.1f |\n", FormatDuration(rt.Create),
			FormatDuration(rt.Ready), rt.HeapPerBreaker, rt.OurGoroutines, rt.Goroutines, rt.PoolConns,
			rt.Conns-rt.PoolConns, rt.PubSubConns, rt.Channels, rt.IdleCommands)
	}
	if st := r.Stall; st != nil {
		fmt.Fprintf(w, "\n### Redis stalled\n\n")
		fmt.Fprintf(w, "A redis-server of the benchmark's own is stopped with SIGSTOP for %s while 8 goroutines call `Execute` on a Fast breaker and 8 on a Strict one in a tight loop (one call in five a failure, which waits for its batch), on a go-redis client with its defaults (context deadlines ignored, 3 s read timeout), Redis timeout %s; `/health` (timeout %s) is asked every 100 ms.\n\n", st.Stall, st.Timeout, st.HealthTimeout)
		fmt.Fprintln(w, "| calls during the stall | max latency | p99 | outage policy from | every breaker back on Redis after SIGCONT | slowest /health |")
		fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|")
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s (%s) |\n", st.Calls, FormatDuration(st.Max), FormatDuration(st.P99),
			FormatDuration(st.OutageAfter), FormatDuration(st.RecoveredIn), FormatDuration(st.HealthMax), codesText(st.HealthCodes))
	}
}

// signedDuration prints d, with a minus sign before the trip.
func signedDuration(d time.Duration) string {
	if d < 0 {
		return "−" + FormatDuration(-d) + " (none after)"
	}
	return FormatDuration(d)
}

func codesText(codes map[int]int) string {
	var ks []int
	for k := range codes {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%d ×%d", k, codes[k]))
	}
	return strings.Join(parts, ", ")
}
