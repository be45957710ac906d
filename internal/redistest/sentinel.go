package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelOptions shape a Sentinel group. Zero fields take the defaults.
type SentinelOptions struct {
	// MasterName is the name the sentinels monitor. Default "mymaster".
	MasterName string
	// Replicas is the number of replicas of the master. Default 1.
	Replicas int
	// Sentinels is the number of sentinels (quorum: a majority). Default 3.
	Sentinels int
	// DownAfter is down-after-milliseconds: how long the master may be
	// unreachable before a sentinel holds it down. Default 1s.
	DownAfter time.Duration
	// FailoverTimeout is failover-timeout. Default 2s.
	FailoverTimeout time.Duration
}

// SentinelGroup is a master, its replicas and the sentinels monitoring it,
// started by StartSentinelGroup. The sentinels are redis-server --sentinel
// processes, so no redis-sentinel binary is needed.
type SentinelGroup struct {
	// MasterName is the name the sentinels know the master by.
	MasterName string
	// SentinelAddrs are the sentinels' addresses.
	SentinelAddrs []string
	// Sentinels are the sentinel processes.
	Sentinels []*Server
	// Nodes are the data nodes; Nodes[0] was the master at start.
	Nodes []*Server

	opts SentinelOptions
	use  sync.Mutex // held by the test using a shared group (Use)

	mu           sync.Mutex
	lastFailover time.Time // when WaitNewMaster last saw a new master
}

