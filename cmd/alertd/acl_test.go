package main

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// documentedRule returns the ACL SETUSER line docs/operations.md gives for
// user, its password replaced by password: the docs are what is tested.
func documentedRule(t *testing.T, user, password string) []any {
	t.Helper()
	f, err := os.Open("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 3 && fields[0] == "ACL" && fields[1] == "SETUSER" && fields[2] == user {
			out := make([]any, 0, len(fields))
			for _, f := range fields {
				if f == ">PASSWORD" {
					f = ">" + password
				}
				out = append(out, f)
			}
			return out
		}
	}
	t.Fatalf("docs/operations.md has no ACL SETUSER %s line", user)
	return nil
}

func TestAlertdUnderItsDocumentedACL(t *testing.T) {
	srv := redistest.Start(t)
	root := srv.Client(t)
	ctx := context.Background()
	if err := root.Do(ctx, documentedRule(t, "alertd", "alertd-pw")...).Err(); err != nil {
		t.Fatal(err)
	}
	a := startAlertd(t, map[string]string{"REDIS_URL": "redis://alertd:alertd-pw@" + srv.Addr + "/0"},
		"--discovery-interval", "200ms", "--consumer", "acl", "--retry-min", "50ms", "--claim-min-idle", "1s")

	// Workers use the administrator's connection; alertd only its own.
	tripBreaker(t, root, "alpha", "upstream down")
	waitUntil(t, "the opening", 10*time.Second, func() bool { return a.count("🚨 Circuit Breaker Alert: alpha") == 1 })
	if _, err := admin.Control(ctx, root, "alpha", breakerbox.ActionReset, "ops"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the reset", 10*time.Second, func() bool { return a.count("🛠️ Circuit Breaker Reset: alpha") == 1 })

	// Acknowledged (WATCH/MULTI/EXEC under the lock) and healthy.
	waitUntil(t, "/healthz ok with nothing pending", 10*time.Second, func() bool {
		code, h, err := a.healthz()
		return err == nil && code == http.StatusOK && h.OK && h.Pending == 0 && h.Lag == 0 && len(h.Problems) == 0
	})
	if code, body, err := a.get("/health"); err != nil || code != http.StatusOK || !strings.Contains(body, `"healthy"`) {
		t.Errorf("/health = %d %s %v", code, body, err)
	}
	if code, body, err := a.get("/dashboard/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/dashboard/healthz = %d %s %v: the dashboard alertd serves does not work under alertd's rule", code, body, err)
	}
	if code, body, err := a.get("/metrics"); err != nil || code != http.StatusOK ||
		!strings.Contains(body, "circuit_breaker_scrape_error 0") || !strings.Contains(body, `circuit_breaker_state{service="alpha"} 0`) {
		t.Errorf("/metrics = %d %v:\n%s", code, err, body)
	}
	for _, line := range strings.Split(a.stderr.String(), "\n") {
		// CLIENT UNBLOCK is left out on purpose: the reader keeps its blocks short.
		if strings.Contains(line, "NOPERM") && !strings.Contains(line, "client|unblock") {
			t.Errorf("alertd met NOPERM under its rule: %s", line)
		}
	}

	// alertd's user can read breakers but not change them, script or not.
	as := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "alertd", Password: "alertd-pw"})
	defer as.Close()
	if _, err := admin.Status(ctx, as, "alpha"); err != nil {
		t.Errorf("status as alertd: %v", err)
	}
	if _, err := admin.Control(ctx, as, "alpha", breakerbox.ActionForceOpen, "alertd"); err == nil ||
		!strings.Contains(err.Error(), "NOPERM") && !strings.Contains(err.Error(), "can't run") {
		t.Errorf("force-open as alertd: err = %v, want a refusal", err)
	}

	// The same daemon under a rule without WATCH/MULTI (the workers' rule
	// of the docs) posts, but cannot acknowledge: /healthz says so.
	if err := root.Do(ctx, workersRule...).Err(); err != nil {
		t.Fatal(err)
	}
	tripBreaker(t, root, "beta", "also down")
	var h = struct{ problems string }{}
	waitUntil(t, "/healthz 503 naming the refused WATCH", 15*time.Second, func() bool {
		code, hz, err := a.healthz()
		if err != nil || code != http.StatusServiceUnavailable || hz.OK {
			return false
		}
		for _, p := range hz.Problems {
			if strings.Contains(p.Error, "NOPERM") && strings.Contains(strings.ToLower(p.Error), "watch") {
				h.problems = p.Op + " " + p.Breaker
				return true
			}
		}
		return false
	})
	t.Logf("under the workers' rule: %s", h.problems)
}

// TestAlertdSubscriptionUnderTheChannelRule: PSUBSCRIBE of alertd's
// pattern is allowed by its rule's &circuit_breaker:*:changed, and under
// the workers' rule, whose &circuit_breaker:* refuses that pattern, alertd
// subscribes to circuit_breaker:* instead: either way a new breaker's first
// opening is delivered at once, from its announcement, with discovery far
// off.
func TestAlertdSubscriptionUnderTheChannelRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule func(t *testing.T) []any
	}{
		{"alertd's rule", func(t *testing.T) []any { return documentedRule(t, "alertd", "alertd-pw") }},
		{"the workers' rule", func(t *testing.T) []any { return workersRule }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			root := srv.Client(t)
			ctx := context.Background()
			if err := root.Do(ctx, tc.rule(t)...).Err(); err != nil {
				t.Fatal(err)
			}
			a := startAlertd(t, map[string]string{"REDIS_URL": "redis://alertd:alertd-pw@" + srv.Addr + "/0"},
				"--discovery-interval", "1h", "--consumer", "acl", "--dashboard=false")
			waitUntil(t, "alertd's pattern subscription", 10*time.Second, func() bool {
				n, err := root.PubSubNumPat(ctx).Result()
				return err == nil && n == 1
			})
			tripBreaker(t, root, "fresh", "down")
			waitUntil(t, "the opening", 10*time.Second, func() bool { return a.count("🚨 Circuit Breaker Alert: fresh") == 1 })
		})
	}
}

// workersRule is the rule docs/operations.md gives the workers, cbctl,
// health and metrics, for user alertd.
var workersRule = []any{"ACL", "SETUSER", "alertd", "reset", "on", ">alertd-pw", "~circuit_breaker:*", "&circuit_breaker:*",
	"+@read", "+@write", "+@scripting", "+@pubsub", "+@connection", "+time", "-@dangerous"}
