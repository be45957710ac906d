package alerts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

// maxEntries bounds the entries one delivery round takes for a breaker
// (the stream keeps 1,000); a longer backlog takes another round.
const maxEntries = 1000

var (
	errLockLost = errors.New("delivery lock lost")
	errStopping = errors.New("daemon stopping")
)

// lock is a held per-breaker delivery lock, renewed in the background.
type lock struct {
	d     *Daemon
	name  string
	key   string
	token string

	lostOnce sync.Once
	lostCh   chan struct{}
	stop     chan struct{}
	done     chan struct{}
}

// lost reports whether a renewal found the lock taken by someone else.
func (l *lock) lost() bool {
	select {
	case <-l.lostCh:
		return true
	default:
		return false
	}
}

// acquire takes the breaker's delivery lock: SET NX with a lease of
// ClaimMinIdle, renewed every third of it until release.
func (d *Daemon) acquire(ctx context.Context, name string) (*lock, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	l := &lock{d: d, name: name, key: lockKey(name, d.cfg.Group),
		token:  d.cfg.Consumer + " " + hex.EncodeToString(b[:]),
		lostCh: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	ok, err := d.rdb.SetNX(ctx, l.key, l.token, d.cfg.ClaimMinIdle).Result()
	if err != nil || !ok {
		return nil, err
	}
	go l.keep()
	return l, nil
}

func (l *lock) keep() {
	defer close(l.done)
	t := time.NewTicker(l.d.cfg.ClaimMinIdle / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.d.cfg.ClaimMinIdle/3)
		owned, err := l.tx(ctx, func(p redis.Pipeliner, owned bool) {
			if owned {
				p.PExpire(ctx, l.key, l.d.cfg.ClaimMinIdle)
			}
		})
		cancel()
		if err == nil && !owned {
			l.d.log.Warn("delivery lock lost (lease expired)", "breaker", l.name)
			l.lostOnce.Do(func() { close(l.lostCh) })
			return
		}
	}
}

// release stops the renewal and deletes the lock if it is still ours. It
// runs on a context of its own so that it also works during shutdown.
func (l *lock) release() {
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = l.tx(ctx, func(p redis.Pipeliner, owned bool) {
		if owned {
			p.Del(ctx, l.key)
		}
	})
}

// tx runs fn in a MULTI guarded by WATCH on the lock key: owned says
// whether the lock still holds our token. Commands fn queues run only if
// the lock did not change meanwhile; fn queuing nothing sends nothing.
// Every key fn touches must be in the breaker's hash tag.
func (l *lock) tx(ctx context.Context, fn func(p redis.Pipeliner, owned bool)) (bool, error) {
	var owned bool
	err := l.d.rdb.Watch(ctx, func(tx *redis.Tx) error {
		v, err := tx.Get(ctx, l.key).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		owned = v == l.token
		queued := false
		cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			fn(p, owned)
			queued = p.Len() > 0
			return nil
		})
		if !queued {
			return nil
		}
		if err != nil {
			return err
		}
		for _, c := range cmds {
			if c.Err() != nil {
				return c.Err()
			}
		}
		return nil
	}, l.key)
	return owned, err
}

// lockRetry is how soon a breaker whose lock another daemon holds is tried
// again.
func (d *Daemon) lockRetry() time.Duration {
	return max(10*time.Millisecond, min(d.cfg.RetryMin, d.cfg.ClaimMinIdle/4))
}

// deliver posts every alert due for the breaker. It takes the breaker's
// lock (or comes back later when another daemon holds it), so that the
// breaker's transitions are posted by one daemon at a time, in order.
func (d *Daemon) deliver(ctx context.Context, name string) {
	l, err := d.acquire(ctx, name)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("cannot take delivery lock", "breaker", name, "err", err)
			d.q.pushAfter(name, d.cfg.RetryMin)
		}
		return
	}
	if l == nil {
		d.q.pushAfter(name, d.lockRetry())
		return
	}
	defer l.release()
	again, wakeIn, err := d.deliverLocked(ctx, l, name)
	switch {
	case errors.Is(err, errStopping) || ctx.Err() != nil:
		return
	case err != nil:
		d.log.Warn("delivery failed; will retry", "breaker", name, "err", err)
		d.q.pushAfter(name, d.cfg.RetryMin)
		return
	}
	if again {
		d.q.push(name)
	}
	if wakeIn > 0 {
		d.q.pushAfter(name, wakeIn+10*time.Millisecond)
	}
}

