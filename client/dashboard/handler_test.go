package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/client/dashboard"
)

const aliceSecret = "alice-secret"

// serve runs a dashboard of a miniredis holding breakers "payments" and
// "search", mounted at /ops/breakers/, until the test ends.
func serve(t *testing.T, opts ...dashboard.Option) (*httptest.Server, *miniredis.Miniredis, redis.UniversalClient, *dashboard.Dashboard) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	for _, n := range []string{"payments", "search"} {
		if _, err := admin.Status(ctx, rdb, n); err != nil { // loads the script
			t.Fatal(err)
		}
		if err := rdb.SAdd(ctx, "circuit_breaker:registry", n).Err(); err != nil {
			t.Fatal(err)
		}
	}
	d, err := dashboard.New(rdb, append([]dashboard.Option{dashboard.WithInterval(100 * time.Millisecond),
		dashboard.WithLogger(quietLog)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(runCtx) }()
	mux := http.NewServeMux()
	mux.Handle("/ops/breakers/", http.StripPrefix("/ops/breakers", d))
	web := httptest.NewServer(mux)
	t.Cleanup(func() { stop(); <-done; web.Close() })
	waitHealthy(t, d)
	return web, mr, rdb, d
}

// request sends a request to the dashboard at web and returns the status
// and the body.
func request(t *testing.T, web *httptest.Server, method, path, body string, header map[string]string) (int, string, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(method, web.URL+"/ops/breakers/"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := web.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res
}

// signIn signs alice in and returns her session cookie and CSRF token.
func signIn(t *testing.T, web *httptest.Server) (cookie, csrf string) {
	t.Helper()
	code, body, res := request(t, web, "POST", "api/login", `{"user":"alice","secret":"`+aliceSecret+`"}`,
		map[string]string{"Content-Type": "application/json"})
	if code != 200 {
		t.Fatalf("sign-in: %d %s", code, body)
	}
	var s struct{ CSRF string }
	if err := json.Unmarshal([]byte(body), &s); err != nil || s.CSRF == "" {
		t.Fatalf("sign-in answer %s: %v", body, err)
	}
	for _, c := range res.Cookies() {
		if c.Name == "breakerbox_session" {
			if c.Path != "/ops/breakers/" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
				t.Errorf("session cookie path %q, HttpOnly %v, SameSite %v; want the mount path, HttpOnly, Strict", c.Path, c.HttpOnly, c.SameSite)
			}
			return c.Name + "=" + c.Value, s.CSRF
		}
	}
	t.Fatalf("sign-in set no session cookie: %v", res.Header)
	return "", ""
}

func TestActionsNeedAnOperatorAndAreSafeFromOtherSites(t *testing.T) {
	web, _, rdb, _ := serve(t, dashboard.WithOperators(dashboard.Operator{Name: "alice", Secret: aliceSecret}))
	cookie, csrf := signIn(t, web)
	const reset = `{"name":"payments","action":"reset"}`
	jsonType := "application/json"
	basic := "Basic " + basicAuth("alice", aliceSecret)
	for _, tc := range []struct {
		name   string
		method string
		body   string
		header map[string]string
		want   int
	}{
		{"no credentials", "POST", reset, map[string]string{"Content-Type": jsonType}, 401},
		{"wrong bearer token", "POST", reset, map[string]string{"Content-Type": jsonType, "Authorization": "Bearer nope-nope-nope"}, 401},
		{"bearer token", "POST", reset, map[string]string{"Content-Type": jsonType, "Authorization": "Bearer " + aliceSecret}, 200},
		{"basic auth", "POST", reset, map[string]string{"Content-Type": jsonType, "Authorization": basic}, 200},
		{"basic auth, another name with the secret", "POST", reset, map[string]string{"Content-Type": jsonType, "Authorization": "Basic " + basicAuth("bob", aliceSecret)}, 401},
		{"session without the CSRF header", "POST", reset, map[string]string{"Content-Type": jsonType, "Cookie": cookie}, 403},
		{"session with a wrong CSRF header", "POST", reset, map[string]string{"Content-Type": jsonType, "Cookie": cookie, "X-CSRF-Token": "x" + csrf}, 403},
		{"session with its CSRF header", "POST", reset, map[string]string{"Content-Type": jsonType, "Cookie": cookie, "X-CSRF-Token": csrf}, 200},
		{"form body (what a cross-site form can send)", "POST", reset, map[string]string{"Content-Type": "text/plain", "Cookie": cookie, "X-CSRF-Token": csrf}, 415},
		{"another origin", "POST", reset, map[string]string{"Content-Type": jsonType, "Authorization": basic, "Origin": "http://evil.example"}, 403},
		{"a cross-site fetch", "POST", reset, map[string]string{"Content-Type": jsonType, "Authorization": basic, "Sec-Fetch-Site": "cross-site"}, 403},
		{"a same-site fetch from another origin", "POST", reset, map[string]string{"Content-Type": jsonType, "Cookie": cookie, "X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-site"}, 403},
		{"GET never acts", "GET", "", map[string]string{"Authorization": basic}, 405},
		{"unknown action", "POST", `{"name":"payments","action":"explode"}`, map[string]string{"Content-Type": jsonType, "Authorization": basic}, 400},
		{"unknown breaker", "POST", `{"name":"nope","action":"reset"}`, map[string]string{"Content-Type": jsonType, "Authorization": basic}, 404},
		{"unknown field", "POST", `{"name":"payments","action":"reset","as":"root"}`, map[string]string{"Content-Type": jsonType, "Authorization": basic}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forceOpen(t, rdb, "payments")
			code, body, _ := request(t, web, tc.method, "api/action", tc.body, tc.header)
			if code != tc.want {
				t.Fatalf("status %d (%s), want %d", code, strings.TrimSpace(body), tc.want)
			}
			st, err := admin.Status(context.Background(), rdb, "payments")
			if err != nil {
				t.Fatal(err)
			}
			if reset := st.State == breakerbox.StateClosed; reset != (tc.want == 200) {
				t.Fatalf("status %d but the breaker is %s", code, st.State)
			}
			if tc.want == 200 {
				h, err := admin.History(context.Background(), rdb, "payments", 1)
				host, _ := os.Hostname()
				if err != nil || h[0].Event != "reset" || h[0].Actor != "dashboard:alice@"+host {
					t.Fatalf("history %+v, %v; want a reset by dashboard:alice@%s", h, err, host)
				}
			}
		})
	}
}

