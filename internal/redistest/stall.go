package redistest

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MaxStall bounds Stall: a stalled server is always resumed within it.
const MaxStall = 30 * time.Second

// Stall stops the redis-server listening on addr (one this package
// started: never 127.0.0.1:6379) with SIGSTOP, so that it neither answers
// nor closes its connections, as a stalled host would, and resumes it with
// SIGCONT after d (capped at MaxStall). The returned function resumes it
// at once; it is safe to call more than once. The server is also resumed
// at t's cleanup, before the cleanup that stops it.
func Stall(t testing.TB, addr string, d time.Duration) (resume func()) {
	t.Helper()
	if strings.HasSuffix(addr, ":"+strconv.Itoa(reservedPort)) {
		t.Fatalf("redistest: Stall: %s is the reserved server", addr)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pid := parseInfo(rdb.Info(ctx, "server").Val())["process_id"]
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 1 {
		t.Fatalf("redistest: Stall: no process_id from %s: %q", addr, pid)
	}
	if err := syscall.Kill(n, syscall.SIGSTOP); err != nil {
		t.Fatalf("redistest: Stall: SIGSTOP %s (pid %d): %v", addr, n, err)
	}
	var once sync.Once
	resume = func() { once.Do(func() { _ = syscall.Kill(n, syscall.SIGCONT) }) }
	time.AfterFunc(min(d, MaxStall), resume)
	t.Cleanup(resume)
	return resume
}
