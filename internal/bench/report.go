package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Row is one case in one mode, over every repetition: medians, and
// ratios to PING computed per repetition (same mode) and then medianed.
type Row struct {
	Case string
	Desc string
	Mode Mode
	Reps int

	NsPerOp, PerSec float64
	P50, P99        time.Duration
	Flush           time.Duration

	NsRatio, P50Ratio, TputRatio float64 // to PING; NaN without PING

	RTPerCall, CallerRTPerCall, CmdsPerCall, SrvCmdsPerCall float64
	ScriptsPerCall, ScriptUsPerCall, CPUUsPerCall           float64

	Calls, Errs int64
	Err         string
	Checked     bool
	Exact       bool   // in every repetition
	Note        string // first inexact repetition
}

// Aggregate groups measures by case and mode, in the given orders.
func Aggregate(ms []Measure, cases []*Case, modes []Mode) []Row {
	ping := map[[2]string]Measure{} // (mode, rep) -> PING
	for _, m := range ms {
		if m.Case == "ping" {
			ping[[2]string{m.Mode.Label(), fmt.Sprint(m.Rep)}] = m
		}
	}
	var rows []Row
	for _, cs := range cases {
		for _, mode := range modes {
			var group []Measure
			for _, m := range ms {
				if m.Case == cs.Name && m.Mode == mode {
					group = append(group, m)
				}
			}
			if len(group) == 0 {
				continue
			}
			r := Row{Case: cs.Name, Desc: cs.Desc, Mode: mode, Reps: len(group), Exact: true}
			med := func(f func(Measure) float64) float64 {
				xs := make([]float64, len(group))
				for i, m := range group {
					xs[i] = f(m)
				}
				return Median(xs)
			}
			ratio := func(f func(Measure) float64) float64 {
				var xs []float64
				for _, m := range group {
					if p, ok := ping[[2]string{mode.Label(), fmt.Sprint(m.Rep)}]; ok && f(p) > 0 {
						xs = append(xs, f(m)/f(p))
					}
				}
				return Median(xs)
			}
			r.NsPerOp = med(func(m Measure) float64 { return m.NsPerOp })
			r.PerSec = med(func(m Measure) float64 { return m.PerSec })
			r.P50 = time.Duration(med(func(m Measure) float64 { return float64(m.P50) }))
			r.P99 = time.Duration(med(func(m Measure) float64 { return float64(m.P99) }))
			r.Flush = time.Duration(med(func(m Measure) float64 { return float64(m.Flush) }))
			r.NsRatio = ratio(func(m Measure) float64 { return m.NsPerOp })
			r.P50Ratio = ratio(func(m Measure) float64 { return float64(m.P50) })
			r.TputRatio = ratio(func(m Measure) float64 { return m.PerSec })
			r.RTPerCall = med(func(m Measure) float64 { return m.RTPerCall })
			r.CallerRTPerCall = med(func(m Measure) float64 { return m.CallerRTPerCall })
			r.CmdsPerCall = med(func(m Measure) float64 { return m.CmdsPerCall })
			r.SrvCmdsPerCall = med(func(m Measure) float64 { return m.SrvCmdsPerCall })
			r.ScriptsPerCall = med(func(m Measure) float64 { return m.ScriptsPerCall })
			r.ScriptUsPerCall = med(func(m Measure) float64 { return m.ScriptUsPerCall })
			r.CPUUsPerCall = med(func(m Measure) float64 { return m.CPUUsPerCall })
			for _, m := range group {
				r.Calls += m.Calls
				r.Errs += m.Errs
				if r.Err == "" {
					r.Err = m.Err
				}
				r.Checked = r.Checked || m.Checked
				if m.Checked && !m.Exact {
					r.Exact = false
					if r.Note == "" {
						r.Note = m.Note
					}
				}
			}
			rows = append(rows, r)
		}
	}
	return rows
}

// FormatDuration prints d with three significant digits in ns, µs or ms.
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return sig3(float64(d)/1e3) + "µs"
	case d < time.Second:
		return sig3(float64(d)/1e6) + "ms"
	}
	return sig3(d.Seconds()) + "s"
}

// sig3 prints x with three significant digits and no exponent.
func sig3(x float64) string {
	switch ax := math.Abs(x); {
	case ax == 0:
		return "0"
	case ax >= 100:
		return fmt.Sprintf("%.0f", x)
	case ax >= 10:
		return fmt.Sprintf("%.1f", x)
	case ax >= 1:
		return fmt.Sprintf("%.2f", x)
	case ax >= 0.001:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.4f", x), "0"), ".")
	}
	return fmt.Sprintf("%.2g", x)
}

func ratioText(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	if x < 0.1 {
		return fmt.Sprintf("%.3f×", x)
	}
	return fmt.Sprintf("%.2f×", x)
}

func pctText(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*x)
}

func perCall(x float64) string {
	if x == 0 {
		return "0"
	}
	return sig3(x)
}

// WriteSpeedTable writes latency and throughput, with ratios to PING.
func WriteSpeedTable(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| case | callers | ns/op | ns/op ÷ PING | p50 | p50 ÷ PING | p99 | calls/s | calls/s ÷ PING | final flush |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %.0f | %s | %s | %s | %s | %.0f | %s | %s |\n",
			r.Case, r.Mode.Label(), r.NsPerOp, ratioText(r.NsRatio), FormatDuration(r.P50), ratioText(r.P50Ratio),
			FormatDuration(r.P99), r.PerSec, pctText(r.TputRatio), FormatDuration(r.Flush))
	}
}

// WriteCostTable writes what each call costs Redis and whether counts were exact.
func WriteCostTable(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| case | callers | round trips on caller's path | round trips in all | commands sent | commands run by Redis (incl. inside scripts) | script calls | script µs (commandstats) | Redis CPU µs (INFO cpu) | counts exact | errors |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|")
	for _, r := range rows {
		exact := "n/a"
		if r.Checked {
			exact = "yes"
			if !r.Exact {
				exact = "**no**: " + r.Note
			}
		}
		errs := fmt.Sprint(r.Errs)
		if r.Errs > 0 {
			errs += " (" + truncate(r.Err, 60) + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Case, r.Mode.Label(), perCall(r.CallerRTPerCall), perCall(r.RTPerCall), perCall(r.CmdsPerCall),
			perCall(r.SrvCmdsPerCall), perCall(r.ScriptsPerCall), perCall(r.ScriptUsPerCall),
			perCall(r.CPUUsPerCall), exact, errs)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// FindRow returns the row of case in mode.
func FindRow(rows []Row, cs string, m Mode) (Row, bool) {
	for _, r := range rows {
		if r.Case == cs && r.Mode == m {
			return r, true
		}
	}
	return Row{}, false
}
