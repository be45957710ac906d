package dashboard

import (
	"encoding/json"
	"maps"
	"slices"
)

// listener is one page's event stream.
type listener struct {
	ch   chan []byte
	gone chan struct{} // closed when the feed dropped the listener
}

// update is the message of the "update" and "tick" events.
type update struct {
	TimeMS  int64                 `json:"time_ms,omitempty"`
	Rows    []Breaker             `json:"rows"`              // rows that changed
	Rates   map[string][2]float64 `json:"rates,omitempty"`   // tick: every breaker's non-zero rates
	Removed []string              `json:"removed,omitempty"` // tick: breakers no longer in Redis
	Error   string                `json:"error,omitempty"`   // tick: why Redis could not be read
}

// snapshot is the first message a page receives: every breaker with its
// sparkline.
type snapshot struct {
	Rows       []Breaker               `json:"rows"`
	Sparks     map[string][][2]float64 `json:"sparks"`
	IntervalMS int64                   `json:"interval_ms"`
	Error      string                  `json:"error,omitempty"`
}

// listen registers a page's event stream and returns it with its first
// message, the snapshot, so that no change falls between the two. When
// the feed is not running it registers nothing and returns a nil listener
// with the snapshot.
func (f *feed) listen() (*listener, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := snapshot{Rows: make([]Breaker, 0, len(f.rows)), Sparks: make(map[string][][2]float64, len(f.rows)),
		IntervalMS: f.interval.Milliseconds()}
	for _, n := range slices.Sorted(maps.Keys(f.rows)) {
		e := f.rows[n]
		s.Rows = append(s.Rows, e.row)
		if len(e.spark) > 0 {
			s.Sparks[n] = slices.Clone(e.spark)
		}
	}
	if f.health.readErr != nil {
		s.Error = "cannot read Redis: " + f.health.readErr.Error()
	}
	if !f.health.running {
		s.Error = "the dashboard is not running"
		return nil, event("snapshot", s)
	}
	l := &listener{ch: make(chan []byte, listenerBuffer), gone: make(chan struct{})}
	f.listeners[l] = struct{}{}
	return l, event("snapshot", s)
}

// unlisten removes a page's stream that ended.
func (f *feed) unlisten(l *listener) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.listeners[l]; ok {
		f.drop(l)
	}
}

// broadcast sends an event to every page; f.mu is held.
func (f *feed) broadcast(name string, v any) {
	if len(f.listeners) == 0 {
		return
	}
	msg := event(name, v)
	for l := range f.listeners {
		select {
		case l.ch <- msg:
		default: // too far behind: drop it, it reconnects
			f.drop(l)
		}
	}
}

// drop ends a listener; f.mu is held.
func (f *feed) drop(l *listener) {
	delete(f.listeners, l)
	close(l.gone)
}

// event formats a server-sent event. JSON holds no raw newline, so the
// data is one line.
func event(name string, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{}`)
	}
	return append(append([]byte("event: "+name+"\ndata: "), b...), "\n\n"...)
}
