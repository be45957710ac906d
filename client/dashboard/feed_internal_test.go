package dashboard

import "testing"

func TestRatesAreTheDifferenceOfTwoReadsOnRedisClock(t *testing.T) {
	var e entry
	if req, ref := e.rate(Breaker{TimeMS: 10_000, Requests: 100, Refused: 10}); req != 0 || ref != 0 || len(e.spark) != 0 {
		t.Fatalf("first read: %v %v, sparkline %v; want no rate yet", req, ref, e.spark)
	}
	if req, ref := e.rate(Breaker{TimeMS: 12_000, Requests: 160, Refused: 30}); req != 30 || ref != 10 {
		t.Fatalf("60 requests and 20 refusals over 2s: %v %v, want 30 and 10", req, ref)
	}
	// The breaker was deleted and made again: totals went down.
	if req, ref := e.rate(Breaker{TimeMS: 13_000, Requests: 5, Refused: 0}); req != 0 || ref != 0 {
		t.Fatalf("after totals went down: %v %v, want 0", req, ref)
	}
	for i := range 2 * sparkLen {
		e.rate(Breaker{TimeMS: 14_000 + int64(i)*1000, Requests: 5 + int64(i)})
	}
	if len(e.spark) != sparkLen || e.spark[sparkLen-1] != [2]float64{1, 0} {
		t.Fatalf("sparkline of %d points ending %v, want %d ending [1 0]", len(e.spark), e.spark[len(e.spark)-1], sparkLen)
	}
}

func TestRowsThatDifferOnlyByTheClockAreNotSentAgain(t *testing.T) {
	a := Breaker{Name: "x", State: "open", RetryAfterMS: 5000, TimeMS: 1, Config: map[string]int64{"failure_threshold": 3}}
	b := a
	b.RetryAfterMS, b.TimeMS, b.RequestRate = 3000, 2001, 7
	if !sameRow(a, b) {
		t.Error("rows differing by the clock alone are reported as changed")
	}
	b.Config = map[string]int64{"failure_threshold": 4}
	if sameRow(a, b) {
		t.Error("a config change is not seen")
	}
}
