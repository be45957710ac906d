package metrics_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/client/health"
	"github.com/breakerbox/breakerbox/client/metrics"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// gauge returns the value of the series name{labels} (labels as
// "service=NAME", or "" for none) in what the collector exports.
func gauge(t *testing.T, c *metrics.Collector, name, label string) (float64, bool) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := ""
			for _, l := range m.GetLabel() {
				got = l.GetName() + "=" + l.GetValue()
			}
			if got == label {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue(), true
				}
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

// tryMonitor runs the health handler and the metrics collector as a user
// with rule and returns what went wrong, or "": both read every breaker
// (one registered, one found by SCAN only) right after SCRIPT FLUSH, and
// Redis refused nothing (ACL LOG).
func tryMonitor(t *testing.T, srv *redistest.Server, root *redis.Client, rule []string) string {
	t.Helper()
	ctx := context.Background()
	for _, cmd := range [][]any{{"FLUSHALL"}, {"ACL", "LOG", "RESET"},
		append([]any{"ACL", "SETUSER", "try", "reset"}, redistest.Anys(rule)...)} {
		if err := root.Do(ctx, cmd...).Err(); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	if _, err := admin.Control(ctx, root, "payments", breakerbox.ActionForceOpen, "ops"); err != nil {
		t.Fatal(err)
	}
	if err := root.SAdd(ctx, breakerbox.RegistryKey, "payments").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Control(ctx, root, "search", breakerbox.ActionReset, "ops"); err != nil {
		t.Fatal(err) // not in the registry: found by SCAN
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "try", Password: "pw"})
	defer rdb.Close()
	flush := func() {
		if err := root.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}

	flush()
	h, err := health.New(rdb, health.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if res, code := h.Check(ctx); code != 503 || res.Status != health.StatusDegraded ||
		strings.Join(res.OpenCircuits, ",") != "payments" {
		return fmt.Sprintf("health: %d %+v", code, res)
	}
	flush()
	c, err := metrics.NewCollector(rdb, metrics.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := gauge(t, c, "circuit_breaker_scrape_error", ""); !ok || v != 0 {
		return fmt.Sprintf("metrics: circuit_breaker_scrape_error %v", v)
	}
	for service, want := range map[string]float64{"payments": 1, "search": 0} {
		if v, ok := gauge(t, c, "circuit_breaker_state", "service="+service); !ok || v != want {
			return fmt.Sprintf("metrics: circuit_breaker_state{service=%q} %v (exported: %v), want %v", service, v, ok, want)
		}
	}
	flush()
	h, err = health.New(rdb, health.WithNames("search"), health.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if res, code := h.Check(ctx); code != 200 || res.Status != health.StatusHealthy {
		return fmt.Sprintf("health of search: %d %+v", code, res)
	}
	entries, err := root.Do(ctx, "ACL", "LOG").Slice()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		return "Redis refused (ACL LOG): " + denial(entries[len(entries)-1])
	}
	return ""
}

// denial describes an ACL LOG entry: what was refused, and where.
func denial(entry any) string {
	m, ok := entry.(map[any]any)
	if !ok {
		return fmt.Sprint(entry)
	}
	return fmt.Sprintf("%v %v (in %v)", m["reason"], m["object"], m["context"])
}

// TestHealthAndMetricsUnderTheirDocumentedACL reads breakers with the
// health handler and the metrics collector as the user docs/operations.md
// gives them, on a real redis-server, then without each grant in turn:
// something must fail, so the rule is the smallest that works.
func TestHealthAndMetricsUnderTheirDocumentedACL(t *testing.T) {
	srv := redistest.Start(t)
	root := srv.Client(t)
	rule := redistest.DocumentedACL(t, "breakerbox-monitor", "pw")
	if why := tryMonitor(t, srv, root, rule); why != "" {
		t.Fatalf("under the documented rule: %s", why)
	}
	for i, g := range rule {
		if !strings.HasPrefix(g, "+") && !strings.Contains(g, "~") && !strings.HasPrefix(g, "&") {
			continue // on, the password
		}
		without := append(append([]string{}, rule[:i]...), rule[i+1:]...)
		if why := tryMonitor(t, srv, root, without); why == "" {
			t.Errorf("health and metrics work without %s: the rule is not the smallest", g)
		} else {
			t.Logf("without %s: %s", g, why)
		}
	}
}
