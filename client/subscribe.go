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

// subscribe keeps the Fast admission view fresh: it listens on the
// breaker's channel, where the script announces every transition, refreshes
// the view after every (re)subscription, and pings while idle so that a dead
// connection is noticed within freshFor.
func (b *Breaker) subscribe() {
	defer b.wg.Done()
	ps := b.rdb.Subscribe(b.ctx, breakerbox.Channel(b.name))
	stop := context.AfterFunc(b.ctx, func() { _ = ps.Close() }) // unblocks ReceiveTimeout
	defer stop()
	defer ps.Close()
	subscribed := false
	for {
		msg, err := ps.ReceiveTimeout(b.ctx, time.Second)
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if !b.live.Load() {
					b.refresh()
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
				b.refresh()
			}
		case *redis.Message:
			if a, err := breakerbox.ParseAnnouncement(m.Payload); err == nil {
				b.observe(a, true)
				b.heard()
			} else {
				b.log.Warn("circuit breaker ignored a malformed announcement", "payload", m.Payload)
			}
		case *redis.Pong:
			b.heard()
		}
	}
}

func (b *Breaker) heard() { b.lastHeard.Store(time.Now().UnixNano()) }

// refresh reads the breaker's state after (re)subscribing; only then is
// the view trusted, since announcements made before were missed.
func (b *Breaker) refresh() {
	st, err := b.readStatus()
	if err != nil {
		return
	}
	b.observe(st.Announcement(), true)
	b.heard()
	b.live.Store(true)
}

// readStatus reads the breaker's snapshot for the background goroutines,
// bounded by the Redis timeout like every call on a caller's path.
func (b *Breaker) readStatus() (breakerbox.Status, error) {
	ctx, cancel := context.WithTimeout(b.ctx, b.o.redisTimeout)
	defer cancel()
	return admin.Status(ctx, b.rdb, b.name)
}

// Ready registers the breaker and, with Fast admission, waits until its
// view of the breaker is confirmed by the subscription, so that the first
// calls are already decided locally. Calling it is optional.
func (b *Breaker) Ready(ctx context.Context) error {
	if err := b.start(ctx); err != nil {
		return err
	}
	if b.o.admission != Fast {
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
