package alerts

import (
	"context"
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

// deliver posts every alert due for the breaker. It takes the breaker's
// lock (or comes back later when another daemon holds it), so that the
// breaker's transitions are posted by one daemon at a time, in order;
// inside the daemon, the queue hands a breaker to one goroutine at a
// time. A breaker whose alert the sink fails to take, or whose entries
// Redis fails to read or acknowledge, is tried again after its own backoff
// (at most redisRetryCap for Redis): the others are delivered meanwhile.
func (d *Daemon) deliver(ctx context.Context, name string) {
	l, err := d.acquire(ctx, name)
	if err != nil {
		if ctx.Err() == nil {
			d.mem.report("lock", name, err)
			d.log.Warn("cannot take delivery lock", "breaker", name, "err", err)
			d.q.pushAfter(name, d.mem.nextBackoff(name, min(d.cfg.RetryMin, redisRetryCap), redisRetryCap))
		}
		return
	}
	d.mem.report("lock", name, nil) // Redis answered: taking the lock works again
	if l == nil {
		d.log.Debug("another daemon holds the delivery lock", "breaker", name)
		d.q.pushAfter(name, d.lockRetry())
		return
	}
	defer l.release()
	again, wakeIn, err := d.deliverLocked(ctx, l, name)
	var se *sinkRetryError
	var oe *opError
	switch {
	case errors.Is(err, errStopping) || ctx.Err() != nil:
		return
	case errors.As(err, &se):
		wait := se.wait
		if wait <= 0 {
			wait = d.mem.nextBackoff(name, d.cfg.RetryMin, d.cfg.RetryMax)
		}
		d.log.Warn("sink failed; retrying this breaker later, the others meanwhile", "breaker", name, "wait", wait, "err", se.err)
		go func() {
			if d.cfg.Sleep(ctx, wait) == nil {
				d.q.push(name)
			}
		}()
		return
	case errors.As(err, &oe):
		d.mem.report(oe.op, name, oe.err)
		fallthrough
	case err != nil:
		wait := d.mem.nextBackoff(name, min(d.cfg.RetryMin, redisRetryCap), redisRetryCap)
		d.log.Warn("delivery failed; will retry", "breaker", name, "wait", wait, "err", err)
		d.q.pushAfter(name, wait)
		return
	}
	d.mem.resetBackoff(name)
	d.mem.clearBreaker(name)
	if again {
		d.q.push(name)
	}
	if wakeIn > 0 {
		d.q.pushAfter(name, wakeIn+10*time.Millisecond)
	}
}

// sinkRetryError is a sink failure worth retrying, after wait (0: the
// breaker's backoff).
type sinkRetryError struct {
	err  error
	wait time.Duration
}

func (e *sinkRetryError) Error() string { return e.err.Error() }
func (e *sinkRetryError) Unwrap() error { return e.err }

// opError is a Redis operation of delivery that failed: op names it for
// Health ("deliver", "acknowledge").
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string { return e.op + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

// deliverLocked reads every unhandled entry of the breaker, plans the
// alerts and posts them. The entries are all the group's pending entries
// of the stream, whichever consumer holds them (taken over with XAUTOCLAIM
// at min-idle 0: under the lock no one else is posting them), then the
// entries never delivered to the group. It reports whether more entries
// may be waiting, and how soon a deferred flap fold is due (measured on
// Redis's clock, so that a skewed local clock cannot make it spin).
func (d *Daemon) deliverLocked(ctx context.Context, l *lock, name string) (again bool, wakeIn time.Duration, err error) {
	stream, dkey := streamKey(name), deliveryKey(name, d.cfg.Group)
	now, err := d.timeOf(ctx, stream)
	if err != nil {
		return false, 0, &opError{"deliver", fmt.Errorf("redis time: %w", err)}
	}
	h, err := d.rdb.HGetAll(ctx, dkey).Result()
	if err != nil {
		return false, 0, &opError{"deliver", fmt.Errorf("read delivery record: %w", err)}
	}
	rec := parseRecord(h)

	// Everything pending, whichever consumer holds it, up to maxEntries.
	claim := func(limit int) ([]redis.XMessage, error) {
		var out []redis.XMessage
		for start := "0-0"; len(out) < limit; {
			batch, next, err := d.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: stream, Group: d.cfg.Group,
				Consumer: d.cfg.Consumer, MinIdle: 0, Start: start, Count: int64(limit)}).Result()
			if err != nil {
				return out, err
			}
			out = append(out, batch...)
			if next == "0-0" || next == "" {
				break
			}
			start = next
		}
		return out, nil
	}
	msgs, err := claim(maxEntries)
	if redis.HasErrorPrefix(err, "NOGROUP") {
		if !d.regroup(ctx, []string{name}) {
			d.maintainSoon() // discovery sets the group up again
		}
		return false, 0, nil
	}
	if err != nil {
		return false, 0, &opError{"deliver", fmt.Errorf("claim pending entries: %w", err)}
	}
	if room := maxEntries - len(msgs); room > 0 {
		res, err := d.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: d.cfg.Group, Consumer: d.cfg.Consumer,
			Streams: []string{stream, ">"}, Count: int64(room), Block: -1}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return false, 0, &opError{"deliver", fmt.Errorf("read new entries: %w", err)}
		}
		read := 0
		for _, s := range res {
			msgs = append(msgs, s.Messages...)
			read += len(s.Messages)
			again = again || len(s.Messages) == room
		}
		if read > 0 {
			// Another daemon's reader (or sweep) may have taken an entry
			// between the claim and this read: it is below the entries
			// just read, and the acknowledgement's watermark would skip
			// it. Claim once more: it is pending by now.
			more, err := claim(2 * maxEntries)
			if err != nil {
				return false, 0, &opError{"deliver", fmt.Errorf("claim pending entries: %w", err)}
			}
			msgs = append(msgs, more...)
		}
	} else {
		again = true
	}

	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.ID] = true
	}
	// An alert this daemon posted but could not acknowledge: acknowledge
	// it now, without posting it again, if its entries are still pending.
	if u := d.mem.getUnacked(name); u != nil {
		d.mem.setUnacked(name, nil)
		if allSeen(seen, u.alert.Transitions) {
			if err := d.ack(ctx, l, name, *u); err != nil {
				d.mem.setUnacked(name, u)
				return false, 0, &opError{"acknowledge", err}
			}
			d.log.Info("acknowledged an alert posted before", "breaker", name, "entries", len(u.alert.Transitions))
			return true, 0, nil // read the record again
		}
	}

	var entries []breakerbox.Transition
	var handled []string // delivered before, pending again: acknowledge only
	done := map[string]bool{}
	for _, m := range msgs {
		if done[m.ID] {
			continue
		}
		done[m.ID] = true
		t := breakerbox.ParseTransition(m.ID, m.Values)
		// Up to the record's watermark, or posted by this very daemon (a
		// failover can lose the acknowledgement and the record with it).
		if rec.Acked != "" && idLessEq(m.ID, rec.Acked) || d.mem.wasPosted(name, t) {
			handled = append(handled, m.ID)
			continue
		}
		entries = append(entries, t)
	}
	sort.Slice(entries, func(i, j int) bool {
		return idLessEq(entries[i].ID, entries[j].ID) && entries[i].ID != entries[j].ID
	})
	if len(handled) > 0 {
		if err := d.rdb.XAck(ctx, stream, d.cfg.Group, handled...).Err(); err != nil {
			return false, 0, &opError{"acknowledge", fmt.Errorf("acknowledge delivered entries: %w", err)}
		}
		d.log.Info("acknowledged entries delivered before", "breaker", name, "entries", len(handled))
	}
	if len(entries) == 0 {
		return again, 0, nil
	}

	rec.remade = d.remade(name, rec, entries)
	steps, wake := plan(name, entries, rec, now, d.cfg)
	for _, st := range steps {
		if ctx.Err() != nil {
			return false, 0, errStopping
		}
		if l.lost() {
			return false, 0, errLockLost
		}
		st.alert.Repeat = sendingOverlaps(rec.Sending, st.alert.Transitions) ||
			sendingOverlaps(d.mem.getMaybe(name), st.alert.Transitions)
		if err := d.post(ctx, l, name, st); err != nil {
			return false, 0, err
		}
	}
	if !wake.IsZero() {
		wakeIn = wake.Sub(now)
	}
	return again, wakeIn, nil
}

