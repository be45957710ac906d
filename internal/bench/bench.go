package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
)

// Mode is how many callers run a case at once: Conc goroutines in this
// process (Procs 0), or Procs worker processes with Conc goroutines each.
type Mode struct {
	Procs int
	Conc  int
}

// Label names the mode in tables: "1", "64", "4p×8".
func (m Mode) Label() string {
	if m.Procs == 0 {
		return fmt.Sprint(m.Conc)
	}
	return fmt.Sprintf("%dp×%d", m.Procs, m.Conc)
}

func (m Mode) key() string {
	if m.Procs == 0 {
		return fmt.Sprint(m.Conc)
	}
	return fmt.Sprintf("p%dx%d", m.Procs, m.Conc)
}

// Measure is one case in one mode in one repetition.
type Measure struct {
	Case  string
	Mode  Mode
	Rep   int
	Calls int64
	Errs  int64
	Err   string // first unexpected error

	NsPerOp float64 // wall time (until outcomes are flushed) / calls
	PerSec  float64
	P50     time.Duration
	P99     time.Duration
	Flush   time.Duration // the final flush, included in NsPerOp

	RTPerCall       float64 // client round trips per call, background included
	CallerRTPerCall float64 // of those, made on the caller's path
	CmdsPerCall     float64 // commands sent by the client per call
	SrvCmdsPerCall  float64 // commands the server ran per call, inside scripts included
	ScriptsPerCall  float64 // EVALSHA and EVAL per call
	ScriptUsPerCall float64 // their server time (usec in commandstats) per call
	CPUUsPerCall    float64 // the server's CPU time (INFO cpu) per call
	ServerCmds      CommandStats

	Exact    bool   // recorded outcomes equal calls
	Checked  bool   // false when there is nothing to check (PING)
	Recorded int64  // what the breaker recorded during the cell
	Note     string // why Exact is false
}

// env is what every cell needs.
type env struct {
	opts Options
	addr string
	ctl  *redis.Client // the harness's own client, not counted
	log  io.Writer
}

