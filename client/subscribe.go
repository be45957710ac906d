package client

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/internal/knobs"
)

// subscriber owns the Hub's one pub/sub connection: every breaker's
// channel is subscribed on it, in batches as breakers are created, and one
// goroutine reads it, pings it after a second of silence, and serves the
// subscribe, unsubscribe and ping requests of the rest of the Hub (so that
// only this goroutine ever uses the connection, and a reconnection is
// always seen as an error before the subscriptions it repeats).
//
// A view is trusted (see Breaker.trusted) only for a breaker whose channel
// was subscribed on the current connection and whose status was read after
// that: epoch counts the connections, and grows whenever one fails.
type subscriber struct {
	h     *Hub
	ps    *redis.PubSub
	psCtx context.Context // the Hub's context, marked so the dial hook finds this subscriber

	mu      sync.Mutex
	subs    []string
	unsubs  []string
	pings   bool
	started bool
	start   chan struct{}

	epoch     atomic.Uint64 // the current connection; starts at 1
	alive     atomic.Bool   // heard from within freshFor
	lastHeard atomic.Int64  // unix nanos of the last message, pong or subscription

	peek     atomic.Pointer[peeker] // the connection's socket, when the platform can peek at it
	nextPeek atomic.Int64
	behind   atomic.Bool // a peek saw data the reader has not read yet
	behindMu sync.Mutex
	caughtUp chan struct{} // under behindMu: closed when the reader has read again
}

// freshFor is how long views are trusted after the subscription was last
// heard from; the subscriber pings after pingAfter of silence.
const (
	freshFor    = 3 * time.Second
	pingAfter   = time.Second
	receiveTick = 20 * time.Millisecond // how long a read waits before requests are served
)

// peekEvery is how often callers admitting from their view peek at the
// subscription's socket, and peekWait how long a caller waits for the
// reader when a peek saw data waiting (see maybePeek).
const (
	peekEvery = 100 * time.Microsecond
	peekWait  = time.Millisecond
)

func (s *subscriber) init(h *Hub) {
	s.h = h
	s.start = make(chan struct{})
	s.epoch.Store(1)
	s.psCtx = context.WithValue(h.ctx, captureKey{}, s)
	captureDials(h.rdb)
	s.ps = h.rdb.Subscribe(s.psCtx)
}

// live reports whether the subscription was heard from lately.
func (s *subscriber) live() bool { return s.alive.Load() }

// subscribe asks for channels to be subscribed.
func (s *subscriber) subscribe(channels ...string) {
	s.mu.Lock()
	s.subs = append(s.subs, channels...)
	if !s.started {
		s.started = true
		close(s.start)
	}
	s.mu.Unlock()
}

// unsubscribe asks for channels to be unsubscribed.
func (s *subscriber) unsubscribe(channels ...string) {
	s.mu.Lock()
	s.unsubs = append(s.unsubs, channels...)
	s.mu.Unlock()
}

func (s *subscriber) close() { _ = s.ps.Close() }

func (s *subscriber) run() {
	defer s.h.wg.Done()
	select {
	case <-s.start:
	case <-s.h.ctx.Done():
		return
	}
	lastPing := time.Now()
	for {
		if err := s.serve(&lastPing); err != nil {
			s.lost(err)
		}
		msg, err := s.ps.ReceiveTimeout(s.psCtx, receiveTick)
		if s.h.ctx.Err() != nil {
			return
		}
		var ne net.Error
		switch {
		case err != nil && errors.As(err, &ne) && ne.Timeout():
			silent := time.Since(time.Unix(0, s.lastHeard.Load()))
			if silent > freshFor {
				s.alive.Store(false)
			}
			if time.Since(lastPing) >= pingAfter && silent >= pingAfter {
				s.mu.Lock()
				s.pings = true
				s.mu.Unlock()
			}
			continue
		case err != nil:
			s.lost(err)
			select {
			case <-s.h.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		s.lastHeard.Store(time.Now().UnixNano())
		s.alive.Store(true)
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				s.h.ctl.subscribed(channelName(m.Channel), s.epoch.Load())
			}
		case *redis.Message:
			s.announce(m)
		}
		s.caughtUpNow()
	}
}

