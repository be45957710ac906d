package alerts

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/breakerbox/breakerbox"
)

// memory is what one daemon remembers in its own process, beside the
// delivery record the group shares in Redis. Redis's copy is the one that
// counts; this one covers what Redis can lose or refuse: an acknowledgement
// that failed, a record that a failover rolled back, an error that keeps
// coming back (for /healthz).
type memory struct {
	mu sync.Mutex
	// problems are the operations failing now, by op and breaker.
	problems map[problemKey]*Problem
	// backoff is each breaker's current wait before its next attempt.
	backoff map[string]time.Duration
	// unacked is, per breaker, an alert the sink accepted but whose
	// acknowledgement failed: the next round acknowledges it without
	// posting it again.
	unacked map[string]*step
	// posted holds, per breaker, the entries this daemon posted lately
	// (ID and generation), so that an entry a failover made pending again
	// is acknowledged, not posted twice.
	posted map[string][]postedEntry
	// announced is, per breaker, the last transition this daemon posted:
	// the state people were last told about.
	announced map[string]breakerbox.Transition
	// maybe is, per breaker, the in-flight mark of an attempt that may
	// have reached the sink ("FIRST LAST CONSUMER MS").
	maybe map[string]string
}

type problemKey struct{ op, breaker string }

type postedEntry struct {
	id  string
	gen int64
}

// postedKeep bounds the posted entries remembered per breaker.
const postedKeep = 200

// Problem is an operation of the daemon that failed and has not succeeded
// since: Health reports the daemon unhealthy while there is one.
type Problem struct {
	// Op is what failed: read, sweep, discover, create group, subscribe,
	// lock, deliver, acknowledge.
	Op string `json:"op"`
	// Breaker is the breaker concerned, if the operation was about one.
	Breaker string `json:"breaker,omitempty"`
	// Error is the last error.
	Error string `json:"error"`
	// Since is when it first failed.
	Since time.Time `json:"since"`
}

func newMemory() memory {
	return memory{problems: map[problemKey]*Problem{}, backoff: map[string]time.Duration{},
		unacked: map[string]*step{}, posted: map[string][]postedEntry{}, announced: map[string]breakerbox.Transition{},
		maybe: map[string]string{}}
}

// report records the outcome of op (on breaker, or "" for the daemon):
// an error opens or updates a problem, success clears it.
func (m *memory) report(op, breaker string, err error) {
	k := problemKey{op, breaker}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		delete(m.problems, k)
		return
	}
	if p, ok := m.problems[k]; ok {
		p.Error = err.Error()
		return
	}
	m.problems[k] = &Problem{Op: op, Breaker: breaker, Error: err.Error(), Since: time.Now().UTC()}
}

// clearBreaker clears the problems of breaker's delivery: a delivery round
// read, claimed and acknowledged its entries, with the commands the sweep
// and the reader use on its stream. (The sweep's own problem would
// otherwise stay when the breaker left the known set meanwhile, as a
// stream that held another type does: no later sweep reads it.)
func (m *memory) clearBreaker(breaker string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.problems {
		if k.breaker == breaker && (k.op == "lock" || k.op == "deliver" || k.op == "acknowledge" || k.op == "read" || k.op == "sweep") {
			delete(m.problems, k)
		}
	}
}

// currentProblems lists the problems, oldest first.
func (m *memory) currentProblems() []Problem {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Problem, 0, len(m.problems))
	for _, p := range m.problems {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Since.Equal(out[j].Since) {
			return out[i].Since.Before(out[j].Since)
		}
		return out[i].Op+out[i].Breaker < out[j].Op+out[j].Breaker
	})
	return out
}

// nextBackoff returns how long breaker waits before its next attempt:
// min first, doubling per failure up to max.
func (m *memory) nextBackoff(breaker string, lo, hi time.Duration) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.backoff[breaker]
	if b == 0 {
		b = lo
	} else {
		b = min(2*b, hi)
	}
	m.backoff[breaker] = b
	return b
}

// resetBackoff forgets breaker's backoff after a success.
func (m *memory) resetBackoff(breaker string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.backoff, breaker)
}

// setUnacked remembers (or with nil forgets) a posted, unacknowledged alert.
func (m *memory) setUnacked(breaker string, st *step) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st == nil {
		delete(m.unacked, breaker)
	} else {
		m.unacked[breaker] = st
	}
}

func (m *memory) getUnacked(breaker string) *step {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.unacked[breaker]
}

// delivered remembers that the alert's entries were posted (or refused
// for good) and, when it was posted, that people now know its last
// transition.
func (m *memory) delivered(breaker string, a Alert, posted bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	list := m.posted[breaker]
	for _, t := range a.Transitions {
		list = append(list, postedEntry{id: t.ID, gen: t.Generation})
	}
	if len(list) > postedKeep {
		list = append([]postedEntry(nil), list[len(list)-postedKeep:]...)
	}
	m.posted[breaker] = list
	if posted {
		m.announced[breaker] = a.Last()
	}
}

// wasPosted reports whether this daemon posted the entry t (same ID and
// generation) already.
func (m *memory) wasPosted(breaker string, t breakerbox.Transition) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.posted[breaker] {
		if p.id == t.ID && p.gen == t.Generation {
			return true
		}
	}
	return false
}

// lastAnnounced returns the last transition this daemon posted for breaker.
func (m *memory) lastAnnounced(breaker string) (breakerbox.Transition, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.announced[breaker]
	return t, ok
}

// setMaybe remembers the in-flight mark of an attempt whose outcome is
// unknown, in case Redis loses the mark (a failover).
func (m *memory) setMaybe(breaker, mark string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.maybe[breaker] = mark
}

func (m *memory) getMaybe(breaker string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.maybe[breaker]
}

// clearMaybe forgets the mark once entries up to its end are acknowledged.
func (m *memory) clearMaybe(breaker string, acked []breakerbox.Transition) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := strings.Fields(m.maybe[breaker])
	if len(f) >= 2 && len(acked) > 0 && idLessEq(f[1], acked[len(acked)-1].ID) {
		delete(m.maybe, breaker)
	}
}

// remade finds, among the breaker's unhandled entries (sorted), an opening
// that repeats one this daemon posted: people were last told the breaker
// is open (or half-open), no closing came since, and yet the first new
// entry opens it from closed. That is what a failover that lost the first
// opening looks like once the workers trip the breaker again: the
// promoted replica had the breaker closed. The shared record must not be
// past what this daemon posted (another daemon may have posted the
// closing). It returns the re-made opening's ID with the opening posted
// before, or nil.
func (d *Daemon) remade(name string, rec record, entries []breakerbox.Transition) map[string]breakerbox.Transition {
	last, ok := d.mem.lastAnnounced(name)
	if !ok || len(entries) == 0 || (last.To != "open" && last.To != "half_open") {
		return nil
	}
	if rec.Acked != "" && !idLessEq(rec.Acked, last.ID) {
		return nil
	}
	e := entries[0]
	if e.Event != "opened" || e.From != "closed" || e.ID == last.ID {
		return nil
	}
	d.log.Warn("an opening repeats one already posted with no closing between: a Redis failover lost the first",
		"breaker", name, "posted", last.ID, "posted_generation", last.Generation, "again", e.ID, "generation", e.Generation)
	return map[string]breakerbox.Transition{e.ID: last}
}
