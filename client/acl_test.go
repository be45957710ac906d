package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// warnings keeps the log records at Warn and above: under a rule that
// lacks something, the worker logs what Redis refused.
type warnings struct {
	mu   sync.Mutex
	recs []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	w.mu.Lock()
	w.recs = append(w.recs, b.String())
	w.mu.Unlock()
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

// first returns the first record that says something went wrong: not a
// transition, and not the outage while one is expected.
func (w *warnings) first(outage bool) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.recs {
		switch {
		case strings.HasPrefix(r, "circuit breaker opened "):
		case outage && strings.HasPrefix(r, "circuit breaker cannot reach redis"):
		case strings.HasPrefix(r, "circuit breaker transition not acknowledged by replicas") && !strings.Contains(r, "NOPERM"):
			// the durable breaker's server has no replica: WAIT answers 0
		default:
			return r
		}
	}
	return ""
}

// aclTry is one run of the worker under a rule: the first thing that went
// wrong ends it.
type aclTry struct {
	t      *testing.T
	ctx    context.Context
	srv    *redistest.Server
	root   *redis.Client
	log    *warnings
	failed string
	outage bool // the test stalls Redis: the worker logs that it cannot reach it

	calls, failures, refused int64 // what the breakers were asked and answered
	mu                       sync.Mutex
	causes                   map[string][]string // by breaker: the hook's causes, in order
}

func (a *aclTry) fail(format string, args ...any) bool {
	if a.failed == "" {
		a.failed = fmt.Sprintf(format, args...)
	}
	return false
}

// ok reports whether nothing went wrong so far, a warning logged included.
func (a *aclTry) ok() bool {
	if a.failed != "" {
		return false
	}
	if w := a.log.first(a.outage); w != "" {
		return a.fail("logged: %s", w)
	}
	return true
}

// until waits up to d for cond.
func (a *aclTry) until(what string, d time.Duration, cond func() bool) bool {
	if !a.ok() {
		return false
	}
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if !a.ok() {
			return false
		}
		if time.Now().After(deadline) {
			return a.fail("timed out waiting for %s", what)
		}
	}
	return a.ok()
}

var errDown = errors.New("upstream down")

// call runs one protected call that succeeds or fails and counts it.
func (a *aclTry) call(b *client.Breaker, succeed bool) error {
	err := b.Execute(a.ctx, func(context.Context) error {
		a.mu.Lock()
		a.calls++
		if !succeed {
			a.failures++
		}
		a.mu.Unlock()
		if succeed {
			return nil
		}
		return errDown
	})
	switch {
	case errors.Is(err, client.ErrOpen):
		a.mu.Lock()
		a.refused++
		a.mu.Unlock()
	case err != nil && !errors.Is(err, errDown):
		a.fail("breaker %s: %v", b.Name(), err)
	}
	return err
}

// cycle takes b through closed -> open -> half_open -> closed.
func (a *aclTry) cycle(b *client.Breaker, recovery time.Duration) bool {
	if !a.until(b.Name()+" closed", 5*time.Second, func() bool { return b.State() == breakerbox.StateClosed }) {
		return false
	}
	for range 2 {
		a.call(b, false)
	}
	if err := b.Flush(a.ctx); err != nil {
		return a.fail("breaker %s: flush: %v", b.Name(), err)
	}
	if err := a.call(b, true); !errors.Is(err, client.ErrOpen) {
		return a.fail("breaker %s: a call after the trip: %v, want ErrOpen", b.Name(), err)
	}
	time.Sleep(recovery + 50*time.Millisecond)
	for range 2 { // two probes close it
		if err := a.call(b, true); err != nil {
			return a.fail("breaker %s: probe: %v", b.Name(), err)
		}
	}
	if !a.until(b.Name()+" closed again", 5*time.Second, func() bool { return b.State() == breakerbox.StateClosed }) {
		return false
	}
	st, err := admin.Status(a.ctx, a.root, b.Name())
	if err != nil || st.State != breakerbox.StateClosed {
		return a.fail("breaker %s in Redis after the cycle: %s %v", b.Name(), st.State, err)
	}
	return a.ok()
}

// cause waits for the hook to report a change of b caused by want.
func (a *aclTry) cause(b *client.Breaker, want string) bool {
	return a.until(fmt.Sprintf("the hook to see %s of %s", want, b.Name()), 5*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		cs := a.causes[b.Name()]
		return len(cs) > 0 && cs[len(cs)-1] == want
	})
}

