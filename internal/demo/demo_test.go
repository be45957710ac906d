package demo_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/internal/demo"
)

func TestDemoTripsProbesAndClosesOnEmbeddedRedis(t *testing.T) {
	var out bytes.Buffer
	code := demo.Run(context.Background(), demo.Options{Out: &out, Workers: 3,
		Healthy: 200 * time.Millisecond, Down: 800 * time.Millisecond, After: time.Second})
	text := out.String()
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, text)
	}
	for _, want := range []string{"embedded miniredis", "breaker OPEN (transition 1)", "breaker HALF_OPEN",
		"breaker CLOSED", "openai_transcription: closed", "were refused by the breaker",
		"| 🚨 Circuit Breaker Alert: openai_transcription", "| Failures:    3",
		"| ✅ Circuit Breaker Recovered: openai_transcription"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "breaker CLOSED (transition 1)") {
		t.Errorf("the config announcement was printed as a transition:\n%s", text)
	}
}
