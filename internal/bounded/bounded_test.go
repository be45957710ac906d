package bounded_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/internal/bounded"
)

func TestCallReturnsTheResultOfAQuickCall(t *testing.T) {
	for i := 0; i < 1000; i++ { // a result delivered as its goroutine ends is never taken for a stall
		v, err := bounded.Call(context.Background(), "op", time.Second, func(context.Context) (int, error) { return 7, nil }, nil)
		if v != 7 || err != nil {
			t.Fatalf("call %d: %v, %v; want 7, nil", i, v, err)
		}
	}
}

func TestCallStopsWaitingAtItsBoundAndHandsTheLateResultOn(t *testing.T) {
	release := make(chan struct{})
	var late atomic.Int64
	got := make(chan struct{})
	start := time.Now()
	_, err := bounded.Call(context.Background(), "GET x", 50*time.Millisecond, func(context.Context) (int, error) {
		<-release // a socket that ignores the context
		return 9, nil
	}, func(v int, err error) { late.Store(int64(v)); close(got) })
	var stall *bounded.StallError
	if d := time.Since(start); !errors.As(err, &stall) || stall.Op != "GET x" || d > 500*time.Millisecond {
		t.Fatalf("err %v after %s, want a StallError for GET x after about 50ms", err, d)
	}
	close(release)
	<-got
	if late.Load() != 9 {
		t.Errorf("late result %d, want 9", late.Load())
	}
}

func TestCallReturnsTheCallersOwnCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := bounded.Call(ctx, "op", time.Second, func(ctx context.Context) (int, error) {
		time.Sleep(10 * time.Millisecond)
		return 1, nil
	}, nil)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want nil or context.Canceled", err)
	}
}

func TestGroupWaitsForTheCallsItsCallersStoppedWaitingFor(t *testing.T) {
	g := bounded.NewGroup()
	release := make(chan struct{})
	var ended atomic.Bool
	_, err := bounded.CallIn(context.Background(), g, "SET x", 10*time.Millisecond, func(context.Context) (int, error) {
		<-release // a socket that ignores the context
		ended.Store(true)
		return 1, nil
	}, nil)
	var stall *bounded.StallError
	if !errors.As(err, &stall) {
		t.Fatalf("err %v, want a StallError", err)
	}
	g.Stop()
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := g.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with the call still blocked: %v, want context.DeadlineExceeded", err)
	}
	close(release)
	if err := g.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !ended.Load() {
		t.Error("Wait returned before the abandoned call ended")
	}
}

func TestGroupStopCancelsItsCallsAndRefusesNewOnes(t *testing.T) {
	g := bounded.NewGroup()
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := bounded.CallIn(context.Background(), g, "GET y", time.Hour, func(ctx context.Context) (int, error) {
			close(started)
			<-ctx.Done() // only Stop ends it
			return 0, ctx.Err()
		}, nil)
		done <- err
	}()
	<-started
	g.Stop()
	if err := <-done; !errors.Is(err, bounded.ErrStopped) {
		t.Errorf("call in flight at Stop: %v, want ErrStopped", err)
	}
	ran := false
	_, err := bounded.CallIn(context.Background(), g, "GET z", time.Second, func(context.Context) (int, error) {
		ran = true
		return 0, nil
	}, nil)
	if !errors.Is(err, bounded.ErrStopped) || ran {
		t.Errorf("call after Stop: err %v, ran %v; want ErrStopped, not run", err, ran)
	}
	if g.Go(func() {}) {
		t.Error("Go after Stop started a goroutine")
	}
	if err := g.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkCall and BenchmarkCallInGroup measure what tracking a call in a
// Group adds to a bounded call (parallel callers, as a Hub's workers are).
func BenchmarkCall(b *testing.B) {
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = bounded.Call(context.Background(), "op", time.Second, func(context.Context) (int, error) { return 1, nil }, nil)
		}
	})
}

func BenchmarkCallInGroup(b *testing.B) {
	g := bounded.NewGroup()
	defer g.Stop()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = bounded.CallIn(context.Background(), g, "op", time.Second, func(context.Context) (int, error) { return 1, nil }, nil)
		}
	})
}
