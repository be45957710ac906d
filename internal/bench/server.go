package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// reservedPort is the shared Redis that the benchmark must never touch.
const reservedPort = 6379

// Server is a redis-server process started by StartServer on a free
// 127.0.0.1 port, without persistence, in its own temporary directory.
type Server struct {
	Addr    string // "127.0.0.1:PORT"
	Port    int
	Version string // redis_version from INFO server

	cmd  *exec.Cmd
	dir  string
	done chan struct{}
}

// StartServer starts redis-server (bin, or "redis-server" from PATH when
// empty) on a free loopback port with --save "" --appendonly no and waits
// until it answers PING. The caller must call Stop.
func StartServer(ctx context.Context, bin string) (*Server, error) {
	if bin == "" {
		bin = "redis-server"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("start redis: %w", err)
	}
	dir, err := os.MkdirTemp("", "bbbench-redis-")
	if err != nil {
		return nil, fmt.Errorf("start redis: %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("start redis: %w", err)
		}
		s, err := launch(ctx, path, dir, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("start redis: %w", lastErr)
}

// freePort asks the kernel for a free loopback port, never 6379.
func freePort() (int, error) {
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port != reservedPort {
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}

func launch(ctx context.Context, path, dir string, port int) (*Server, error) {
	logPath := filepath.Join(dir, "redis-"+strconv.Itoa(port)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--logfile", "")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port,
		cmd: cmd, dir: dir, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := rdb.Ping(pctx).Err()
		cancel()
		if err == nil {
			break
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("redis-server on port %d exited: %s", port, tail(string(log), 10))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.kill()
			return nil, fmt.Errorf("redis-server on port %d: no PONG: %w", port, err)
		}
	}
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		s.kill()
		return nil, fmt.Errorf("redis-server on port %d: INFO: %w", port, err)
	}
	s.Version = InfoField(info, "redis_version")
	return s, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (s *Server) kill() {
	if s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-s.done
}

// Stop kills the server and removes its directory. It is idempotent.
func (s *Server) Stop() {
	select {
	case <-s.done:
	default:
		s.kill()
	}
	os.RemoveAll(s.dir)
}