// StartSentinelGroup starts a master, its replicas (--replicaof) and the
// sentinels, each on a free port with a temp dir of t, and waits (up to
// 20s) until the replicas are in sync and every sentinel knows the master,
// its replicas and the other sentinels, so that a failover can start at
// once. Servers stop at t's cleanup. When redis-server is not on PATH it
// skips the test, or fails it if BREAKERBOX_REQUIRE_REDIS=1.
func StartSentinelGroup(t TB, o SentinelOptions) *SentinelGroup {
	t.Helper()
	if o.MasterName == "" {
		o.MasterName = "mymaster"
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Sentinels == 0 {
		o.Sentinels = 3
	}
	if o.DownAfter == 0 {
		o.DownAfter = time.Second
	}
	if o.FailoverTimeout == 0 {
		o.FailoverTimeout = 2 * time.Second
	}
	bin := RequireRedis(t)
	g := &SentinelGroup{MasterName: o.MasterName, opts: o}

	master := startServer(t, bin, false, "", replicationArgs())
	g.Nodes = append(g.Nodes, master)
	for i := 0; i < o.Replicas; i++ {
		args := append(replicationArgs(), "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
		g.Nodes = append(g.Nodes, startServer(t, bin, false, "", args))
	}
	conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
		"sentinel down-after-milliseconds %[1]s %[4]d\n"+
		"sentinel failover-timeout %[1]s %[5]d\n"+
		"sentinel parallel-syncs %[1]s 1\n",
		o.MasterName, master.Port, o.Sentinels/2+1, o.DownAfter.Milliseconds(), o.FailoverTimeout.Milliseconds())
	for i := 0; i < o.Sentinels; i++ {
		s := startServer(t, bin, false, conf, nil)
		g.Sentinels = append(g.Sentinels, s)
		g.SentinelAddrs = append(g.SentinelAddrs, s.Addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := g.waitOK(ctx); err != nil {
		t.Fatalf("redistest: sentinel group not ready within %v: %v\n%s", clusterTimeout, err, g.logs(10))
	}
	return g
}

// logs returns the last n lines of every process's log.
func (g *SentinelGroup) logs(n int) string {
	var b strings.Builder
	for _, s := range append(append([]*Server(nil), g.Nodes...), g.Sentinels...) {
		fmt.Fprintf(&b, "--- last lines of %s ---\n%s\n", s.logPath, logTail(s.logPath, n))
	}
	return b.String()
}

// waitOK polls until the group is whole: the master every sentinel names
// is a running master with all other nodes as replicas, links up and a
// write on it reaching them (checkStreaming), and every sentinel sees the
// master up, every replica up and every other sentinel.
func (g *SentinelGroup) waitOK(ctx context.Context) error {
	var lastErr error
	for {
		lastErr = g.checkOK(ctx)
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return lastErr
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (g *SentinelGroup) checkOK(ctx context.Context) error {
	var master string
	for _, s := range g.Sentinels {
		if !s.Running() {
			return fmt.Errorf("sentinel %s is not running", s.Addr)
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 500 * time.Millisecond})
		err := func() error {
			defer sc.Close()
			m, err := sc.Master(ctx, g.MasterName).Result()
			if err != nil {
				return fmt.Errorf("sentinel %s: SENTINEL MASTER: %w", s.Addr, err)
			}
			addr := net.JoinHostPort(m["ip"], m["port"])
			switch {
			case master != "" && addr != master:
				return fmt.Errorf("sentinels disagree on the master: %s and %s", master, addr)
			case m["flags"] != "master":
				return fmt.Errorf("sentinel %s: master %s has flags %q", s.Addr, addr, m["flags"])
			case m["num-slaves"] != strconv.Itoa(len(g.Nodes)-1):
				return fmt.Errorf("sentinel %s: master %s has num-slaves %s", s.Addr, addr, m["num-slaves"])
			case m["num-other-sentinels"] != strconv.Itoa(len(g.Sentinels)-1):
				return fmt.Errorf("sentinel %s: num-other-sentinels %s", s.Addr, m["num-other-sentinels"])
			}
			master = addr
			replicas, err := sc.Replicas(ctx, g.MasterName).Result()
			if err != nil {
				return fmt.Errorf("sentinel %s: SENTINEL REPLICAS: %w", s.Addr, err)
			}
			// The replicas' own link status is checked on the master below:
			// a sentinel refreshes it only every 10s, and every second once
			// the master is down, which is when it matters to it.
			for _, r := range replicas {
				if r["flags"] != "slave" {
					return fmt.Errorf("sentinel %s: replica %s:%s has flags %q", s.Addr, r["ip"], r["port"], r["flags"])
				}
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	m := g.node(master)
	if m == nil || !m.Running() {
		return fmt.Errorf("the sentinels' master %s is not a running node of the group", master)
	}
	cl := nodeClient(m.Addr)
	defer cl.Close()
	info, err := cl.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("master %s: INFO replication: %w", m.Addr, err)
	}
	r := parseInfo(info)
	if r["role"] != "master" {
		return fmt.Errorf("master %s: role:%s", m.Addr, r["role"])
	}
	online := 0
	for k, v := range r {
		if strings.HasPrefix(k, "slave") && strings.Contains(v, "state=online") {
			online++
		}
	}
	if online != len(g.Nodes)-1 {
		return fmt.Errorf("master %s: %d replicas online, want %d", m.Addr, online, len(g.Nodes)-1)
	}
	// Online is not streaming: see checkStreaming.
	return checkStreaming(ctx, cl, "redistest:stream-check", len(g.Nodes)-1)
}

// node returns the data node listening on addr, or nil.
func (g *SentinelGroup) node(addr string) *Server {
	for _, s := range g.Nodes {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// Client returns a go-redis failover client for the group (MasterName,
// SentinelAddrs), closed at t's cleanup.
func (g *SentinelGroup) Client(t TB) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: g.MasterName,
		SentinelAddrs: append([]string(nil), g.SentinelAddrs...)})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// URL is the group's URL in the form client.RedisFromURL reads:
// redis://SENTINEL1/0?master_name=NAME&addr=SENTINEL2&addr=SENTINEL3.
func (g *SentinelGroup) URL() string {
	u := "redis://" + g.SentinelAddrs[0] + "/0?master_name=" + g.MasterName
	for _, a := range g.SentinelAddrs[1:] {
		u += "&addr=" + a
	}
	return u
}

// Master returns the data node the sentinels name as the master. Right
// after a failover they may disagree for a moment: the one with the
// highest config epoch, which the failover raised, is right.
func (g *SentinelGroup) Master(ctx context.Context) (*Server, error) {
	var lastErr error = errors.New("no sentinel is running")
	var best *Server
	bestEpoch := int64(-1)
	for _, s := range g.Sentinels {
		if !s.Running() || s.Paused() {
			continue
		}
		addr, epoch, err := sentinelMaster(ctx, s.Addr, g.MasterName)
		if err != nil {
			lastErr = err
			continue
		}
		n := g.node(addr)
		if n == nil {
			lastErr = fmt.Errorf("sentinel %s names %s, not a node of the group", s.Addr, addr)
			continue
		}
		if epoch > bestEpoch {
			best, bestEpoch = n, epoch
		}
	}
	if best == nil {
		return nil, lastErr
	}
	return best, nil
}

// sentinelMaster asks one sentinel for the master's address and the
// config epoch of that knowledge.
func sentinelMaster(ctx context.Context, sentinel, name string) (addr string, epoch int64, err error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel, MaxRetries: -1, DialTimeout: 500 * time.Millisecond,
		ReadTimeout: time.Second})
	defer sc.Close()
	m, err := sc.Master(ctx, name).Result()
	if err != nil {
		return "", 0, fmt.Errorf("sentinel %s: SENTINEL MASTER: %w", sentinel, err)
	}
	epoch, err = strconv.ParseInt(m["config-epoch"], 10, 64)
	if err != nil || m["ip"] == "" || m["port"] == "" {
		return "", 0, fmt.Errorf("sentinel %s: SENTINEL MASTER replied %v", sentinel, m)
	}
	return net.JoinHostPort(m["ip"], m["port"]), epoch, nil
}

// WaitNewMaster waits until a sentinel names a master other than old and
// that node reports itself a master (ROLE). It returns the node and when
// it was first seen named (polled every 10ms).
func (g *SentinelGroup) WaitNewMaster(ctx context.Context, old *Server) (*Server, time.Time, error) {
	var lastErr error
	for {
		for _, s := range g.Sentinels {
			if !s.Running() || s.Paused() {
				continue
			}
			addr, _, err := sentinelMaster(ctx, s.Addr, g.MasterName)
			if err != nil {
				lastErr = err
				continue
			}
			n := g.node(addr)
			if n == nil || n == old {
				continue
			}
			at := time.Now()
			if role, err := nodeRole(ctx, addr); err != nil || role != "master" {
				lastErr = fmt.Errorf("sentinel %s names %s, whose ROLE is %q (%v)", s.Addr, addr, role, err)
				continue
			}
			g.mu.Lock()
			g.lastFailover = at
			g.mu.Unlock()
			return n, at, nil
		}
		select {
		case <-ctx.Done():
			return nil, time.Time{}, fmt.Errorf("no sentinel names a master other than %s: %w (last: %v)", old.Addr, ctx.Err(), lastErr)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// KillMaster kills -9 the current master and waits (up to timeout) until a
// sentinel names its replacement.
func (g *SentinelGroup) KillMaster(t TB, timeout time.Duration) Failover {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	old, err := g.Master(ctx)
	if err != nil {
		t.Fatalf("redistest: sentinel master: %v", err)
	}
	old.Kill(t)
	f := Failover{Old: old, Failed: time.Now()}
	f.New, f.Promoted, err = g.WaitNewMaster(ctx, old)
	if err != nil {
		t.Fatalf("redistest: failover after killing %s: %v\n%s", old.Addr, err, g.logs(15))
	}
	return f
}

// Use gives t the shared group to itself until t ends, and then heals it
// (Heal) for the next test: tests that fail the master over call it first.
func (g *SentinelGroup) Use(t TB) {
	t.Helper()
	g.use.Lock()
	t.Cleanup(func() {
		defer g.use.Unlock()
		g.Heal(t)
	})
}

// Heal brings the group back to health after a test's faults: paused
// processes are resumed, killed or stopped nodes restarted as replicas of
// the current master (empty, so they resync), killed sentinels restarted,
// cut replication restored, and it waits (up to 20s) until the group is
// whole again as StartSentinelGroup left it, except for which node is the
// master.
func (g *SentinelGroup) Heal(t TB) {
	t.Helper()
	all := append(append([]*Server(nil), g.Nodes...), g.Sentinels...)
	for _, s := range all {
		s.resume()
	}
	for _, s := range g.Sentinels {
		if !s.Running() {
			s.Restart(t) // its config file remembers what it learnt
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	var master *Server
	for master == nil {
		m, err := g.Master(ctx)
		switch {
		case err == nil && m.Running():
			master = m
		case ctx.Err() != nil:
			t.Fatalf("redistest: heal: no running master named: %v\n%s", err, g.logs(10))
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, s := range g.Nodes {
		if !s.Running() {
			s.RestartWith(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
		} else if s != master {
			// A resumed former master still thinks it is one; a sentinel
			// would tell it otherwise only at its next 10s INFO round.
			cl := nodeClient(s.Addr)
			err := cl.ReplicaOf(ctx, "127.0.0.1", strconv.Itoa(master.Port)).Err()
			cl.Close()
			if err != nil {
				t.Fatalf("redistest: heal: REPLICAOF on %s: %v", s.Addr, err)
			}
		}
		if err := restoreReplication(ctx, s.Addr); err != nil {
			t.Fatalf("redistest: heal: %v", err)
		}
	}
	if err := g.waitOK(ctx); err != nil {
		t.Fatalf("redistest: heal: sentinel group not whole within %v: %v\n%s", clusterTimeout, err, g.logs(10))
	}
	// A sentinel starts no new failover of the same master within twice
	// failover-timeout of the last one: wait that out, so that the next
	// test's failover takes the time a failover takes.
	g.mu.Lock()
	ready := g.lastFailover.Add(2 * g.opts.FailoverTimeout)
	g.mu.Unlock()
	time.Sleep(time.Until(ready))
}
