package redisurl

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/internal/redisconn"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

var sentinel = redistest.NewShared("sentinel", func(t redistest.TB) *redistest.SentinelGroup {
	return redistest.StartSentinelGroup(t, redistest.SentinelOptions{})
})

func TestNewForms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url string
		check     func(t *testing.T, rdb redis.UniversalClient)
	}{
		{"single", "redis://u:pw@127.0.0.1:7000/2?dial_timeout=2s", func(t *testing.T, rdb redis.UniversalClient) {
			o := rdb.(*redis.Client).Options()
			if o.Addr != "127.0.0.1:7000" || o.DB != 2 || o.Username != "u" || o.Password != "pw" || !o.ContextTimeoutEnabled || o.DialTimeout != 2*time.Second {
				t.Errorf("options %+v", o)
			}
		}},
		{"single, context timeout off", "redis://127.0.0.1:7000?context_timeout_enabled=false", func(t *testing.T, rdb redis.UniversalClient) {
			if rdb.(*redis.Client).Options().ContextTimeoutEnabled {
				t.Error("ContextTimeoutEnabled despite context_timeout_enabled=false")
			}
		}},
		{"cluster", "redis://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002", func(t *testing.T, rdb redis.UniversalClient) {
			o := rdb.(*redis.ClusterClient).Options()
			if len(o.Addrs) != 3 || !o.ContextTimeoutEnabled {
				t.Errorf("options %+v", o)
			}
		}},
		{"sentinel", "redis://su:spw@127.0.0.1:26379/3?master_name=mymaster&addr=127.0.0.1:26380&username=web&password=pw", func(t *testing.T, rdb redis.UniversalClient) {
			c, ok := rdb.(*redis.Client)
			if !ok {
				t.Fatalf("client %T, want *redis.Client (a failover client)", rdb)
			}
			o := c.Options()
			// A failover client's options name the master's credentials
			// and database; the sentinels are reached through its dialer.
			if o.Username != "web" || o.Password != "pw" || o.DB != 3 || !o.ContextTimeoutEnabled || o.Dialer == nil {
				t.Errorf("options %+v", o)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb, err := New(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			tc.check(t, rdb)
		})
	}
}

func TestNewClusterClientFollowsFailovers(t *testing.T) {
	t.Parallel()
	rdb, err := New("redis://127.0.0.1:1?addr=127.0.0.1:2&dial_timeout=50ms&max_redirects=0")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	_ = rdb.Get(context.Background(), "k").Err() // refused: asks for a reload
	if redisconn.Reloads(rdb) == 0 {
		t.Fatal("a cluster client from New does not follow failovers (no reload after a refused dial)")
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, want string }{
		{"redis+sentinel://s1:26379/mymaster", "for Sentinel use redis://SENTINEL1:26379/0?master_name="},
		{"redis://s1:26379/0?master_name=", "master_name is empty"},
		{"redis://:sekrit@s1:26379/0?master_name=m&bogus=1", "unexpected option"},
		{"http://:sekrit@h:1/0", "invalid URL scheme"},
		{"redis://:sekrit@h:1/0?addr=bad", "unable to parse addr"},
		{"redis://:sek rit@h:1/0", "invalid"},
	} {
		_, err := New(tc.url)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q): err = %v, want it to say %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "sekrit") {
			t.Errorf("New(%q): the error shows the password: %v", tc.url, err)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, shown string
		secrets    []string
	}{
		{"redis://localhost:6379/0", "redis://localhost:6379/0", nil},
		{"redis://alice:pw1@h:6379/0", "redis://alice:xxxxx@h:6379/0", []string{"pw1"}},
		{"redis://:spw@s1:26379/0?master_name=m&addr=s2:26379&password=mpw",
			"redis://:xxxxx@s1:26379/0?addr=s2%3A26379&master_name=m&password=xxxxx", []string{"spw", "mpw"}},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		shown, secrets := Redact(u)
		if shown != tc.shown || strings.Join(secrets, ",") != strings.Join(tc.secrets, ",") {
			t.Errorf("Redact(%s) = %q, %q; want %q, %q", tc.url, shown, secrets, tc.shown, tc.secrets)
		}
	}
}

func TestSentinelURLReachesTheMaster(t *testing.T) {
	g := sentinel.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got := KindOf(mustParse(t, g.URL())); got != Sentinel {
		t.Fatalf("KindOf(%s) = %v, want Sentinel", g.URL(), got)
	}
	rdb, err := New(g.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if err := rdb.Set(ctx, "via-sentinel", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	m, err := g.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := m.Client(t).Get(ctx, "via-sentinel").Result(); err != nil || v != "1" {
		t.Fatalf("the write did not reach the master %s: %q, %v", m.Addr, v, err)
	}

	// An unknown master name fails, without hanging.
	bad, err := New(strings.Replace(g.URL(), "master_name="+g.MasterName, "master_name=nosuch", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Ping(ctx).Err(); err == nil {
		t.Fatal("PING through sentinels that know no such master succeeded")
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
