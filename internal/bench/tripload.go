package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/knobs"
)

// tripLoadEnv carries a tripLoadSpec (JSON) to a re-executed worker.
const tripLoadEnv = "BBBENCH_TRIPLOAD_SPEC"

type tripLoadSpec struct {
	Addr   string `json:"addr"`
	Name   string `json:"name"`
	Conc   int    `json:"conc"`
	NoPeek bool   `json:"no_peek"`
}

// TripLoad is a trip made while every worker process calls in a tight
// loop: how long until each worker's view said open, and how long after
// the trip each worker still admitted a call from its view.
type TripLoad struct {
	Procs, Conc, Trips int
	NoPeek             bool            // the callers' peek turned off (before)
	Lag                []time.Duration // per worker per trip: trip -> view open
	Stale              []time.Duration // per worker per trip: trip -> last admission (≤ 0: none after it)
	P50, P99, Max      time.Duration   // of Lag
	StaleMax           time.Duration
	StaleOver1ms       int // admissions later than 1 ms after the trip (worker-trips)
	Admitted           int64
	// RecordP50 is the tripping record's round trip, and SentP99 the p99 of
	// the views' lag measured from when it was sent instead of from the
	// announcement's arrival at an idle subscriber (the trip's instant).
	RecordP50, SentP99 time.Duration
	// RunqueueWait is how long the workers' threads waited for a CPU,
	// per worker and per second of the measurement (Linux schedstat): how
	// much of the time a worker could not run at all.
	RunqueueWait time.Duration
}

// runqueueWait sums the time pid's threads waited for a CPU (the second
// field of /proc/PID/task/TID/schedstat, in ns); 0 where unavailable.
func runqueueWait(pid int) time.Duration {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if f := strings.Fields(string(b)); err == nil && len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			sum += n
		}
	}
	return time.Duration(sum)
}

// tripLoadOpened is what a worker's log handler sees: when its view opened.
type tripLoadOpened struct{ at atomic.Int64 }

func (o *tripLoadOpened) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (o *tripLoadOpened) WithAttrs([]slog.Attr) slog.Handler           { return o }
func (o *tripLoadOpened) WithGroup(string) slog.Handler                { return o }
func (o *tripLoadOpened) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "circuit breaker opened" {
		o.at.Store(r.Time.UnixNano())
	}
	return nil
}

// TripLoadMain is a worker of the trip-under-load measurement: conc
// goroutines call Allow (and Success) in a tight loop. It prints "ready",
// then for every "report" line on its stdin "report OPENED LAST COUNT":
// when its view last opened, when its last call was admitted (unix ns),
// and how many calls it admitted.
func TripLoadMain(ctx context.Context, in io.Reader, out, errOut io.Writer) int {
	var spec tripLoadSpec
	if err := json.Unmarshal([]byte(os.Getenv(tripLoadEnv)), &spec); err != nil {
		fmt.Fprintf(errOut, "bbbench trip-load worker: bad %s: %v\n", tripLoadEnv, err)
		return 2
	}
	knobs.NoPeek.Store(spec.NoPeek)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: spec.Addr})
	defer rdb.Close()
	opened := &tripLoadOpened{}
	b, err := client.New(rdb, spec.Name, client.Config{}, client.WithLogger(slog.New(opened)))
	if err != nil {
		fmt.Fprintln(errOut, "bbbench trip-load worker:", err)
		return 1
	}
	defer b.Shutdown(context.Background())
	if err := b.Ready(ctx); err != nil {
		fmt.Fprintln(errOut, "bbbench trip-load worker:", err)
		return 1
	}
	type slot struct {
		last atomic.Int64
		n    atomic.Int64
		_    [48]byte // one cache line each
	}
	slots := make([]slot, spec.Conc)
	var wg sync.WaitGroup
	for g := range slots {
		wg.Add(1)
		go func(s *slot) {
			defer wg.Done()
			for ctx.Err() == nil {
				p, err := b.Allow(ctx)
				if err != nil {
					continue
				}
				s.last.Store(time.Now().UnixNano())
				s.n.Add(1)
				_ = p.Success(ctx)
			}
		}(&slots[g])
	}
	fmt.Fprintln(out, "ready")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() != "report" {
			continue
		}
		var last, n int64
		for i := range slots {
			last = max(last, slots[i].last.Load())
			n += slots[i].n.Load()
		}
		fmt.Fprintf(out, "report %d %d %d\n", opened.at.Load(), last, n)
	}
	cancel()
	wg.Wait()
	return 0
}

// tripLoadWorker is a running worker process.
type tripLoadWorker struct {
	stdin io.WriteCloser
	lines chan string
	wait  func()
	pid   int
}

