package client

import (
	"context"
	"fmt"
	"time"

	"github.com/breakerbox/breakerbox"
)

// start registers the config and, for AdmitFast, starts the subscription,
// once; it is called on the first operation.
func (b *Breaker) start(ctx context.Context) error {
	if b.ready.Load() && !b.shutdown.Load() {
		return nil
	}
	b.mu.Lock()
	if b.shutdown.Load() {
		b.mu.Unlock()
		return fmt.Errorf("breaker %q: %w", b.name, ErrShutdown)
	}
	if !b.started {
		b.started = true
		b.wg.Add(1)
		go b.keepConfig()
		if b.o.admission == AdmitFast {
			b.wg.Add(1)
			go b.subscribe()
		}
	}
	b.mu.Unlock()
	if b.outage.active() {
		return nil
	}
	b.regMu.Lock()
	defer b.regMu.Unlock()
	if b.registered {
		b.ready.Store(true)
		return nil
	}
	cfg := b.Config()
	res, err := b.eval(ctx, configureArgs(b.o.actor, cfg)...)
	if err != nil {
		return b.redisFailed(ctx, "register", err)
	}
	r, err := breakerbox.ParseConfigureReply(res)
	if err != nil {
		return fmt.Errorf("breaker %q: register: %w", b.name, err)
	}
	if r.Overwritten > 0 {
		b.log.Warn("circuit breaker overwrote the shared config", "config", cfg.Fields())
	}
	// The registry only helps listing (SCAN finds every breaker anyway).
	if err := b.rdb.SAdd(ctx, breakerbox.RegistryKey, b.name).Err(); err != nil {
		b.log.Debug("circuit breaker registry not updated", "err", err)
	}
	b.registered = true
	b.ready.Store(true)
	b.log.Info("circuit breaker initialised", "failure_threshold", cfg.FailureThreshold,
		"recovery_timeout", cfg.RecoveryTimeout, "success_threshold", cfg.SuccessThreshold,
		"admission", b.o.admission, "outage_policy", b.o.outage)
	return nil
}

// forgetRegistration makes the next call store the config again: after an
// outage or a reconnection, Redis may have restarted without it.
func (b *Breaker) forgetRegistration() {
	b.regMu.Lock()
	b.registered = false
	b.ready.Store(false)
	b.regMu.Unlock()
}

// configCheckEvery is how often a worker checks that its breaker's config
// is still stored.
const configCheckEvery = 2 * time.Second

// keepConfig stores the config again when Redis has lost it (a restart
// without persistence, or an operator's DEL), so the breaker does not fall
// back to the protocol defaults. One HLEN per period; a config changed by
// an operator (all fields present) is left alone.
func (b *Breaker) keepConfig() {
	defer b.wg.Done()
	t := time.NewTicker(configCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		if b.outage.active() {
			continue
		}
		ctx, cancel := context.WithTimeout(b.ctx, b.o.redisTimeout)
		n, err := b.rdb.HLen(ctx, breakerbox.Key(b.name, "config")).Result()
		if err == nil && n < int64(len(b.Config().Fields())/2) { // Fields leaves trip rules at their defaults out
			b.log.Info("circuit breaker config missing from redis; storing it again")
			b.forgetRegistration()
			_ = b.start(ctx)
		}
		cancel()
	}
}

// redisFailed handles a failed Redis call: the caller's own cancellation is
// returned as is; anything else starts (or continues) an outage and is
// returned as nil, so the caller follows the outage policy.
func (b *Breaker) redisFailed(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("breaker %q: %s: %w", b.name, op, ctx.Err())
	}
	b.outage.begin(b, err)
	return nil
}
