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