// caughtUpNow releases the callers waiting for the reader.
func (s *subscriber) caughtUpNow() {
	if !s.behind.Load() {
		return
	}
	s.behindMu.Lock()
	s.behind.Store(false)
	if s.caughtUp != nil {
		close(s.caughtUp)
		s.caughtUp = nil
	}
	s.behindMu.Unlock()
}

// waitReader waits, at most peekWait, until the reader has read what a
// peek saw waiting; it reports whether it did.
func (s *subscriber) waitReader() bool {
	s.behindMu.Lock()
	ch := s.caughtUp
	s.behindMu.Unlock()
	if ch == nil {
		return true
	}
	t := time.NewTimer(peekWait)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// serve sends the requested subscriptions and pings.
func (s *subscriber) serve(lastPing *time.Time) error {
	s.mu.Lock()
	subs, unsubs, ping := s.subs, s.unsubs, s.pings
	s.subs, s.unsubs, s.pings = nil, nil, false
	s.mu.Unlock()
	var errs []error
	if len(subs) > 0 {
		errs = append(errs, s.ps.Subscribe(s.psCtx, subs...))
	}
	if len(unsubs) > 0 {
		errs = append(errs, s.ps.Unsubscribe(s.psCtx, unsubs...))
	}
	if ping {
		*lastPing = time.Now()
		errs = append(errs, s.ps.Ping(s.psCtx))
	}
	return errors.Join(errs...)
}

// lost notes that the connection failed: no view is trusted until its
// channel is subscribed again and its breaker refreshed.
func (s *subscriber) lost(err error) {
	s.epoch.Add(1)
	s.alive.Store(false)
	s.h.logEvent(slog.LevelDebug, "circuit breaker subscription lost; resubscribing", "err", err)
}

// announce applies an announcement to every handle on its breaker.
func (s *subscriber) announce(m *redis.Message) {
	name := channelName(m.Channel)
	a, err := breakerbox.ParseAnnouncement(m.Payload)
	if err != nil {
		s.h.logEvent(slog.LevelWarn, "circuit breaker ignored a malformed announcement", "channel", m.Channel, "payload", m.Payload)
		return
	}
	for _, b := range s.h.handlesOf(name) {
		if old := b.view.Load(); old != nil && old.local == nil && old.gen == a.Generation {
			// No transition: a configure (or seed) changed the config, and
			// with it maybe the refusal's deadline. A status read tells
			// both; the announcement itself may be older than a reply the
			// view already has (it travels on another connection).
			s.h.ctl.refresh(b)
			continue
		}
		b.observe(a, fromAnnouncement)
	}
}

// maybePeek is called by callers admitting from their view. When every
// processor runs goroutines that never block, the Go runtime polls the
// network only from sysmon, at most every 10ms, so an announcement can sit
// unread on the subscription's socket for milliseconds. At most every
// peekEvery, a caller peeks at the socket (a non-blocking MSG_PEEK): if
// data is waiting, callers wait for the reader (parked callers leave the
// processors idle, and an idle processor polls the network at once) at
// most peekWait, and ask the script if it has not read it by then.
func (s *subscriber) maybePeek(now int64) {
	if knobs.NoPeek.Load() {
		return
	}
	next := s.nextPeek.Load()
	if now < next || !s.nextPeek.CompareAndSwap(next, now+int64(peekEvery)) {
		return
	}
	s.h.io.check(now)
	p := s.peek.Load()
	if p == nil {
		return
	}
	if p.waiting() {
		s.behindMu.Lock()
		if !s.behind.Load() {
			s.caughtUp = make(chan struct{})
			s.behind.Store(true)
		}
		s.behindMu.Unlock()
	}
}

// captureKey marks the context of the subscriber's pub/sub calls, so the
// dial hook knows which connection is the subscription's.
type captureKey struct{}

// captured records the socket of a connection dialled for the subscriber.
func captured(ctx context.Context, conn net.Conn) {
	if s, ok := ctx.Value(captureKey{}).(*subscriber); ok {
		s.peek.Store(newPeeker(conn))
	}
}

// channelName returns the breaker name of circuit_breaker:{NAME}:changed.
func channelName(ch string) string {
	name, _ := breakerbox.NameFromKey(ch)
	return name
}