// deliverLocked reads every unhandled entry of the breaker, plans the
// alerts and posts them. The entries are all the group's pending entries
// of the stream, whichever consumer holds them (taken over with XAUTOCLAIM
// at min-idle 0: under the lock no one else is posting them), then the
// entries never delivered to the group. It reports whether more entries
// may be waiting, and how soon a deferred flap fold is due (measured on
// Redis's clock, so that a skewed local clock cannot make it spin).
func (d *Daemon) deliverLocked(ctx context.Context, l *lock, name string) (again bool, wakeIn time.Duration, err error) {
	stream, dkey := streamKey(name), deliveryKey(name, d.cfg.Group)
	now, err := d.rdb.Time(ctx).Result()
	if err != nil {
		return false, 0, fmt.Errorf("redis time: %w", err)
	}
	h, err := d.rdb.HGetAll(ctx, dkey).Result()
	if err != nil {
		return false, 0, fmt.Errorf("read delivery record: %w", err)
	}
	rec := parseRecord(h)

	var msgs []redis.XMessage
	for start := "0-0"; len(msgs) < maxEntries; {
		batch, next, err := d.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: stream, Group: d.cfg.Group,
			Consumer: d.cfg.Consumer, MinIdle: 0, Start: start, Count: maxEntries}).Result()
		if redis.HasErrorPrefix(err, "NOGROUP") {
			d.regroup(ctx, []string{name})
			return false, 0, nil
		}
		if err != nil {
			return false, 0, fmt.Errorf("claim pending entries: %w", err)
		}
		msgs = append(msgs, batch...)
		if next == "0-0" || next == "" {
			break
		}
		start = next
	}
	if room := maxEntries - len(msgs); room > 0 {
		res, err := d.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: d.cfg.Group, Consumer: d.cfg.Consumer,
			Streams: []string{stream, ">"}, Count: int64(room), Block: -1}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return false, 0, fmt.Errorf("read new entries: %w", err)
		}
		for _, s := range res {
			msgs = append(msgs, s.Messages...)
			again = again || len(s.Messages) == room
		}
	} else {
		again = true
	}

	var entries []breakerbox.Transition
	var handled []string // delivered before, pending again: acknowledge only
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		if rec.Acked != "" && idLessEq(m.ID, rec.Acked) {
			handled = append(handled, m.ID)
			continue
		}
		entries = append(entries, breakerbox.ParseTransition(m.ID, m.Values))
	}
	sort.Slice(entries, func(i, j int) bool {
		return idLessEq(entries[i].ID, entries[j].ID) && entries[i].ID != entries[j].ID
	})
	if len(handled) > 0 {
		if err := d.rdb.XAck(ctx, stream, d.cfg.Group, handled...).Err(); err != nil {
			return false, 0, fmt.Errorf("acknowledge delivered entries: %w", err)
		}
		d.log.Info("acknowledged entries delivered before", "breaker", name, "entries", len(handled))
	}
	if len(entries) == 0 {
		return again, 0, nil
	}

	steps, wake := plan(name, entries, rec, now, d.cfg)
	for _, st := range steps {
		if ctx.Err() != nil {
			return false, 0, errStopping
		}
		if l.lost() {
			return false, 0, errLockLost
		}
		st.alert.Repeat = sendingOverlaps(rec.Sending, st.alert.Transitions)
		retried, err := d.post(ctx, l, name, st)
		if err != nil {
			return false, 0, err
		}
		if retried {
			// The sink kept us waiting: plan the rest again, at the time it
			// is now, so that what went stale meanwhile is summarised.
			return true, 0, nil
		}
	}
	if !wake.IsZero() {
		wakeIn = wake.Sub(now)
	}
	return again, wakeIn, nil
}

