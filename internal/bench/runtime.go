package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/client"
)

// runtimeEnv carries a runtimeSpec (JSON) to the re-executed process of
// the shared-runtime scenario.
const runtimeEnv = "BBBENCH_RUNTIME_SPEC"

type runtimeSpec struct {
	Addr     string `json:"addr"`
	Breakers int    `json:"breakers"`
}

// runtimeClientName names the scenario's connections in CLIENT LIST.
const runtimeClientName = "bbbench-runtime"

// RuntimeFigures are what one process with many Fast breakers on one
// Redis client costs (issue 9's targets).
type RuntimeFigures struct {
	Breakers        int           `json:"breakers"`
	Create          time.Duration `json:"create"`           // New, Breakers times
	Ready           time.Duration `json:"ready"`            // from the first New until every breaker is Ready
	HeapPerBreaker  float64       `json:"heap_per_breaker"` // bytes of Go heap (after GC) per breaker
	Goroutines      int           `json:"goroutines"`       // in the process
	OurGoroutines   int           `json:"our_goroutines"`   // with a frame of package client
	PoolConns       int           `json:"pool_conns"`       // go-redis's pools (main and pipeline: PoolStats)
	Conns           int           `json:"conns"`            // the process's connections in CLIENT LIST
	PubSubConns     int           `json:"pubsub_conns"`     // of those, subscribed
	Channels        int           `json:"channels"`         // channels they subscribe
	IdleCommands    float64       `json:"idle_commands"`    // per second, over IdleWindow
	IdleWindow      time.Duration `json:"idle_window"`
	IdleCommandList string        `json:"idle_command_list"`
}

// RuntimeMain is the scenario's process: Breakers Fast breakers on one
// client, each used once, then "ready JSON" and idle until stdin closes.
func RuntimeMain(ctx context.Context, in io.Reader, out, errOut io.Writer) int {
	var spec runtimeSpec
	if err := json.Unmarshal([]byte(os.Getenv(runtimeEnv)), &spec); err != nil {
		fmt.Fprintf(errOut, "bbbench runtime: bad %s: %v\n", runtimeEnv, err)
		return 2
	}
	rdb := redis.NewClient(&redis.Options{Addr: spec.Addr, ClientName: runtimeClientName})
	defer rdb.Close()
	var f RuntimeFigures
	f.Breakers = spec.Breakers
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	bs := make([]*client.Breaker, spec.Breakers)
	for i := range bs {
		var err error
		if bs[i], err = client.New(rdb, fmt.Sprintf("runtime-%05d", i), client.Config{}, client.WithLogger(quiet)); err != nil {
			fmt.Fprintln(errOut, "bbbench runtime:", err)
			return 1
		}
	}
	f.Create = time.Since(start)
	for _, b := range bs {
		if err := b.Ready(ctx); err != nil {
			fmt.Fprintln(errOut, "bbbench runtime:", err)
			return 1
		}
	}
	f.Ready = time.Since(start)
	for _, b := range bs {
		_ = b.Execute(ctx, func(context.Context) error { return nil })
	}
	for _, b := range bs {
		_ = b.Flush(ctx)
	}
	time.Sleep(time.Second) // transient goroutines end
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	f.HeapPerBreaker = (float64(m1.HeapAlloc) - float64(m0.HeapAlloc)) / float64(spec.Breakers)
	f.Goroutines, f.OurGoroutines = countGoroutines()
	ps := rdb.PoolStats()
	f.PoolConns = int(ps.TotalConns)
	if ps.PipelineStats != nil {
		f.PoolConns += int(ps.PipelineStats.TotalConns) // go-redis's pipeline pool
	}
	b, _ := json.Marshal(f)
	fmt.Fprintf(out, "ready %s\n", b)
	_, _ = io.Copy(io.Discard, in)
	for _, b := range bs {
		_ = b.Shutdown(context.Background())
	}
	runtime.KeepAlive(bs)
	return 0
}

// countGoroutines returns the process's goroutines and those running code
// of package client (the Hub's and its transient ones).
func countGoroutines() (all, ours int) {
	buf := make([]byte, 8<<20)
	n := runtime.Stack(buf, true)
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		all++
		if strings.Contains(g, "breakerbox/client.") {
			ours++
		}
	}
	return all, ours
}

// measureRuntime runs the scenario's process and measures, from Redis, its
// connections and its idle commands.
func measureRuntime(ctx context.Context, ctl *redis.Client, addr, exe string, n int) (RuntimeFigures, error) {
	spec, _ := json.Marshal(runtimeSpec{Addr: addr, Breakers: n})
	cmd, stdin, stdout, err := startChild(ctx, exe, runtimeEnv+"="+string(spec))
	if err != nil {
		return RuntimeFigures{}, err
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var f RuntimeFigures
	select {
	case l, ok := <-lines:
		raw, found := strings.CutPrefix(l, "ready ")
		if !ok || !found {
			return f, fmt.Errorf("runtime process said %q", l)
		}
		if err := json.Unmarshal([]byte(raw), &f); err != nil {
			return f, err
		}
	case <-time.After(2 * time.Minute):
		return f, errors.New("runtime process not ready within 2 minutes")
	}
	list, err := ctl.ClientList(ctx).Result()
	if err != nil {
		return f, err
	}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		if !strings.Contains(line, " name="+runtimeClientName+" ") {
			continue
		}
		f.Conns++
		for _, fld := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(fld, "sub="); ok && v != "0" {
				f.PubSubConns++
				c, _ := strconv.Atoi(v)
				f.Channels += c
			}
		}
	}
	s0, err := Snapshot(ctx, ctl)
	if err != nil {
		return f, err
	}
	f.IdleWindow = 5 * time.Second
	time.Sleep(f.IdleWindow)
	s1, err := Snapshot(ctx, ctl)
	if err != nil {
		return f, err
	}
	d := s1.Cmds.Sub(s0.Cmds)
	delete(d, "info") // the snapshots' own
	f.IdleCommands = float64(d.Total().Calls) / f.IdleWindow.Seconds()
	f.IdleCommandList = d.String()
	return f, nil
}
