package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func miniClient(t *testing.T) (*miniredis.Miniredis, *redis.Client, *Counter) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	c := &Counter{}
	rdb.AddHook(c)
	return mr, rdb, c
}

func TestGoRedisStoreLockIsExclusiveAndUnlockChecksTheToken(t *testing.T) {
	mr, rdb, _ := miniClient(t)
	s1, err := NewGoRedisStore(rdb, time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := NewGoRedisStore(rdb, time.Second, 0)
	if err := s1.Lock("m"); err != nil {
		t.Fatal(err)
	}
	if err := s2.Lock("m"); !errors.Is(err, ErrLockBusy) {
		t.Fatalf("second holder: %v, want ErrLockBusy", err)
	}
	if ttl := mr.TTL("m"); ttl <= 0 || ttl > time.Second {
		t.Errorf("lock TTL %v, want (0, 1s]", ttl)
	}
	if err := s2.Unlock("m"); !errors.Is(err, ErrLockLost) {
		t.Errorf("unlock by a store that does not hold it: %v", err)
	}
	if !mr.Exists("m") {
		t.Fatal("a store that did not hold the lock released it")
	}
	if err := s1.Unlock("m"); err != nil {
		t.Fatal(err)
	}
	if err := s2.Lock("m"); err != nil {
		t.Fatalf("lock after release: %v", err)
	}
}

func TestGoRedisStoreDoesNotReleaseALockTakenAfterItsOwnExpired(t *testing.T) {
	mr, rdb, _ := miniClient(t)
	s1, _ := NewGoRedisStore(rdb, 100*time.Millisecond, 0)
	s2, _ := NewGoRedisStore(rdb, time.Second, 0)
	if err := s1.Lock("m"); err != nil {
		t.Fatal(err)
	}
	mr.FastForward(200 * time.Millisecond)
	if err := s2.Lock("m"); err != nil {
		t.Fatal(err)
	}
	if err := s1.Unlock("m"); !errors.Is(err, ErrLockLost) {
		t.Errorf("unlock of an expired lock: %v, want ErrLockLost", err)
	}
	if !mr.Exists("m") {
		t.Error("the late unlock deleted the new holder's lock")
	}
}

func TestGoRedisStoreLockWaitsForARelease(t *testing.T) {
	_, rdb, _ := miniClient(t)
	holder, _ := NewGoRedisStore(rdb, time.Second, 0)
	waiter, _ := NewGoRedisStore(rdb, time.Second, 5*time.Second)
	if err := holder.Lock("m"); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- waiter.Lock("m") }()
	select {
	case err := <-got:
		t.Fatalf("Lock returned %v while the lock was held", err)
	case <-time.After(20 * time.Millisecond): // only to let the waiter retry; the assertion is on the order
	}
	if err := holder.Unlock("m"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiting Lock: %v", err)
	}
}

func TestGoRedisStoreData(t *testing.T) {
	_, rdb, c := miniClient(t)
	s, _ := NewGoRedisStore(rdb, time.Second, 0)
	if b, err := s.GetData("k"); err != nil || b != nil {
		t.Fatalf("missing key: %q, %v; want nil, nil", b, err)
	}
	if err := s.SetData("k", []byte(`{"state":0}`)); err != nil {
		t.Fatal(err)
	}
	if b, err := s.GetData("k"); err != nil || string(b) != `{"state":0}` {
		t.Fatalf("GetData = %q, %v", b, err)
	}
	if got := c.Read(); got.CallerRoundTrips != 3 || got.RoundTrips != 3 {
		t.Errorf("store calls counted %+v; every store call is on the caller's path", got)
	}
	if _, err := NewGoRedisStore(nil, time.Second, 0); err == nil {
		t.Error("nil client accepted")
	}
	if _, err := NewGoRedisStore(rdb, 0, 0); err == nil {
		t.Error("zero ttl accepted")
	}
}

func TestCounterSeparatesCallerPathFromBackgroundAndCountsPipelinesOnce(t *testing.T) {
	_, rdb, c := miniClient(t)
	ctx := context.Background()
	if err := rdb.Ping(OnCallerPath(ctx)).Err(); err != nil {
		t.Fatal(err)
	}
	derived, cancel := context.WithTimeout(OnCallerPath(ctx), time.Second)
	defer cancel()
	rdb.Set(derived, "a", 1, 0)
	rdb.Get(ctx, "a") // background
	pipe := rdb.Pipeline()
	pipe.Get(ctx, "a")
	pipe.Get(ctx, "a")
	pipe.Get(ctx, "a")
	if _, err := pipe.Exec(OnCallerPath(ctx)); err != nil {
		t.Fatal(err)
	}
	got := c.Read()
	if got.Dials < 1 {
		t.Errorf("no dial counted: %+v", got)
	}
	got.Dials = 0 // go-redis may open a second connection for the pipeline
	if want := (Counts{RoundTrips: 4, Commands: 6, CallerRoundTrips: 3}); got != want {
		t.Errorf("counts %+v, want %+v (connection set-up left out)", got, want)
	}
	if d := (Counts{4, 6, 3, 1}).Sub(Counts{1, 2, 3, 1}); d != (Counts{3, 4, 0, 0}) {
		t.Errorf("Sub = %+v", d)
	}
}
