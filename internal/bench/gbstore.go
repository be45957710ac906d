package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// ErrLockBusy is returned by GoRedisStore.Lock when another holder kept
// the lock for the whole wait.
var ErrLockBusy = errors.New("gobreaker lock busy")

// ErrLockLost is returned by GoRedisStore.Unlock when the lock expired or
// was taken by someone else before it was released.
var ErrLockLost = errors.New("gobreaker lock lost")

// unlockScript deletes the lock only if it still holds our token.
var unlockScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// GoRedisStore is a gobreaker.SharedDataStore on go-redis: Lock is
// SET key token NX PX ttl with a random token, retried with a short
// backoff for up to wait (gobreaker itself sleeps 500ms after a failed
// Lock, which would only make the comparison worse); Unlock deletes the
// key only if it still holds the token (one script call); GetData and
// SetData are GET and SET.
//
// gobreaker's interface passes no token, so the store remembers the token
// of the lock it holds per key. That is sound as long as the lock does not
// expire while held (ttl is gobreaker's own 5s mutex timeout; a benchmark
// call holds it for three round trips): only the holder calls Unlock, and
// it forgets the token before releasing, so the next holder's token is
// never overwritten.
type GoRedisStore struct {
	rdb  *redis.Client
	ttl  time.Duration
	wait time.Duration

	mu     sync.Mutex
	tokens map[string]string
}

var _ gobreaker.SharedDataStore = (*GoRedisStore)(nil)

// NewGoRedisStore returns a store on rdb; ttl bounds how long a lock is
// held if its holder dies, wait how long Lock retries a busy lock.
func NewGoRedisStore(rdb *redis.Client, ttl, wait time.Duration) (*GoRedisStore, error) {
	if rdb == nil || ttl < time.Millisecond || wait < 0 {
		return nil, fmt.Errorf("gobreaker store: need a client, ttl >= 1ms and wait >= 0 (got ttl %s, wait %s)", ttl, wait)
	}
	return &GoRedisStore{rdb: rdb, ttl: ttl, wait: wait, tokens: map[string]string{}}, nil
}

// ctx: gobreaker's interface has no context; every store call is on the
// caller's path.
func (s *GoRedisStore) ctx() context.Context { return OnCallerPath(context.Background()) }

// Lock takes the lock named name.
func (s *GoRedisStore) Lock(name string) error {
	var buf [16]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return fmt.Errorf("gobreaker lock %s: token: %w", name, err)
	}
	token := hex.EncodeToString(buf[:])
	deadline := time.Now().Add(s.wait)
	backoff := 20 * time.Microsecond
	for {
		ok, err := s.rdb.SetNX(s.ctx(), name, token, s.ttl).Result()
		if err != nil {
			return fmt.Errorf("gobreaker lock %s: %w", name, err)
		}
		if ok {
			s.mu.Lock()
			s.tokens[name] = token
			s.mu.Unlock()
			return nil
		}
		if time.Now().Add(backoff).After(deadline) {
			return fmt.Errorf("gobreaker lock %s: %w", name, ErrLockBusy)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Millisecond)
	}
}

// Unlock releases the lock named name if this store still holds it.
func (s *GoRedisStore) Unlock(name string) error {
	s.mu.Lock()
	token, ok := s.tokens[name]
	delete(s.tokens, name)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("gobreaker unlock %s: not locked by this store: %w", name, ErrLockLost)
	}
	n, err := unlockScript.Run(s.ctx(), s.rdb, []string{name}, token).Int()
	if err != nil {
		return fmt.Errorf("gobreaker unlock %s: %w", name, err)
	}
	if n != 1 {
		return fmt.Errorf("gobreaker unlock %s: %w", name, ErrLockLost)
	}
	return nil
}

// GetData returns the value stored under name, or nil when there is none.
func (s *GoRedisStore) GetData(name string) ([]byte, error) {
	b, err := s.rdb.Get(s.ctx(), name).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gobreaker get %s: %w", name, err)
	}
	return b, nil
}

// SetData stores data under name.
func (s *GoRedisStore) SetData(name string, data []byte) error {
	if err := s.rdb.Set(s.ctx(), name, data, 0).Err(); err != nil {
		return fmt.Errorf("gobreaker set %s: %w", name, err)
	}
	return nil
}
