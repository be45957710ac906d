package client_test

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
)

// TestConfigBoundsAgreeWithTheScript: Validate accepts each field at the
// script's bounds and refuses one past them, so a Config that New accepts
// is never refused by configure (BADARGS), and the other way round.
func TestConfigBoundsAgreeWithTheScript(t *testing.T) {
	block := regexp.MustCompile(`(?s)local BOUNDS = \{(.*?)\n\}`).FindStringSubmatch(breakerbox.Breaker.Source)
	if block == nil {
		t.Fatal("breaker-8.lua has no BOUNDS table")
	}
	set := map[string]func(c *client.Config, n int64){
		"failure_threshold":   func(c *client.Config, n int64) { c.FailureThreshold = int(n) },
		"success_threshold":   func(c *client.Config, n int64) { c.SuccessThreshold = int(n) },
		"half_open_max_calls": func(c *client.Config, n int64) { c.HalfOpenMaxCalls = int(n) },
		"recovery_timeout_ms": func(c *client.Config, n int64) { c.RecoveryTimeout = time.Duration(n) * time.Millisecond },
		"request_timeout_ms":  func(c *client.Config, n int64) { c.RequestTimeout = time.Duration(n) * time.Millisecond },
	}
	found := 0
	for _, m := range regexp.MustCompile(`(\w+)\s*=\s*\{(\d+),\s*(\d+)`).FindAllStringSubmatch(block[1], -1) {
		f, ok := set[m[1]]
		if !ok {
			t.Errorf("the script bounds %s, which Config does not have", m[1])
			continue
		}
		found++
		lo, _ := strconv.ParseInt(m[2], 10, 64)
		hi, _ := strconv.ParseInt(m[3], 10, 64)
		for _, c := range []struct {
			n  int64
			ok bool
		}{{lo, true}, {hi, true}, {hi + 1, false}, {lo - 1, m[1] == "half_open_max_calls"}} { // 0 means "same as SuccessThreshold"
			cfg := client.DefaultConfig()
			f(&cfg, c.n)
			if err := cfg.Validate(); (err == nil) != c.ok {
				t.Errorf("%s = %d: Validate() = %v, want ok %v", m[1], c.n, err, c.ok)
			}
		}
	}
	if found != len(set) {
		t.Errorf("the script bounds %d of the %d Config fields", found, len(set))
	}
}
