package redistest

import (
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// process is one running child (redis-server, or redis-cli).
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

// spawner starts every child from one goroutine locked to its OS thread
// for the life of the test binary. The children get SIGKILL as their
// parent-death signal, and Linux sends it when the thread that started
// them ends: a thread that never ends makes that "when the test binary
// ends", however it ends (a panic, a -timeout, kill -9), even where
// t.Cleanup and TestMain never run.
var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

// spawn starts cmd in a process group of its own (so that killing the
// group reaches its children and a Ctrl-C of the test run does not) with
// the parent-death signal, and reaps it in the background.
func spawn(cmd *exec.Cmd) (*process, error) {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: see spawner
			for r := range spawner.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	done := make(chan error, 1)
	spawner.reqs <- spawnReq{cmd: cmd, done: done}
	if err := <-done; err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// killAndWait kills p's process group and waits for the process to exit.
func killAndWait(p *process) {
	if !p.exited() && p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

// MaxPause bounds Server.Pause: a paused server is always resumed by
// itself within this time.
const MaxPause = 30 * time.Second

// pause is a server stopped with SIGSTOP, resumed once by its timer, by
// the function Pause returned, or before the server is stopped or killed.
type pause struct {
	once  sync.Once
	pid   int
	timer *time.Timer
}

func (p *pause) resume() {
	p.once.Do(func() {
		p.timer.Stop()
		_ = syscall.Kill(-p.pid, syscall.SIGCONT)
	})
}

// Pause stops the server's process group with SIGSTOP (the server neither
// answers nor closes its connections, as a stalled host would) and resumes
// it with SIGCONT after d, which is capped at MaxPause. The returned
// function resumes it at once; it is safe to call more than once and after
// the server resumed by itself. The server is also resumed at t's cleanup,
// before it is stopped, and before Kill. Pausing a paused or stopped server
// fails t.
func (s *Server) Pause(t TB, d time.Duration) (resume func()) {
	t.Helper()
	d = min(d, MaxPause)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		t.Fatalf("redistest: Pause: %s is not running", s.Addr)
	}
	if s.pause != nil {
		t.Fatalf("redistest: Pause: %s is already paused", s.Addr)
	}
	pid := s.proc.cmd.Process.Pid
	if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("redistest: Pause: SIGSTOP %s: %v", s.Addr, err)
	}
	p := &pause{pid: pid}
	p.timer = time.AfterFunc(d, func() { s.resumeIf(p) })
	s.pause = p
	t.Cleanup(func() { s.resumeIf(p) })
	return func() { s.resumeIf(p) }
}

// resumeIf resumes the server if p is its current pause.
func (s *Server) resumeIf(p *pause) {
	s.mu.Lock()
	if s.pause == p {
		s.pause = nil
	}
	s.mu.Unlock()
	p.resume()
}

// resume ends the current pause, if any.
func (s *Server) resume() {
	s.mu.Lock()
	p := s.pause
	s.pause = nil
	s.mu.Unlock()
	if p != nil {
		p.resume()
	}
}

// Paused reports whether the server is stopped with SIGSTOP.
func (s *Server) Paused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pause != nil
}

// runCommand runs a short-lived helper (redis-cli) through the spawner,
// with a timeout, and returns its combined output.
func runCommand(timeout time.Duration, bin string, args ...string) ([]byte, error) {
	var out safeBuffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	p, err := spawn(cmd)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		killAndWait(p)
		return out.Bytes(), fmt.Errorf("%s did not finish within %v", bin, timeout)
	}
	return out.Bytes(), p.err
}

// safeBuffer is a bytes.Buffer safe for the writes of exec's copying
// goroutines and a read after the process ended.
type safeBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *safeBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}
