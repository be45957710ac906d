package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options are the benchmark's flags.
type Options struct {
	Dur         time.Duration // per case, per mode, per repetition
	Warm        time.Duration // warm-up before each measured run
	Reps        int
	Concs       []int // goroutines in this process
	Procs       int   // worker processes (0: none)
	ProcConc    int   // goroutines per worker process
	Cases       []string
	Trips       int           // trips timed for propagation, per variant
	LoadTrips   int           // trips timed while worker A is saturated with successes
	TripLoad    int           // trips timed under each TripLoads load (0: skip)
	TripLoads   [][2]int      // processes × goroutines calling while a trip is timed
	Runtime     int           // breakers of the shared-runtime scenario (0: skip)
	Stall       time.Duration // Redis stalled this long under load (0: skip)
	Breakers    int           // breakers for the scale test (0: skip)
	Seed        int64
	RedisServer string
	Exe         string // this binary, re-executed as workers
	CPUProfile  string
	NoMemory    bool
	RuleReps    int // repetitions of the trip rules' script costs (0: skip)
	RuleCalls   int // calls per repetition
}

// The load of the trip-under-load measurement.
const (
	loadGoroutines = 8
	loadFor        = 300 * time.Millisecond
)

// ParseOptions reads the command line.
func ParseOptions(args []string, errOut io.Writer) (Options, error) {
	fs := flag.NewFlagSet("bbbench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	var o Options
	var concs, procs, cases string
	fs.DurationVar(&o.Dur, "dur", 700*time.Millisecond, "measured time per case, per concurrency, per repetition")
	fs.DurationVar(&o.Warm, "warm", 100*time.Millisecond, "warm-up before each measured run (connections, script cache, subscription)")
	fs.IntVar(&o.Reps, "reps", 3, "repetitions; the report quotes medians and median ratios to PING")
	fs.StringVar(&concs, "conc", "1,8,64", "goroutines in one process, comma-separated")
	fs.StringVar(&procs, "procs", "4x8", "worker processes × goroutines each (\"\" or 0 to skip)")
	fs.StringVar(&cases, "cases", "", "comma-separated case names (default: all): "+strings.Join(caseNames(), ","))
	fs.IntVar(&o.Trips, "trips", 200, "trips timed for propagation, per variant (0 to skip)")
	fs.IntVar(&o.LoadTrips, "load-trips", 5, "trips timed while worker A runs 8 goroutines of no-op successes (0 to skip)")
	var tripLoad string
	fs.StringVar(&tripLoad, "trip-load", "4x8", "processes × goroutines calling in a tight loop while a trip is timed, comma-separated (\"\" to skip)")
	fs.IntVar(&o.TripLoad, "trip-load-trips", 20, "trips timed under that load, with the peek and without")
	fs.IntVar(&o.Runtime, "runtime", 1000, "breakers in one process for the shared-runtime figures (0 to skip)")
	fs.DurationVar(&o.Stall, "stall", 3*time.Second, "Redis stopped (SIGSTOP) this long under load (0 to skip)")
	fs.IntVar(&o.Breakers, "breakers", 10000, "breakers for the memory-growth and List test (0 to skip)")
	fs.Int64Var(&o.Seed, "seed", 1, "seed for the case order")
	fs.StringVar(&o.RedisServer, "redis-server", "redis-server", "redis-server binary to start")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write this process's CPU profile to the file")
	fs.BoolVar(&o.NoMemory, "no-memory", false, "skip the per-breaker memory measurement")
	fs.IntVar(&o.RuleReps, "rule-reps", 15, "repetitions of the trip rules' script costs, interleaved (0 to skip)")
	fs.IntVar(&o.RuleCalls, "rule-calls", 4000, "script calls per case and repetition of the trip rules' costs")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.Concs, err = parseInts(concs); err != nil {
		return o, fmt.Errorf("-conc: %w", err)
	}
	if o.Procs, o.ProcConc, err = parseProcs(procs); err != nil {
		return o, fmt.Errorf("-procs: %w", err)
	}
	for _, l := range strings.Split(tripLoad, ",") {
		p, c, err := parseProcs(l)
		if err != nil {
			return o, fmt.Errorf("-trip-load: %w", err)
		}
		if p > 0 {
			o.TripLoads = append(o.TripLoads, [2]int{p, c})
		}
	}
	if len(o.TripLoads) == 0 {
		o.TripLoad = 0
	}
	if cases != "" {
		for _, c := range strings.Split(cases, ",") {
			if _, err := CaseByName(strings.TrimSpace(c)); err != nil {
				return o, err
			}
			o.Cases = append(o.Cases, strings.TrimSpace(c))
		}
	}
	if o.Dur <= 0 || o.Warm < 0 || o.Reps < 1 || o.Trips < 0 || o.LoadTrips < 0 || o.Breakers < 0 || o.RuleReps < 0 || o.RuleCalls < 1 {
		return o, errors.New("want -dur > 0, -warm >= 0, -reps >= 1, -trips >= 0, -load-trips >= 0, -breakers >= 0, -rule-reps >= 0, -rule-calls >= 1")
	}
	return o, nil
}

func caseNames() []string {
	var out []string
	for _, c := range Cases() {
		out = append(out, c.Name)
	}
	return out
}

// parseInts reads "1,8,64".
func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseProcs reads "4x8" (4 processes of 8 goroutines); "" or "0" is none.
func parseProcs(s string) (procs, conc int, err error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, 0, nil
	}
	p, c, ok := strings.Cut(s, "x")
	if !ok {
		c = "1"
	}
	procs, err1 := strconv.Atoi(p)
	conc, err2 := strconv.Atoi(c)
	if err1 != nil || err2 != nil || procs < 1 || conc < 1 {
		return 0, 0, fmt.Errorf("%q: want PROCSxGOROUTINES, e.g. 4x8", s)
	}
	return procs, conc, nil
}

