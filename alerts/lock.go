package alerts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
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

// acquire takes the breaker's delivery lock with a lease of ClaimMinIdle,
// renewed every third of it until release. It returns nil (and no error)
// when another consumer holds the lock.
//
// A lock that holds a token of this very consumer is taken over: the
// daemon delivers a breaker in one goroutine at a time, which releases the
// lock before it is done, so such a lock is one whose release was lost. A failover does that: the
// DEL of the release reached the old master but not the replica promoted
// in its place (or never reached a master that had just died), and the
// lock would otherwise hold the breaker's alerts for the rest of its
// lease (a minute by default). Consumer names differ between daemons
// running at the same time (Config.Consumer), so no other daemon holds it.
func (d *Daemon) acquire(ctx context.Context, name string) (*lock, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	l := &lock{d: d, name: name, key: lockKey(name, d.cfg.Group),
		token:  d.cfg.Consumer + " " + hex.EncodeToString(b[:]),
		lostCh: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	took, err := takeLock.Run(ctx, d.rdb, []string{l.key}, l.token, d.cfg.Consumer+" ",
		d.cfg.ClaimMinIdle.Milliseconds()).Int()
	switch {
	case err != nil:
		return nil, err
	case took == 0:
		return nil, nil
	case took == 2:
		d.log.Info("took over a delivery lock this consumer left behind (its release was lost)", "breaker", name)
	}
	go l.keep()
	return l, nil
}

// takeLock sets lock KEYS[1] to token ARGV[1] with a lease of ARGV[3] ms
// when it is free (reply 1) or holds a token of the same consumer, whose
// tokens start with ARGV[2] ("CONSUMER ", reply 2: see acquire); reply 0
// when another consumer holds it. Consumer names have no spaces, so the
// prefix names one consumer.
var takeLock = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then
  return 1
end
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, #ARGV[2]) == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return 2
end
return 0`)

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
