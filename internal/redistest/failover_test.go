package redistest

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { Main(m) }

// The failover tests of this package share one Sentinel group and one
// replicated cluster, as the failover tests of other packages do.
var (
	sharedSentinel = NewShared("sentinel", func(t TB) *SentinelGroup {
		return StartSentinelGroup(t, SentinelOptions{})
	})
	sharedCluster = NewShared("cluster", func(t TB) *Cluster {
		return StartReplicatedCluster(t)
	})
)

func TestSentinelGroupFailsOverAKilledMaster(t *testing.T) {
	g := sharedSentinel.Get(t)
	g.Use(t)
	ctx := ctxT(t)
	rdb := g.Client(t)
	if err := rdb.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatalf("SET through the sentinels: %v", err)
	}
	// Wait until the replica has it: WAIT 1 replica.
	if n, err := rdb.Wait(ctx, 1, 2*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v", n, err)
	}
	f := g.KillMaster(t, 20*time.Second)
	t.Logf("sentinel failover: %s killed, %s named master after %v", f.Old.Addr, f.New.Addr, f.Took().Round(time.Millisecond))
	if f.New == f.Old || f.Old.Running() {
		t.Fatalf("failover %+v", f)
	}
	m, err := g.Master(ctx)
	if err != nil || m != f.New {
		t.Fatalf("Master() = %v, %v; want %s", m, err, f.New.Addr)
	}
	// A fresh failover client finds the new master, with the data.
	if got, err := g.Client(t).Get(ctx, "k").Result(); err != nil || got != "before" {
		t.Fatalf("GET after failover = %q, %v", got, err)
	}
}

func TestSentinelCutReplicationLosesTheLastWrites(t *testing.T) {
	g := sharedSentinel.Get(t)
	g.Use(t)
	ctx := ctxT(t)
	old, err := g.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	direct := old.Client(t)
	if err := direct.Set(ctx, "kept", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := direct.Wait(ctx, 1, 2*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v", n, err)
	}
	old.CutReplication(t)
	if err := direct.Set(ctx, "lost", "1", 0).Err(); err != nil {
		t.Fatalf("the master takes writes after the cut: %v", err)
	}
	if n, err := direct.Wait(ctx, 1, 200*time.Millisecond).Result(); err != nil || n != 0 {
		t.Fatalf("WAIT after the cut = %d, %v; want 0 replicas", n, err)
	}
	f := g.KillMaster(t, 20*time.Second)
	t.Logf("sentinel failover after a cut: %v", f.Took().Round(time.Millisecond))
	nc := f.New.Client(t)
	if v, err := nc.Get(ctx, "kept").Result(); err != nil || v != "1" {
		t.Fatalf("kept = %q, %v", v, err)
	}
	if _, err := nc.Get(ctx, "lost").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("lost: err = %v, want redis.Nil (the write made after the cut is lost)", err)
	}
}

func TestSentinelGroupFailsOverAPausedMaster(t *testing.T) {
	g := sharedSentinel.Get(t)
	g.Use(t)
	ctx := ctxT(t)
	old, err := g.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	old.Pause(t, 8*time.Second)
	nm, at, err := g.WaitNewMaster(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sentinel failover of a paused master: %v", at.Sub(began).Round(time.Millisecond))
	if nm == old {
		t.Fatal("the paused master is still named")
	}
	if !old.Paused() {
		t.Fatal("the old master resumed before 8s")
	}
}

func TestClusterFailsOverAKilledMaster(t *testing.T) {
	c := sharedCluster.Get(t)
	c.Use(t)
	ctx := ctxT(t)
	cc := c.Client(t)
	if err := cc.Set(ctx, "{k}x", "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	m, err := c.MasterOf(ctx, "{k}x")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := m.Client(t).Wait(ctx, 1, 2*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v", n, err)
	}
	r, err := c.ReplicaOf(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	f := c.KillMasterOf(t, "{k}x", 30*time.Second)
	t.Logf("cluster failover: %s killed, %s serves the slot after %v", f.Old.Addr, f.New.Addr, f.Took().Round(time.Millisecond))
	if f.Old != m || f.New != r {
		t.Fatalf("failover %s -> %s, want %s -> %s", f.Old.Addr, f.New.Addr, m.Addr, r.Addr)
	}
	fresh := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{f.New.Addr}})
	defer fresh.Close()
	if v, err := fresh.Get(ctx, "{k}x").Result(); err != nil || v != "before" {
		t.Fatalf("GET after failover = %q, %v", v, err)
	}
}

