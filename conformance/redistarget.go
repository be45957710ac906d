package conformance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

// MiniredisEngine runs every target on its own miniredis server, whose
// clock the runner sets with SetTime.
func MiniredisEngine() Engine {
	return Engine{Name: "miniredis", Parallel: true, Open: func(_ context.Context, name string) (Target, error) {
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			return nil, fmt.Errorf("start miniredis: %w", err)
		}
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
		return &redisTarget{name: name, rdb: rdb, mr: mr, ownClient: true}, nil
	}}
}

// RedisEngine runs targets on a real server or cluster through rdb (a
// *redis.Client or *redis.ClusterClient). Its clock cannot be moved: timed
// vectors are stretched (see the package documentation). rdb stays open
// when targets close.
func RedisEngine(name string, rdb redis.UniversalClient) Engine {
	return Engine{Name: name, Parallel: true, Open: func(_ context.Context, breaker string) (Target, error) {
		return NewRedisTarget(rdb, breaker), nil
	}}
}

// NewRedisTarget returns breaker name on the server or cluster behind rdb.
func NewRedisTarget(rdb redis.UniversalClient, name string) Target {
	return &redisTarget{name: name, rdb: rdb}
}

type redisTarget struct {
	name      string
	rdb       redis.UniversalClient
	mr        *miniredis.Miniredis // set when the clock can be moved
	ownClient bool
	ps        *redis.PubSub
	pings     atomic.Int64
}

func (t *redisTarget) Name() string { return t.name }

// replyErr turns error replies into *ReplyError and keeps other errors.
func replyErr(err error) error {
	var rerr redis.Error
	if errors.As(err, &rerr) && !errors.Is(err, redis.Nil) {
		return &ReplyError{Text: rerr.Error()}
	}
	return err
}

func (t *redisTarget) Eval(ctx context.Context, script *breakerbox.Script, keys []string, args ...string) (any, error) {
	a := make([]any, len(args))
	for i, s := range args {
		a[i] = s
	}
	res, err := script.Run(ctx, t.rdb, keys, a...).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return res, replyErr(err)
}

func (t *redisTarget) Do(ctx context.Context, args ...string) (any, error) {
	a := make([]any, len(args))
	for i, s := range args {
		a[i] = s
	}
	res, err := t.rdb.Do(ctx, a...).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return res, replyErr(err)
}

func (t *redisTarget) Type(ctx context.Context, key string) (string, error) {
	return t.rdb.Type(ctx, key).Result()
}

func (t *redisTarget) Get(ctx context.Context, key string) (string, bool, error) {
	v, err := t.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, replyErr(err)
	}
	return v, true, nil
}

func (t *redisTarget) HGetAll(ctx context.Context, key string) (map[string]string, error) {
	h, err := t.rdb.HGetAll(ctx, key).Result()
	return h, replyErr(err)
}

func (t *redisTarget) LRange(ctx context.Context, key string) ([]string, error) {
	l, err := t.rdb.LRange(ctx, key, 0, -1).Result()
	return l, replyErr(err)
}

func (t *redisTarget) XRange(ctx context.Context, key string) ([]StreamEntry, error) {
	xs, err := t.rdb.XRange(ctx, key, "-", "+").Result()
	if err != nil {
		return nil, replyErr(err)
	}
	out := make([]StreamEntry, len(xs))
	for i, x := range xs {
		fields := map[string]string{}
		for f, v := range x.Values {
			fields[f] = fmt.Sprint(v)
		}
		out[i] = StreamEntry{ID: x.ID, Fields: fields}
	}
	return out, nil
}

func (t *redisTarget) ZRange(ctx context.Context, key string) ([]ZMember, error) {
	zs, err := t.rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
	if err != nil {
		return nil, replyErr(err)
	}
	out := make([]ZMember, len(zs))
	for i, z := range zs {
		m, ok := z.Member.(string)
		if !ok {
			return nil, fmt.Errorf("ZRANGE member %T, want a string", z.Member)
		}
		out[i] = ZMember{Member: m, Score: z.Score}
	}
	return out, nil
}

// Published subscribes on its first call; later calls send a PING on the
// subscription and collect every message that arrives before the PONG. A
// message PUBLISHed by a script that finished before the PING is queued on
// the connection ahead of the PONG, so nothing announced so far is missed.
// (On a cluster the subscription goes to the master of the channel's slot,
// the one where the script runs.)
func (t *redisTarget) Published(ctx context.Context) ([]string, error) {
	channel := breakerbox.Channel(t.name)
	if t.ps == nil {
		ps := t.rdb.Subscribe(ctx, channel)
		if _, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
			_ = ps.Close()
			return nil, fmt.Errorf("subscribe %s: %w", channel, err)
		}
		t.ps = ps
		return nil, nil
	}
	token := "barrier-" + strconv.FormatInt(t.pings.Add(1), 10)
	if err := t.ps.Ping(ctx, token); err != nil {
		return nil, fmt.Errorf("ping the subscription: %w", err)
	}
	var out []string
	for {
		msg, err := t.ps.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			return out, fmt.Errorf("read the subscription: %w", err)
		}
		switch m := msg.(type) {
		case *redis.Message:
			if m.Channel == channel {
				out = append(out, m.Payload)
			}
		case *redis.Pong:
			if m.Payload == token {
				if t.mr != nil {
					return t.lateMessages(ctx, channel, out)
				}
				return out, nil
			}
		}
	}
}

// lateMessages collects messages that miniredis delivers after the PONG:
// it writes pub/sub messages from another goroutine, so a PONG can
// overtake a message published before it. It reads until 50ms pass quietly.
func (t *redisTarget) lateMessages(ctx context.Context, channel string, out []string) ([]string, error) {
	for {
		msg, err := t.ps.ReceiveTimeout(ctx, 50*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return out, nil
			}
			return out, fmt.Errorf("read the subscription: %w", err)
		}
		if m, ok := msg.(*redis.Message); ok && m.Channel == channel {
			out = append(out, m.Payload)
		}
	}
}

// Now reads TIME (miniredis answers it from the clock set by SetTime).
func (t *redisTarget) Now(ctx context.Context) (int64, error) {
	now, err := t.rdb.Time(ctx).Result()
	if err != nil {
		return 0, err
	}
	return now.UnixMilli(), nil
}

func (t *redisTarget) SetNow(ms int64) bool {
	if t.mr == nil {
		return false
	}
	t.mr.SetTime(time.UnixMilli(ms))
	return true
}

func (t *redisTarget) Close() error {
	var err error
	if t.ps != nil {
		err = t.ps.Close()
	}
	if t.ownClient {
		err = errors.Join(err, t.rdb.Close())
	}
	if t.mr != nil {
		t.mr.Close()
	}
	return err
}
