// Package redistest starts real redis-server processes on free loopback ports
// for tests: single servers (Start), multi-master clusters with or without
// replicas (StartCluster, StartReplicatedCluster) and Sentinel groups
// (StartSentinelGroup), with the faults a failover test needs: kill -9
// (Server.Kill), a bounded SIGSTOP (Server.Pause) and a replication link
// cut before a write (Server.CutReplication).
//
// Every process runs in its own process group with a temporary working
// directory, no persistence (--save "" --appendonly no) and its stdout/stderr
// captured to a log file in that directory; the tail of the log is included
// in the failure message when a server does not come up. Processes are
// stopped from t.Cleanup (or, for servers shared by a package's tests, when
// the Shared value is stopped from TestMain: see Shared and Main). Every
// process is also started with a parent-death signal (SIGKILL), so nothing
// lingers even when the test binary panics, times out or is killed.
//
// When redis-server is not on PATH the helpers skip the test, unless the
// environment variable BREAKERBOX_REQUIRE_REDIS is set to 1, in which case
// they fail it instead.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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

// TB is what the helpers need from their caller. *testing.T and
// *testing.B satisfy it (servers stop at the test's cleanup), and so does
// the owner a Shared value passes to its start function (servers stop
// when the Shared value is stopped).
type TB interface {
	Helper()
	TempDir() string
	Cleanup(func())
	Logf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
}

// RequireRedis reports the skip/fatal decision without starting anything.
// It returns the path of redis-server when it is on PATH. Otherwise it calls
// t.Skip("redis-server not found: ...") or, when the environment variable
// BREAKERBOX_REQUIRE_REDIS=1, t.Fatal with the same reason.
func RequireRedis(t TB) string {
	t.Helper()
	return requireBinary(t, "redis-server")
}

// requireBinary looks up name on PATH and skips or fails t when it is absent.
func requireBinary(t TB, name string) string {
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
	conf     string   // config file given first (Sentinel), or ""
	args     []string // extra args given to Start
	dir      string
	logPath  string
	password string // from --requirepass, used for SHUTDOWN

	mu    sync.Mutex
	proc  *process // nil when stopped
	next  []string // args added on the next start only (RestartWith)
	pause *pause   // non-nil while stopped with SIGSTOP
}

// Start starts a redis-server on a free 127.0.0.1 port with --save ""
// --appendonly no, a temp dir (t.TempDir()) as --dir, and the extra args
// appended (e.g. "--requirepass", "x"). It waits until the server answers
// PING (timeout 10s) and registers t.Cleanup to stop it. When redis-server
// is not on PATH it skips the test, or fails it if BREAKERBOX_REQUIRE_REDIS=1.
func Start(t TB, args ...string) *Server {
	t.Helper()
	bin := RequireRedis(t)
	return startServer(t, bin, false, "", args)
}

// startServer starts a server, retrying on a fresh port if the chosen one
// turned out to be taken. cluster requires port+10000 to be free as well.
// conf, when not empty, is written to a config file given as the first
// argument (a Sentinel needs one it can rewrite); "%PORT%" in it is
// replaced by the chosen port.
func startServer(t TB, bin string, cluster bool, conf string, args []string) *Server {
	t.Helper()
	s := newServer(t, bin, args)
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort(cluster)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.setPort(port)
		if conf != "" {
			s.conf = filepath.Join(s.dir, fmt.Sprintf("sentinel-%d.conf", port))
			if err := os.WriteFile(s.conf, []byte(strings.ReplaceAll(conf, "%PORT%", strconv.Itoa(port))), 0o644); err != nil {
				t.Fatalf("redistest: %v", err)
			}
		}
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

// newServer makes a stopped Server in a fresh temp dir of t, stopped again
// at t's cleanup.
func newServer(t TB, bin string, args []string) *Server {
	s := &Server{
		bin:      bin,
		args:     append([]string(nil), args...),
		dir:      t.TempDir(),
		password: passwordFrom(args),
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Logf("redistest: stopping %s: %v", s.Addr, err)
		}
	})
	return s
}

func (s *Server) setPort(port int) {
	s.Port = port
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.logPath = filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", port))
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
	var base []string
	if s.conf != "" {
		base = append(base, s.conf, "--sentinel")
	}
	base = append(base,
		"--port", strconv.Itoa(s.Port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "", // log to stdout, which goes to the log file
	)
	base = append(base, s.args...)
	return append(base, s.next...)
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
	p, err := spawn(cmd)
	if err != nil {
		logf.Close()
		return fmt.Errorf("start redis-server on %s: %w", s.Addr, err)
	}
	go func() {
		<-p.done
		logf.Close()
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

// stop shuts the server down and waits for it to exit. It is idempotent.
func (s *Server) stop() error {
	s.resume()
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
func (s *Server) Client(t TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop shuts the server down with SHUTDOWN NOSAVE (killing its process group
// if it does not exit in time) and waits for the process to exit, so the
// port can be bound again. Calling Stop on a stopped server does nothing.
func (s *Server) Stop(t TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Logf("redistest: stopping %s: %v", s.Addr, err)
	}
}

// Kill kills the server's process group with SIGKILL (kill -9: no shutdown,
// connections reset) and waits for the process to exit. Restart brings it
// back on the same port. Killing a stopped server does nothing.
func (s *Server) Kill(t TB) {
	t.Helper()
	s.resume()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		killAndWait(s.proc)
		s.proc = nil
	}
}

// Restart stops the server and starts it again on the same port with the same
// args, waiting until it answers PING. Nothing is persisted, so the restarted
// server starts empty (cluster nodes keep their nodes.conf).
func (s *Server) Restart(t TB) {
	t.Helper()
	s.RestartWith(t)
}

// RestartWith is Restart with extra args for this start only, such as
// "--replicaof", "127.0.0.1", "7001" for a node that must come back as a
// replica. The RDB file a replica may have received is removed first, so
// the server starts empty whatever it held.
func (s *Server) RestartWith(t TB, args ...string) {
	t.Helper()
	s.Stop(t)
	_ = os.Remove(filepath.Join(s.dir, "dump.rdb"))
	s.mu.Lock()
	s.next = append([]string(nil), args...)
	s.mu.Unlock()
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

// Running reports whether the server process is currently running (a
// paused server is running).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// LogTail returns the last n lines of the server's log, for failure
// messages.
func (s *Server) LogTail(n int) string { return logTail(s.logPath, n) }

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
