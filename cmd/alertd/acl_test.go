package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// alertdSetUser returns the ACL SETUSER command docs/operations.md gives
// for alertd, with the password "alertd-pw".
func alertdSetUser(t *testing.T) []any {
	return append([]any{"ACL", "SETUSER", "alertd"}, redistest.Anys(redistest.DocumentedACL(t, "alertd", "alertd-pw"))...)
}

func TestAlertdUnderItsDocumentedACL(t *testing.T) {
	srv := redistest.Start(t)
	root := srv.Client(t)
	ctx := context.Background()
	if err := root.Do(ctx, alertdSetUser(t)...).Err(); err != nil {
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

	// The same daemon under a rule without WATCH/MULTI (workersRule, a
	// broad rule) posts, but cannot acknowledge: /healthz says so.
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
// a broad rule (workersRule), whose &circuit_breaker:* refuses that pattern, alertd
// subscribes to circuit_breaker:* instead: either way a new breaker's first
// opening is delivered at once, from its announcement, with discovery far
// off.
func TestAlertdSubscriptionUnderTheChannelRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule func(t *testing.T) []any
	}{
		{"alertd's rule", func(t *testing.T) []any { return alertdSetUser(t) }},
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

// workersRule is a broad rule for user alertd: the one docs/operations.md
// gave workers, cbctl, health and metrics alike before each component had
// its own (no @transaction, and &circuit_breaker:* for channels).
var workersRule = []any{"ACL", "SETUSER", "alertd", "reset", "on", ">alertd-pw", "~circuit_breaker:*", "&circuit_breaker:*",
	"+@read", "+@write", "+@scripting", "+@pubsub", "+@connection", "+time", "-@dangerous"}