func TestClusterCutReplicationLosesTheLastWrites(t *testing.T) {
	c := sharedCluster.Get(t)
	c.Use(t)
	ctx := ctxT(t)
	m, err := c.MasterOf(ctx, "{cut}")
	if err != nil {
		t.Fatal(err)
	}
	direct := m.Client(t)
	if err := direct.Set(ctx, "{cut}kept", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := direct.Wait(ctx, 1, 2*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v", n, err)
	}
	m.CutReplication(t)
	if err := direct.Set(ctx, "{cut}lost", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	f := c.KillMasterOf(t, "{cut}", 30*time.Second)
	t.Logf("cluster failover after a cut: %v", f.Took().Round(time.Millisecond))
	nc := f.New.Client(t)
	if v, err := nc.Get(ctx, "{cut}kept").Result(); err != nil || v != "1" {
		t.Fatalf("kept = %q, %v", v, err)
	}
	if _, err := nc.Get(ctx, "{cut}lost").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("lost: err = %v, want redis.Nil", err)
	}
}

func TestPauseResumesByItself(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := ctxT(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr, ReadTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	s.Pause(t, 300*time.Millisecond)
	if !s.Paused() {
		t.Fatal("Paused() = false")
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered while paused")
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the server did not resume by itself")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s.Paused() {
		t.Fatal("Paused() = true after it resumed")
	}
	resume := s.Pause(t, time.Minute)
	resume()
	resume()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after resume: %v", err)
	}
	s.Pause(t, time.Minute)
	s.Kill(t) // a paused server can be killed
	if s.Running() {
		t.Fatal("Running() after Kill")
	}
	s.Restart(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
}

// TestServersDieWithTheTestBinary runs a test binary that starts a server
// and then is killed with SIGKILL, so that no cleanup runs: the server
// must die with it.
func TestServersDieWithTheTestBinary(t *testing.T) {
	if os.Getenv("REDISTEST_ORPHAN") == "1" {
		s := Start(t)
		s.mu.Lock()
		pid := s.proc.cmd.Process.Pid
		s.mu.Unlock()
		os.Stdout.WriteString("PID " + strconv.Itoa(pid) + "\n")
		time.Sleep(time.Minute)
		return
	}
	RequireRedis(t)
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestServersDieWithTheTestBinary$", "-test.count=1")
	cmd.Env = append(os.Environ(), "REDISTEST_ORPHAN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	pid, perr := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "PID ")))
	if err != nil || perr != nil {
		t.Fatalf("child said %q (%v, %v)", line, err, perr)
	}
	if !alive(pid) {
		t.Fatalf("the child's server %d is not running", pid)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for alive(pid) {
		if ctx.Err() != nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("redis-server %d outlived its killed test binary", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether process pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) STATE ...; comm may hold spaces, so cut at the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// TestClusterReplicasStreamOnceReady: as soon as StartReplicatedCluster
// returns, and as soon as Heal returns after a failover (the old master
// back as a replica, just fully synced), a write on every master reaches
// its replica at once (WAIT 1, 50ms). Before the start waited for it, a
// replica could be "online" with its link up for up to a second without
// getting any write (checkStreaming), and a test that killed its master
// then lost every write since the start.
func TestClusterReplicasStreamOnceReady(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no failover")
	}
	c := StartReplicatedCluster(t)
	ctx := ctxT(t)
	writesReachReplicas := func(when string) {
		t.Helper()
		cl := nodeClient(c.Addrs[0])
		defer cl.Close()
		slots, err := cl.ClusterSlots(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range slots {
			key := keyOfSlot(int(r.Start))
			m := redis.NewClient(&redis.Options{Addr: r.Nodes[0].Addr, MaxRetries: -1})
			err := m.Set(ctx, key, when, 0).Err()
			n, werr := m.Wait(ctx, 1, 50*time.Millisecond).Result()
			m.Del(ctx, key)
			m.Close()
			if err != nil || werr != nil || n != 1 {
				t.Errorf("%s: a write on %s (slots %d-%d): SET %v, WAIT 1 = %d, %v; want it on the replica",
					when, r.Nodes[0].Addr, r.Start, r.End, err, n, werr)
			}
		}
	}
	writesReachReplicas("after the start")
	c.KillMasterOf(t, "{k}", 30*time.Second)
	c.Heal(t)
	writesReachReplicas("after the heal")
}

// TestKeyOfSlot: keyOfSlot's keys hash where Redis Cluster says they do.
func TestKeyOfSlot(t *testing.T) {
	s := startServer(t, RequireRedis(t), true, "", []string{"--cluster-enabled", "yes"})
	cl := s.Client(t)
	ctx := ctxT(t)
	for _, slot := range []int{0, 1, 5460, 5461, 10922, 10923, 16383} {
		key := keyOfSlot(slot)
		got, err := cl.ClusterKeySlot(ctx, key).Result()
		if err != nil || int(got) != slot {
			t.Errorf("CLUSTER KEYSLOT %s = %d, %v; want %d", key, got, err, slot)
		}
	}
}
