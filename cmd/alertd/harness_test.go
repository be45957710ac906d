package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/alerts"
	"github.com/breakerbox/breakerbox/client"
)

// alertd is the command running in the test process, as main runs it.
type alertd struct {
	stdout, stderr buffer
	url            string // http://127.0.0.1:PORT of --listen
	cancel         context.CancelFunc
	done           chan int
}

// startAlertd runs alertd with args (plus --listen on a free port) and the
// environment given, until the end of the test.
func startAlertd(t *testing.T, environ map[string]string, args ...string) *alertd {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	a := &alertd{url: "http://" + addr, cancel: cancel, done: make(chan int, 1)}
	args = append(args, "--listen", addr, "--log-level", "debug")
	go func() { a.done <- run(ctx, args, &a.stdout, &a.stderr, env(environ)) }()
	t.Cleanup(func() {
		a.stop(t)
		if t.Failed() || os.Getenv("ALERTD_TEST_LOG") != "" { // ALERTD_TEST_LOG=1: also when it passed
			t.Logf("alertd stderr:\n%s", a.stderr.String())
		}
	})
	waitUntil(t, "alertd to serve HTTP", 10*time.Second, func() bool {
		resp, err := http.Get(a.url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return a
}

func (a *alertd) stop(t *testing.T) {
	t.Helper()
	a.cancel()
	select {
	case code := <-a.done:
		if code != 0 {
			t.Errorf("alertd exited %d", code)
		}
		a.done <- code // for a second stop
	case <-time.After(15 * time.Second):
		t.Errorf("alertd did not stop within 15s")
	}
}

// get fetches one of alertd's endpoints with a short timeout.
func (a *alertd) get(path string) (int, string, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(a.url + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// healthz decodes /healthz.
func (a *alertd) healthz() (int, alerts.Health, error) {
	code, body, err := a.get("/healthz")
	var h alerts.Health
	if err == nil {
		err = json.Unmarshal([]byte(body), &h)
	}
	return code, h, err
}

// posted splits the alerts alertd printed on stdout (no webhook set).
func (a *alertd) posted() []string {
	var out []string
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			out = append(out, strings.TrimSpace(strings.Join(cur, "\n")))
		}
		cur = nil
	}
	prev := ""
	for _, line := range strings.Split(a.stdout.String(), "\n") {
		// Every alert opens with its title line, after a blank line.
		if prev == "" && strings.Contains(line, " Circuit Breaker ") && strings.Contains(line, ": ") {
			flush()
		}
		cur = append(cur, line)
		prev = line
	}
	flush()
	return out
}

// count is how many posted alerts start with title and contain every want.
func (a *alertd) count(title string, want ...string) int {
	n := 0
	for _, p := range a.posted() {
		if !strings.HasPrefix(p, title) {
			continue
		}
		all := true
		for _, w := range want {
			all = all && strings.Contains(p, w)
		}
		if all {
			n++
		}
	}
	return n
}

// waitUntil polls cond every 20ms until it holds, failing t after timeout.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tripBreaker makes a Strict-admission worker and records failures until
// the breaker opens (FailureThreshold 1), with the error text given.
func tripBreaker(t *testing.T, rdb redis.UniversalClient, name, errText string) {
	t.Helper()
	if err := tryTrip(rdb, name, errText); err != nil {
		t.Fatal(err)
	}
}

// tripConfig opens a breaker at its first failure. The first worker of a
// breaker stores its config in Redis, so every test worker of a breaker
// that tripBreaker trips uses it.
var tripConfig = client.Config{FailureThreshold: 1, SuccessThreshold: 1,
	RecoveryTimeout: time.Hour, RequestTimeout: 5 * time.Second}

// tryTrip is tripBreaker returning its error.
func tryTrip(rdb redis.UniversalClient, name, errText string) error {
	b, err := client.New(rdb, name, tripConfig, client.WithAdmission(client.AdmitStrict),
		client.WithRedisTimeout(2*time.Second)) // not the local fallback on a loaded machine
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer b.Shutdown(ctx)
	p, err := b.Allow(ctx)
	if err != nil {
		return fmt.Errorf("allow %s: %w", name, err)
	}
	if err := p.Failure(ctx, errors.New(errText)); err != nil {
		return fmt.Errorf("failure %s: %w", name, err)
	}
	if st := b.State(); st != breakerbox.StateOpen { // a Strict worker's view: the record reply's state
		return fmt.Errorf("%s is %s after a failure", name, st)
	}
	return nil
}
