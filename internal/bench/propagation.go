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
)

// watchEnv carries a watchSpec (JSON) to a re-executed watcher process.
const watchEnv = "BBBENCH_WATCH_SPEC"

type watchSpec struct {
	Addr string `json:"addr"`
	Name string `json:"name"`
}

// viewEvent is the instant a Fast worker's view changed, taken from the
// client's own transition log line (logged right after the view is
// swapped, so from then on the worker decides locally with the new state).
type viewEvent struct {
	opened bool
	at     time.Time
}

// viewLog is a slog.Handler that turns the client's transition log lines
// into viewEvents.
type viewLog struct{ ch chan<- viewEvent }

func (h viewLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h viewLog) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h viewLog) WithGroup(string) slog.Handler                { return h }
func (h viewLog) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case "circuit breaker opened":
		h.ch <- viewEvent{opened: true, at: r.Time}
	case "circuit breaker closed":
		h.ch <- viewEvent{opened: false, at: r.Time}
	}
	return nil
}

func propagationConfig() client.Config {
	c := client.DefaultConfig()
	c.FailureThreshold = 3
	c.RecoveryTimeout = time.Hour
	return c
}

// Propagation is the time from worker A reporting the threshold-th
// failure until worker B, on its own connections, refuses locally.
type Propagation struct {
	Where      string // "same process, own client" or "another process"
	Trips      int
	P50, P99   time.Duration
	Max        time.Duration
	ASelfP50   time.Duration // A's own Failure call (its batch's round trip)
	LocalRefus int           // trips after which B's next Allow refused with no round trip
	Loaded     bool          // A was saturated with successes when the outage began
}

// watcher is worker B: it reports view changes and, after each opening,
// whether its next Allow refused without a round trip.
type watcher struct {
	events <-chan viewEvent
	local  <-chan bool
	stop   func()
}

// startLocalWatcher runs worker B in this process on its own client.
func startLocalWatcher(ctx context.Context, addr, name string) (*watcher, error) {
	ev := make(chan viewEvent, 16)
	local := make(chan bool, 16)
	rdb, counter := newClient(addr)
	b, err := client.New(rdb, name, propagationConfig(), client.WithLogger(slog.New(viewLog{ev})))
	if err != nil {
		rdb.Close()
		return nil, err
	}
	if err := b.Ready(ctx); err != nil {
		rdb.Close()
		return nil, err
	}
	// Pass events through, checking B's next Allow after each opening.
	out := make(chan viewEvent, 16)
	wctx, cancel := context.WithCancel(ctx)
	go func() {
		for {
			select {
			case e := <-ev:
				out <- e
				if e.opened {
					local <- refusesLocally(wctx, b, counter)
				}
			case <-wctx.Done():
				return
			}
		}
	}()
	return &watcher{events: out, local: local, stop: func() {
		cancel()
		_ = b.Shutdown(context.Background())
		rdb.Close()
	}}, nil
}

// refusesLocally reports whether b's Allow refuses without a round trip.
func refusesLocally(ctx context.Context, b *client.Breaker, c *Counter) bool {
	before := c.Read()
	_, err := b.Allow(OnCallerPath(ctx))
	return errors.Is(err, client.ErrOpen) && c.Read().Sub(before).CallerRoundTrips == 0
}

// WatchMain runs worker B in its own process: "ready", then one line per
// view change ("opened UNIXNANO" or "closed UNIXNANO") and "local true|false"
// after each opening, until its stdin closes.
func WatchMain(ctx context.Context, in io.Reader, out, errOut io.Writer) int {
	var spec watchSpec
	if err := json.Unmarshal([]byte(os.Getenv(watchEnv)), &spec); err != nil {
		fmt.Fprintf(errOut, "bbbench watcher: bad %s: %v\n", watchEnv, err)
		return 2
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := startLocalWatcher(ctx, spec.Addr, spec.Name)
	if err != nil {
		fmt.Fprintf(errOut, "bbbench watcher: %v\n", err)
		return 1
	}
	defer w.stop()
	go func() {
		_, _ = io.Copy(io.Discard, in)
		cancel()
	}()
	bw := bufio.NewWriter(out)
	fmt.Fprintln(bw, "ready")
	bw.Flush()
	for {
		select {
		case e := <-w.events:
			word := "closed"
			if e.opened {
				word = "opened"
			}
			fmt.Fprintf(bw, "%s %d\n", word, e.at.UnixNano())
		case l := <-w.local:
			fmt.Fprintf(bw, "local %v\n", l)
		case <-ctx.Done():
			return 0
		}
		bw.Flush()
	}
}

// startProcessWatcher runs worker B in a re-executed process.
func startProcessWatcher(ctx context.Context, exe, addr, name string) (*watcher, error) {
	spec, _ := json.Marshal(watchSpec{Addr: addr, Name: name})
	cmd, stdin, stdout, err := startChild(ctx, exe, watchEnv+"="+string(spec))
	if err != nil {
		return nil, fmt.Errorf("start watcher: %w", err)
	}
	ev := make(chan viewEvent, 16)
	local := make(chan bool, 16)
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		readySent := false
		for sc.Scan() {
			word, arg, _ := strings.Cut(sc.Text(), " ")
			switch word {
			case "ready":
				readySent = true
				ready <- nil
			case "opened", "closed":
				ns, err := strconv.ParseInt(arg, 10, 64)
				if err == nil {
					ev <- viewEvent{opened: word == "opened", at: time.Unix(0, ns)}
				}
			case "local":
				local <- arg == "true"
			}
		}
		if !readySent {
			ready <- errors.New("watcher exited before it was ready")
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			_ = cmd.Wait()
			return nil, err
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, errors.New("watcher not ready within 10s")
	}
	return &watcher{events: ev, local: local, stop: func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}}, nil
}

