package cbctl

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// sentinel is the Sentinel group this package's tests share.
var sentinel = redistest.NewShared("sentinel", func(t redistest.TB) *redistest.SentinelGroup {
	return redistest.StartSentinelGroup(t, redistest.SentinelOptions{})
})

func TestCbctlThroughSentinelAcrossAFailover(t *testing.T) {
	g := sentinel.Get(t)
	g.Use(t)
	ctx := context.Background()
	breaker(t, g.Client(t), "svc", quickConfig(), "ff")
	env := map[string]string{"REDIS_URL": g.URL(), "USER": "alice"}
	if r := cbctl(t, env, "list"); r.code != ExitOK || !strings.Contains(r.stdout, "svc") {
		t.Fatalf("list through the sentinels: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := cbctl(t, env, "status", "svc", "-o", "json"); r.code != ExitOK || !strings.Contains(r.stdout, `"name": "svc"`) {
		t.Fatalf("status through the sentinels: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n, err := g.Client(t).Wait(ctx, 1, 2*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v", n, err)
	}

	old, err := g.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old.Kill(t)
	// While no master is named, cbctl fails within its --timeout as
	// unreachable; it does not hang.
	began := time.Now()
	if r := cbctl(t, env, "status", "svc", "--timeout", "500ms"); r.code != ExitUnreachable && r.code != ExitOK {
		t.Errorf("status during the failover: exit %d: %s", r.code, r.stderr)
	} else if took := time.Since(began); took > 3*time.Second {
		t.Errorf("status during the failover took %v with --timeout 500ms", took)
	}

	type success struct {
		at  time.Time
		err error
	}
	done := make(chan success, 1)
	go func() {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		at, err := redistest.FirstSuccess(pctx, 20*time.Millisecond, func(context.Context) error {
			if r := cbctl(t, env, "reset", "svc", "--timeout", "500ms"); r.code != ExitOK {
				return fmt.Errorf("exit %d: %s", r.code, r.stderr)
			}
			return nil
		})
		done <- success{at, err}
	}()
	_, named, err := g.WaitNewMaster(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	s := <-done
	if s.err != nil {
		t.Fatalf("cbctl never worked again: %v", s.err)
	}
	t.Logf("cbctl reset worked %v after Sentinel named the new master", s.at.Sub(named).Round(time.Millisecond))
	if lag := s.at.Sub(named); lag > 2*time.Second {
		t.Errorf("cbctl worked %v after Sentinel named the new master, want <= 2s", lag)
	}
}

func TestCbctlSentinelURLs(t *testing.T) {
	g := sentinel.Get(t)
	for _, tc := range []struct {
		name, url string
		code      int
		want      string
	}{
		{"unknown master name", strings.Replace(g.URL(), "master_name="+g.MasterName, "master_name=nosuch", 1),
			ExitUnreachable, "no sentinel knows a master named \"nosuch\""},
		{"sentinel scheme", "redis+sentinel://" + g.SentinelAddrs[0] + "/mymaster", ExitUsage,
			"for Sentinel use redis://SENTINEL1:26379/0?master_name=NAME"},
		// Nothing listens on port 1: the message shows the URL, redacted.
		{"master password is not shown", "redis://127.0.0.1:1/0?master_name=m&password=hunter2-staple", ExitUnreachable,
			"redis://127.0.0.1:1/0?master_name=m&password=xxxxx"},
		{"sentinel password is not shown", "redis://:hunter2-staple@127.0.0.1:1/0?master_name=m", ExitUnreachable,
			"redis://:xxxxx@127.0.0.1:1/0?master_name=m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cbctl(t, map[string]string{"REDIS_URL": tc.url}, "list", "--timeout", "2s")
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, want %d; stderr %q, want it to say %q", r.code, tc.code, r.stderr, tc.want)
			}
			if strings.Contains(r.stderr+r.stdout, "hunter2-staple") {
				t.Errorf("a password was printed: %s", r.stderr)
			}
		})
	}
}

// cluster is the replicated cluster this package's tests share.
var cluster = redistest.NewShared("cluster", func(t redistest.TB) *redistest.Cluster {
	return redistest.StartReplicatedCluster(t)
})

func TestCbctlAcrossAClusterFailover(t *testing.T) {
	c := cluster.Get(t)
	c.Use(t)
	ctx := context.Background()
	breaker(t, c.Client(t), "svc", quickConfig(), "f")
	env := map[string]string{"REDIS_URL": c.URL(), "USER": "alice"}
	if r := cbctl(t, env, "status", "svc"); r.code != ExitOK {
		t.Fatalf("status on the cluster: exit %d: %s", r.code, r.stderr)
	}
	m, err := c.MasterOf(ctx, "circuit_breaker:{svc}:state")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := m.Client(t).Wait(ctx, 1, 2*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v", n, err)
	}
	m.Kill(t)
	type success struct {
		at  time.Time
		err error
	}
	done := make(chan success, 1)
	go func() {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		at, err := redistest.FirstSuccess(pctx, 20*time.Millisecond, func(context.Context) error {
			if r := cbctl(t, env, "reset", "svc", "--timeout", "500ms"); r.code != ExitOK {
				return fmt.Errorf("exit %d: %s", r.code, r.stderr)
			}
			return nil
		})
		done <- success{at, err}
	}()
	_, served, err := c.WaitServing(ctx, "circuit_breaker:{svc}:state", m)
	if err != nil {
		t.Fatal(err)
	}
	s := <-done
	if s.err != nil {
		t.Fatalf("cbctl never worked again: %v", s.err)
	}
	t.Logf("cbctl reset worked %v after the cluster served the slot", s.at.Sub(served).Round(time.Millisecond))
	if lag := s.at.Sub(served); lag > 2*time.Second {
		t.Errorf("cbctl worked %v after the cluster served the slot, want <= 2s", lag)
	}
}
