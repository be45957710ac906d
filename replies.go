package breakerbox

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The replies of lua/breaker-8.lua, parsed once for every Go user: the
// client, client/admin, alerts, conformance. A reply is what go-redis
// returns for the script (and internal/luaengine likewise): an []any of
// int64 and string elements. A reply of an unexpected shape is an error,
// never a panic or a guess.

var replyFields = map[string][]string{
	"allow":     {"admitted", "state", "generation", "mode", "retry_after_ms", "lease"},
	"record":    {"state", "generation", "mode", "retry_after_ms", "counted", "stale"},
	"control":   {"state", "generation", "mode", "retry_after_ms"},
	"configure": {"written", "overwritten"},
	"seed":      {"written", "overwritten"},
	"tally":     {"total_successes", "total_failures", "total_refused"},
}

var statusFields = []string{"state", "mode", "generation", "transitions", "current_failures",
	"failure_threshold", "success_threshold", "half_open_max_calls",
	"recovery_timeout_ms", "request_timeout_ms",
	"window_ms", "window_calls", "window_buckets", "failure_rate_threshold", "minimum_calls",
	"slow_call_ms", "slow_call_rate_threshold", "max_retry_after_ms", "recovery_backoff",
	"max_recovery_timeout_ms", "total_successes",
	"total_failures", "total_refused", "total_requests", "success_rate",
	"half_open_successes", "probes", "opened_at", "retry_after_ms",
	"current_recovery_timeout_ms", "retry_until", "calls_in_window", "failures_in_window",
	"slow_in_window", "failure_rate", "slow_call_rate",
	"last_failure_time", "last_failure_error", "time_ms", "corrupt"}

// stringFields are the reply elements and status fields that are strings;
// every other one is an integer.
var stringFields = map[string]bool{"state": true, "mode": true, "lease": true,
	"success_rate": true, "failure_rate": true, "slow_call_rate": true,
	"last_failure_error": true, "corrupt": true}

// ReplyFields returns the names of the elements of operation op's reply,
// in order, as docs/protocol.md lists them; nil for status (a field/value
// list: see StatusFields) and for an unknown operation.
func ReplyFields(op string) []string { return append([]string(nil), replyFields[op]...) }

// StatusFields returns the fields every status reply holds.
func StatusFields() []string { return append([]string(nil), statusFields...) }

// IsStringField reports whether a reply element or status field named
// field is a string on the wire (all others are integers).
func IsStringField(field string) bool { return stringFields[field] }

// replyArray checks reply against operation op's documented shape: the
// element count, and a string or an integer where documented.
func replyArray(op string, reply any) ([]any, error) {
	names, ok := replyFields[op]
	if !ok {
		return nil, fmt.Errorf("no documented reply for operation %q", op)
	}
	arr, ok := reply.([]any)
	if !ok {
		return nil, fmt.Errorf("%s reply is %T, want an array", op, reply)
	}
	if len(arr) != len(names) {
		return nil, fmt.Errorf("%s reply has %d elements, want %d (%s)", op, len(arr), len(names), strings.Join(names, ", "))
	}
	for i, n := range names {
		if err := checkElement(n, arr[i]); err != nil {
			return nil, fmt.Errorf("%s reply: %w", op, err)
		}
	}
	return arr, nil
}

func checkElement(name string, v any) error {
	if stringFields[name] {
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%s is %T %v, want a string", name, v, v)
		}
	} else if _, ok := v.(int64); !ok {
		return fmt.Errorf("%s is %T %v, want an integer", name, v, v)
	}
	return nil
}

