package dashboard_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/alerts"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/client/dashboard"
	"github.com/breakerbox/breakerbox/internal/demo"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// requireChromiumEnv turns a missing chromium into a failure (CI sets it).
const requireChromiumEnv = "BREAKERBOX_REQUIRE_CHROMIUM"

// screenshotsEnv asks the browser test to write the screenshots of
// docs/ (docs/dashboard.png, docs/dashboard-breaker.png).
const screenshotsEnv = "BREAKERBOX_SCREENSHOTS"

// requireChromium returns the path of Debian's chromium (or of
// $BREAKERBOX_CHROMIUM), skipping the test without it.
func requireChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("BREAKERBOX_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	reason := "chromium not found on PATH (apt-get install chromium; or set BREAKERBOX_CHROMIUM): the browser tests need it"
	if os.Getenv(requireChromiumEnv) == "1" {
		t.Fatal(reason)
	}
	t.Skip(reason)
	return ""
}

// newBrowser starts a headless chromium with a fresh profile, stopped at
// the end of the test, and returns a tab's context.
func newBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800))
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// waitFor polls a JavaScript condition in the page for up to 10s.
func waitFor(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Run(wctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, body)
	}
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// state reads a breaker's state from Redis.
func state(t *testing.T, rdb redis.UniversalClient, name string) breakerbox.Status {
	t.Helper()
	st, err := admin.Status(context.Background(), rdb, name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// failUntilOpen records failures on breaker name until it opens.
func failUntilOpen(t *testing.T, rdb redis.UniversalClient, name string) {
	t.Helper()
	ctx := context.Background()
	b, err := client.New(rdb, name, client.DefaultConfig(), client.WithAdmission(client.AdmitStrict), client.WithLogger(quietLog))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(ctx)
	// As many failures as the config stored in Redis asks for (a test may
	// have changed it: New only seeds a breaker that has none), which the
	// handle knows once registered.
	if err := b.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	for range b.Config().FailureThreshold {
		_ = b.Execute(ctx, func(context.Context) error { return errors.New("upstream said 503") })
	}
	if st := state(t, rdb, name); st.State != breakerbox.StateOpen {
		t.Fatalf("breaker %s is %s after %d failures", name, st.State, b.Config().FailureThreshold)
	}
}

// TestDashboardInABrowser drives the page in headless chromium against a
// real redis-server, as an operator would. The dashboard's bulk read runs
// once a minute here, so a transition that shows within the test's wait
// came through the pattern subscription and the event stream.
func TestDashboardInABrowser(t *testing.T) {
	chrome := requireChromium(t)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	for _, n := range []string{"payments", "search", "email"} {
		b, err := client.New(rdb, n, client.DefaultConfig(), client.WithAdmission(client.AdmitStrict), client.WithLogger(quietLog))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Execute(ctx, func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
		_ = b.Shutdown(ctx)
	}
	logs := &syncBuffer{}
	d, err := dashboard.New(rdb, dashboard.WithOperators(dashboard.Operator{Name: "alice", Secret: "alice-secret"}),
		dashboard.WithInterval(time.Minute), dashboard.WithLogger(logs.logger()))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	go func() { _ = d.Run(runCtx) }()
	mux := http.NewServeMux()
	mux.Handle("/ops/breakers/", http.StripPrefix("/ops/breakers", d))
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)
	base := web.URL + "/ops/breakers/"
	waitHealthy(t, d)

	tab := newBrowser(t, chrome)
	start := time.Now()

	t.Run("the page lists every breaker", func(t *testing.T) {
		do(t, tab, chromedp.Navigate(base))
		waitFor(t, tab, "three rows", `document.querySelectorAll('#breakers tbody tr').length === 3`)
		waitFor(t, tab, "payments closed", `document.querySelector('tr[data-name="payments"]').dataset.state === 'closed'`)
		waitFor(t, tab, "live", `document.querySelector('#live').textContent === 'live'`)
	})

	t.Run("a breaker turns open on screen without a reload", func(t *testing.T) {
		do(t, tab, chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
		failUntilOpen(t, rdb, "payments")
		waitFor(t, tab, "payments open", `document.querySelector('tr[data-name="payments"]').dataset.state === 'open'`)
		waitFor(t, tab, "failures 3/3", `document.querySelector('tr[data-name="payments"] .failures').textContent === '3/3'`)
		waitFor(t, tab, "retry countdown", `/^\d+s$/.test(document.querySelector('tr[data-name="payments"] .retry').textContent)`)
		waitFor(t, tab, "no reload", `window.notReloaded === true`)
	})

	t.Run("an action without signing in is refused", func(t *testing.T) {
		do(t, tab, chromedp.Navigate(base+"#/b/payments"))
		waitFor(t, tab, "reset button", `!!document.querySelector('button[data-action="reset"]')`)
		do(t, tab, chromedp.Click(chromedp.CSS(`button[data-action="reset"]`)))
		waitFor(t, tab, "refusal shown", `document.querySelector('#action-msg').textContent.includes('refused: sign in as an operator')`)
		if st := state(t, rdb, "payments"); st.State != breakerbox.StateOpen {
			t.Fatalf("payments is %s after a refused reset", st.State)
		}
	})

	t.Run("an operator signs in", func(t *testing.T) {
		do(t, tab,
			chromedp.SendKeys(chromedp.CSS(`#signin input[name="user"]`), "alice"),
			chromedp.SendKeys(chromedp.CSS(`#signin input[name="secret"]`), "alice-secret"),
			chromedp.Click(chromedp.CSS(`#signin button`)))
		waitFor(t, tab, "signed in", `document.querySelector('#who').textContent === 'operator: alice'`)
	})

	t.Run("a cross-site request is refused even with the operator's cookie", func(t *testing.T) {
		// Another origin on the same host (same site, so the SameSite
		// cookie goes along): a form posting the action in JSON-like text.
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, `<form method="POST" action="%sapi/action" enctype="text/plain">`+
				`<input name='{"name":"payments","action":"reset","x":"' value='"}'></form>`+
				`<script>document.forms[0].submit()</script>`, base)
		}))
		defer evil.Close()
		do(t, tab, chromedp.Navigate(evil.URL))
		waitFor(t, tab, "refusal", `document.body.innerText.includes('cross-origin request refused')`)
		if st := state(t, rdb, "payments"); st.State != breakerbox.StateOpen {
			t.Fatalf("payments is %s after a cross-site reset", st.State)
		}
		if !strings.Contains(logs.String(), "cross-origin request refused") {
			t.Errorf("the refusal was not logged:\n%s", logs)
		}
	})

	t.Run("a signed-in reset closes the breaker in Redis", func(t *testing.T) {
		do(t, tab, chromedp.Navigate(base+"#/b/payments"))
		waitFor(t, tab, "page", `document.querySelector('#who').textContent === 'operator: alice' && !!document.querySelector('button[data-action="reset"]')`)
		do(t, tab, chromedp.Click(chromedp.CSS(`button[data-action="reset"]`)))
		waitFor(t, tab, "done", `document.querySelector('#action-msg').textContent.startsWith('Reset: done by dashboard:alice@')`)
		st := state(t, rdb, "payments")
		if st.State != breakerbox.StateClosed || st.CurrentFailures != 0 {
			t.Fatalf("payments after the reset: %s with %d failures", st.State, st.CurrentFailures)
		}
		h, err := admin.History(ctx, rdb, "payments", 1)
		if err != nil || len(h) != 1 || h[0].Event != "reset" || !strings.HasPrefix(h[0].Actor, "dashboard:alice@") {
			t.Fatalf("history after the reset: %+v, %v", h, err)
		}
		waitFor(t, tab, "closed on screen", `document.querySelector('#detail-state').textContent === 'closed'`)
		waitFor(t, tab, "reset in the timeline", `document.querySelector('.timeline li .ev').textContent === 'reset'`)
	})
	t.Run("an edited config survives live updates and only its edited field is written", func(t *testing.T) {
		waitFor(t, tab, "config form", `!!document.querySelector('form.config input[name="request_timeout_ms"]')`)
		do(t, tab, chromedp.SetValue(chromedp.CSS(`form.config input[name="request_timeout_ms"]`), "90000"),
			chromedp.Evaluate[chromedp.Void](`document.querySelector('form.config').dispatchEvent(new Event('input'))`))
		// Meanwhile another operator changes another field: the page redraws.
		if err := rdb.HSet(ctx, "circuit_breaker:{payments}:config", "failure_threshold", 7).Err(); err != nil {
			t.Fatal(err)
		}
		forceOpen(t, rdb, "payments")
		waitFor(t, tab, "redrawn", `document.querySelector('#detail-state').textContent === 'forced open'`)
		waitFor(t, tab, "edit kept", `document.querySelector('form.config input[name="request_timeout_ms"]').value === '90000'`)
		do(t, tab, chromedp.Click(chromedp.CSS(`form.config button`)))
		waitFor(t, tab, "saved", `document.querySelector('#action-msg').textContent.startsWith('Change config: done by dashboard:alice@')`)
		st := state(t, rdb, "payments")
		if st.RequestTimeout != 90*time.Second || st.FailureThreshold != 7 {
			t.Fatalf("after the change: request_timeout %s (want 90s), failure_threshold %d (want the other operator's 7)", st.RequestTimeout, st.FailureThreshold)
		}
		waitFor(t, tab, "form shows the new value", `document.querySelector('form.config input[name="request_timeout_ms"]').defaultValue === '90000'`)
	})

	t.Run("a closed dashboard shows nothing before sign-in", func(t *testing.T) {
		closed, err := dashboard.New(rdb, dashboard.WithClosed(), dashboard.WithLogger(quietLog),
			dashboard.WithOperators(dashboard.Operator{Name: "alice", Secret: "alice-secret"}))
		if err != nil {
			t.Fatal(err)
		}
		closedCtx, stopClosed := context.WithCancel(ctx)
		go func() { _ = closed.Run(closedCtx) }()
		waitHealthy(t, closed)
		web := httptest.NewServer(closed)
		defer web.Close()
		defer stopClosed()
		private := newBrowser(t, chrome) // a browser without alice's session
		do(t, private, chromedp.Navigate(web.URL+"/"))
		waitFor(t, private, "closed notice", `!document.querySelector('#closed').hidden && document.querySelector('#list').hidden`)
		if n, err := chromedp.Run(private, chromedp.Evaluate[int](`document.querySelectorAll('#breakers tbody tr').length`)); err != nil || n != 0 {
			t.Fatalf("%d rows before sign-in (%v)", n, err)
		}
		do(t, private,
			chromedp.SendKeys(chromedp.CSS(`#signin input[name="user"]`), "alice"),
			chromedp.SendKeys(chromedp.CSS(`#signin input[name="secret"]`), "alice-secret"),
			chromedp.Click(chromedp.CSS(`#signin button`)))
		waitFor(t, private, "rows after sign-in", `document.querySelectorAll('#breakers tbody tr').length === 3 && document.querySelector('#closed').hidden`)
	})

	t.Run("1,200 breakers are paged, filtered and sorted", func(t *testing.T) {
		names := make([]any, 1200)
		for i := range names {
			names[i] = fmt.Sprintf("svc-%04d", i)
		}
		if err := rdb.SAdd(ctx, "circuit_breaker:registry", names...).Err(); err != nil {
			t.Fatal(err)
		}
		failUntilOpen(t, rdb, "svc-0777")
		many, err := dashboard.New(rdb, dashboard.WithInterval(200*time.Millisecond), dashboard.WithLogger(quietLog))
		if err != nil {
			t.Fatal(err)
		}
		manyCtx, stopMany := context.WithCancel(ctx)
		go func() { _ = many.Run(manyCtx) }()
		waitHealthy(t, many)
		web := httptest.NewServer(many)
		defer web.Close()
		defer stopMany() // before web.Close: ends the event streams
		do(t, tab, chromedp.Navigate(web.URL+"/"))
		waitFor(t, tab, "first page", `document.querySelectorAll('#breakers tbody tr').length === 100 && document.querySelector('#pageinfo').textContent === '1–100 of 1203'`)
		waitFor(t, tab, "the open breaker first", `document.querySelector('#breakers tbody tr').dataset.name === 'svc-0777'`)
		do(t, tab, chromedp.Click(chromedp.CSS(`#next`)))
		waitFor(t, tab, "second page", `document.querySelector('#pageinfo').textContent === '101–200 of 1203'`)
		do(t, tab, chromedp.Click(chromedp.CSS(`th[data-sort="name"]`)))
		waitFor(t, tab, "sorted by name", `document.querySelector('th[data-sort="name"]').className === 'sorted'`)
		do(t, tab, chromedp.Click(chromedp.CSS(`th[data-sort="name"]`)))
		waitFor(t, tab, "sorted by name descending", `document.querySelector('th[data-sort="name"]').className === 'sorted desc'`)
		do(t, tab, chromedp.SendKeys(chromedp.CSS(`#filter`), "svc-11"))
		waitFor(t, tab, "filtered, by name descending", `document.querySelector('#pageinfo').textContent === '1–100 of 100 (1203 in all)' && document.querySelector('#breakers tbody tr').dataset.name === 'svc-1199'`)
	})
	t.Logf("browser checks took %s", time.Since(start).Round(time.Millisecond))

	if os.Getenv(screenshotsEnv) != "" {
		screenshots(t, rdb, chrome)
	}
}