// sendingOverlaps reports whether the in-flight mark "FIRST LAST CONSUMER
// MS" of an interrupted attempt covers any of ts: that attempt may have
// reached the sink.
func sendingOverlaps(sending string, ts []breakerbox.Transition) bool {
	f := strings.Fields(sending)
	if len(f) < 2 || len(ts) == 0 {
		return false
	}
	first, last := ts[0].ID, ts[len(ts)-1].ID
	return idLessEq(f[0], last) && idLessEq(first, f[1])
}

// graceContext returns a context that outlives ctx by grace: an alert
// being posted when the daemon is asked to stop may still finish and be
// acknowledged.
func graceContext(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var timer *time.Timer
	var mu sync.Mutex
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		timer = time.AfterFunc(grace, cancel)
		mu.Unlock()
	})
	return gctx, func() {
		stop()
		mu.Lock()
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancel()
	}
}

// post hands one alert to the sink until it is accepted (or refused for
// good), then acknowledges its entries; it reports whether it had to
// retry. While an attempt is in flight the delivery record says so
// ("sending"), so that a daemon taking over after a crash flags the alert
// as a possible repeat.
func (d *Daemon) post(ctx context.Context, l *lock, name string, st step) (retried bool, err error) {
	a := st.alert
	ts := a.Transitions
	dkey := deliveryKey(name, d.cfg.Group)
	mark := fmt.Sprintf("%s %s %s %d", ts[0].ID, ts[len(ts)-1].ID, d.cfg.Consumer, time.Now().UnixMilli())
	gctx, cancel := graceContext(ctx, d.cfg.ShutdownGrace)
	defer cancel()
	log := d.log.With("breaker", name, "kind", a.Kind, "event", a.Last().Event, "entries", len(ts))

	backoff := d.cfg.RetryMin
	delivered := false
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			return false, errStopping
		}
		if err := d.rdb.HSet(ctx, dkey, "sending", mark).Err(); err != nil {
			return false, fmt.Errorf("mark attempt: %w", err)
		}
		retry, err := d.sink.Notify(gctx, a)
		if err == nil {
			delivered = true
			break
		}
		if !retry {
			log.Error("alert refused by the sink for good; acknowledging without posting", "err", err)
			break
		}
		_ = d.rdb.HDel(gctx, dkey, "sending").Err()
		wait := backoff
		var ra *RetryAfterError
		retried = true
		if errors.As(err, &ra) && ra.After > 0 {
			wait = ra.After
		} else {
			backoff = min(2*backoff, d.cfg.RetryMax)
		}
		log.Warn("sink failed; retrying", "attempt", attempt, "wait", wait, "err", err)
		if err := d.cfg.Sleep(ctx, wait); err != nil {
			return false, errStopping
		}
		if l.lost() {
			return false, errLockLost
		}
	}
	if err := d.ack(gctx, l, name, st); err != nil {
		log.Error("alert handled but not acknowledged; it will be handled again", "err", err)
		return false, err
	}
	d.trim(gctx, name)
	if delivered {
		log.Info("alert delivered", "first", ts[0].ID, "last", ts[len(ts)-1].ID)
	}
	return retried, nil
}

