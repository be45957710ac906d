package redistest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// Shared is a value (a Sentinel group, a cluster) started at most once per
// test binary, on the first Get, and shared by every test that asks for
// it; failover tests use it so that a package pays for its servers once.
// Its servers stop when Stop is called (Main calls it after the tests) and
// in any case when the test binary ends (see the package documentation).
//
//	var group = redistest.NewShared("sentinel", func(t redistest.TB) *redistest.SentinelGroup {
//		return redistest.StartSentinelGroup(t, redistest.SentinelOptions{})
//	})
//
//	func TestMain(m *testing.M) { redistest.Main(m) }
//
//	func TestSomething(t *testing.T) { g := group.Get(t); g.Use(t); ... }
type Shared[T any] struct {
	name  string
	start func(TB) T

	once  sync.Once
	val   T
	fail  *abort // why start failed, replayed to every Get
	owner *owner
	took  time.Duration
}

var (
	sharedMu  sync.Mutex
	sharedAll []interface{ Stop() }
)

// NewShared returns a Shared value that start makes on the first Get.
// start runs with an owner that lives until Stop: servers it starts, and
// its t.Cleanup functions, last that long. A Skip or Fatal in start is
// replayed to every test that calls Get.
func NewShared[T any](name string, start func(t TB) T) *Shared[T] {
	s := &Shared[T]{name: name, start: start}
	sharedMu.Lock()
	sharedAll = append(sharedAll, s)
	sharedMu.Unlock()
	return s
}

// Get returns the value, starting it on the first call (other callers wait
// for that start). If start skipped or failed, t is skipped or failed the
// same way.
func (s *Shared[T]) Get(t testing.TB) T {
	t.Helper()
	s.once.Do(func() {
		s.owner = newOwner(s.name)
		began := time.Now()
		s.val, s.fail = runOwned(s.owner, s.start)
		s.took = time.Since(began)
		if s.fail == nil {
			t.Logf("redistest: started shared %s in %v", s.name, s.took.Round(time.Millisecond))
		}
	})
	if s.fail != nil {
		if s.fail.skip {
			t.Skip(s.fail.msg)
		}
		t.Fatalf("redistest: shared %s could not start: %s", s.name, s.fail.msg)
	}
	return s.val
}

// SetupTime is how long the start took (0 before the first Get).
func (s *Shared[T]) SetupTime() time.Duration { return s.took }

// Stop stops what start started, in the reverse order of its cleanups. It
// is safe to call when Get was never called, and more than once.
func (s *Shared[T]) Stop() {
	s.once.Do(func() {}) // a later Get must not start it again
	if s.owner != nil {
		s.owner.close()
	}
}

// Main runs the tests and then stops every Shared value before exiting:
// call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// StopShared stops every Shared value of the test binary.
func StopShared() {
	sharedMu.Lock()
	all := sharedAll
	sharedMu.Unlock()
	for i := len(all) - 1; i >= 0; i-- {
		all[i].Stop()
	}
}

// owner is the TB a Shared value's start function receives: its temp dirs
// and cleanups last until close; Fatal and Skip abort the start.
type owner struct {
	name string
	dir  string

	mu       sync.Mutex
	cleanups []func()
	closed   bool
}

// abort carries a Fatal or Skip out of a start function.
type abort struct {
	msg  string
	skip bool
}

func newOwner(name string) *owner {
	return &owner{name: name}
}

// runOwned runs start, turning the owner's Fatal and Skip into an abort.
func runOwned[T any](o *owner, start func(TB) T) (val T, fail *abort) {
	defer func() {
		if r := recover(); r != nil {
			a, ok := r.(abort)
			if !ok {
				a = abort{msg: fmt.Sprintf("panic: %v", r)}
			}
			fail = &a
		}
	}()
	return start(o), nil
}

func (o *owner) Helper() {}

func (o *owner) TempDir() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dir == "" {
		d, err := os.MkdirTemp("", "redistest-"+o.name+"-")
		if err != nil {
			panic(abort{msg: err.Error()})
		}
		o.dir = d
	}
	d, err := os.MkdirTemp(o.dir, "")
	if err != nil {
		panic(abort{msg: err.Error()})
	}
	return d
}

func (o *owner) Cleanup(f func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cleanups = append(o.cleanups, f)
}

func (o *owner) Logf(format string, args ...any) {
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "redistest: %s: %s\n", o.name, fmt.Sprintf(format, args...))
	}
}

func (o *owner) Fatal(args ...any) { panic(abort{msg: fmt.Sprint(args...)}) }

func (o *owner) Fatalf(format string, args ...any) {
	panic(abort{msg: fmt.Sprintf(format, args...)})
}

func (o *owner) Skip(args ...any) { panic(abort{msg: fmt.Sprint(args...), skip: true}) }

// close runs the cleanups, newest first, and removes the temp dirs.
func (o *owner) close() {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.closed = true
	fs := o.cleanups
	o.cleanups = nil
	dir := o.dir
	o.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}

// FirstSuccess calls probe every interval until it returns nil or ctx
// ends, and returns when the first successful call returned (a call that
// began before the failover may succeed after it, having retried inside:
// its end is what counts). Failover tests use it to time how soon a
// component works again: each call should bound itself (its own timeout),
// so that a stalled call does not hide a later success.
func FirstSuccess(ctx context.Context, interval time.Duration, probe func(context.Context) error) (time.Time, error) {
	var lastErr error
	for {
		began := time.Now()
		if lastErr = probe(ctx); lastErr == nil {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%w; last error: %v", ctx.Err(), lastErr)
		case <-time.After(time.Until(began.Add(interval))):
		}
	}
}