// Main is the bbbench command: a worker when re-executed as one, else the
// whole benchmark, with the report (markdown) on out and progress on errOut.
func Main(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	if os.Getenv(workerEnv) != "" {
		return WorkerMain(ctx, in, out, errOut)
	}
	if os.Getenv(watchEnv) != "" {
		return WatchMain(ctx, in, out, errOut)
	}
	if os.Getenv(tripLoadEnv) != "" {
		return TripLoadMain(ctx, in, out, errOut)
	}
	if os.Getenv(runtimeEnv) != "" {
		return RuntimeMain(ctx, in, out, errOut)
	}
	opts, err := ParseOptions(args, errOut)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(errOut, "bbbench:", err)
		return 2
	}
	if opts.Exe, err = os.Executable(); err != nil {
		fmt.Fprintln(errOut, "bbbench:", err)
		return 1
	}
	if opts.CPUProfile != "" {
		f, err := os.Create(opts.CPUProfile)
		if err != nil {
			fmt.Fprintln(errOut, "bbbench:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(errOut, "bbbench:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if err := Run(ctx, opts, args, out, errOut); err != nil {
		fmt.Fprintln(errOut, "bbbench:", err)
		return 1
	}
	return 0
}

// Run starts a redis-server, runs every measurement and writes the report.
func Run(ctx context.Context, opts Options, args []string, out, progress io.Writer) error {
	began := time.Now()
	srv, err := StartServer(ctx, opts.RedisServer)
	if err != nil {
		return err
	}
	defer srv.Stop()
	ctl := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer ctl.Close()
	fmt.Fprintf(progress, "bbbench: redis-server %s on %s\n", srv.Version, srv.Addr)

	cases := Cases()
	if len(opts.Cases) > 0 {
		cases = nil
		for _, n := range opts.Cases {
			c, _ := CaseByName(n)
			cases = append(cases, c)
		}
	}
	var modes []Mode
	for _, c := range opts.Concs {
		modes = append(modes, Mode{Conc: c})
	}
	if opts.Procs > 0 {
		modes = append(modes, Mode{Procs: opts.Procs, Conc: opts.ProcConc})
	}
	rep := &Report{Opts: opts, Args: args, Machine: ReadMachine(srv.Version), Cases: cases, Modes: modes}
	e := &env{opts: opts, addr: srv.Addr, ctl: ctl, log: progress}

	ms, err := e.runMatrix(ctx, cases, modes)
	if err != nil {
		return err
	}
	rep.Rows = Aggregate(ms, cases, modes)

	if opts.Trips > 0 {
		fmt.Fprintln(progress, "bbbench: trip propagation")
		w, err := startLocalWatcher(ctx, srv.Addr, "prop-local")
		if err != nil {
			return err
		}
		p, err := measurePropagation(ctx, ctl, srv.Addr, "prop-local", opts.Trips, "same process, own client and connections", w)
		if err != nil {
			return fmt.Errorf("propagation: %w", err)
		}
		rep.Propagation = append(rep.Propagation, p)
		if w, err = startProcessWatcher(ctx, opts.Exe, srv.Addr, "prop-process"); err != nil {
			return err
		}
		if p, err = measurePropagation(ctx, ctl, srv.Addr, "prop-process", opts.Trips, "another process", w); err != nil {
			return fmt.Errorf("propagation: %w", err)
		}
		rep.Propagation = append(rep.Propagation, p)
	}
	if opts.LoadTrips > 0 {
		fmt.Fprintln(progress, "bbbench: trip propagation under load")
		w, err := startProcessWatcher(ctx, opts.Exe, srv.Addr, "prop-load")
		if err != nil {
			return err
		}
		p, err := measureTripUnderLoad(ctx, ctl, srv.Addr, "prop-load", opts.LoadTrips, loadGoroutines, loadFor,
			fmt.Sprintf("another process, while A runs %d goroutines of no-op successes (%s, then every call fails)", loadGoroutines, loadFor), w)
		if err != nil {
			return fmt.Errorf("propagation under load: %w", err)
		}
		p.Loaded = true
		rep.Propagation = append(rep.Propagation, p)
	}
	for _, load := range opts.TripLoads {
		if opts.TripLoad == 0 {
			break
		}
		for _, noPeek := range []bool{true, false} {
			fmt.Fprintf(progress, "bbbench: trip under load, %dx%d, peek %v\n", load[0], load[1], !noPeek)
			tl, err := measureTripLoad(ctx, ctl, srv.Addr, opts.Exe, load[0], load[1], opts.TripLoad, noPeek)
			if err != nil {
				return fmt.Errorf("trip under load: %w", err)
			}
			rep.TripLoads = append(rep.TripLoads, tl)
		}
	}
	if opts.Runtime > 0 {
		fmt.Fprintf(progress, "bbbench: %d breakers in one process\n", opts.Runtime)
		rt, err := measureRuntime(ctx, ctl, srv.Addr, opts.Exe, opts.Runtime)
		if err != nil {
			return fmt.Errorf("shared runtime: %w", err)
		}
		rep.Runtime = &rt
	}
	if opts.Stall > 0 {
		fmt.Fprintf(progress, "bbbench: redis stalled %s under load\n", opts.Stall)
		st, err := measureStall(ctx, opts.RedisServer, opts.Stall)
		if err != nil {
			return fmt.Errorf("stall: %w", err)
		}
		rep.Stall = &st
	}
	if opts.RuleReps > 0 {
		fmt.Fprintln(progress, "bbbench: trip rules: script costs")
		if rep.ScriptCosts, err = MeasureScriptCosts(ctx, ctl, opts.RuleReps, opts.RuleCalls); err != nil {
			return fmt.Errorf("trip rules: %w", err)
		}
	}
	if !opts.NoMemory {
		fmt.Fprintln(progress, "bbbench: trip rules: window memory")
		if rep.WindowMemory, err = MeasureWindowMemory(ctx, ctl); err != nil {
			return fmt.Errorf("trip rules memory: %w", err)
		}
		fmt.Fprintln(progress, "bbbench: memory per breaker")
		for _, daemon := range []bool{false, true} {
			ms, err := MeasureMemory(ctx, ctl, daemon)
			if err != nil {
				return fmt.Errorf("memory: %w", err)
			}
			rep.Memory = append(rep.Memory, ms...)
		}
	}
	if opts.Breakers > 0 {
		fmt.Fprintf(progress, "bbbench: %d breakers\n", opts.Breakers)
		for _, daemon := range []bool{false, true} {
			sc, err := MeasureScale(ctx, ctl, opts.Breakers, 5, daemon)
			if err != nil {
				return fmt.Errorf("scale: %w", err)
			}
			rep.Scales = append(rep.Scales, sc)
		}
	}
	rep.Took = time.Since(began)
	rep.Write(out)
	return nil
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs       int
	CPUModel   string
	GoVersion  string
	Redis      string
	GOMAXPROCS int
	Kernel     string
}

// ReadMachine reads the machine's description.
func ReadMachine(redisVersion string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Redis: redisVersion,
		GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = CPUModel(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// CPUModel returns the first "model name" of /proc/cpuinfo text.
func CPUModel(cpuinfo string) string {
	for _, line := range strings.Split(cpuinfo, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
