package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestListenServesTheDashboardWithOperatorsFromEnvAndFile(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := admin.Control(ctx, rdb, "payments", breakerbox.ActionForceOpen, "test"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "operators")
	if err := os.WriteFile(file, []byte("# who may act\nbob:bob-secret-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	var stderr buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--redis-url", "redis://" + srv.Addr, "--listen", addr, "--dashboard-operators-file", file},
			io.Discard, &stderr, env(map[string]string{"ALERTD_DASHBOARD_OPERATORS": "alice:alice-secret-1"}))
	}()
	base := "http://" + addr
	get := func(path string) (int, string) {
		res, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := get("/dashboard/healthz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/dashboard/healthz never 200; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := get("/"); code != 200 || !strings.Contains(body, "<title>breakerbox</title>") {
		t.Errorf("/ (redirected to the dashboard): %d %.100s", code, body)
	}
	if code, body := get("/dashboard/api/breakers"); code != 200 || !strings.Contains(body, `"name":"payments"`) {
		t.Errorf("/dashboard/api/breakers: %d %s", code, body)
	}
	for _, secret := range []string{"alice-secret-1", "bob-secret-2"} {
		req, _ := http.NewRequest("POST", base+"/dashboard/api/action", strings.NewReader(`{"name":"payments","action":"force_open"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("action with %s's secret: %d", secret[:3], res.StatusCode)
		}
	}
	if code, _ := get("/metrics"); code != 200 {
		t.Errorf("/metrics beside the dashboard: %d", code)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), "secret-") {
		t.Errorf("a secret was logged:\n%s", stderr.String())
	}
}

func TestDashboardFlagsRefuseBadOperatorsWithoutEchoingThem(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"no secret":      {[]string{"--listen", "127.0.0.1:0"}, map[string]string{"ALERTD_DASHBOARD_OPERATORS": "hunter2-is-my-secret"}},
		"short secret":   {[]string{"--listen", "127.0.0.1:0"}, map[string]string{"ALERTD_DASHBOARD_OPERATORS": "alice:hunter2"}},
		"closed, nobody": {[]string{"--listen", "127.0.0.1:0", "--dashboard-closed"}, nil},
		"bad boolean":    {[]string{"--listen", "127.0.0.1:0"}, map[string]string{"ALERTD_DASHBOARD": "maybe"}},
		"no such file":   {[]string{"--listen", "127.0.0.1:0", "--dashboard-operators-file", "/nonexistent/ops"}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			var stderr buffer
			e := map[string]string{"REDIS_URL": "redis://127.0.0.1:1"}
			for k, v := range tc.env {
				e[k] = v
			}
			if code := run(context.Background(), tc.args, io.Discard, &stderr, env(e)); code != 2 {
				t.Errorf("exit %d, want 2; stderr:\n%s", code, stderr.String())
			}
			if strings.Contains(stderr.String(), "hunter2") {
				t.Errorf("the secret was echoed:\n%s", stderr.String())
			}
		})
	}
}
