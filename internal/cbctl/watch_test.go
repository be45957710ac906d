package cbctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
)

func TestWatchPrintsCountRefreshesIntoABuffer(t *testing.T) {
	_, rdb, env := startMini(t)
	breaker(t, rdb, "svc", quickConfig(), "s")
	r := cbctl(t, env, "watch", "--count", "3", "--interval", "1ms")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if n := strings.Count(r.stdout, "cbctl watch"); n != 3 {
		t.Errorf("%d frames, want 3:\n%s", n, r.stdout)
	}
	if strings.Contains(r.stdout, "\x1b[") {
		t.Errorf("escape codes written to a buffer:\n%q", r.stdout)
	}
	if !strings.Contains(r.stdout, "refresh 3") || !strings.Contains(r.stdout, "svc") {
		t.Errorf("frames:\n%s", r.stdout)
	}
}

func TestWatchStopsWhenInterrupted(t *testing.T) {
	_, rdb, env := startMini(t)
	breaker(t, rdb, "svc", quickConfig(), "")
	// main cancels the context on SIGINT; watch then ends with exit 0.
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut bytes.Buffer
	done := make(chan int)
	go func() {
		done <- Run(ctx, []string{"watch", "--interval", "1h"}, &out, &errOut, func(k string) string { return env[k] })
	}()
	cancel()
	if code := <-done; code != ExitOK {
		t.Errorf("exit %d after interrupt, want 0: %s", code, errOut.String())
	}
}

// newTestWatcher builds a watcher on env as runWatch does, writing to out.
func newTestWatcher(t *testing.T, vars map[string]string, names []string, out *bytes.Buffer) *watcher {
	t.Helper()
	e := &env{g: &globals{output: "text", timeout: 5 * time.Second}, stdout: out, stderr: io.Discard,
		getenv: func(k string) string { return vars[k] }}
	if err := e.connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.rdb.Close() })
	return &watcher{e: e, names: names, out: out, every: time.Second}
}

func TestWatchHighlightsTransitionsBetweenRefreshes(t *testing.T) {
	_, rdb, env := startMini(t)
	ctx := context.Background()
	breaker(t, rdb, "svc", quickConfig(), "s")
	breaker(t, rdb, "other", quickConfig(), "")
	var out bytes.Buffer
	w := newTestWatcher(t, env, nil, &out)

	f, err := w.refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Transitions) != 0 || len(f.changed) != 0 {
		t.Errorf("first refresh reports changes: %+v %v", f.Transitions, f.changed)
	}

	// Between two refreshes: svc trips; other is reset then forced open; a new breaker appears.
	breaker(t, rdb, "svc", quickConfig(), "fff")
	for _, a := range []breakerbox.Action{breakerbox.ActionReset, breakerbox.ActionForceOpen} {
		if _, err := admin.Control(ctx, rdb, "other", a, "cbctl:bob@host"); err != nil {
			t.Fatal(err)
		}
	}
	breaker(t, rdb, "newcomer", quickConfig(), "")

	f, err = w.refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.changed["svc"] != "*" || f.changed["other"] != "*" || f.changed["newcomer"] != "+" {
		t.Errorf("marks = %v", f.changed)
	}
	var got []string
	for _, tr := range f.Transitions {
		got = append(got, tr.Name+" "+tr.Event+" "+tr.From+"->"+tr.To)
	}
	want := []string{"other reset closed->closed", "other forced_open closed->open", "svc opened closed->open"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("transitions = %q, want %q", got, want)
	}

	if err := w.render(f); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, line := range []string{"* other", "* svc", "+ newcomer"} {
		if !containsFields(text, line) {
			t.Errorf("frame lacks a row starting %q:\n%s", line, text)
		}
	}
	svc, _ := admin.Status(ctx, rdb, "svc")
	other, _ := admin.Status(ctx, rdb, "other")
	if !containsFields(text, fmt.Sprintf("svc closed -> open opened gen %d consecutive failures error: upstream timeout", svc.Generation)) ||
		!containsFields(text, fmt.Sprintf("other closed -> open forced_open gen %d by cbctl:bob@host", other.Generation)) {
		t.Errorf("frame lacks the transitions:\n%s", text)
	}

	// A third refresh without change keeps the log but marks nothing.
	out.Reset()
	f, _ = w.refresh(ctx)
	_ = w.render(f)
	if len(f.changed) != 0 || containsFields(out.String(), "* svc") || containsFields(out.String(), "* other") ||
		!containsFields(out.String(), "svc closed -> open opened") {
		t.Errorf("quiet refresh:\n%s", out.String())
	}
}