// tryWorker runs workers under rule and returns what went wrong, or ""
// when everything worked: registration right after SCRIPT FLUSH, a Fast
// and a Strict breaker each through closed -> open -> half_open -> closed,
// an operator's action seen by the state-change hook with its cause, a
// config change made in Redis reaching both and one made by a worker,
// Strict calls right after SCRIPT FLUSH, an outage and its recovery
// (outcomes tallied), a breaker shut down while the Hub goes on, and the
// totals in Redis equal to what the breakers were asked.
func tryWorker(t *testing.T, srv *redistest.Server, root *redis.Client, rule []string) string {
	t.Helper()
	// Every wait of a try is bounded: a rule that lacks something must fail
	// the try, not hang it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := root.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := root.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := root.Do(ctx, "ACL", "LOG", "RESET").Err(); err != nil {
		t.Fatal(err)
	}
	if err := root.Do(ctx, append([]any{"ACL", "SETUSER", "worker", "reset"}, redistest.Anys(rule)...)...).Err(); err != nil {
		t.Fatalf("ACL SETUSER worker %v: %v", rule, err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "worker", Password: "pw"})
	defer rdb.Close()
	a := &aclTry{t: t, ctx: ctx, srv: srv, root: root, log: &warnings{}, causes: map[string][]string{}}
	const recovery = 200 * time.Millisecond
	cfg := client.Config{FailureThreshold: 2, RecoveryTimeout: recovery, SuccessThreshold: 2, RequestTimeout: 5 * time.Second}
	opts := []client.Option{client.WithLogger(slog.New(a.log)), client.WithRedisTimeout(300 * time.Millisecond),
		client.WithOnStateChange(func(c client.StateChange) {
			a.mu.Lock()
			a.causes[c.Name] = append(a.causes[c.Name], c.Cause)
			a.mu.Unlock()
		})}
	hub, err := client.NewHub(rdb, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hub.Shutdown(sctx)
	}()
	var bs []*client.Breaker
	for _, n := range []string{"fast", "strict", "brief", "durable"} {
		var o []client.Option
		switch n {
		case "strict":
			o = append(o, client.WithAdmission(client.AdmitStrict))
		case "durable":
			o = append(o, client.WithDurableTransitions(1, 100*time.Millisecond))
		}
		b, err := hub.New(n, cfg, o...)
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	fast, strict, brief, durable := bs[0], bs[1], bs[2], bs[3]
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = fast.Shutdown(sctx)
		_ = strict.Shutdown(sctx)
		_ = brief.Shutdown(sctx)
		_ = durable.Shutdown(sctx)
	}()

	ready := func(b *client.Breaker) bool {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := b.Ready(rctx); err != nil {
			return a.fail("breaker %s: ready: %v", b.Name(), err)
		}
		return a.ok()
	}
	steps := []func() bool{
		func() bool { return ready(fast) && ready(strict) && ready(brief) && ready(durable) },
		func() bool { return a.cycle(fast, recovery) && a.cycle(strict, recovery) },
		// WithDurableTransitions: WAIT after each of the three transitions
		// (the server has no replica: none acknowledged, none refused).
		func() bool {
			if !a.cycle(durable, recovery) {
				return false
			}
			return a.until("3 transitions waited for", 2*time.Second, func() bool {
				s := durable.Stats()
				return s.NotReplicated == 3 && s.Replicated == 0
			})
		},
		// A breaker shut down while the Hub goes on: its channel is unsubscribed.
		func() bool {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if err := brief.Shutdown(sctx); err != nil {
				return a.fail("shut down brief: %v", err)
			}
			return a.until("brief's channel unsubscribed, fast's kept", 2*time.Second, func() bool {
				subs, err := root.PubSubNumSub(ctx, breakerbox.Channel("brief"), breakerbox.Channel("fast")).Result()
				return err == nil && subs[breakerbox.Channel("brief")] == 0 && subs[breakerbox.Channel("fast")] == 1
			})
		},
		// An operator's action, seen with its cause (read from the history).
		func() bool {
			if _, err := admin.Control(ctx, root, "fast", breakerbox.ActionForceOpen, "ops"); err != nil {
				t.Fatal(err)
			}
			if !a.cause(fast, "forced_open") {
				return false
			}
			if _, err := admin.Control(ctx, root, "fast", breakerbox.ActionReset, "ops"); err != nil {
				t.Fatal(err)
			}
			return a.cause(fast, "reset")
		},
		// A config change made in Redis reaches both workers (Strict at its next call).
		func() bool {
			changed := cfg
			changed.FailureThreshold = 5
			for _, n := range []string{"fast", "strict"} {
				if _, err := admin.Configure(ctx, root, n, changed, "ops"); err != nil {
					t.Fatal(err)
				}
			}
			return a.until("the new threshold at both workers", 5*time.Second, func() bool {
				a.call(strict, true)
				return fast.Config().FailureThreshold == 5 && strict.Config().FailureThreshold == 5
			})
		},
		// A worker's own explicit change.
		func() bool {
			mine := cfg
			mine.FailureThreshold = 4
			if err := strict.SetConfig(ctx, mine); err != nil {
				return a.fail("SetConfig: %v", err)
			}
			st, err := admin.Status(ctx, root, "strict")
			if err != nil || st.FailureThreshold != 4 {
				return a.fail("SetConfig stored %d (%v), want 4", st.FailureThreshold, err)
			}
			return a.ok()
		},
		// Calls right after SCRIPT FLUSH: EVALSHA finds no script. A
		// SetConfig (one EVALSHA of its own) runs the script with EVAL; a
		// Strict call's pipeline (strictbatch.go) loads it again with
		// SCRIPT LOAD. Three times: the Hub's own pipelines load the script
		// too, and one still pending (the refresh after a SetConfig, late
		// on a loaded machine) can come first and spare the next its EVAL.
		func() bool {
			for range 3 {
				time.Sleep(50 * time.Millisecond)
				if err := root.ScriptFlush(ctx).Err(); err != nil {
					t.Fatal(err)
				}
				if err := strict.SetConfig(ctx, strict.Config()); err != nil {
					return a.fail("SetConfig after SCRIPT FLUSH: %v", err)
				}
				a.call(strict, true)
				a.call(fast, true)
			}
			return a.ok()
		},
		// An outage: Redis stalls past the Redis timeout, then comes back.
		func() bool {
			a.outage = true
			resume := srv.Pause(t, 3*time.Second)
			ok := a.until("the outage", 5*time.Second, func() bool {
				a.call(fast, true)
				a.call(strict, true)
				return fast.Stats().Outage && strict.Stats().Outage
			})
			a.call(fast, false)
			a.call(strict, true)
			resume()
			return ok && a.until("the end of the outage", 6*time.Second, func() bool {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
				defer cancel()
				return !fast.Stats().Outage && !strict.Stats().Outage && fast.Ready(rctx) == nil
			})
		},
		// Everything reached Redis: counts exact, nothing unrecorded.
		func() bool {
			for _, b := range []*client.Breaker{fast, strict} {
				if err := b.Flush(ctx); err != nil {
					return a.fail("breaker %s: flush: %v", b.Name(), err)
				}
				if s := b.Stats(); s.Unrecorded != 0 || s.Tallied == 0 {
					return a.fail("breaker %s: stats %+v, want every outcome recorded and the outage tallied", b.Name(), s)
				}
			}
			var s, f, r int64
			for _, n := range []string{"fast", "strict", "durable"} {
				st, err := admin.Status(ctx, root, n)
				if err != nil {
					t.Fatal(err)
				}
				s, f, r = s+st.TotalSuccesses, f+st.TotalFailures, r+st.TotalRefused
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			t.Logf("the workers ran %d calls (%d failures) and refused %d; fast %+v, strict %+v; hook causes %v",
				a.calls, a.failures, a.refused, fast.Stats(), strict.Stats(), a.causes)
			if s+f != a.calls || f != a.failures || r != a.refused {
				return a.fail("totals in Redis: %d successes, %d failures, %d refused; the breakers ran %d calls "+
					"(%d failures) and refused %d", s, f, r, a.calls, a.failures, a.refused)
			}
			return a.ok()
		},
	}
	for _, step := range steps {
		if !step() {
			break
		}
	}
	if ctx.Err() != nil {
		a.fail("the try took longer than 30s")
	}
	if denied := aclDenials(t, root); denied != "" {
		a.fail("Redis refused %s", denied) // even what the worker ignores, such as SADD to the optional registry
	}
	return a.failed
}

