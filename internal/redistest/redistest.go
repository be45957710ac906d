// Package redistest starts real redis-server processes on free loopback ports
// for tests: single servers (Start) and multi-master clusters (StartCluster).
//
// Every process runs in its own process group with a t.TempDir() working
// directory, no persistence (--save "" --appendonly no) and its stdout/stderr
// captured to a log file in that directory; the tail of the log is included
// in the failure message when a server does not come up. Processes are stopped
// from t.Cleanup, so nothing lingers even when a test fails or panics.
//
// When redis-server is not on PATH the helpers skip the test, unless the
// environment variable BREAKERBOX_REQUIRE_REDIS is set to 1, in which case
// they fail it instead.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// requireEnv forces a test failure instead of a skip when redis-server
	// is missing.
	requireEnv = "BREAKERBOX_REQUIRE_REDIS"

	startTimeout   = 10 * time.Second
	stopTimeout    = 5 * time.Second
	clusterTimeout = 20 * time.Second
	logTailLines   = 30

	// clusterBusOffset is the distance between a cluster node's client
	// port and its cluster bus port.
	clusterBusOffset = 10000
	// maxClusterPort keeps port+clusterBusOffset a valid port number.
	maxClusterPort = 65535 - clusterBusOffset
	// reservedPort belongs to a server that must never be touched.
	reservedPort = 6379
)

// RequireRedis reports the skip/fatal decision without starting anything.
// It returns the path of redis-server when it is on PATH. Otherwise it calls
// t.Skip("redis-server not found: ...") or, when the environment variable
// BREAKERBOX_REQUIRE_REDIS=1, t.Fatal with the same reason.
func RequireRedis(t testing.TB) string {
	t.Helper()
	return requireBinary(t, "redis-server")
}

// requireBinary looks up name on PATH and skips or fails t when it is absent.
func requireBinary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	reason := fmt.Sprintf("%s not found: %v", name, err)
	if os.Getenv(requireEnv) == "1" {
		t.Fatal(reason)
	} else {
		t.Skip(reason)
	}
	return "" // unreachable: Skip and Fatal stop the goroutine
}

// Server is a redis-server process started by Start. Its exported fields are
// fixed for the lifetime of the Server, including across Restart.
type Server struct {
	// Addr is the "127.0.0.1:port" address the server listens on.
	Addr string
	// Port is the TCP port the server listens on.
	Port int

	bin      string
	args     []string // extra args given to Start
	dir      string
	logPath  string
	password string // from --requirepass, used for SHUTDOWN

	mu   sync.Mutex
	proc *process // nil when stopped
}

// process is one running redis-server child.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed after cmd.Wait returned
	err  error         // cmd.Wait result, valid after done is closed
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start starts a redis-server on a free 127.0.0.1 port with --save ""
// --appendonly no, a temp dir (t.TempDir()) as --dir, and the extra args
// appended (e.g. "--requirepass", "x"). It waits until the server answers
// PING (timeout 10s) and registers t.Cleanup to stop it. When redis-server
// is not on PATH it skips the test, or fails it if BREAKERBOX_REQUIRE_REDIS=1.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin := RequireRedis(t)
	return startServer(t, bin, false, args)
}

// startServer starts a server, retrying on a fresh port if the chosen one
// turned out to be taken. cluster requires port+10000 to be free as well.
func startServer(t testing.TB, bin string, cluster bool, args []string) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{
		bin:      bin,
		args:     append([]string(nil), args...),
		dir:      dir,
		password: passwordFrom(args),
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Logf("redistest: stopping %s: %v", s.Addr, err)
		}
	})

	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort(cluster)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.Port = port
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.logPath = filepath.Join(dir, fmt.Sprintf("redis-%d.log", port))
		lastErr = s.start()
		if lastErr == nil {
			return s
		}
		if !strings.Contains(lastErr.Error(), "Address already in use") {
			break
		}
	}
	t.Fatalf("redistest: %v", lastErr)
	return nil
}

// passwordFrom extracts the value of --requirepass from redis-server args.
func passwordFrom(args []string) string {
	pw := ""
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--requirepass" {
			pw = args[i+1]
		}
	}
	return pw
}

