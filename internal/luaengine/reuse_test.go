package luaengine_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/luaengine"
)

// TestReusingEngineAnswersAsAFreshOne: an engine that keeps one
// interpreter gives every operation the same reply as one that starts a
// fresh interpreter each time.
func TestReusingEngineAnswersAsAFreshOne(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	clock := func() time.Time { return now }
	fresh, reusing := luaengine.New(clock), luaengine.NewReusing(clock)
	keys := breakerbox.Keys("svc")
	steps := [][]string{
		{"seed", "me", "failure_threshold", "2"},
		{"allow"},
		{"record", "0", "f", "0", "", "boom", "", ""},
		{"record", "0", "f", "0", "", "boom", "", ""},
		{"allow"},
		{"tally", "1", "2", "3"},
		{"bogus"},
		{"allow"},
	}
	for i, args := range steps {
		a, errA := fresh.Eval(breakerbox.BreakerScript.Source, keys, args...)
		b, errB := reusing.Eval(breakerbox.BreakerScript.Source, keys, args...)
		if !reflect.DeepEqual(a, b) || (errA == nil) != (errB == nil) {
			t.Fatalf("step %d %v: fresh %v %v, reusing %v %v", i, args, a, errA, b, errB)
		}
	}
	a, _ := fresh.Eval(breakerbox.StatusScript.Source, keys, "status")
	b, _ := reusing.Eval(breakerbox.StatusScript.Source, keys, "status")
	if !reflect.DeepEqual(a, b) {
		t.Errorf("status: fresh %v, reusing %v", a, b)
	}
}

func BenchmarkEvalAllow(b *testing.B) {
	for _, e := range []struct {
		name string
		e    *luaengine.Engine
	}{{"fresh", luaengine.New(time.Now)}, {"reusing", luaengine.NewReusing(time.Now)}} {
		b.Run(e.name, func(b *testing.B) {
			keys := breakerbox.Keys("x")
			for i := 0; i < b.N; i++ {
				if _, err := e.e.Eval(breakerbox.BreakerScript.Source, keys, "allow"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
