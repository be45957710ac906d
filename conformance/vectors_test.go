package conformance

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/internal/redistest"
)

const vectorDir = "vectors"

func loadVectors(t *testing.T) []Vector {
	t.Helper()
	vs, err := LoadVectors(vectorDir)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// breakerName is the breaker a vector uses on an engine: distinct per
// vector so that they can run side by side on one server.
func breakerName(engine string, v Vector) string { return "conf:" + engine + ":" + v.Name }

// runVectors runs every vector on e as parallel subtests.
func runVectors(t *testing.T, e Engine) {
	vectors := loadVectors(t)
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			if e.Parallel {
				t.Parallel()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res := RunVector(ctx, e, v, breakerName(e.Name, v), Options{Scale: *flagScale})
			report(t, e.Name, v, res.Passed(), res.Attempts, res.Late, res.Errors)
		})
	}
}

// report records a vector's result for the table and fails (or, for a
// vector marked with a known bug, skips) the test.
func report(t *testing.T, engine string, v Vector, passed bool, attempts int, late, errs []string) {
	t.Helper()
	if attempts > 1 {
		t.Logf("%s: %d attempts; discarded: %s", engine, attempts, strings.Join(late, "; "))
	}
	bug := v.KnownBug != "" && !passed && os.Getenv("BREAKERBOX_CONFORMANCE_STRICT") != "1"
	summary.add(engine, passed, bug)
	if passed {
		if v.KnownBug != "" {
			id, _, _ := strings.Cut(v.KnownBug, " ")
			t.Logf("%s passes on %s: %s looks fixed; remove its known_bug mark once every engine passes", v.Name, engine, id)
		}
		return
	}
	msg := "vector " + v.Name + " (" + v.File + ") on " + engine + ":\n  " + strings.Join(errs, "\n  ")
	if bug {
		t.Skipf("KNOWN BUG %s\n%s", v.KnownBug, msg)
	}
	t.Error(msg)
}

func TestVectorsGopherLua(t *testing.T) { runVectors(t, LuaEngine()) }

func TestVectorsMiniredis(t *testing.T) { runVectors(t, MiniredisEngine()) }

func TestVectorsRedis(t *testing.T) {
	srv := redistest.Start(t)
	runVectors(t, RedisEngine("redis", srv.Client(t)))
}

func TestVectorsCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	cc := c.Client(t)
	t.Run("vectors", func(t *testing.T) { runVectors(t, RedisEngine("cluster", cc)) })
	// The breakers must have spread over the masters, or the cluster run
	// proved less than it claims.
	ctx := context.Background()
	masters := map[string]bool{}
	for _, v := range loadVectors(t) {
		node, err := cc.MasterForKey(ctx, "circuit_breaker:{"+breakerName("cluster", v)+".1}:state")
		if err != nil {
			t.Fatal(err)
		}
		masters[node.Options().Addr] = true
	}
	if len(masters) < 3 {
		t.Errorf("vector breakers landed on %d masters, want all 3", len(masters))
	}
	summary.note("cluster: vector breakers spread over %d masters", len(masters))
}

var _ redis.UniversalClient = (*redis.ClusterClient)(nil)