// commandLine is the full redis-server argument list for s.
func (s *Server) commandLine() []string {
	base := []string{
		"--port", strconv.Itoa(s.Port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "", // log to stdout, which goes to the log file
	}
	return append(base, s.args...)
}

// start launches the process on s.Port and waits until it answers PING.
// On failure the process is killed and the error contains the log tail.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.exited() {
		return fmt.Errorf("redis-server on %s is already running", s.Addr)
	}
	s.proc = nil

	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	fmt.Fprintf(logf, "=== redistest: starting %s %s\n", s.bin, strings.Join(quoteArgs(s.commandLine()), " "))

	cmd := exec.Command(s.bin, s.commandLine()...)
	cmd.Dir = s.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start redis-server on %s: %w", s.Addr, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()

	if err := waitReady(s.Addr, s.password, p, startTimeout); err != nil {
		killAndWait(p)
		return fmt.Errorf("redis-server on %s did not come up: %v\n--- last lines of %s ---\n%s",
			s.Addr, err, s.logPath, logTail(s.logPath, logTailLines))
	}
	s.proc = p
	return nil
}

// waitReady polls addr with PING until it gets a reply, the process exits or
// the timeout expires. An authentication error counts as an answer.
func waitReady(addr, password string, p *process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		if p.exited() {
			return fmt.Errorf("process exited: %v", p.err)
		}
		reply, err := rawCommand(addr, password, 500*time.Millisecond, "PING")
		switch {
		case err == nil && reply == "+PONG":
			return nil
		case err == nil && (strings.HasPrefix(reply, "-NOAUTH") || strings.HasPrefix(reply, "-WRONGPASS")):
			return nil
		case err == nil:
			lastErr = fmt.Errorf("PING replied %q", reply)
		default:
			lastErr = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG within %v: %v", timeout, lastErr)
		}
		select {
		case <-p.done:
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// rawCommand sends one command (after AUTH when password is set) over a
// fresh connection and returns the first line of the reply.
func rawCommand(addr, password string, timeout time.Duration, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	if password != "" {
		if _, err := conn.Write(encodeCommand("AUTH", password)); err != nil {
			return "", err
		}
		if _, err := r.ReadString('\n'); err != nil {
			return "", err
		}
	}
	if _, err := conn.Write(encodeCommand(args...)); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// encodeCommand encodes args as a RESP array of bulk strings.
func encodeCommand(args ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.Bytes()
}

// killAndWait kills p's process group and waits for the process to exit.
func killAndWait(p *process) {
	if !p.exited() && p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

// stop shuts the server down and waits for it to exit. It is idempotent.
func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	if p.exited() {
		return nil
	}
	var shutdownErr error
	// SHUTDOWN NOSAVE closes the connection without a reply on success.
	if reply, err := rawCommand(s.Addr, s.password, time.Second, "SHUTDOWN", "NOSAVE"); err == nil && strings.HasPrefix(reply, "-") {
		shutdownErr = fmt.Errorf("SHUTDOWN NOSAVE: %s", reply)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		killAndWait(p)
		if shutdownErr == nil {
			shutdownErr = fmt.Errorf("did not exit within %v after SHUTDOWN NOSAVE; killed", stopTimeout)
		}
	}
	if shutdownErr != nil {
		return fmt.Errorf("%w (process was killed)", shutdownErr)
	}
	return nil
}

// Client returns a new go-redis client for the server, closed at t's cleanup.
// It does not authenticate: for a server started with --requirepass, build
// a client with redis.NewClient and the password instead.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop shuts the server down with SHUTDOWN NOSAVE (killing its process group
// if it does not exit in time) and waits for the process to exit, so the
// port can be bound again. Calling Stop on a stopped server does nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Logf("redistest: stopping %s: %v", s.Addr, err)
	}
}

// Restart stops the server and starts it again on the same port with the same
// args, waiting until it answers PING. Nothing is persisted, so the restarted
// server starts empty (cluster nodes keep their nodes.conf).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	var err error
	// The port is ours, but give a lingering socket a few chances to clear.
	for attempt := 0; attempt < 5; attempt++ {
		if err = s.start(); err == nil {
			return
		}
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("redistest: restart: %v", err)
}

// Running reports whether the server process is currently running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// Cluster is a set of cluster-enabled redis-server masters started by
// StartCluster, together covering all 16384 hash slots.
type Cluster struct {
	// Addrs holds the "127.0.0.1:port" address of every master.
	Addrs []string

	nodes []*Server
}

// StartCluster starts n (>=3) cluster-enabled masters (--cluster-enabled yes,
// each its own --cluster-config-file in its own temp dir, free ports whose bus port
// port+10000 is free too), joins them with `redis-cli --cluster create ...
// --cluster-replicas 0 --cluster-yes`, waits until CLUSTER INFO says
// cluster_state:ok on every node and every node agrees on the slot map (up to
// 20s), and registers cleanup to stop them. When redis-server or redis-cli is
// not on PATH it skips the test, or fails it if BREAKERBOX_REQUIRE_REDIS=1.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 3 {
		t.Fatalf("redistest: StartCluster needs at least 3 masters, got %d", n)
	}
	bin := RequireRedis(t)
	cli := requireBinary(t, "redis-cli")

	c := &Cluster{}
	for i := 0; i < n; i++ {
		// A relative --cluster-config-file lives in the node's own --dir.
		s := startServer(t, bin, true, []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000",
		})
		c.nodes = append(c.nodes, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	cliArgs := append([]string{"--cluster", "create"}, c.Addrs...)
	cliArgs = append(cliArgs, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.CommandContext(ctx, cli, cliArgs...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create %s: %v\n%s", strings.Join(c.Addrs, " "), err, out)
	}

	if err := c.waitOK(ctx); err != nil {
		var logs strings.Builder
		for _, s := range c.nodes {
			fmt.Fprintf(&logs, "--- last lines of %s ---\n%s\n", s.logPath, logTail(s.logPath, 10))
		}
		t.Fatalf("redistest: cluster %s not ready within %v: %v\nredis-cli output:\n%s\n%s",
			strings.Join(c.Addrs, " "), clusterTimeout, err, out, logs.String())
	}
	return c
}

// waitOK polls every node until all report cluster_state:ok, all slots are
// assigned, all nodes are known and every node returns the same slot map.
func (c *Cluster) waitOK(ctx context.Context) error {
	clients := make([]*redis.Client, len(c.nodes))
	for i, s := range c.nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
		defer clients[i].Close()
	}
	var lastErr error
	for {
		lastErr = c.checkOK(ctx, clients)
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return lastErr
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) checkOK(ctx context.Context, clients []*redis.Client) error {
	var want string
	for i, cl := range clients {
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER INFO: %w", c.Addrs[i], err)
		}
		fields := parseInfo(info)
		if fields["cluster_state"] != "ok" {
			return fmt.Errorf("%s: cluster_state:%s", c.Addrs[i], fields["cluster_state"])
		}
		if fields["cluster_slots_assigned"] != "16384" {
			return fmt.Errorf("%s: cluster_slots_assigned:%s", c.Addrs[i], fields["cluster_slots_assigned"])
		}
		if fields["cluster_known_nodes"] != strconv.Itoa(len(clients)) {
			return fmt.Errorf("%s: cluster_known_nodes:%s", c.Addrs[i], fields["cluster_known_nodes"])
		}
		slots, err := cl.ClusterSlots(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER SLOTS: %w", c.Addrs[i], err)
		}
		got := slotMap(slots)
		if i == 0 {
			want = got
		} else if got != want {
			return fmt.Errorf("slot maps differ: %s has %s, %s has %s", c.Addrs[0], want, c.Addrs[i], got)
		}
	}
	return nil
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
		parts = append(parts, fmt.Sprintf("%d-%d=%s", s.Start, s.End, strings.Join(nodes, ",")))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// Client returns a new go-redis cluster client seeded with all masters,
// closed at t's cleanup.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: append([]string(nil), c.Addrs...)})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

var (
	portsMu sync.Mutex
	// portsUsed holds ports handed out in this process, so concurrent
	// tests never pick the same one twice.
	portsUsed = map[int]bool{}
)

// freePort returns a free 127.0.0.1 port not handed out before. With
// cluster, port+10000 must be free too and the port below 55535.
func freePort(cluster bool) (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	var lastErr error
	for attempt := 0; attempt < 200; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			lastErr = err
			continue
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port == reservedPort || portsUsed[port] || (cluster && (port >= maxClusterPort || portsUsed[port+clusterBusOffset])) {
			l.Close()
			continue
		}
		if cluster {
			bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+clusterBusOffset)))
			if err != nil {
				l.Close()
				lastErr = err
				continue
			}
			bus.Close()
			portsUsed[port+clusterBusOffset] = true
		}
		l.Close()
		portsUsed[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port found: %v", lastErr)
}

// logTail returns the last n lines of the file at path.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "(no log)"
		}
		return fmt.Sprintf("(reading log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// quoteArgs quotes empty or space-containing args for log output.
func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return out
}
