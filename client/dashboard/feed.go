package dashboard

import (
	"context"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"
)

// sparkLen is how many intervals of rates a breaker's sparkline shows.
const sparkLen = 30

// namesEvery is how many intervals pass between two listings of the
// breakers (SMEMBERS and SCAN); a breaker announcing a transition in
// between is added at once.
const namesEvery = 5

// listenerBuffer is how many messages a slow page may fall behind before
// the dashboard drops its connection (the page reconnects and starts
// again from a fresh snapshot).
const listenerBuffer = 64

// feed keeps the dashboard's picture of every breaker and sends changes to
// the pages listening. One goroutine (run) reads Redis: every interval a
// bulk status read of every breaker (the rates come from the difference of
// two reads), and at once the breakers that announced a change on their
// :changed channel, which one pattern subscription receives.
type feed struct {
	st       store
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger

	mu        sync.Mutex
	rows      map[string]*entry
	listeners map[*listener]struct{}
	health    feedHealth

	dirtyMu sync.Mutex
	dirty   map[string]bool
	wake    chan struct{} // capacity 1: dirty has names
}

type entry struct {
	row   Breaker
	last  sample       // totals at the last interval's read
	spark [][2]float64 // request and refusal rates per interval, oldest first
}

type sample struct{ timeMS, requests, refused int64 }

type feedHealth struct {
	running    bool
	subscribed bool
	lastRead   time.Time // last bulk read that succeeded
	readErr    error
	subErr     error
	actionErr  error // the last action refused for lack of permission
}

func newFeed(st store, interval, timeout time.Duration, log *slog.Logger) *feed {
	return &feed{st: st, interval: interval, timeout: timeout, log: log,
		rows: map[string]*entry{}, listeners: map[*listener]struct{}{},
		dirty: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// run reads Redis until ctx ends.
func (f *feed) run(ctx context.Context) error {
	f.mu.Lock()
	if f.health.running {
		f.mu.Unlock()
		return errAlreadyRunning
	}
	f.health.running = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.health.running = false
		for l := range f.listeners {
			f.drop(l)
		}
		f.mu.Unlock()
	}()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); f.subscribe(ctx) }()
	defer wg.Wait()

	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		f.refresh(ctx, n%namesEvery == 0)
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				waiting = false
			case <-f.wake:
				f.readChanged(ctx)
			}
		}
	}
}