// statusMap checks a status reply (field/value pairs, every field of
// StatusFields present and of its type; unknown fields are kept) and
// returns it by field.
func statusMap(reply any) (map[string]any, error) {
	arr, ok := reply.([]any)
	if !ok || len(arr)%2 != 0 {
		return nil, fmt.Errorf("status reply is %T of odd length or not an array, want field/value pairs", reply)
	}
	out := make(map[string]any, len(arr)/2)
	for i := 0; i < len(arr); i += 2 {
		f, ok := arr[i].(string)
		if !ok {
			return nil, fmt.Errorf("status reply: field name %v is %T, want a string", arr[i], arr[i])
		}
		out[f] = arr[i+1]
	}
	var missing []string
	for _, f := range statusFields {
		v, ok := out[f]
		if !ok {
			missing = append(missing, f)
			continue
		}
		if err := checkElement(f, v); err != nil {
			return out, fmt.Errorf("status reply: %w", err)
		}
	}
	if len(missing) > 0 {
		return out, fmt.Errorf("status reply: missing fields %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// NamedReply checks operation op's reply against its documented shape
// and returns its elements by name (see ReplyFields and StatusFields).
// On a shape error it returns what it could name with the error.
func NamedReply(op string, reply any) (map[string]any, error) {
	if op == "status" {
		return statusMap(reply)
	}
	arr, err := replyArray(op, reply)
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(arr))
	for i, n := range replyFields[op] {
		out[n] = arr[i]
	}
	return out, nil
}

// retryAfter converts retry_after_ms: -1 (forced open) becomes -1.
func retryAfter(ms int64) time.Duration {
	if ms < 0 {
		return -1
	}
	return msDuration(ms)
}

// Announcement is where a breaker stands after an operation, as the script
// says it at the head of the allow, record and control replies and on the
// breaker's channel (Channel) after every transition.
type Announcement struct {
	State      State
	Generation int64
	Mode       Mode
	// RetryAfter is how long a refusal holds: -1 while forced open, 0 when
	// the breaker admits calls (or a probe may be admitted now).
	RetryAfter time.Duration
}

// RetryAfterMs returns RetryAfter as the wire's retry_after_ms.
func (a Announcement) RetryAfterMs() int64 {
	if a.RetryAfter < 0 {
		return -1
	}
	return a.RetryAfter.Milliseconds()
}

// announcementAt reads {state, generation, mode, retry_after_ms} from a
// checked reply array at arr[i:].
func announcementAt(arr []any, i int) (Announcement, error) {
	var a Announcement
	var err error
	if a.State, err = ParseState(arr[i].(string)); err != nil {
		return a, err
	}
	if a.Mode, err = ParseMode(arr[i+2].(string)); err != nil {
		return a, err
	}
	a.Generation = arr[i+1].(int64)
	a.RetryAfter = retryAfter(arr[i+3].(int64))
	return a, nil
}

// ParseAnnouncement reads a message of a breaker's channel:
// "STATE GENERATION MODE RETRY_AFTER_MS".
func ParseAnnouncement(payload string) (Announcement, error) {
	f := strings.Split(payload, " ")
	if len(f) != 4 {
		return Announcement{}, fmt.Errorf("announcement %q: want STATE GENERATION MODE RETRY_AFTER_MS", payload)
	}
	var a Announcement
	var err error
	if a.State, err = ParseState(f[0]); err != nil {
		return a, fmt.Errorf("announcement %q: %w", payload, err)
	}
	if a.Generation, err = strconv.ParseInt(f[1], 10, 64); err != nil {
		return a, fmt.Errorf("announcement %q: generation: %w", payload, err)
	}
	if a.Mode, err = ParseMode(f[2]); err != nil {
		return a, fmt.Errorf("announcement %q: %w", payload, err)
	}
	ms, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil {
		return a, fmt.Errorf("announcement %q: retry_after_ms: %w", payload, err)
	}
	a.RetryAfter = retryAfter(ms)
	return a, nil
}

// AllowReply is the allow operation's reply.
type AllowReply struct {
	// Admitted is true when the call may go ahead.
	Admitted bool
	// Announcement is where the breaker stands after the call.
	Announcement
	// Lease is the probe lease of an admitted half-open call, else empty.
	Lease string
}

// ParseAllowReply reads {admitted, state, generation, mode, retry_after_ms, lease}.
func ParseAllowReply(reply any) (AllowReply, error) {
	arr, err := replyArray("allow", reply)
	if err != nil {
		return AllowReply{}, err
	}
	a, err := announcementAt(arr, 1)
	if err != nil {
		return AllowReply{}, fmt.Errorf("allow reply: %w", err)
	}
	return AllowReply{Admitted: arr[0].(int64) == 1, Announcement: a, Lease: arr[5].(string)}, nil
}

// RecordReply is the record operation's reply.
type RecordReply struct {
	// Announcement is where the breaker stands after the outcomes.
	Announcement
	// Counted is how many outcomes moved the breaker's counts.
	Counted int64
	// Stale is how many outcomes carried an older generation and only
	// added to the totals.
	Stale int64
}

// ParseRecordReply reads {state, generation, mode, retry_after_ms, counted, stale}.
func ParseRecordReply(reply any) (RecordReply, error) {
	arr, err := replyArray("record", reply)
	if err != nil {
		return RecordReply{}, err
	}
	a, err := announcementAt(arr, 0)
	if err != nil {
		return RecordReply{}, fmt.Errorf("record reply: %w", err)
	}
	return RecordReply{Announcement: a, Counted: arr[4].(int64), Stale: arr[5].(int64)}, nil
}

// ParseControlReply reads the control operation's reply
// {state, generation, mode, retry_after_ms}.
func ParseControlReply(reply any) (Announcement, error) {
	arr, err := replyArray("control", reply)
	if err != nil {
		return Announcement{}, err
	}
	a, err := announcementAt(arr, 0)
	if err != nil {
		return a, fmt.Errorf("control reply: %w", err)
	}
	return a, nil
}

// ConfigureReply is the configure operation's reply.
type ConfigureReply struct {
	// Written is how many fields were stored (those that differed).
	Written int
	// Overwritten is how many of those replaced another stored value.
	Overwritten int
}

// ParseConfigureReply reads {written, overwritten}.
func ParseConfigureReply(reply any) (ConfigureReply, error) {
	arr, err := replyArray("configure", reply)
	if err != nil {
		return ConfigureReply{}, err
	}
	return ConfigureReply{Written: int(arr[0].(int64)), Overwritten: int(arr[1].(int64))}, nil
}
