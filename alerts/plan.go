package alerts

import (
	"strconv"
	"time"

	"github.com/breakerbox/breakerbox"
)

// record is the group's delivery record of one breaker, kept in the hash
// deliveryKey(name, group). It is the memory the daemons of a group share:
// whichever daemon holds the breaker's lock reads it, posts, and updates
// it in the same MULTI that acknowledges the entries.
type record struct {
	Acked       string    // ID of the last entry handled; entries up to it are never posted again
	AckedGen    int64     // its place in the transitions (Transition.Seq), to detect trimmed entries
	WindowStart time.Time // start of the open flap window; zero: none
	Sending     string    // "LASTID CONSUMER UNIXMS" while a post is in flight

	// remade maps the ID of an opening that repeats one already posted
	// (a failover lost the first) to that first opening; not stored.
	remade map[string]breakerbox.Transition
}

// parseRecord reads the hash fields of a delivery record.
func parseRecord(h map[string]string) record {
	r := record{Acked: h["acked"], Sending: h["sending"]}
	r.AckedGen, _ = strconv.ParseInt(h["acked_gen"], 10, 64)
	if ms, err := strconv.ParseInt(h["window_start"], 10, 64); err == nil && ms > 0 {
		r.WindowStart = time.UnixMilli(ms).UTC()
	}
	return r
}

// step is one alert to post, the entries it covers (acknowledged together
// once the sink took it) and the flap window start to record with them.
type step struct {
	alert       Alert
	windowStart time.Time
}

// plan decides the alerts for breaker name's unhandled entries, sorted by ID
// and all after rec.Acked, at Redis time now:
//
//   - Entries older than cfg.StaleAfter at the front are summarised in one
//     alert (or, when there is only one, posted on their own with Late set).
//   - An opening is posted on its own and opens a flap window of
//     cfg.FlapWindow. An opening inside an open window starts a fold: it and
//     every later entry inside the window become one KindFlapping alert,
//     posted when the window is over (the next window then starts at its
//     end, so a breaker that keeps flapping gets one message per window) or
//     just before an operator action, which is always posted on its own and
//     closes the window: the next opening is posted at once.
//   - An opening that repeats one already posted (rec.remade: a failover
//     lost the first) is posted on its own with Remade set, and neither
//     opens nor joins a fold.
//   - Everything else is posted on its own, in order.
//
// When the last fold's window is still open, plan leaves its entries out
// and returns the time it ends: the caller comes back then. Each alert
// covers a contiguous run of entries, so posting the steps in order keeps
// the stream's order.
func plan(name string, entries []breakerbox.Transition, rec record, now time.Time, cfg Config) (steps []step, wakeAt time.Time) {
	prevGen := rec.AckedGen
	missed := func(ts []breakerbox.Transition) int64 {
		var n int64
		for _, t := range ts {
			if prevGen > 0 && t.Seq() > prevGen+1 {
				n += t.Seq() - prevGen - 1
			}
			if t.Seq() > 0 {
				prevGen = t.Seq()
			}
		}
		return n
	}
	ws := rec.WindowStart
	add := func(a Alert) {
		a.Breaker = name
		a.Missed = missed(a.Transitions)
		steps = append(steps, step{alert: a, windowStart: ws})
	}

	i := 0
	for i < len(entries) && now.Sub(entries[i].Time) > cfg.StaleAfter {
		i++
	}
	switch {
	case i >= 2:
		add(Alert{Kind: KindSummary, Transitions: entries[:i]})
	case i == 1:
		add(Alert{Kind: KindTransition, Transitions: entries[:1], Late: now.Sub(entries[0].Time)})
	}

	w := cfg.FlapWindow
	var fold []breakerbox.Transition
	flush := func() {
		ws = ws.Add(w)
		add(Alert{Kind: KindFlapping, Transitions: fold, FlapWindow: w})
		fold = nil
	}
	for _, e := range entries[i:] {
		if len(fold) > 0 {
			if e.Time.Before(ws.Add(w)) && !e.Operator() {
				fold = append(fold, e)
				continue
			}
			flush()
		}
		first, remade := rec.remade[e.ID]
		if w > 0 && e.Event == "opened" && !remade && !ws.IsZero() && e.Time.Before(ws.Add(w)) {
			fold = append(fold, e)
			continue
		}
		switch {
		case e.Event == "opened" && !remade:
			ws = e.Time
		case e.Operator():
			ws = time.Time{} // an operator acted: the next opening is news again
		}
		a := Alert{Kind: KindTransition, Transitions: []breakerbox.Transition{e}}
		if remade {
			a.Remade = &first // the same outage, posted already: not a new flap
		}
		add(a)
	}
	if len(fold) > 0 {
		if end := ws.Add(w); now.Before(end) {
			return steps, end
		}
		flush()
	}
	return steps, time.Time{}
}