// runCell measures one case in one mode on a fresh breaker.
func (e *env) runCell(ctx context.Context, cs *Case, m Mode, rep int) (Measure, error) {
	name := fmt.Sprintf("bench-%s-%s-r%d", cs.Name, m.key(), rep)
	if cs.prepare != nil {
		if err := cs.prepare(ctx, e.ctl, name); err != nil {
			return Measure{}, fmt.Errorf("%s: prepare: %w", name, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	spec := cellSpec{Case: cs.Name, Name: name, Addr: e.addr, Conc: m.Conc, Dur: e.opts.Dur, Warm: e.opts.Warm}
	var ws []*worker
	if m.Procs == 0 {
		ws = append(ws, startLocalWorker(cctx, spec))
	} else {
		for i := 0; i < m.Procs; i++ {
			w, err := startProcessWorker(cctx, e.opts.Exe, spec)
			if err != nil {
				return Measure{}, err
			}
			ws = append(ws, w)
		}
	}
	fail := func(err error) (Measure, error) {
		cancel()
		for _, w := range ws {
			<-w.result
		}
		return Measure{}, fmt.Errorf("%s: %w", name, err)
	}
	for _, w := range ws {
		if err := <-w.ready; err != nil {
			return fail(err)
		}
	}
	var base int64
	if cs.recorded != nil {
		var err error
		if base, err = cs.recorded(ctx, e.ctl, name); err != nil {
			return fail(err)
		}
	}
	s0, err := Snapshot(ctx, e.ctl)
	if err != nil {
		return fail(err)
	}
	for _, w := range ws {
		close(w.start)
	}
	var results []cellResult
	for _, w := range ws {
		out := <-w.result
		if out.err != nil {
			return fail(out.err)
		}
		results = append(results, out.res)
	}
	s1, err := Snapshot(ctx, e.ctl)
	if err != nil {
		return Measure{}, err
	}
	var after int64
	if cs.recorded != nil {
		if after, err = cs.recorded(ctx, e.ctl, name); err != nil {
			return Measure{}, err
		}
	}
	return summarize(cs, m, rep, results, s0, s1, cs.recorded != nil, after-base), nil
}

// summarize turns the workers' results and the server's counters into a Measure.
func summarize(cs *Case, m Mode, rep int, results []cellResult, s0, s1 ServerSnapshot,
	shared bool, recorded int64) Measure {
	me := Measure{Case: cs.Name, Mode: m, Rep: rep}
	h := NewHistogram()
	var elapsed, flush time.Duration
	var client Counts
	local := int64(-1)
	for _, r := range results {
		me.Calls += r.Calls
		me.Errs += r.Errors
		if me.Err == "" {
			me.Err = r.FirstErr
		}
		h.Merge(r.Hist)
		elapsed = max(elapsed, r.Elapsed)
		flush = max(flush, r.Flush)
		client = client.Add(r.Client)
		if r.Local >= 0 {
			local = max(local, 0) + r.Local
		}
	}
	calls := float64(max(me.Calls, 1))
	me.NsPerOp = float64(elapsed) / calls
	me.PerSec = calls / elapsed.Seconds()
	me.P50, me.P99, me.Flush = h.Quantile(0.50), h.Quantile(0.99), flush
	me.RTPerCall = float64(client.RoundTrips) / calls
	me.CallerRTPerCall = float64(client.CallerRoundTrips) / calls
	me.CmdsPerCall = float64(client.Commands) / calls
	d := s1.Cmds.Sub(s0.Cmds)
	delete(d, "info")
	me.ServerCmds = d
	me.SrvCmdsPerCall = float64(d.Total().Calls) / calls
	scripts := CmdStat{Calls: d["evalsha"].Calls + d["eval"].Calls, Usec: d["evalsha"].Usec + d["eval"].Usec}
	me.ScriptsPerCall = float64(scripts.Calls) / calls
	me.ScriptUsPerCall = float64(scripts.Usec) / calls
	me.CPUUsPerCall = (s1.CPUSec - s0.CPUSec) * 1e6 / calls
	switch {
	case shared:
		me.Checked, me.Recorded = true, recorded
	case local >= 0:
		me.Checked, me.Recorded = true, local
	}
	if me.Checked {
		me.Exact = me.Recorded == me.Calls
		if !me.Exact {
			me.Note = fmt.Sprintf("recorded %d of %d calls", me.Recorded, me.Calls)
		}
	}
	return me
}

// runMatrix runs every case in every mode, opts.Reps times. Within a
// repetition and a mode the cases run in a shuffled order, so that a slow
// moment of the shared machine does not always hit the same case.
func (e *env) runMatrix(ctx context.Context, cases []*Case, modes []Mode) ([]Measure, error) {
	var out []Measure
	rng := rand.New(rand.NewPCG(uint64(e.opts.Seed), 0))
	total := e.opts.Reps * len(modes) * len(cases)
	n := 0
	for rep := 0; rep < e.opts.Reps; rep++ {
		for _, m := range modes {
			order := append([]*Case(nil), cases...)
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, cs := range order {
				n++
				me, err := e.runCell(ctx, cs, m, rep)
				if err != nil {
					return out, err
				}
				fmt.Fprintf(e.log, "[%3d/%d] rep %d %-5s %-19s %9.0f ns/op p50 %-9s p99 %-9s %9.0f/s caller-RT %.3f exact=%v %s\n",
					n, total, rep, m.Label(), cs.Name, me.NsPerOp, me.P50, me.P99, me.PerSec,
					me.CallerRTPerCall, exactWord(me), me.Note)
				out = append(out, me)
			}
		}
	}
	return out, nil
}

func exactWord(m Measure) string {
	switch {
	case !m.Checked:
		return "n/a"
	case m.Exact:
		return "yes"
	}
	return "NO"
}