// ack acknowledges the step's entries and, while the lock is ours, records
// the delivery (last entry, its generation, the flap window) and clears the
// in-flight mark, all in one MULTI. A failure is retried with backoff until
// ctx ends: the alert is out, losing the acknowledgement means a repeat.
func (d *Daemon) ack(ctx context.Context, l *lock, name string, st step) error {
	ts := st.alert.Transitions
	ids := make([]string, len(ts))
	for i, t := range ts {
		ids[i] = t.ID
	}
	last := ts[len(ts)-1]
	stream, dkey := streamKey(name), deliveryKey(name, d.cfg.Group)
	backoff := d.cfg.RetryMin
	for {
		_, err := l.tx(ctx, func(p redis.Pipeliner, owned bool) {
			p.XAck(ctx, stream, d.cfg.Group, ids...)
			if !owned {
				return // another daemon took over; its record wins
			}
			fields := []any{"acked", last.ID}
			if last.Seq() > 0 {
				fields = append(fields, "acked_gen", strconv.FormatInt(last.Seq(), 10))
			}
			if !st.windowStart.IsZero() {
				fields = append(fields, "window_start", strconv.FormatInt(st.windowStart.UnixMilli(), 10))
			} else {
				p.HDel(ctx, dkey, "window_start")
			}
			p.HSet(ctx, dkey, fields...)
			p.HDel(ctx, dkey, "sending")
		})
		if err == nil {
			return nil
		}
		if errors.Is(err, redis.TxFailedErr) {
			continue // the lock changed under WATCH: decide again
		}
		if ctx.Err() != nil {
			return err
		}
		d.log.Warn("acknowledgement failed; retrying", "breaker", name, "err", err)
		if d.cfg.Sleep(ctx, backoff) != nil {
			return err
		}
		backoff = min(2*backoff, d.cfg.RetryMax)
	}
}

// noStream reports the error of XGROUP CREATE on a key that does not exist.
func noStream(err error) bool {
	return err != nil && strings.Contains(err.Error(), "requires the key to exist")
}

// trim deletes the stream entries that every consumer group of the stream
// has been handed and has acknowledged: XTRIM MINID to the lowest entry any
// group still needs (its oldest pending entry, or the one after the last it
// was handed). The script's MAXLEN 100 still bounds a stream no daemon
// reads; with a daemon running the stream stays nearly empty, and an entry
// is only deleted once no group can need it again, so nothing is lost or
// posted twice. It runs under WATCH of the stream: an XADD, a new group or
// a read meanwhile makes it give up until the next delivery. Failures are
// only logged: trimming saves memory, delivery does not depend on it.
func (d *Daemon) trim(ctx context.Context, name string) {
	stream := streamKey(name)
	err := d.rdb.Watch(ctx, func(tx *redis.Tx) error {
		groups, err := tx.XInfoGroups(ctx, stream).Result()
		if err != nil || len(groups) == 0 {
			return err // no group: keep the last 100 for the first daemon
		}
		minID := ""
		for _, g := range groups {
			need := nextID(g.LastDeliveredID)
			if g.Pending > 0 {
				p, err := tx.XPending(ctx, stream, g.Name).Result()
				if err != nil {
					return err
				}
				need = p.Lower
			}
			if need == "" {
				return nil
			}
			if minID == "" || idLessEq(need, minID) {
				minID = need
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.XTrimMinID(ctx, stream, minID)
			return nil
		})
		return err
	}, stream)
	if err != nil && !errors.Is(err, redis.TxFailedErr) && ctx.Err() == nil {
		d.log.Debug("stream not trimmed", "breaker", name, "err", err)
	}
	// The consumer costs ~300 bytes per stream and is created again by the
	// next entry it is handed: leave the group while holding nothing.
	// Checked and deleted in one script: the blocking reader may hand this
	// consumer a new entry at any moment, and deleting a consumer drops
	// what it holds.
	if err := leaveIfIdle.Run(ctx, d.rdb, []string{stream}, d.cfg.Group, d.cfg.Consumer).Err(); err != nil &&
		!errors.Is(err, redis.Nil) && ctx.Err() == nil {
		d.log.Debug("consumer not removed", "breaker", name, "err", err)
	}
}

// leaveIfIdle deletes consumer ARGV[2] of group ARGV[1] on stream KEYS[1]
// if it holds no pending entry, atomically.
var leaveIfIdle = redis.NewScript(`
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return 0`)

// nextID is the smallest stream ID after id ("ms-seq"): entries below it
// are those up to id.
func nextID(id string) string {
	ms, seq, ok := parseID(id)
	if !ok {
		return ""
	}
	return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq+1, 10)
}
