package alerts

import (
	"strconv"
	"strings"

	"github.com/breakerbox/breakerbox"
)

// The daemon's own keys live next to the breaker's, inside its hash tag
// {NAME}, so that one MULTI can acknowledge stream entries and record the
// delivery on a Redis Cluster too.

// streamKey is the breaker's transition stream.
func streamKey(name string) string { return breakerbox.Key(name, "events") }

// deliveryKey is a hash holding the group's delivery record for the
// breaker: the last entry handled (acked, acked_gen), the open flap window
// (window_start) and the attempt in flight (sending).
func deliveryKey(name, group string) string { return breakerbox.Key(name, "alerts:"+group) }

// lockKey is the per-breaker delivery lock: one daemon of the group at a
// time posts a breaker's alerts, in stream order.
func lockKey(name, group string) string { return breakerbox.Key(name, "alerts:"+group+":lock") }

// The daemon PSUBSCRIBEs to every breaker's announcement channel. Redis
// lets an ACL user PSUBSCRIBE to a pattern only when one of its channel
// rules is that very pattern: changedPattern is allowed by
// &circuit_breaker:*:changed (alertd's and the dashboard's rules),
// broadPattern by &circuit_breaker:* (the workers' rule), and the daemon
// falls back to the second when the first is refused. nameFromChannel
// keeps the :changed channels either way.
const (
	changedPattern = breakerbox.KeyPrefix + "*:changed"
	broadPattern   = breakerbox.KeyPrefix + "*"
)

// nameFromChannel returns the breaker of an announcement channel
// circuit_breaker:{NAME}:changed.
func nameFromChannel(channel string) (string, bool) {
	if !strings.HasSuffix(channel, "}:changed") {
		return "", false
	}
	return breakerbox.NameFromKey(channel)
}

// parseID splits a stream ID "ms-seq". An ID without "-seq" has seq 0.
func parseID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	ms, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if found {
		if seq, err = strconv.ParseUint(b, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return ms, seq, true
}

// idLessEq reports whether stream ID a <= b. An unparsable ID is never
// <= anything, so a bad record can never hide an entry.
func idLessEq(a, b string) bool {
	am, as, ok1 := parseID(a)
	bm, bs, ok2 := parseID(b)
	if !ok1 || !ok2 {
		return false
	}
	return am < bm || (am == bm && as <= bs)
}