// screenshots writes docs/dashboard.png and docs/dashboard-breaker.png:
// the live demo's traffic, on this test's Redis, seen through a dashboard
// reading every 500ms.
func screenshots(t *testing.T, rdb redis.UniversalClient, chrome string) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if err := rdb.FlushDB(ctx).Err(); err != nil { // this test's own server: only the demo's breakers
		t.Fatal(err)
	}
	d, err := dashboard.New(rdb, dashboard.WithInterval(500*time.Millisecond), dashboard.WithLogger(quietLog),
		dashboard.WithOperators(dashboard.Operator{Name: "alice", Secret: "alice-secret"}))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.Run(ctx) }()
	sink, err := alerts.NewWriterSink(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	daemon, err := alerts.New(rdb, alerts.Config{Consumer: "screenshot", Logger: quietLog}, sink)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = daemon.Run(ctx) }() // so that a breaker's page shows the group
	if err := demo.StartLive(ctx, rdb, quietLog); err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(d)
	t.Cleanup(web.Close) // after the browser's cleanup: Close waits for its event stream to end
	tab := newBrowser(t, chrome)
	do(t, tab, chromedp.Navigate(web.URL+"/"))
	time.Sleep(12 * time.Second) // the demo's schedule: some breakers down by then, sparklines filled
	shot := func(file string, whole bool) {
		take := chromedp.CaptureScreenshot()
		if whole {
			take = chromedp.FullScreenshot(100) // 100: PNG
		}
		png, err := chromedp.Run(tab, take)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("..", "..", "docs", file)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
	shot("dashboard.png", false)
	do(t, tab, chromedp.Navigate(web.URL+"/#/b/openai_transcription"))
	waitFor(t, tab, "breaker page", `document.querySelectorAll('.timeline li').length > 0`)
	time.Sleep(time.Second)
	shot("dashboard-breaker.png", true)
}
