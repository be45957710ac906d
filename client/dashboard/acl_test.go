package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/dashboard"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// dashboardACL returns the rule docs/operations.md gives user, with the
// password "pw".
func dashboardACL(t *testing.T, user string) []any {
	return redistest.Anys(redistest.DocumentedACL(t, user, "pw"))
}

// underACL starts a dashboard connected as a user with the given rule.
func underACL(t *testing.T, srv *redistest.Server, admin *redis.Client, user string, rule []any, interval time.Duration) (*dashboard.Dashboard, *httptest.Server) {
	t.Helper()
	ctx := context.Background()
	if err := admin.Do(ctx, append([]any{"ACL", "SETUSER", user, "reset"}, rule...)...).Err(); err != nil {
		t.Fatalf("ACL SETUSER %s %v: %v", user, rule, err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: user, Password: "pw"})
	t.Cleanup(func() { _ = rdb.Close() })
	d, err := dashboard.New(rdb, dashboard.WithInterval(interval), dashboard.WithLogger(quietLog),
		dashboard.WithOperators(dashboard.Operator{Name: "alice", Secret: aliceSecret}))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(runCtx) }()
	web := httptest.NewServer(d)
	t.Cleanup(func() { stop(); <-done; web.Close() })
	return d, web
}

func get(t *testing.T, web *httptest.Server, path string) (int, string) {
	t.Helper()
	res, err := web.Client().Get(web.URL + "/" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

func post(t *testing.T, web *httptest.Server, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", web.URL+"/"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+aliceSecret)
	res, err := web.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	msg, _ := out["error"].(string)
	return res.StatusCode, msg
}

// waitHealth waits until healthz answers code with a report that ok
// accepts, and returns the report.
func waitHealth(t *testing.T, web *httptest.Server, code int, ok func(dashboard.Health) bool) dashboard.Health {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, body := get(t, web, "healthz")
		var h dashboard.Health
		_ = json.Unmarshal([]byte(body), &h)
		if got == code && (ok == nil || ok(h)) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz %d %s, want %d", got, body, code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDocumentedACLsAreEnoughForTheDashboard runs the dashboard as the two
// users docs/operations.md defines, on a real redis-server: the operator's
// reads, follows transitions and acts; the read-only one reads and follows,
// and its actions are refused by Redis, which healthz then reports. A rule
// without the channel or without EVALSHA_RO makes healthz unhealthy.
func TestDocumentedACLsAreEnoughForTheDashboard(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	if err := admin.Do(ctx, "SCRIPT", "FLUSH").Err(); err != nil { // the dashboard loads the script itself
		t.Fatal(err)
	}
	for _, n := range []string{"payments", "search"} {
		if err := admin.SAdd(ctx, "circuit_breaker:registry", n).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.XGroupCreateMkStream(ctx, "circuit_breaker:{payments}:events", "alertd", "0").Result(); err != nil {
		t.Fatal(err)
	}

	exercise := func(t *testing.T, web *httptest.Server) {
		t.Helper()
		waitHealth(t, web, 200, nil)
		failUntilOpen(t, admin, "payments") // announced on the channel
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, body := get(t, web, "api/breakers")
			if strings.Contains(body, `"name":"payments","state":"open"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("payments never shown open: %s", body)
			}
			time.Sleep(20 * time.Millisecond)
		}
		code, body := get(t, web, "api/breaker?name=payments")
		if code != 200 || !strings.Contains(body, `"event":"opened"`) || !strings.Contains(body, `"name":"alertd"`) {
			t.Fatalf("breaker page: %d %s", code, body)
		}
	}

	t.Run("operator", func(t *testing.T) {
		_, web := underACL(t, srv, admin, "breakerbox-dashboard", dashboardACL(t, "breakerbox-dashboard"), 100*time.Millisecond)
		exercise(t, web)
		if code, msg := post(t, web, "api/action", `{"name":"payments","action":"reset"}`); code != 200 {
			t.Fatalf("reset: %d %s", code, msg)
		}
		for _, a := range []string{"force_open", "release", "disable", "release"} {
			if code, msg := post(t, web, "api/action", `{"name":"search","action":"`+a+`"}`); code != 200 {
				t.Fatalf("%s: %d %s", a, code, msg)
			}
		}
		if code, msg := post(t, web, "api/config", `{"name":"payments","fields":{"failure_threshold":4}}`); code != 200 {
			t.Fatalf("config: %d %s", code, msg)
		}
		st := state(t, admin, "payments")
		if st.State != breakerbox.StateClosed || st.FailureThreshold != 4 {
			t.Fatalf("payments: %s, threshold %d", st.State, st.FailureThreshold)
		}
		waitHealth(t, web, 200, nil)
	})

	t.Run("read-only", func(t *testing.T) {
		_, web := underACL(t, srv, admin, "breakerbox-dashboard-ro", dashboardACL(t, "breakerbox-dashboard-ro"), 100*time.Millisecond)
		exercise(t, web)
		code, msg := post(t, web, "api/action", `{"name":"payments","action":"reset"}`)
		if code != http.StatusBadGateway || !strings.Contains(msg, "NOPERM") {
			t.Fatalf("reset under the read-only rule: %d %s, want Redis's refusal", code, msg)
		}
		if st := state(t, admin, "payments"); st.State != breakerbox.StateOpen {
			t.Fatalf("payments is %s after a refused reset", st.State)
		}
		waitHealth(t, web, 503, func(h dashboard.Health) bool {
			return strings.Contains(h.Actions, "NOPERM") && h.Redis == "ok"
		})
	})

	t.Run("no channel", func(t *testing.T) {
		rule := dashboardACL(t, "breakerbox-dashboard-ro")
		for i, a := range rule {
			if strings.HasPrefix(a.(string), "&") {
				rule[i] = "resetchannels"
			}
		}
		_, web := underACL(t, srv, admin, "no-channel", rule, 100*time.Millisecond)
		waitHealth(t, web, 503, func(h dashboard.Health) bool { return strings.Contains(h.Subscription, "NOPERM") })
	})

	t.Run("no evalsha_ro", func(t *testing.T) {
		_, web := underACL(t, srv, admin, "no-evalsha-ro", append(dashboardACL(t, "breakerbox-dashboard-ro"), "-evalsha_ro"), 100*time.Millisecond)
		waitHealth(t, web, 503, func(h dashboard.Health) bool { return strings.Contains(h.Redis, "NOPERM") })
	})

	// Smallest: without any one of a rule's grants, the dashboard fails
	// somewhere (healthz, a read, an action right after SCRIPT FLUSH).
	for _, user := range []string{"breakerbox-dashboard", "breakerbox-dashboard-ro"} {
		rule := dashboardACL(t, user)
		t.Run(user+" needs every grant", func(t *testing.T) {
			acts := user == "breakerbox-dashboard"
			if why := tryRuleAlone(t, srv, admin, rule, acts); why != "" {
				t.Fatalf("the whole rule fails: %s", why)
			}
			for i, grant := range rule {
				g := grant.(string)
				if !strings.HasPrefix(g, "+") && !strings.HasPrefix(g, "~") && !strings.HasPrefix(g, "&") {
					continue // on, the password, the -@dangerous restriction
				}
				without := append(append([]any{}, rule[:i]...), rule[i+1:]...)
				if why := tryRuleAlone(t, srv, admin, without, acts); why == "" {
					t.Errorf("%s works without %s: the rule is not the smallest", user, g)
				} else {
					t.Logf("without %s: %s", g, why)
				}
			}
		})
	}
}

// tryRuleAlone is tryRule in a subtest of its own, so its dashboard stops
// before the next try: a dashboard left running would load the scripts
// again after the next try's SCRIPT FLUSH and hide a missing grant.
func tryRuleAlone(t *testing.T, srv *redistest.Server, admin *redis.Client, rule []any, acts bool) string {
	t.Helper()
	var why string
	t.Run("try", func(t *testing.T) { why = tryRule(t, srv, admin, rule, acts) })
	return why
}

// tryRule runs the dashboard under rule after a SCRIPT FLUSH and returns
// what failed, or "" when everything worked: healthz, the breaker's page,
// and, when acts, a reset right after another SCRIPT FLUSH.
func tryRule(t *testing.T, srv *redistest.Server, admin *redis.Client, rule []any, acts bool) string {
	t.Helper()
	ctx := context.Background()
	if err := admin.Do(ctx, "SCRIPT", "FLUSH").Err(); err != nil {
		t.Fatal(err)
	}
	d, web := underACL(t, srv, admin, "try", rule, time.Hour) // no bulk read to load the script again
	deadline := time.Now().Add(10 * time.Second)
	for h := d.Health(); h.Redis == "not read yet" || h.Subscription == "not subscribed"; h = d.Health() {
		if time.Now().After(deadline) {
			t.Fatalf("the dashboard never settled: %+v", h)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h := d.Health(); !h.OK {
		return fmt.Sprintf("healthz: %+v", h)
	}
	if code, body := get(t, web, "api/breaker?name=payments"); code != 200 {
		return fmt.Sprintf("breaker page: %d %s", code, body)
	}
	if !acts {
		return ""
	}
	forceOpen(t, admin, "payments")
	for deadline := time.Now().Add(10 * time.Second); ; { // read at the announcement
		if _, body := get(t, web, "api/breakers"); strings.Contains(body, `"mode":"forced_open"`) {
			break
		}
		if time.Now().After(deadline) {
			return "the forced open never showed"
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Now nothing else runs the script: the reset's EVALSHA finds none.
	if err := admin.Do(ctx, "SCRIPT", "FLUSH").Err(); err != nil {
		t.Fatal(err)
	}
	if code, msg := post(t, web, "api/action", `{"name":"payments","action":"reset"}`); code != 200 {
		return fmt.Sprintf("reset: %d %s", code, msg)
	}
	if code, msg := post(t, web, "api/config", `{"name":"payments","fields":{"request_timeout_ms":1234}}`); code != 200 {
		return fmt.Sprintf("config: %d %s", code, msg)
	}
	return ""
}