// aclDenials returns the first command, key or channel Redis refused since
// the last ACL LOG RESET (its ACL LOG), or "".
func aclDenials(t *testing.T, root *redis.Client) string {
	t.Helper()
	entries, err := root.Do(context.Background(), "ACL", "LOG").Slice()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		return ""
	}
	m, ok := entries[len(entries)-1].(map[any]any) // the oldest
	if !ok {
		return fmt.Sprint(entries[len(entries)-1])
	}
	return fmt.Sprintf("%v %v (in %v; ACL LOG)", m["reason"], m["object"], m["context"])
}

// TestWorkerUnderItsDocumentedACL runs workers (one Hub: a Fast and a
// Strict breaker) under the rule docs/operations.md gives them, on a real
// redis-server, through everything a worker does (see tryWorker); then
// the rule loses one grant at a time, and something must go wrong: the
// rule is the smallest that works.
func TestWorkerUnderItsDocumentedACL(t *testing.T) {
	srv := redistest.Start(t)
	root := srv.Client(t)
	rule := redistest.DocumentedACL(t, "breakerbox-worker", "pw")
	if why := tryWorker(t, srv, root, rule); why != "" {
		t.Fatalf("under the documented rule: %s", why)
	}
	if testing.Short() {
		t.Skip("-short: each grant's removal is not tried")
	}
	for i, g := range rule {
		if !strings.HasPrefix(g, "+") && !strings.Contains(g, "~") && !strings.HasPrefix(g, "&") {
			continue // on, the password
		}
		without := append(append([]string{}, rule[:i]...), rule[i+1:]...)
		start := time.Now()
		if why := tryWorker(t, srv, root, without); why == "" {
			t.Errorf("the worker works without %s: the rule is not the smallest", g)
		} else {
			t.Logf("without %s (%s): %s", g, time.Since(start).Round(time.Millisecond), why)
		}
	}
}