// subscribe keeps the pattern subscription, subscribing again a second
// after it failed.
func (f *feed) subscribe(ctx context.Context) {
	for ctx.Err() == nil {
		err := f.st.subscribe(ctx, func() {
			f.mu.Lock()
			f.health.subscribed, f.health.subErr = true, nil
			names := slices.Collect(maps.Keys(f.rows))
			f.mu.Unlock()
			// Announcements made while not subscribed are lost: read every
			// breaker known now instead of waiting for the next interval.
			for _, n := range names {
				f.markChanged(n)
			}
		}, f.markChanged)
		f.mu.Lock()
		f.health.subscribed, f.health.subErr = false, err
		f.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			f.log.Warn("dashboard: the subscription to the breakers' announcements failed; subscribing again in 1s", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// markChanged queues a breaker that announced a change.
func (f *feed) markChanged(name string) {
	f.dirtyMu.Lock()
	f.dirty[name] = true
	f.dirtyMu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// readChanged reads the breakers that announced a change, in one round
// trip, and sends their rows to the pages.
func (f *feed) readChanged(ctx context.Context) {
	f.dirtyMu.Lock()
	names := slices.Sorted(maps.Keys(f.dirty))
	clear(f.dirty)
	f.dirtyMu.Unlock()
	if len(names) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	rows, err := f.st.statuses(rctx, names)
	if err != nil {
		return // the next interval's read catches up
	}
	f.fillSince(rctx, rows)
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := rows[:0]
	for _, r := range rows {
		e := f.rows[r.Name]
		if e == nil {
			e = &entry{}
			f.rows[r.Name] = e
		}
		r.RequestRate, r.RefusalRate = e.row.RequestRate, e.row.RefusalRate
		if !sameRow(e.row, r) || r.RetryAfterMS != e.row.RetryAfterMS { // a config change moves the timer
			changed = append(changed, r)
		}
		e.row = r
	}
	if len(changed) > 0 {
		f.broadcast("update", update{Rows: changed})
	}
}

// fillSince sets SinceMS of each row: kept from the row the feed has when
// the generation is the same and it was looked up for it (a breaker whose
// history has no transition is not read again on every refresh), else
// looked up in the breaker's history.
func (f *feed) fillSince(ctx context.Context, rows []Breaker) {
	var need []int
	f.mu.Lock()
	for i, r := range rows {
		if e := f.rows[r.Name]; e == nil || e.row.Generation != r.Generation || !e.row.sinceKnown {
			need = append(need, i)
		} else {
			rows[i].SinceMS, rows[i].sinceKnown = e.row.SinceMS, true
		}
	}
	f.mu.Unlock()
	if len(need) > 0 {
		f.lookUpSince(ctx, rows, need...)
	}
}

// refresh is the interval's bulk read.
func (f *feed) refresh(ctx context.Context, listNames bool) {
	rctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	var names []string
	var err error
	f.mu.Lock()
	first := f.health.lastRead.IsZero()
	if !listNames && !first {
		names = slices.Sorted(maps.Keys(f.rows))
	}
	f.mu.Unlock()
	if names == nil {
		names, err = f.st.names(rctx)
	}
	var rows []Breaker
	if err == nil {
		rows, err = f.st.statuses(rctx, names)
	}
	if err != nil {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.health.readErr == nil {
			f.log.Warn("dashboard: cannot read the breakers", "err", err)
		}
		f.health.readErr = err
		f.broadcast("tick", update{Rows: []Breaker{}, Error: "cannot read Redis: " + err.Error()})
		return
	}

	f.fillSince(rctx, rows)

	f.mu.Lock()
	defer f.mu.Unlock()
	msg := update{Rows: []Breaker{}, Rates: map[string][2]float64{}}
	seen := make(map[string]bool, len(rows))
	for _, r := range rows {
		seen[r.Name] = true
		msg.TimeMS = max(msg.TimeMS, r.TimeMS)
		e := f.rows[r.Name]
		if e == nil {
			e = &entry{}
			f.rows[r.Name] = e
		}
		if r.Error == "" {
			r.RequestRate, r.RefusalRate = e.rate(r)
		}
		if r.RequestRate != 0 || r.RefusalRate != 0 {
			msg.Rates[r.Name] = [2]float64{r.RequestRate, r.RefusalRate}
		}
		if !sameRow(e.row, r) {
			msg.Rows = append(msg.Rows, r)
		}
		e.row = r
	}
	if listNames {
		for n := range f.rows {
			if !seen[n] {
				delete(f.rows, n)
				msg.Removed = append(msg.Removed, n)
			}
		}
	}
	if f.health.readErr != nil {
		f.log.Info("dashboard: reading the breakers again", "breakers", len(rows))
	}
	f.health.readErr, f.health.lastRead = nil, time.Now()
	f.broadcast("tick", msg)
}

// rate returns the request and refusal rates since the last interval's
// read and records r as that read.
func (e *entry) rate(r Breaker) (req, ref float64) {
	if dt := r.TimeMS - e.last.timeMS; e.last.timeMS > 0 && dt > 0 {
		if d := r.Requests - e.last.requests; d > 0 { // negative: the breaker was deleted and made again
			req = float64(d) * 1000 / float64(dt)
		}
		if d := r.Refused - e.last.refused; d > 0 {
			ref = float64(d) * 1000 / float64(dt)
		}
	}
	if e.last.timeMS > 0 { // the first read has no rate yet
		e.spark = append(e.spark, [2]float64{req, ref})
		if len(e.spark) > sparkLen {
			e.spark = e.spark[len(e.spark)-sparkLen:]
		}
	}
	e.last = sample{r.TimeMS, r.Requests, r.Refused}
	return req, ref
}

// sameRow reports whether a page would show a and b alike, leaving out
// what moves with the clock alone (the read time, the recovery timer's
// remainder) and the rates, which every tick carries anyway.
func sameRow(a, b Breaker) bool {
	for _, r := range []*Breaker{&a, &b} {
		r.TimeMS, r.RetryAfterMS, r.RequestRate, r.RefusalRate, r.sinceKnown = 0, 0, 0, 0, false
	}
	return reflect.DeepEqual(a, b)
}

// sinceWorkers bounds the concurrent history reads of lookUpSince.
const sinceWorkers = 8

// lookUpSince fills SinceMS of rows[i] for the given indexes from the
// breakers' histories.
func (f *feed) lookUpSince(ctx context.Context, rows []Breaker, idx ...int) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(sinceWorkers, len(idx)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if rows[i].Error != "" {
					continue
				}
				// The status was read first: a transition since then is in
				// the history with a higher generation, and is skipped.
				if ms, err := f.st.since(ctx, rows[i].Name, rows[i].Generation); err == nil {
					rows[i].SinceMS, rows[i].sinceKnown = ms, true
				}
			}
		}()
	}
	for _, i := range idx {
		work <- i
	}
	close(work)
	wg.Wait()
}

// rowsNow returns every breaker's row, sorted by name, and whether the
// feed has read Redis at least once.
func (f *feed) rowsNow() ([]Breaker, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Breaker, 0, len(f.rows))
	for _, n := range slices.Sorted(maps.Keys(f.rows)) {
		out = append(out, f.rows[n].row)
	}
	return out, !f.health.lastRead.IsZero()
}

// row returns one breaker's row.
func (f *feed) row(name string) (Breaker, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.rows[name]
	if !ok {
		return Breaker{}, false
	}
	return e.row, true
}