func startTripLoadWorker(ctx context.Context, exe string, spec tripLoadSpec) (*tripLoadWorker, error) {
	b, _ := json.Marshal(spec)
	cmd, stdin, stdout, err := startChild(ctx, exe, tripLoadEnv+"="+string(b))
	if err != nil {
		return nil, err
	}
	w := &tripLoadWorker{stdin: stdin, lines: make(chan string, 16), wait: func() { _ = cmd.Wait() }, pid: cmd.Process.Pid}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	select {
	case l := <-w.lines:
		if l != "ready" {
			return nil, fmt.Errorf("trip-load worker said %q", l)
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		return nil, errors.New("trip-load worker not ready within 20s")
	}
	return w, nil
}

func (w *tripLoadWorker) report() (opened, last time.Time, n int64, err error) {
	if _, err := io.WriteString(w.stdin, "report\n"); err != nil {
		return opened, last, 0, err
	}
	select {
	case l, ok := <-w.lines:
		f := strings.Fields(l)
		if !ok || len(f) != 4 || f[0] != "report" {
			return opened, last, 0, fmt.Errorf("trip-load worker said %q", l)
		}
		o, _ := strconv.ParseInt(f[1], 10, 64)
		a, _ := strconv.ParseInt(f[2], 10, 64)
		n, _ = strconv.ParseInt(f[3], 10, 64)
		return time.Unix(0, o), time.Unix(0, a), n, nil
	case <-time.After(10 * time.Second):
		return opened, last, 0, errors.New("trip-load worker did not report within 10s")
	}
}

// measureTripLoad trips a breaker trips times while procs worker processes
// of conc goroutines each call it in a tight loop (every call a success).
// The trip is a failure recorded by this process with a failure threshold
// of 1 (so the workers' successes cannot hold it off); its instant is when
// an idle subscriber of this process receives the script's announcement
// (also reported: from when the record was sent).
func measureTripLoad(ctx context.Context, ctl *redis.Client, addr, exe string, procs, conc, trips int, noPeek bool) (TripLoad, error) {
	res := TripLoad{Procs: procs, Conc: conc, Trips: trips, NoPeek: noPeek}
	name := fmt.Sprintf("trip-load-%dx%d-nopeek-%v", procs, conc, noPeek)
	cfg := client.Config{FailureThreshold: 1, RecoveryTimeout: time.Hour}
	if _, err := admin.Configure(ctx, ctl, name, cfg, "bbbench"); err != nil {
		return res, err
	}
	var ws []*tripLoadWorker
	defer func() {
		for _, w := range ws {
			w.stdin.Close()
			w.wait()
		}
	}()
	for i := 0; i < procs; i++ {
		w, err := startTripLoadWorker(ctx, exe, tripLoadSpec{Addr: addr, Name: name, Conc: conc, NoPeek: noPeek})
		if err != nil {
			return res, err
		}
		ws = append(ws, w)
	}
	rdb, _ := newClient(addr)
	defer rdb.Close()
	// An idle subscriber in this process times the trip: when the script's
	// announcement reached the network.
	obs := redis.NewClient(&redis.Options{Addr: addr})
	defer obs.Close()
	ps := obs.Subscribe(ctx, breakerbox.Channel(name))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		return res, err
	}
	announced := make(chan time.Time, 64)
	go func() {
		for m := range ps.Channel() {
			if strings.HasPrefix(m.Payload, "open ") {
				announced <- time.Now()
			}
		}
	}()
	a, err := client.New(rdb, name, cfg, client.WithAdmission(client.AdmitStrict), client.WithLogger(quiet))
	if err != nil {
		return res, err
	}
	defer a.Shutdown(context.Background())
	admitted := make([]int64, len(ws))
	var record, sent []time.Duration
	waited0, began := time.Duration(0), time.Now()
	for _, w := range ws {
		waited0 += runqueueWait(w.pid)
	}
	for i := 0; i < trips; i++ {
		if i > 0 {
			if _, err := admin.Control(ctx, ctl, name, breakerbox.ActionReset, "bbbench"); err != nil {
				return res, err
			}
		}
		time.Sleep(200 * time.Millisecond) // the workers call at full speed again
		p, err := a.Allow(ctx)
		if err != nil {
			return res, fmt.Errorf("trip %d: %w", i, err)
		}
		for len(announced) > 0 {
			<-announced
		}
		t0 := time.Now()
		_ = p.Failure(ctx, errors.New("upstream: 503"))
		record = append(record, time.Since(t0))
		var trip time.Time
		select {
		case trip = <-announced:
		case <-time.After(5 * time.Second):
			return res, fmt.Errorf("trip %d: no announcement within 5s", i)
		}
		time.Sleep(100 * time.Millisecond)
		for j, w := range ws {
			opened, last, n, err := w.report()
			for deadline := time.Now().Add(5 * time.Second); err == nil && opened.Before(t0) && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
				opened, last, n, err = w.report()
			}
			if err != nil {
				return res, err
			}
			if opened.Before(t0) {
				return res, fmt.Errorf("trip %d: a worker's view did not open within 5s", i)
			}
			res.Lag = append(res.Lag, opened.Sub(trip))
			sent = append(sent, opened.Sub(t0))
			stale := last.Sub(trip)
			res.Stale = append(res.Stale, stale)
			res.StaleMax = max(res.StaleMax, stale)
			if stale > time.Millisecond {
				res.StaleOver1ms++
			}
			admitted[j] = n
		}
	}
	for _, n := range admitted {
		res.Admitted += n
	}
	var waited time.Duration
	for _, w := range ws {
		waited += runqueueWait(w.pid)
	}
	res.RunqueueWait = time.Duration(float64(waited-waited0) / float64(len(ws)) / time.Since(began).Seconds())
	res.P50, res.P99, res.Max = Quantile(res.Lag, 0.5), Quantile(res.Lag, 0.99), Quantile(res.Lag, 1)
	res.RecordP50, res.SentP99 = Quantile(record, 0.5), Quantile(sent, 0.99)
	return res, nil
}
