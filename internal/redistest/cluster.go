package redistest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a set of cluster-enabled redis-servers started by StartCluster
// or StartReplicatedCluster: masters together covering all 16384 hash
// slots, and their replicas if any.
type Cluster struct {
	// Addrs holds the "127.0.0.1:port" address of every master as started.
	// After a failover the masters may be other nodes: see MasterOf.
	Addrs []string

	opts  ClusterOptions
	nodes []*Server
	use   sync.Mutex // held by the test using a shared cluster (Use)
}

// ClusterOptions shape a cluster.
type ClusterOptions struct {
	// Masters is the number of masters, at least 3. Default 3.
	Masters int
	// Replicas is the number of replicas per master. Default 0.
	Replicas int
	// NodeTimeout is cluster-node-timeout: how long a node may be
	// unreachable before the cluster fails it over. Default 5s.
	NodeTimeout time.Duration
}

// StartCluster starts n (>=3) cluster-enabled masters (--cluster-enabled yes,
// each its own --cluster-config-file in its own temp dir, free ports whose bus port
// port+10000 is free too), joins them with `redis-cli --cluster create ...
// --cluster-replicas 0 --cluster-yes`, waits until CLUSTER INFO says
// cluster_state:ok on every node and every node agrees on the slot map (up to
// 20s), and registers cleanup to stop them. When redis-server or redis-cli is
// not on PATH it skips the test, or fails it if BREAKERBOX_REQUIRE_REDIS=1.
func StartCluster(t TB, n int) *Cluster {
	t.Helper()
	if n < 3 {
		t.Fatalf("redistest: StartCluster needs at least 3 masters, got %d", n)
	}
	return StartClusterWith(t, ClusterOptions{Masters: n})
}

// StartReplicatedCluster starts the cluster failover tests use: 3 masters
// and 3 replicas (one each) with cluster-node-timeout 2s, replicas that
// fail over whatever the age of their data (a cut link included).
func StartReplicatedCluster(t TB) *Cluster {
	t.Helper()
	return StartClusterWith(t, ClusterOptions{Masters: 3, Replicas: 1, NodeTimeout: 2 * time.Second})
}

// StartClusterWith starts a cluster as StartCluster does, with o's shape.
// Replicas authenticate to their master as a user of their own, so that
// CutReplication can cut them off. With replicas, it returns once a write
// on every master reaches its replicas: a replica whose link is up may
// not receive writes yet for up to a second (see checkStreaming), and a
// failover then would lose them all.
func StartClusterWith(t TB, o ClusterOptions) *Cluster {
	t.Helper()
	if o.Masters == 0 {
		o.Masters = 3
	}
	if o.NodeTimeout == 0 {
		o.NodeTimeout = 5 * time.Second
	}
	if o.Masters < 3 || o.Replicas < 0 {
		t.Fatalf("redistest: a cluster needs at least 3 masters and no negative replica count, got %+v", o)
	}
	bin := RequireRedis(t)
	cli := requireBinary(t, "redis-cli")

	c := &Cluster{opts: o}
	n := o.Masters * (1 + o.Replicas)
	for i := 0; i < n; i++ {
		// A relative --cluster-config-file lives in the node's own --dir.
		args := []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(o.NodeTimeout.Milliseconds(), 10),
		}
		if o.Replicas > 0 {
			args = append(args, "--cluster-replica-validity-factor", "0")
			args = append(args, replicationArgs()...)
		}
		s := startServer(t, bin, true, "", args)
		c.nodes = append(c.nodes, s)
		if i < o.Masters {
			c.Addrs = append(c.Addrs, s.Addr)
		}
	}
	all := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		all[i] = s.Addr
	}

	// redis-cli makes the first Masters addresses masters.
	cliArgs := append([]string{"--cluster", "create"}, all...)
	cliArgs = append(cliArgs, "--cluster-replicas", strconv.Itoa(o.Replicas), "--cluster-yes")
	out, err := runCommand(clusterTimeout, cli, cliArgs...)
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create %s: %v\n%s", strings.Join(all, " "), err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := c.waitOK(ctx); err != nil {
		t.Fatalf("redistest: cluster %s not ready within %v: %v\nredis-cli output:\n%s\n%s",
			strings.Join(all, " "), clusterTimeout, err, out, c.logs(10))
	}
	return c
}

