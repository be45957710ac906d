package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
)

func TestExecuteTripsAfterThresholdAndRefusesWithoutRunning(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		b := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a))
		for i := 0; i < 3; i++ {
			if err := run(t, b, fail); !errors.Is(err, errBoom) {
				t.Fatalf("call %d: %v, want the upstream's error", i, err)
			}
		}
		ran := false
		err := run(t, b, func(context.Context) error { ran = true; return nil })
		if ran || !errors.Is(err, client.ErrOpen) {
			t.Fatalf("after 3 failures: ran=%v err=%v, want ErrOpen without running", ran, err)
		}
		var oe *client.OpenError
		if !errors.As(err, &oe) || oe.State != breakerbox.StateOpen || oe.RetryAfter <= 0 || oe.RetryAfter > 200*time.Millisecond {
			t.Errorf("open error %#v, want state open with a retry within the recovery timeout", oe)
		}
		st := status(t, b)
		if st.State != breakerbox.StateOpen || st.CurrentFailures != 3 || st.TotalFailures != 3 ||
			st.TotalRefused != 1 || st.LastFailureError != errBoom.Error() || st.OpenedAt.IsZero() {
			t.Errorf("status %+v", st)
		}
	})
}

func TestSuccessBetweenFailuresKeepsItClosed(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		b := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a))
		for _, fn := range []func(context.Context) error{fail, fail, ok, fail, fail} {
			_ = run(t, b, fn)
		}
		if st := status(t, b); st.State != breakerbox.StateClosed || st.CurrentFailures != 2 || st.SuccessRate != 20 {
			t.Errorf("status %+v, want closed with 2 consecutive failures and 20%% success", st)
		}
	})
}

func TestRequestTimeoutIsAFailure(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		cfg := quickConfig()
		cfg.RequestTimeout = 20 * time.Millisecond
		b := newBreaker(t, e.rdb(t), name, cfg, client.WithAdmission(a))
		err := run(t, b, func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want deadline exceeded", err)
		}
		// A call that ignores its context and returns nil late still counts as a failure.
		if err := run(t, b, func(context.Context) error { time.Sleep(30 * time.Millisecond); return nil }); err != nil {
			t.Fatalf("late success returned %v to its caller, want nil", err)
		}
		if st := status(t, b); st.CurrentFailures != 2 || st.TotalSuccesses != 0 {
			t.Errorf("status %+v, want 2 failures", st)
		}
	})
}

func TestPanicIsRecordedAsFailureAndRepanics(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		b := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a))
		func() {
			defer func() {
				if r := recover(); r != "kaboom" {
					t.Errorf("recovered %v, want the original panic", r)
				}
			}()
			_ = b.Execute(context.Background(), func(context.Context) error { panic("kaboom") })
		}()
		_ = b.Flush(context.Background())
		if st := status(t, b); st.CurrentFailures != 1 || st.LastFailureError != "panic: kaboom" {
			t.Errorf("status %+v, want one failure 'panic: kaboom'", st)
		}
	})
}

func TestCallerCancellationIsNotCounted(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		b := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a))
		ctx, cancel := context.WithCancel(context.Background())
		err := b.Execute(ctx, func(ctx context.Context) error {
			cancel()
			return ctx.Err()
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
		_ = b.Flush(context.Background())
		if st := status(t, b); st.TotalRequests != 0 || st.CurrentFailures != 0 {
			t.Errorf("status %+v, want nothing counted", st)
		}
	})
}

func TestClassifierHasThreeAnswers(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		notFound, invalid := errors.New("404"), errors.New("400 invalid prompt")
		classify := func(err error) client.Verdict {
			switch {
			case errors.Is(err, notFound):
				return client.VerdictIgnore // says nothing about the upstream
			case errors.Is(err, invalid):
				return client.VerdictSuccess // the upstream answered
			}
			return client.VerdictFailure
		}
		b := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a), client.WithClassifier(classify))
		for i := 0; i < 5; i++ {
			if err := run(t, b, func(context.Context) error { return fmt.Errorf("lookup: %w", notFound) }); !errors.Is(err, notFound) {
				t.Fatalf("an ignored call returns its error: %v", err)
			}
		}
		if st := status(t, b); st.State != breakerbox.StateClosed || st.TotalRequests != 0 {
			t.Errorf("after 5 ignored calls: %+v, want nothing counted", st)
		}
		_ = run(t, b, fail)
		_ = run(t, b, fail)
		_ = run(t, b, func(context.Context) error { return invalid })
		_ = run(t, b, fail)
		_ = run(t, b, fail)
		if st := status(t, b); st.State != breakerbox.StateClosed || st.TotalSuccesses != 1 || st.CurrentFailures != 2 {
			t.Errorf("a success verdict between failures: %+v, want closed, 1 success, 2 consecutive failures", st)
		}
		_ = run(t, b, func(context.Context) error { return notFound }) // ignored: the count stays at 2
		if st := status(t, b); st.CurrentFailures != 2 {
			t.Errorf("an ignored call changed the consecutive failures to %d", st.CurrentFailures)
		}
		_ = run(t, b, fail)
		if st := status(t, b); st.State != breakerbox.StateOpen {
			t.Errorf("three failures: %+v, want open", st)
		}
	})
}

func TestDoAndWrapReturnResults(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		b := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a))
		n, err := client.Do(context.Background(), b, func(context.Context) (int, error) { return 42, nil })
		if n != 42 || err != nil {
			t.Fatalf("Do = %d, %v", n, err)
		}
		transcribe := client.Wrap(b, func(_ context.Context, audio string) (string, error) {
			if audio == "" {
				return "", errBoom
			}
			return "text of " + audio, nil
		})
		if s, err := transcribe(context.Background(), "a.wav"); s != "text of a.wav" || err != nil {
			t.Fatalf("wrapped = %q, %v", s, err)
		}
		for i := 0; i < 3; i++ {
			_, _ = transcribe(context.Background(), "")
			_ = b.Flush(context.Background())
		}
		if _, err := transcribe(context.Background(), "b.wav"); !errors.Is(err, client.ErrOpen) {
			t.Errorf("wrapped call on an open breaker: %v, want ErrOpen", err)
		}
	})
}

func TestPermitIsUsedOnce(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		b := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a))
		ctx := context.Background()
		p, err := b.Allow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Failure(ctx, errBoom); err != nil {
			t.Fatal(err)
		}
		if err := p.Success(ctx); !errors.Is(err, client.ErrPermitUsed) {
			t.Errorf("second outcome: %v, want ErrPermitUsed", err)
		}
		_ = b.Flush(ctx)
		if st := status(t, b); st.TotalRequests != 1 {
			t.Errorf("total requests %d, want 1", st.TotalRequests)
		}
	})
}

func TestStaleOutcomeCountsInTotalsOnly(t *testing.T) {
	each(t, func(t *testing.T, e engine, a client.Admission, name string) {
		b := newBreaker(t, e.rdb(t), name, quickConfig(), client.WithAdmission(a))
		ctx := context.Background()
		late, err := b.Allow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			_ = run(t, b, fail)
		}
		_ = late.Success(ctx) // admitted before the trip
		_ = b.Flush(ctx)
		st := status(t, b)
		if late.Generation() != 0 || st.Transitions != 1 || st.State != breakerbox.StateOpen || st.TotalSuccesses != 1 || st.CurrentFailures != 3 {
			t.Errorf("late generation %d, status %+v: want open, 1 success in totals, 3 consecutive failures",
				late.Generation(), st)
		}
	})
}
