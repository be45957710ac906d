package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// workerEnv carries a cellSpec (JSON) to a re-executed worker process.
const workerEnv = "BBBENCH_WORKER_SPEC"

// cellSpec tells one worker what to run.
type cellSpec struct {
	Case string        `json:"case"`
	Name string        `json:"name"` // breaker or key name, fresh per cell
	Addr string        `json:"addr"`
	Conc int           `json:"conc"`
	Dur  time.Duration `json:"dur"`
	Warm time.Duration `json:"warm"`
}

// cellResult is what one worker measured.
type cellResult struct {
	Calls    int64         `json:"calls"`
	Errors   int64         `json:"errors"`
	FirstErr string        `json:"first_err,omitempty"`
	Hist     *Histogram    `json:"hist"`
	Elapsed  time.Duration `json:"elapsed"` // from go until every outcome was flushed
	Flush    time.Duration `json:"flush"`   // the final flush alone
	Client   Counts        `json:"client"`
	Local    int64         `json:"local"` // counted by an in-process breaker, -1 when none
}

// newClient returns a go-redis client for addr with a Counter hook.
func newClient(addr string) (*redis.Client, *Counter) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	c := &Counter{}
	rdb.AddHook(c)
	return rdb, c
}

// hammer calls inst from conc goroutines until deadline.
func hammer(ctx context.Context, inst *instance, conc int, deadline time.Time) cellResult {
	var mu sync.Mutex
	total := cellResult{Hist: NewHistogram()}
	var wg sync.WaitGroup
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := NewHistogram()
			var calls, errs int64
			var first error
			t := time.Now()
			for ctx.Err() == nil {
				err := inst.call(ctx)
				t2 := time.Now()
				h.Record(t2.Sub(t))
				calls++
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
				}
				t = t2
				if t.After(deadline) {
					break
				}
			}
			mu.Lock()
			total.Hist.Merge(h)
			total.Calls += calls
			total.Errors += errs
			if first != nil && total.FirstErr == "" {
				total.FirstErr = first.Error()
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return total
}

// runWorker opens the case on its own client, warms up, calls ready, waits
// for start, then measures. It is the same in process and in a worker
// process.
func runWorker(ctx context.Context, spec cellSpec, ready func(), start <-chan struct{}) (cellResult, error) {
	cs, err := CaseByName(spec.Case)
	if err != nil {
		return cellResult{}, err
	}
	rdb, counter := newClient(spec.Addr)
	defer rdb.Close()
	inst, err := cs.open(ctx, rdb, spec.Name)
	if err != nil {
		return cellResult{}, fmt.Errorf("%s: open: %w", spec.Case, err)
	}
	defer inst.close()
	if w := hammer(ctx, inst, spec.Conc, time.Now().Add(spec.Warm)); w.Errors > 0 {
		return cellResult{}, fmt.Errorf("%s: warm-up: %d errors, first: %s", spec.Case, w.Errors, w.FirstErr)
	}
	if err := inst.flush(ctx); err != nil {
		return cellResult{}, fmt.Errorf("%s: flush after warm-up: %w", spec.Case, err)
	}
	local0 := int64(-1)
	if inst.local != nil {
		local0 = inst.local()
	}
	ready()
	select {
	case <-start:
	case <-ctx.Done():
		return cellResult{}, ctx.Err()
	}
	c0 := counter.Read()
	t0 := time.Now()
	res := hammer(ctx, inst, spec.Conc, t0.Add(spec.Dur))
	tf := time.Now()
	if err := inst.flush(ctx); err != nil {
		return cellResult{}, fmt.Errorf("%s: flush: %w", spec.Case, err)
	}
	end := time.Now()
	res.Elapsed, res.Flush = end.Sub(t0), end.Sub(tf)
	res.Client = counter.Read().Sub(c0)
	res.Local = -1
	if inst.local != nil {
		res.Local = inst.local() - local0
	}
	return res, nil
}

// WorkerMain runs one worker process: spec from the environment, "ready"
// on out when warmed up, a line on in to start, the result as JSON on out.
// It returns the process exit code.
func WorkerMain(ctx context.Context, in io.Reader, out, errOut io.Writer) int {
	var spec cellSpec
	if err := json.Unmarshal([]byte(os.Getenv(workerEnv)), &spec); err != nil {
		fmt.Fprintf(errOut, "bbbench worker: bad %s: %v\n", workerEnv, err)
		return 2
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := make(chan struct{})
	ready := func() {
		fmt.Fprintln(out, "ready")
		go func() {
			r := bufio.NewReader(in)
			if _, err := r.ReadString('\n'); err == nil {
				close(start)
			} else {
				cancel() // the parent is gone
			}
		}()
	}
	res, err := runWorker(ctx, spec, ready, start)
	if err != nil {
		fmt.Fprintf(out, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	res.Hist.Sparse()
	b, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintf(out, "error %v\n", err)
		return 1
	}
	fmt.Fprintf(out, "result %s\n", b)
	return 0
}

// worker is a running worker, in this process or another.
type worker struct {
	ready  chan error
	start  chan struct{}
	result chan workerOutcome
	stdin  io.WriteCloser // workers in another process
	cmd    *exec.Cmd
}

type workerOutcome struct {
	res cellResult
	err error
}

func startLocalWorker(ctx context.Context, spec cellSpec) *worker {
	w := &worker{ready: make(chan error, 1), start: make(chan struct{}), result: make(chan workerOutcome, 1)}
	go func() {
		res, err := runWorker(ctx, spec, func() { w.ready <- nil }, w.start)
		if err != nil {
			select {
			case w.ready <- err:
			default:
			}
		}
		w.result <- workerOutcome{res, err}
	}()
	return w
}

func startProcessWorker(ctx context.Context, exe string, spec cellSpec) (*worker, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd, stdin, stdout, err := startChild(ctx, exe, workerEnv+"="+string(b))
	if err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	w := &worker{ready: make(chan error, 1), start: make(chan struct{}), result: make(chan workerOutcome, 1),
		stdin: stdin, cmd: cmd}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		var out workerOutcome
		readySent := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "ready":
				readySent = true
				w.ready <- nil
			case strings.HasPrefix(line, "result "):
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "result ")), &out.res); err != nil {
					out.err = fmt.Errorf("worker result: %w", err)
				} else {
					out.res.Hist.Dense()
				}
			case strings.HasPrefix(line, "error "):
				out.err = errors.New("worker: " + strings.TrimPrefix(line, "error "))
			}
		}
		if err := cmd.Wait(); err != nil && out.err == nil {
			out.err = fmt.Errorf("worker: %w", err)
		}
		if out.err == nil && out.res.Hist == nil {
			out.err = errors.New("worker sent no result")
		}
		if !readySent {
			w.ready <- out.err
		}
		w.result <- out
	}()
	go func() {
		<-w.start
		_, _ = io.WriteString(stdin, "go\n")
	}()
	return w, nil
}

// startChild re-executes the benchmark binary with env added, its stdin
// and stdout piped to the caller; it dies with the parent.
func startChild(ctx context.Context, exe, env string) (*exec.Cmd, io.WriteCloser, io.ReadCloser, error) {
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	return cmd, stdin, stdout, nil
}