// timeOf returns the clock of the server holding key. A plain TIME has no
// key, and a cluster client sends it to a random node: while a master is
// down (and until go-redis drops it from its node list), that may be the
// dead one, and the breaker's delivery would wait out the dial retries
// and fail although its own node answers.
func (d *Daemon) timeOf(ctx context.Context, key string) (time.Time, error) {
	v, err := nodeTime.Run(ctx, d.rdb, []string{key}).Slice()
	if err != nil {
		return time.Time{}, err
	}
	if len(v) != 2 {
		return time.Time{}, fmt.Errorf("TIME replied %v", v)
	}
	var parts [2]int64
	for i, x := range v {
		str, ok := x.(string)
		if !ok {
			return time.Time{}, fmt.Errorf("TIME replied %v", v)
		}
		if parts[i], err = strconv.ParseInt(str, 10, 64); err != nil {
			return time.Time{}, fmt.Errorf("TIME replied %v: %w", v, err)
		}
	}
	return time.Unix(parts[0], parts[1]*1000), nil
}

// nodeTime returns TIME of the server holding KEYS[1] (see timeOf).
var nodeTime = redis.NewScript(`return redis.call('TIME')`)

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

// post hands one alert to the sink and, once the sink took it (or refused
// it for good), acknowledges its entries. While the attempt is in flight
// the delivery record says so ("sending"). The mark stays after an attempt
// whose outcome is unknown (the daemon died, the request timed out or was
// cut: the alert may have been posted), so that whoever posts it next,
// this daemon or another, flags it as a possible repeat; it is cleared
// only when the sink answered that it did not post (ErrNotDelivered, a
// *RetryAfterError) or when the entries are acknowledged. A retryable
// failure returns a *sinkRetryError: the caller tries the breaker again
// after its backoff, and delivers the other breakers meanwhile.
func (d *Daemon) post(ctx context.Context, l *lock, name string, st step) error {
	a := st.alert
	ts := a.Transitions
	dkey := deliveryKey(name, d.cfg.Group)
	mark := fmt.Sprintf("%s %s %s %d", ts[0].ID, ts[len(ts)-1].ID, d.cfg.Consumer, time.Now().UnixMilli())
	gctx, cancel := graceContext(ctx, d.cfg.ShutdownGrace)
	defer cancel()
	log := d.log.With("breaker", name, "kind", a.Kind, "event", a.Last().Event, "entries", len(ts))

	if err := d.rdb.HSet(ctx, dkey, "sending", mark).Err(); err != nil {
		return &opError{"deliver", fmt.Errorf("mark attempt: %w", err)}
	}
	d.notifyMu.Lock()
	retry, err := d.sink.Notify(gctx, a)
	d.notifyMu.Unlock()
	posted := err == nil
	switch {
	case err == nil:
	case !retry:
		log.Error("alert refused by the sink for good; acknowledging without posting", "err", err)
	default:
		var ra *RetryAfterError
		wait := time.Duration(0)
		if errors.As(err, &ra) && ra.After > 0 {
			wait = ra.After
		}
		if ra != nil || errors.Is(err, ErrNotDelivered) {
			_ = d.rdb.HDel(gctx, dkey, "sending").Err()
		} else {
			d.mem.setMaybe(name, mark)
		}
		if ctx.Err() != nil {
			return errStopping
		}
		return &sinkRetryError{err: err, wait: wait}
	}
	d.mem.delivered(name, a, posted)
	if err := d.ack(gctx, l, name, st); err != nil {
		d.mem.setUnacked(name, &st)
		log.Error("alert handled but not acknowledged; it will be acknowledged later, not posted again", "err", err)
		return &opError{"acknowledge", err}
	}
	d.mem.clearMaybe(name, ts)
	d.trim(gctx, name)
	if posted {
		log.Info("alert delivered", "first", ts[0].ID, "last", ts[len(ts)-1].ID)
	}
	return nil
}

