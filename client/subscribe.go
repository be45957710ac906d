package client

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
)

// subscribe keeps the AdmitFast view fresh: it listens on the
// breaker's channel, where the script announces every transition, refreshes
// the view after every (re)subscription, and pings while idle so that a dead
// connection is noticed within freshFor.
//
// A refresh reads the status on another connection, so announcements
// already queued on this one may be older than what it read: after a
// refresh, announcements older than the refreshed generation are dropped
// until the PONG of a PING sent after the refresh (by then every older
// announcement has been read). A generation that really went back (the
// breaker's keys deleted) is followed again from the PONG on.
func (b *Breaker) subscribe() {
	defer b.wg.Done()
	ps := b.rdb.Subscribe(b.ctx, breakerbox.Channel(b.name))
	stop := context.AfterFunc(b.ctx, func() { _ = ps.Close() }) // unblocks ReceiveTimeout
	defer stop()
	defer ps.Close()
	subscribed := false
	fence := int64(-1) // announcements older than this are stale until the next PONG
	refresh := func() {
		if gen, ok := b.refresh(); ok {
			fence = gen
			_ = ps.Ping(b.ctx)
		}
	}
	for {
		msg, err := ps.ReceiveTimeout(b.ctx, time.Second)
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if !b.live.Load() {
					refresh()
				}
				_ = ps.Ping(b.ctx)
				continue
			}
			b.live.Store(false)
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				b.live.Store(false)
				if subscribed {
					b.forgetRegistration() // a reconnection: Redis may have restarted empty
				}
				subscribed = true
				refresh()
			}
		case *redis.Message:
			if a, err := breakerbox.ParseAnnouncement(m.Payload); err == nil {
				if a.Generation >= fence {
					b.observe(a, fromAnnouncement)
				}
				b.heard()
			} else {
				b.log.Warn("circuit breaker ignored a malformed announcement", "payload", m.Payload)
			}
		case *redis.Pong:
			fence = -1
			b.heard()
		}
	}
}

func (b *Breaker) heard() { b.lastHeard.Store(time.Now().UnixNano()) }

// refresh reads the breaker's state after (re)subscribing; only then is
// the view trusted, since announcements made before were missed. It
// returns the generation read.
func (b *Breaker) refresh() (int64, bool) {
	st, err := b.readStatus()
	if err != nil {
		return 0, false
	}
	b.observe(st.Announcement(), fromRefresh)
	b.heard()
	b.live.Store(true)
	return st.Generation, true
}

// readStatus reads the breaker's snapshot for the background goroutines,
// bounded by the Redis timeout like every call on a caller's path.
func (b *Breaker) readStatus() (breakerbox.Status, error) {
	ctx, cancel := context.WithTimeout(b.ctx, b.o.redisTimeout)
	defer cancel()
	return admin.Status(ctx, b.rdb, b.name)
}

// Ready registers the breaker and, with AdmitFast, waits until its
// view of the breaker is confirmed by the subscription, so that the first
// calls are already decided locally. Calling it is optional.
func (b *Breaker) Ready(ctx context.Context) error {
	if err := b.start(ctx); err != nil {
		return err
	}
	if b.o.admission != AdmitFast {
		return nil
	}
	for !b.fresh() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}