// measurePropagation trips a breaker trips times from worker A (this
// process, its own client) and times how long watcher B takes to refuse
// locally; the breaker is reset between trips.
func measurePropagation(ctx context.Context, ctl *redis.Client, addr, name string, trips int,
	where string, w *watcher) (Propagation, error) {
	defer w.stop()
	rdb, _ := newClient(addr)
	defer rdb.Close()
	a, err := client.New(rdb, name, propagationConfig(), client.WithLogger(quiet))
	if err != nil {
		return Propagation{}, err
	}
	defer a.Shutdown(context.Background())
	if err := a.Ready(ctx); err != nil {
		return Propagation{}, err
	}
	failure := errors.New("upstream: 503 Service Unavailable")
	wait := func(opened bool) (time.Time, error) {
		timeout := time.After(2 * time.Second)
		for {
			select {
			case e := <-w.events:
				if e.opened == opened {
					return e.at, nil
				}
			case <-timeout:
				return time.Time{}, fmt.Errorf("worker B saw no %v view change within 2s", map[bool]string{true: "opened", false: "closed"}[opened])
			}
		}
	}
	admit := func() (*client.Permit, error) {
		deadline := time.Now().Add(2 * time.Second)
		for {
			p, err := a.Allow(ctx)
			if err == nil {
				return p, nil
			}
			if !errors.Is(err, client.ErrOpen) || time.Now().After(deadline) {
				return nil, fmt.Errorf("worker A not admitted after reset: %w", err)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	res := Propagation{Where: where, Trips: trips}
	var lag, self []time.Duration
	for i := 0; i < trips; i++ {
		if i > 0 {
			if _, err := admin.Control(ctx, ctl, name, breakerbox.ActionReset, "bbbench"); err != nil {
				return res, err
			}
			if _, err := wait(false); err != nil {
				return res, err
			}
		}
		var t0 time.Time
		for k := 1; k <= 3; k++ {
			p, err := admit()
			if err != nil {
				return res, err
			}
			if k == 3 {
				t0 = time.Now()
			}
			if err := p.Failure(ctx, failure); err != nil {
				return res, err
			}
		}
		self = append(self, time.Since(t0))
		t1, err := wait(true)
		if err != nil {
			return res, err
		}
		lag = append(lag, t1.Sub(t0))
		select {
		case l := <-w.local:
			if l {
				res.LocalRefus++
			}
		case <-time.After(2 * time.Second):
			return res, errors.New("worker B did not report its next Allow")
		}
	}
	res.P50, res.P99, res.Max = Quantile(lag, 0.5), Quantile(lag, 0.99), Quantile(lag, 1)
	res.ASelfP50 = Quantile(self, 0.5)
	return res, nil
}

// measureTripUnderLoad times a trip that happens while worker A is busy:
// goroutines of A call Execute around a no-op as fast as they can (every
// call a success) for loadFor, then the upstream "fails" and every call
// fails; the time is from that switch until watcher B's view says open.
// Fast admission sends successes without waiting, so whatever A has queued
// but not yet sent is recorded before the first failure: this shows how
// far the queue lets a trip lag behind the outage.
func measureTripUnderLoad(ctx context.Context, ctl *redis.Client, addr, name string, trips, goroutines int,
	loadFor time.Duration, where string, w *watcher) (Propagation, error) {
	defer w.stop()
	rdb, _ := newClient(addr)
	defer rdb.Close()
	a, err := client.New(rdb, name, propagationConfig(), client.WithLogger(quiet))
	if err != nil {
		return Propagation{}, err
	}
	defer a.Shutdown(context.Background())
	if err := a.Ready(ctx); err != nil {
		return Propagation{}, err
	}
	outage := errors.New("upstream: connection refused")
	res := Propagation{Where: where, Trips: trips}
	var lag []time.Duration
	for i := 0; i < trips; i++ {
		if i > 0 {
			if _, err := admin.Control(ctx, ctl, name, breakerbox.ActionReset, "bbbench"); err != nil {
				return res, err
			}
			if err := waitView(w, false, 10*time.Second); err != nil {
				return res, err
			}
			if err := a.Ready(ctx); err != nil {
				return res, err
			}
		}
		var failing, stop atomic.Bool
		var wg sync.WaitGroup
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					_ = a.Execute(ctx, func(context.Context) error {
						if failing.Load() {
							return outage
						}
						return nil
					})
				}
			}()
		}
		time.Sleep(loadFor)
		t0 := time.Now()
		failing.Store(true)
		var t1 time.Time
		timeout := time.After(30 * time.Second)
	wait:
		for {
			select {
			case e := <-w.events:
				if e.opened {
					t1 = e.at
					break wait
				}
			case <-timeout:
				break wait
			}
		}
		stop.Store(true)
		wg.Wait()
		if t1.IsZero() {
			return res, errors.New("worker B saw no trip within 30s of the outage")
		}
		lag = append(lag, t1.Sub(t0))
		select {
		case l := <-w.local:
			if l {
				res.LocalRefus++
			}
		case <-time.After(2 * time.Second):
			return res, errors.New("worker B did not report its next Allow")
		}
		if err := a.Flush(ctx); err != nil {
			return res, err
		}
	}
	res.P50, res.P99, res.Max = Quantile(lag, 0.5), Quantile(lag, 0.99), Quantile(lag, 1)
	return res, nil
}

// waitView waits for watcher w's view to open (or close).
func waitView(w *watcher, opened bool, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		select {
		case e := <-w.events:
			if e.opened == opened {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("worker B's view did not change (opened=%v) within %s", opened, timeout)
		}
	}
}