func forceOpen(t *testing.T, rdb redis.UniversalClient, name string) {
	t.Helper()
	if _, err := admin.Control(context.Background(), rdb, name, breakerbox.ActionForceOpen, "test"); err != nil {
		t.Fatal(err)
	}
}

func basicAuth(user, pw string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pw)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func TestWithoutOperatorsEveryActionIsRefused(t *testing.T) {
	web, _, rdb, _ := serve(t)
	forceOpen(t, rdb, "payments")
	code, body, _ := request(t, web, "POST", "api/action", `{"name":"payments","action":"reset"}`,
		map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + aliceSecret})
	if code != 403 || !strings.Contains(body, "read-only") {
		t.Fatalf("status %d %s, want 403 read-only", code, body)
	}
	if code, _, _ := request(t, web, "GET", "api/breakers", "", nil); code != 200 {
		t.Fatalf("reading a read-only dashboard: %d", code)
	}
	code, body, _ = request(t, web, "GET", "api/session", "", nil)
	if code != 200 || !strings.Contains(body, `"operators":false`) || !strings.Contains(body, `"read":true`) {
		t.Fatalf("session: %d %s", code, body)
	}
}

func TestClosedDashboardNeedsAnOperatorToRead(t *testing.T) {
	web, _, _, _ := serve(t, dashboard.WithClosed(), dashboard.WithOperators(dashboard.Operator{Name: "alice", Secret: aliceSecret}))
	for _, path := range []string{"api/breakers", "api/breaker?name=payments", "api/events"} {
		if code, _, _ := request(t, web, "GET", path, "", nil); code != 401 {
			t.Errorf("GET %s without credentials: %d, want 401", path, code)
		}
	}
	code, body, _ := request(t, web, "GET", "api/breakers", "", map[string]string{"Authorization": "Basic " + basicAuth("alice", aliceSecret)})
	if code != 200 || !strings.Contains(body, `"name":"payments"`) {
		t.Errorf("GET api/breakers with basic auth: %d %s", code, body)
	}
	cookie, _ := signIn(t, web)
	if code, _, _ := request(t, web, "GET", "api/breaker?name=payments", "", map[string]string{"Cookie": cookie}); code != 200 {
		t.Errorf("GET api/breaker signed in: %d", code)
	}
	for _, path := range []string{"", "app.js", "app.css", "healthz", "api/session"} { // the sign-in page itself
		if code, _, _ := request(t, web, "GET", path, "", nil); code != 200 {
			t.Errorf("GET %s: %d, want 200", path, code)
		}
	}
	if _, err := dashboard.New(redis.NewClient(&redis.Options{}), dashboard.WithClosed()); err == nil {
		t.Error("a closed dashboard without operators was accepted")
	}
}

