package client

import (
	"reflect"
	"testing"

	"github.com/breakerbox/breakerbox"
)

// TestOutcomeGroupIsTheRecordGroup: every sender builds the record
// operation's six-field group OUTCOME GEN LEASE ERROR DURATION_MS
// RETRY_AFTER_MS with outcome.group: an unknown duration and no
// retry-after go out empty, values past the protocol's bound are capped.
func TestOutcomeGroupIsTheRecordGroup(t *testing.T) {
	for _, c := range []struct {
		o    outcome
		want [6]string
	}{
		{outcome{kind: "s", gen: 7, durationMs: -1}, [6]string{"s", "7", "", "", "", ""}},
		{outcome{kind: "s", gen: 7, durationMs: 0}, [6]string{"s", "7", "", "", "0", ""}},
		{outcome{kind: "f", gen: -1, lease: "L", err: "boom", durationMs: 812, retryMs: 30000},
			[6]string{"f", "-1", "L", "boom", "812", "30000"}},
		{outcome{kind: "f", gen: 1, durationMs: breakerbox.MaxConfigMs + 5, retryMs: breakerbox.MaxConfigMs * 2},
			[6]string{"f", "1", "", "", "2592000000", "2592000000"}},
		{outcome{kind: "r", gen: 3, lease: "L", durationMs: -1, retryMs: 0}, [6]string{"r", "3", "L", "", "", ""}},
	} {
		if got := c.o.group(); got != c.want {
			t.Errorf("group(%+v) = %q, want %q", c.o, got, c.want)
		}
	}
	outs := []outcome{{kind: "s", gen: 1, durationMs: 5}, {kind: "f", gen: 1, err: "x", durationMs: 9, retryMs: 1000}}
	want := []any{"record", int64(2), "s", "1", "", "", "5", "", "f", "1", "", "x", "9", "1000"}
	if got := recordArgs(2, outs); !reflect.DeepEqual(got, want) {
		t.Errorf("recordArgs = %#v, want %#v", got, want)
	}
}
