package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
	"unicode"
)

// Defaults of Config, used for zero fields.
const (
	DefaultGroup             = "breakerbox-alerts"
	DefaultFlapWindow        = 5 * time.Minute
	DefaultStaleAfter        = 10 * time.Minute
	DefaultClaimMinIdle      = time.Minute
	DefaultRetryMin          = time.Second
	DefaultRetryMax          = time.Minute
	DefaultDiscoveryInterval = 30 * time.Second
	DefaultBlock             = 5 * time.Second
	DefaultShutdownGrace     = 10 * time.Second
	DefaultMaxBacklog        = 1000
)

// Config tunes a Daemon. Every zero field takes the default given in its
// comment, so Config{} is a working configuration.
type Config struct {
	// Group is the consumer group on every breaker's transition stream.
	// Daemons sharing a group share the work: each transition is posted by
	// one of them. Default "breakerbox-alerts". No spaces, braces or control
	// characters.
	Group string

	// Consumer names this daemon inside the group. It must differ between
	// daemons running at the same time. Default "HOSTNAME-PID".
	Consumer string

	// FlapWindow: after an opening alert, further openings of the same
	// breaker within this window are folded into one "flapping" message
	// with a count, posted when the window ends (or earlier, before an
	// operator action). Default 5m; a negative value turns folding off.
	// Must be shorter than StaleAfter.
	FlapWindow time.Duration

	// StaleAfter: a transition read more than this long after it happened
	// (the daemon was down, or Slack was) is not posted on its own; the
	// stale transitions of one breaker are summarised in one message.
	// Default 10m.
	StaleAfter time.Duration

	// ClaimMinIdle is how long an entry may sit unacknowledged in another
	// consumer's pending list before this daemon takes it over with
	// XAUTOCLAIM (that consumer is presumed dead). It is also the lease of
	// the per-breaker delivery lock, renewed every third of it while held.
	// Default 1m; at least 10ms.
	ClaimMinIdle time.Duration

	// RetryMin and RetryMax bound the exponential backoff between attempts
	// to post an alert the sink failed to take (Slack 5xx, network errors).
	// A Slack 429 waits its Retry-After instead. Defaults 1s and 1m.
	RetryMin time.Duration
	// RetryMax: see RetryMin.
	RetryMax time.Duration

	// DiscoveryInterval is how often the daemon lists breakers (registry
	// and SCAN), creates missing consumer groups, claims entries of dead
	// consumers and looks for entries that no wake-up announced. Default 30s.
	DiscoveryInterval time.Duration

	// Block is how long one blocking XREADGROUP waits on a standalone
	// server before it is issued again with the current set of streams.
	// New streams and shutdown cut it short with CLIENT UNBLOCK; where
	// that is unavailable (an ACL, miniredis) it is capped at 500ms.
	// Default 5s.
	Block time.Duration

	// ShutdownGrace is how long an alert being posted when Run's context is
	// cancelled may still take to finish (and be acknowledged). Default 10s.
	ShutdownGrace time.Duration

	// MaxBacklog: Health reports the daemon unhealthy while more entries
	// than this are pending in the group or not yet read, over all
	// breakers (alerts are not getting out). Default 1000.
	MaxBacklog int64

	// Logger receives the daemon's logs. Default slog.Default().
	Logger *slog.Logger

	// Sleep waits d or until ctx is done (returning ctx.Err()); it is used
	// for retry backoff and Retry-After waits. Default: a real timer. Tests
	// inject a recording function so that no test waits for real.
	Sleep func(ctx context.Context, d time.Duration) error
}

// ErrInvalidConfig is returned by New for a Config that cannot be used.
var ErrInvalidConfig = errors.New("invalid alerts config")

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.Consumer == "" {
		c.Consumer = defaultConsumer()
	}
	if c.FlapWindow == 0 {
		c.FlapWindow = DefaultFlapWindow
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = DefaultStaleAfter
	}
	if c.ClaimMinIdle == 0 {
		c.ClaimMinIdle = DefaultClaimMinIdle
	}
	if c.RetryMin == 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.DiscoveryInterval == 0 {
		c.DiscoveryInterval = DefaultDiscoveryInterval
	}
	if c.Block == 0 {
		c.Block = DefaultBlock
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.MaxBacklog == 0 {
		c.MaxBacklog = DefaultMaxBacklog
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
	return c
}

// validate checks a Config after withDefaults.
func (c Config) validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: %s is %v, want %s", ErrInvalidConfig, field, v, want)
	}
	switch {
	case !validName(c.Group):
		return bad("Group", fmt.Sprintf("%q", c.Group), "1 to 200 bytes without spaces, braces or control characters")
	case !validName(c.Consumer):
		return bad("Consumer", fmt.Sprintf("%q", c.Consumer), "1 to 200 bytes without spaces, braces or control characters")
	case c.StaleAfter < 0:
		return bad("StaleAfter", c.StaleAfter, "positive")
	case c.FlapWindow >= c.StaleAfter:
		return bad("FlapWindow", c.FlapWindow, fmt.Sprintf("shorter than StaleAfter (%s)", c.StaleAfter))
	case c.ClaimMinIdle < 10*time.Millisecond:
		return bad("ClaimMinIdle", c.ClaimMinIdle, "at least 10ms")
	case c.RetryMin < 0:
		return bad("RetryMin", c.RetryMin, "positive")
	case c.RetryMax < c.RetryMin:
		return bad("RetryMax", c.RetryMax, fmt.Sprintf("at least RetryMin (%s)", c.RetryMin))
	case c.DiscoveryInterval < 0:
		return bad("DiscoveryInterval", c.DiscoveryInterval, "positive")
	case c.Block < time.Millisecond:
		return bad("Block", c.Block, "at least 1ms")
	case c.ShutdownGrace < 0:
		return bad("ShutdownGrace", c.ShutdownGrace, "positive")
	case c.MaxBacklog < 0:
		return bad("MaxBacklog", c.MaxBacklog, "positive")
	}
	return nil
}

// validName accepts group and consumer names: they become parts of Redis
// keys and of command arguments, so they must stay on one line and not
// touch the breaker's hash tag.
func validName(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return r == '{' || r == '}' || unicode.IsSpace(r) || unicode.IsControl(r)
	})
}

// defaultConsumer is "HOSTNAME-PID", cleaned up to be a valid name.
func defaultConsumer() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "alertd"
	}
	host = strings.Map(func(r rune) rune {
		if r == '{' || r == '}' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return '_'
		}
		return r
	}, host)
	if len(host) > 180 {
		host = host[:180]
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