// containsFields reports whether a line of text holds the words of want in
// order, whatever the padding between them (the leading mark column included).
func containsFields(text, want string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(strings.Join(strings.Fields(l), " "), want) {
			return true
		}
	}
	return false
}

func TestWatchColoursChangedRowsOnATerminal(t *testing.T) {
	_, rdb, env := startMini(t)
	breaker(t, rdb, "svc", quickConfig(), "")
	var out bytes.Buffer
	w := newTestWatcher(t, env, []string{"svc"}, &out)
	w.color, w.redraw = true, true
	ctx := context.Background()
	_, _ = w.refresh(ctx)
	breaker(t, rdb, "svc", quickConfig(), "fff")
	f, err := w.refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = w.render(f)
	if !strings.HasPrefix(out.String(), ansiClear) {
		t.Errorf("no redraw: %q", out.String())
	}
	if !strings.Contains(out.String(), ansiRed+ansiBold+ansiReverse+"*  svc") {
		t.Errorf("the tripped row is not red and reversed: %q", out.String())
	}
}

func TestWatchJSONPrintsOneLinePerRefresh(t *testing.T) {
	_, rdb, env := startMini(t)
	breaker(t, rdb, "svc", quickConfig(), "f")
	r := cbctl(t, env, "watch", "-o", "json", "--count", "2", "--interval", "1ms", "svc")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != ExitOK || len(lines) != 2 {
		t.Fatalf("exit %d, %d lines: %s %s", r.code, len(lines), r.stdout, r.stderr)
	}
	for i, l := range lines {
		var f frame
		if err := json.Unmarshal([]byte(l), &f); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if f.Refresh != i+1 || len(f.Breakers) != 1 || f.Breakers[0].CurrentFailures != 1 {
			t.Errorf("line %d = %+v", i, f)
		}
	}
}

func TestWatchUnknownNameExits3(t *testing.T) {
	_, _, env := startMini(t)
	if r := cbctl(t, env, "watch", "--count", "1", "ghost"); r.code != ExitUnknownBreaker {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
}

func TestWatchUnreachableAtFirstRefreshExits4(t *testing.T) {
	r := cbctl(t, map[string]string{"REDIS_URL": "redis://" + closedAddr(t) + "/0"}, "watch", "--count", "1")
	if r.code != ExitUnreachable {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
}

func TestWatchAndStatusShowTheWindowAndTheRuleThatTripped(t *testing.T) {
	_, rdb, env := startMini(t)
	ctx := context.Background()
	cfg := quickConfig()
	cfg.FailureThreshold, cfg.WindowCalls, cfg.FailureRateThreshold, cfg.MinimumCalls = 1000, 10, 50, 4
	breaker(t, rdb, "svc", cfg, "")
	hub := testHub(t, rdb)
	defer hub.Shutdown(ctx)
	b, err := hub.New("svc", cfg, client.WithAdmission(client.AdmitStrict))
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Execute(ctx, func(context.Context) error { return nil })
	_ = b.Execute(ctx, func(context.Context) error { return errors.New("boom") })
	r := cbctl(t, env, "list")
	if !containsFields(r.stdout, "svc closed normal 1/1000 50.0% 2 calls 50.0% failed") {
		t.Errorf("list lacks the window:\n%s", r.stdout)
	}
	var out bytes.Buffer
	w := newTestWatcher(t, env, nil, &out)
	if _, err := w.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	_ = b.Execute(ctx, func(context.Context) error { return errors.New("boom") })
	_ = b.Execute(ctx, func(context.Context) error { return errors.New("boom") }) // 3 of 4: opens
	f, err := w.refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.render(f); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "failure rate 75% >= 50% over the last 10 calls, 4 calls") {
		t.Errorf("watch does not name the rule:\n%s", out.String())
	}
	r = cbctl(t, env, "status", "svc")
	for _, want := range []string{"4 calls over the last 10 calls: 75.0% failed", "opens at:", "50% failed, with at least 4 calls",
		"window_calls=10", "failure_rate_threshold=50", "minimum_calls=4"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
}