func TestPageAndHeadersUnderAPrefix(t *testing.T) {
	web, _, _, _ := serve(t)
	code, body, res := request(t, web, "GET", "", "", nil)
	if code != 200 || !strings.Contains(body, `<script src="app.js" defer></script>`) {
		t.Fatalf("page: %d %.200s", code, body)
	}
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if code, body, _ := request(t, web, "GET", "app.js", "", nil); code != 200 || !strings.Contains(body, "EventSource('api/events')") {
		t.Errorf("app.js: %d", code)
	}
	if code, _, _ := request(t, web, "GET", "nope", "", nil); code != 404 {
		t.Errorf("unknown path: %d, want 404", code)
	}
}

func TestConfigChangeWritesOnlyTheFieldsGiven(t *testing.T) {
	web, mr, rdb, _ := serve(t, dashboard.WithOperators(dashboard.Operator{Name: "alice", Secret: aliceSecret}))
	mr.HSet("circuit_breaker:{payments}:config", "request_timeout_ms", "90000")
	auth := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + aliceSecret}
	code, body, _ := request(t, web, "POST", "api/config", `{"name":"payments","fields":{"failure_threshold":5}}`, auth)
	if code != 200 {
		t.Fatalf("config: %d %s", code, body)
	}
	st, err := admin.Status(context.Background(), rdb, "payments")
	if err != nil {
		t.Fatal(err)
	}
	if st.FailureThreshold != 5 || st.RequestTimeout != 90*time.Second {
		t.Fatalf("after the change: failure_threshold %d, request_timeout %s; want 5 and the 90s left alone", st.FailureThreshold, st.RequestTimeout)
	}
	if h, _ := admin.History(context.Background(), rdb, "payments", 1); len(h) != 1 || h[0].Event != "config_changed" || !strings.HasPrefix(h[0].Actor, "dashboard:alice@") {
		t.Fatalf("history %+v", h)
	}
	for body, want := range map[string]int{
		`{"name":"payments","fields":{"failure_threshold":0}}`: 400,
		`{"name":"payments","fields":{"colour":3}}`:            400,
		`{"name":"payments","fields":{}}`:                      400,
		`{"name":"nope","fields":{"failure_threshold":4}}`:     404,
	} {
		if code, got, _ := request(t, web, "POST", "api/config", body, auth); code != want {
			t.Errorf("%s: %d %s, want %d", body, code, got, want)
		}
	}
}

// sse reads server-sent events.
type sse struct{ r *bufio.Reader }

func (s sse) next(t *testing.T) (name, data string) {
	t.Helper()
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		case line == "" && name != "":
			return name, data
		}
	}
}

func TestEventStreamSendsASnapshotThenTransitionsAsTheyHappen(t *testing.T) {
	web, _, rdb, _ := serve(t, dashboard.WithInterval(time.Hour)) // no bulk read after the first
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", web.URL+"/ops/breakers/api/events", nil)
	res, err := web.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	events := sse{bufio.NewReader(res.Body)}
	name, data := events.next(t)
	if name != "snapshot" || !strings.Contains(data, `"name":"payments"`) || !strings.Contains(data, `"name":"search"`) {
		t.Fatalf("first event %s %s, want the snapshot of both breakers", name, data)
	}
	forceOpen(t, rdb, "search")
	for {
		name, data := events.next(t)
		if name != "update" {
			continue
		}
		var u struct{ Rows []dashboard.Breaker }
		if err := json.Unmarshal([]byte(data), &u); err != nil {
			t.Fatal(err)
		}
		if len(u.Rows) != 1 || u.Rows[0].Name != "search" || u.Rows[0].State != "open" || u.Rows[0].Mode != "forced_open" || u.Rows[0].SinceMS == 0 {
			t.Fatalf("update %s, want search forced open with its time", data)
		}
		return
	}
}

func TestHealthzFollowsRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	defer rdb.Close()
	d, err := dashboard.New(rdb, dashboard.WithInterval(100*time.Millisecond), dashboard.WithTimeout(time.Second), dashboard.WithLogger(quietLog))
	if err != nil {
		t.Fatal(err)
	}
	health := func() (int, dashboard.Health) {
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		var h dashboard.Health
		if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil {
			t.Fatal(err)
		}
		return rec.Code, h
	}
	if code, h := health(); code != 503 || !strings.Contains(h.Redis, "not running") {
		t.Fatalf("before Run: %d %+v", code, h)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	waitHealthy(t, d)
	if code, h := health(); code != 200 || !h.OK {
		t.Fatalf("running: %d %+v", code, h)
	}
	if err := d.Run(ctx); err == nil {
		t.Error("a second Run was accepted")
	}
	mr.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, h := health()
		if code == 503 && h.Redis != "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis gone: %d %+v, want 503", code, h)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

func TestBadOptionsAreRefused(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{})
	defer rdb.Close()
	for name, opts := range map[string][]dashboard.Option{
		"short secret":      {dashboard.WithOperators(dashboard.Operator{Name: "a", Secret: "short"})},
		"name with a colon": {dashboard.WithOperators(dashboard.Operator{Name: "a:b", Secret: aliceSecret})},
		"operator twice":    {dashboard.WithOperators(dashboard.Operator{Name: "a", Secret: aliceSecret}, dashboard.Operator{Name: "a", Secret: aliceSecret + "2"})},
		"interval":          {dashboard.WithInterval(time.Millisecond)},
		"timeout":           {dashboard.WithTimeout(0)},
		"logger":            {dashboard.WithLogger(nil)},
	} {
		if _, err := dashboard.New(rdb, opts...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := dashboard.New(nil); err == nil {
		t.Error("nil client accepted")
	}
	ops, err := dashboard.ParseOperators(" alice:s3cret:with:colons , bob:other-secret ")
	if err != nil || len(ops) != 2 || ops[0] != (dashboard.Operator{Name: "alice", Secret: "s3cret:with:colons"}) || ops[1].Name != "bob" {
		t.Errorf("ParseOperators: %+v, %v", ops, err)
	}
	if _, err := dashboard.ParseOperators("alice"); err == nil {
		t.Error("ParseOperators accepted an operator without a secret")
	}
}

func TestRowsCarryTheWindowAndTheRulesConfig(t *testing.T) {
	web, _, rdb, d := serve(t, dashboard.WithOperators(dashboard.Operator{Name: "alice", Secret: aliceSecret}))
	auth := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + aliceSecret}
	// The rules can be set from the page like any field.
	code, body, _ := request(t, web, "POST", "api/config", `{"name":"payments","fields":{"window_calls":10,"failure_rate_threshold":50,"failure_threshold":1000}}`, auth)
	if code != 200 {
		t.Fatalf("config: %d %s", code, body)
	}
	ctx := context.Background()
	keys := breakerbox.Keys("payments")
	for _, o := range []string{"s", "f", "s", "s"} { // 1 of 4 failed
		if err := breakerbox.BreakerScript.Run(ctx, rdb, keys, "record", 0, o, 0, "", "", "", "").Err(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(rowOf(t, d, "payments"), `"failure_rate":25`) {
		if time.Now().After(deadline) {
			t.Fatalf("row %s: no failure rate", rowOf(t, d, "payments"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	row := rowOf(t, d, "payments")
	for _, want := range []string{`"slow_call_rate":0`, `"calls_in_window":4`, `"window_calls":10`, `"failure_rate_threshold":50`, `"recovery_timeout_in_force_ms":30000`} {
		if !strings.Contains(row, want) {
			t.Errorf("row lacks %s: %s", want, row)
		}
	}
	if other := rowOf(t, d, "search"); strings.Contains(other, "failure_rate\":") || !strings.Contains(other, `"window_ms":0`) {
		t.Errorf("a breaker without a window: %s", other)
	}
}