// logs returns the last n lines of every node's log.
func (c *Cluster) logs(n int) string {
	var b strings.Builder
	for _, s := range c.nodes {
		fmt.Fprintf(&b, "--- last lines of %s ---\n%s\n", s.logPath, logTail(s.logPath, n))
	}
	return b.String()
}

// waitOK polls every running node until all report cluster_state:ok, all
// slots are assigned, all nodes are known, every node returns the same
// slot map, every master has its replicas with their links up, and a
// write on every master reaches its replicas (checkStreaming).
func (c *Cluster) waitOK(ctx context.Context) error {
	var lastErr error
	for {
		lastErr = c.checkOK(ctx)
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

func (c *Cluster) checkOK(ctx context.Context) error {
	var want string
	var slots []redis.ClusterSlot
	masters := 0
	for i, s := range c.nodes {
		if !s.Running() {
			return fmt.Errorf("%s is not running", s.Addr)
		}
		cl := nodeClient(s.Addr)
		err := func() error {
			defer cl.Close()
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return fmt.Errorf("%s: CLUSTER INFO: %w", s.Addr, err)
			}
			fields := parseInfo(info)
			switch {
			case fields["cluster_state"] != "ok":
				return fmt.Errorf("%s: cluster_state:%s", s.Addr, fields["cluster_state"])
			case fields["cluster_slots_assigned"] != "16384":
				return fmt.Errorf("%s: cluster_slots_assigned:%s", s.Addr, fields["cluster_slots_assigned"])
			case fields["cluster_slots_fail"] != "0" || fields["cluster_slots_pfail"] != "0":
				return fmt.Errorf("%s: slots failing (pfail %s, fail %s)", s.Addr, fields["cluster_slots_pfail"], fields["cluster_slots_fail"])
			case fields["cluster_known_nodes"] != strconv.Itoa(len(c.nodes)):
				return fmt.Errorf("%s: cluster_known_nodes:%s", s.Addr, fields["cluster_known_nodes"])
			}
			var err2 error
			slots, err2 = cl.ClusterSlots(ctx).Result()
			if err2 != nil {
				return fmt.Errorf("%s: CLUSTER SLOTS: %w", s.Addr, err2)
			}
			got := slotMap(slots)
			if i == 0 {
				want = got
			} else if got != want {
				return fmt.Errorf("slot maps differ: %s has %s, %s has %s", c.nodes[0].Addr, want, s.Addr, got)
			}
			repl, err := cl.Info(ctx, "replication").Result()
			if err != nil {
				return fmt.Errorf("%s: INFO replication: %w", s.Addr, err)
			}
			r := parseInfo(repl)
			switch r["role"] {
			case "master":
				masters++
				if r["connected_slaves"] != strconv.Itoa(c.opts.Replicas) {
					return fmt.Errorf("%s: master with connected_slaves:%s, want %d", s.Addr, r["connected_slaves"], c.opts.Replicas)
				}
			case "slave":
				if r["master_link_status"] != "up" {
					return fmt.Errorf("%s: replica with master_link_status:%s", s.Addr, r["master_link_status"])
				}
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	if masters != c.opts.Masters {
		return fmt.Errorf("%d masters, want %d", masters, c.opts.Masters)
	}
	if c.opts.Replicas == 0 {
		return nil
	}
	// Linked is not streaming: see checkStreaming.
	for _, r := range slots {
		cl := nodeClient(r.Nodes[0].Addr)
		err := checkStreaming(ctx, cl, keyOfSlot(int(r.Start)), c.opts.Replicas)
		cl.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// keyOfSlot returns a key that hashes to slot, through a hash tag: the
// first decimal number that does (there is one below 200,000 for every
// slot).
func keyOfSlot(slot int) string {
	for i := 0; ; i++ {
		if tag := strconv.Itoa(i); keySlot(tag) == slot {
			return "redistest:stream-check:{" + tag + "}"
		}
	}
}

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// keySlot is the hash slot of a key without a hash tag: CRC16 (XMODEM)
// modulo 16384, as Redis Cluster computes it.
func keySlot(key string) int {
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % clusterSlots
}

// nodeClient is a client for one node that never retries, so that a poll
// sees each failure at once.
func nodeClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 500 * time.Millisecond,
		ReadTimeout: time.Second, WriteTimeout: time.Second, PoolSize: 1})
}

// parseInfo parses "key:value" lines of an INFO-style reply.
func parseInfo(info string) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok {
			m[k] = v
		}
	}
	return m
}

// slotMap renders CLUSTER SLOTS as a canonical string for comparison.
func slotMap(slots []redis.ClusterSlot) string {
	parts := make([]string, 0, len(slots))
	for _, s := range slots {
		nodes := make([]string, 0, len(s.Nodes))
		for _, n := range s.Nodes {
			nodes = append(nodes, n.ID+"@"+n.Addr)
		}
		if len(nodes) > 1 {
			sort.Strings(nodes[1:]) // replicas in any order
		}
		parts = append(parts, fmt.Sprintf("%d-%d=%s", s.Start, s.End, strings.Join(nodes, ",")))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// Client returns a new go-redis cluster client seeded with all masters,
// closed at t's cleanup.
func (c *Cluster) Client(t TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: append([]string(nil), c.Addrs...)})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// URL is the cluster's URL in the form client.RedisFromURL reads:
// redis://FIRST?addr=SECOND&addr=THIRD...
func (c *Cluster) URL() string {
	u := "redis://" + c.Addrs[0]
	for i, a := range c.Addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + a
	}
	return u
}

// Nodes returns every node, masters and replicas.
func (c *Cluster) Nodes() []*Server { return append([]*Server(nil), c.nodes...) }

// Node returns the node listening on addr, or nil.
func (c *Cluster) Node(addr string) *Server {
	for _, s := range c.nodes {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// Slot returns the hash slot of key (CLUSTER KEYSLOT on a running node).
func (c *Cluster) Slot(ctx context.Context, key string) (int, error) {
	var lastErr error = errors.New("no node is running")
	for _, s := range c.nodes {
		if !s.Running() || s.Paused() {
			continue
		}
		cl := nodeClient(s.Addr)
		slot, err := cl.ClusterKeySlot(ctx, key).Result()
		cl.Close()
		if err == nil {
			return int(slot), nil
		}
		lastErr = err
	}
	return 0, lastErr
}

// MasterOf returns the node the cluster names as the master of key's slot,
// asking the running nodes in turn.
func (c *Cluster) MasterOf(ctx context.Context, key string) (*Server, error) {
	slot, err := c.Slot(ctx, key)
	if err != nil {
		return nil, err
	}
	var lastErr error = errors.New("no node is running")
	for _, s := range c.nodes {
		if !s.Running() || s.Paused() {
			continue
		}
		nodes, err := slotNodes(ctx, s.Addr, slot)
		if err != nil {
			lastErr = err
			continue
		}
		if m := c.Node(nodes[0]); m != nil {
			return m, nil
		}
		lastErr = fmt.Errorf("slot %d: master %s is not a node of this cluster", slot, nodes[0])
	}
	return nil, lastErr
}

// ReplicaOf returns a replica of master as the cluster names it.
func (c *Cluster) ReplicaOf(ctx context.Context, master *Server) (*Server, error) {
	cl := nodeClient(master.Addr)
	defer cl.Close()
	info, err := cl.Info(ctx, "replication").Result()
	if err != nil {
		return nil, err
	}
	r := parseInfo(info)
	// slave0:ip=127.0.0.1,port=7001,state=online,offset=...,lag=0
	for k, v := range r {
		if !strings.HasPrefix(k, "slave") {
			continue
		}
		var ip, port string
		for _, f := range strings.Split(v, ",") {
			key, val, _ := strings.Cut(f, "=")
			switch key {
			case "ip":
				ip = val
			case "port":
				port = val
			}
		}
		if s := c.Node(ip + ":" + port); s != nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%s has no replica", master.Addr)
}

// slotNodes returns the addresses serving slot as addr's CLUSTER SLOTS
// says: the master first.
func slotNodes(ctx context.Context, addr string, slot int) ([]string, error) {
	cl := nodeClient(addr)
	defer cl.Close()
	slots, err := cl.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("%s: CLUSTER SLOTS: %w", addr, err)
	}
	for _, r := range slots {
		if int(r.Start) <= slot && slot <= int(r.End) && len(r.Nodes) > 0 {
			out := make([]string, len(r.Nodes))
			for i, n := range r.Nodes {
				out[i] = n.Addr
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("%s: slot %d is not served", addr, slot)
}

// WaitServing waits until a node other than old serves key's slot: it
// reports itself a master (ROLE) and names itself the slot's master
// (CLUSTER SLOTS), that is, it takes writes for the slot. It returns that
// node and the time it was first seen serving (polled every 10ms).
func (c *Cluster) WaitServing(ctx context.Context, key string, old *Server) (*Server, time.Time, error) {
	slot, err := c.Slot(ctx, key)
	if err != nil {
		return nil, time.Time{}, err
	}
	var lastErr error
	for {
		for _, s := range c.nodes {
			if s == old || !s.Running() || s.Paused() {
				continue
			}
			nodes, err := slotNodes(ctx, s.Addr, slot)
			if err != nil {
				lastErr = err
				continue
			}
			if nodes[0] != s.Addr {
				continue
			}
			if role, err := nodeRole(ctx, s.Addr); err != nil || role != "master" {
				lastErr = fmt.Errorf("%s claims slot %d but ROLE says %q (%v)", s.Addr, slot, role, err)
				continue
			}
			return s, time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return nil, time.Time{}, fmt.Errorf("no node other than %s serves slot %d: %w (last: %v)", old.Addr, slot, ctx.Err(), lastErr)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// nodeRole is the first element of ROLE: master, slave or sentinel.
func nodeRole(ctx context.Context, addr string) (string, error) {
	cl := nodeClient(addr)
	defer cl.Close()
	v, err := cl.Do(ctx, "ROLE").Slice()
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", errors.New("empty ROLE reply")
	}
	role, _ := v[0].(string)
	return role, nil
}

// Failover describes a failover a test caused.
type Failover struct {
	// Old is the master that was killed (or paused); New the node that
	// took over.
	Old, New *Server
	// Failed is when the old master was killed or paused.
	Failed time.Time
	// Promoted is when the new master was first seen serving: for a
	// cluster, when it took writes for the slot (WaitServing); for
	// Sentinel, when a sentinel named it (WaitNewMaster).
	Promoted time.Time
}

// Took is how long the servers took to fail over.
func (f Failover) Took() time.Duration { return f.Promoted.Sub(f.Failed) }

// KillMasterOf kills -9 the master of key's slot and waits (up to timeout)
// until its replica serves the slot.
func (c *Cluster) KillMasterOf(t TB, key string, timeout time.Duration) Failover {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	old, err := c.MasterOf(ctx, key)
	if err != nil {
		t.Fatalf("redistest: master of %q: %v", key, err)
	}
	old.Kill(t)
	f := Failover{Old: old, Failed: time.Now()}
	f.New, f.Promoted, err = c.WaitServing(ctx, key, old)
	if err != nil {
		t.Fatalf("redistest: failover after killing %s: %v\n%s", old.Addr, err, c.logs(15))
	}
	return f
}

// Use gives t the shared cluster to itself until t ends, and then heals it
// (Heal) for the next test: tests that fail nodes over call it first.
func (c *Cluster) Use(t TB) {
	t.Helper()
	c.use.Lock()
	t.Cleanup(func() {
		defer c.use.Unlock()
		c.Heal(t)
	})
}

// Heal brings the cluster back to health after a test's faults: paused
// nodes are resumed, killed or stopped ones restarted (a former master
// rejoins as a replica of the node that replaced it), cut replication is
// restored, and it waits until the cluster is whole again as waitOK
// checks (up to 20s).
func (c *Cluster) Heal(t TB) {
	t.Helper()
	for _, s := range c.nodes {
		s.resume()
	}
	for _, s := range c.nodes {
		if !s.Running() {
			s.Restart(t)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if c.opts.Replicas > 0 {
		for _, s := range c.nodes {
			if err := restoreReplication(ctx, s.Addr); err != nil {
				t.Fatalf("redistest: heal: %v", err)
			}
		}
	}
	if err := c.waitOK(ctx); err != nil {
		t.Fatalf("redistest: heal: cluster not whole within %v: %v\n%s", clusterTimeout, err, c.logs(10))
	}
}