// ackAttempts bounds the attempts of one acknowledgement before the
// breaker is set aside (and the others delivered) until its next round;
// ackRetryWait is the wait between them (a stale pooled connection after a
// restart fails once; a failover takes seconds and is not waited out here).
const (
	ackAttempts  = 3
	ackRetryWait = 100 * time.Millisecond
)

// ack acknowledges the step's entries and, while the lock is ours, records
// the delivery (last entry, its generation, the flap window) and clears the
// in-flight mark, all in one MULTI. A failure is retried twice, shortly;
// then ack gives up, and the caller remembers the alert as
// posted, to acknowledge it in a later round without posting it again.
func (d *Daemon) ack(ctx context.Context, l *lock, name string, st step) error {
	ts := st.alert.Transitions
	ids := make([]string, len(ts))
	for i, t := range ts {
		ids[i] = t.ID
	}
	last := ts[len(ts)-1]
	stream, dkey := streamKey(name), deliveryKey(name, d.cfg.Group)
	for attempt := 1; ; attempt++ {
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
		if ctx.Err() != nil || attempt >= ackAttempts {
			return err
		}
		if errors.Is(err, redis.TxFailedErr) {
			continue // the lock changed under WATCH: decide again
		}
		d.log.Warn("acknowledgement failed; retrying", "breaker", name, "attempt", attempt, "err", err)
		if d.cfg.Sleep(ctx, min(d.cfg.RetryMin, ackRetryWait)) != nil {
			return err
		}
	}
}

// allSeen reports whether every transition's entry is among seen.
func allSeen(seen map[string]bool, ts []breakerbox.Transition) bool {
	for _, t := range ts {
		if !seen[t.ID] {
			return false
		}
	}
	return len(ts) > 0
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
