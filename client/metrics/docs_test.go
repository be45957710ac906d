package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/client/metrics"
)

// seriesName matches the breakerbox series an expression names.
var seriesName = regexp.MustCompile(`\bcircuit_breaker_[a-z_]+\b`)

// groupingLabels matches the labels of by (...) and without (...).
var groupingLabels = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)

// matcherLabels matches the label names of selectors such as {service=~"$service"}.
var matcherLabels = regexp.MustCompile(`([a-z_]+)\s*(?:=~|!~|!=|=)\s*"`)

// docExpressions returns every PromQL expression of the alerting rules and
// of the Grafana dashboard (panel targets and template queries), keyed by
// where it is.
func docExpressions(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}

	raw, err := os.ReadFile("../../docs/prometheus-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Expr, For string
				Labels           map[string]string
				Annotations      map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("docs/prometheus-alerts.yml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
				t.Errorf("alert rule %+v lacks a name, an expression, a severity or a summary", r)
			}
			out["alert "+r.Alert] = r.Expr
		}
	}
	if len(out) < 3 {
		t.Fatalf("only %d alerting rules read", len(out))
	}

	raw, err = os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr, RefID string }
		}
		Templating struct {
			List []struct {
				Name, Type string
				Query      json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("docs/grafana-dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out["panel "+p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("template %s: %v", v.Name, err)
		}
		out["template "+v.Name] = q.Query
	}
	return out
}

// servedSeries scrapes the exporter over HTTP, on a miniredis holding
// breakers in every state and mode, and returns the names it serves.
func servedSeries(t *testing.T) map[string]bool {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	b, err := client.New(rdb, "failing", client.DefaultConfig(), client.WithAdmission(client.AdmitStrict))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(ctx)
	_ = b.Execute(ctx, func(context.Context) error { return nil })
	for range 3 {
		_ = b.Execute(ctx, func(context.Context) error { return errors.New("503") })
	}
	_ = b.Execute(ctx, func(context.Context) error { return nil }) // refused
	windowed := breakerbox.DefaultConfig()
	windowed.WindowCalls, windowed.FailureRateThreshold, windowed.SlowCallDuration = 100, 50, time.Second
	if _, err := admin.Configure(ctx, rdb, "windowed", windowed, "test"); err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]breakerbox.Action{"forced": breakerbox.ActionForceOpen, "disabled": breakerbox.ActionDisable} {
		if _, err := admin.Control(ctx, rdb, name, a, "test"); err != nil {
			t.Fatal(err)
		}
	}
	c, err := metrics.NewCollector(rdb)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	web := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer web.Close()
	res, err := web.Client().Get(web.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if name, labels, ok := strings.Cut(line, "{"); ok && !strings.HasPrefix(line, "#") {
			served[name] = true
			if strings.HasPrefix(name, "circuit_breaker_scrape") == strings.Contains(labels, `service="`) {
				t.Errorf("served %s: scrape series without labels, breaker series with service", line)
			}
		} else if name, _, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
			served[name] = true
		}
	}
	return served
}

// TestDocsNameOnlySeriesTheExporterServes checks every expression of
// docs/prometheus-alerts.yml and docs/grafana-dashboard.json: each names at
// least one breakerbox series, every series it names is one the exporter
// serves, and it groups and matches on the service label alone.
func TestDocsNameOnlySeriesTheExporterServes(t *testing.T) {
	served := servedSeries(t)
	used := map[string]bool{}
	exprs := docExpressions(t)
	for where, expr := range exprs {
		names := seriesName.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: %q names no circuit_breaker_* series", where, expr)
		}
		for _, n := range names {
			used[n] = true
			if !served[n] {
				t.Errorf("%s: %s is not served by the exporter (it serves %v)", where, n, keys(served))
			}
		}
		for _, m := range groupingLabels.FindAllStringSubmatch(expr, -1) {
			for l := range strings.SplitSeq(m[1], ",") {
				if l = strings.TrimSpace(l); l != "" && l != "service" {
					t.Errorf("%s: groups by %q; the series carry only service", where, l)
				}
			}
		}
		for _, m := range matcherLabels.FindAllStringSubmatch(expr, -1) {
			if m[1] != "service" {
				t.Errorf("%s: matches label %q; the series carry only service", where, m[1])
			}
		}
		if strings.Count(expr, "(") != strings.Count(expr, ")") {
			t.Errorf("%s: unbalanced parentheses in %q", where, expr)
		}
	}
	// The board should show every series the exporter has.
	for n := range served {
		if strings.HasPrefix(n, "circuit_breaker_") && !used[n] {
			t.Errorf("the exporter serves %s, which neither the rules nor the board use", n)
		}
	}
	t.Logf("%d expressions, %d series", len(exprs), len(used))
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
