package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

var (
	// ErrOpen is matched (errors.Is) by every refusal: the breaker is open,
	// its half-open probes are all taken, or an operator forced it open.
	ErrOpen = errors.New("circuit breaker is open")
	// ErrRedisUnavailable is matched, together with ErrOpen, by a refusal
	// of the FailClosed outage policy.
	ErrRedisUnavailable = errors.New("redis unavailable")
	// ErrPermitUsed is returned by a permit's second outcome.
	ErrPermitUsed = errors.New("permit already used")
	// ErrClosed is returned by a Breaker after Close.
	ErrClosed = errors.New("breaker closed")
)

// OpenError is the error of a refused call. It matches ErrOpen.
type OpenError struct {
	Name       string
	State      State
	Mode       Mode
	RetryAfter time.Duration // -1 while forced open; 0 when unknown
	Cause      error         // under the FailClosed policy: ErrRedisUnavailable joined with Redis's error; else nil
}

func (e *OpenError) Error() string {
	msg := fmt.Sprintf("breaker %q: %v (state %s, mode %s", e.Name, ErrOpen, e.State, e.Mode)
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(", retry in %s", e.RetryAfter)
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg + ")"
}

// Unwrap makes errors.Is match ErrOpen and the cause.
func (e *OpenError) Unwrap() []error { return []error{ErrOpen, e.Cause} }

// Breaker is one worker's handle on a breaker shared through Redis. Every
// transition is decided by lua/breaker-8.lua; the handle only admits calls
// from the script's last answer (Fast admission) and reports outcomes.
// A Breaker is safe for concurrent use. Call Close when done with it.
type Breaker struct {
	rdb  redis.UniversalClient
	name string
	cfg  atomic.Pointer[Config] // replaced by SetConfig
	keys []string
	o    options
	log  *slog.Logger

	view      atomic.Pointer[view]
	live      atomic.Bool  // subscription confirmed (Fast admission)
	lastHeard atomic.Int64 // unix nanos of the last message or pong

	regMu      sync.Mutex
	registered bool
	ready      atomic.Bool // started and registered: the per-call check takes no lock

	mu      sync.Mutex
	started bool
	closed  atomic.Bool     // written under mu, read without it on the fast path
	ctx     context.Context // cancelled by Close; ends background work
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	batch  *batcher
	outage outage
}

// view is the worker's copy of what the script last said.
type view struct {
	state State
	gen   int64
	mode  Mode
	until time.Time // while the breaker refuses, the local time before which asking again is pointless
}

// freshFor is how long the view is trusted after the last sign of life of
// the subscription; it pings once a second while idle.
const freshFor = 3 * time.Second

// New returns a handle on the breaker called name, shared by every worker
// that uses the same Redis. It validates name and cfg and makes no Redis
// call: the config is registered (stored in Redis, overwriting a different
// one, with a log line) on first use.
func New(rdb redis.UniversalClient, name string, cfg Config, opts ...Option) (*Breaker, error) {
	if err := breakerbox.ValidateName(name); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("breaker %q: %w", name, err)
	}
	if rdb == nil {
		return nil, fmt.Errorf("breaker %q: nil redis client", name)
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.redisTimeout <= 0 {
		return nil, fmt.Errorf("breaker %q: redis timeout %s, want > 0", name, o.redisTimeout)
	}
	if o.outage < LocalBreaker || o.outage > FailClosed || o.admission < Fast || o.admission > Strict {
		return nil, fmt.Errorf("breaker %q: unknown outage policy %d or admission %d", name, o.outage, o.admission)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Breaker{rdb: rdb, name: name, keys: breakerbox.Keys(name), o: o,
		log: o.logger.With("breaker", name), ctx: ctx, cancel: cancel}
	b.cfg.Store(&cfg)
	b.batch = newBatcher(b)
	return b, nil
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.name }

// Config returns the config this handle registers.
func (b *Breaker) Config() Config { return *b.cfg.Load() }

// Close flushes outcomes not yet sent (bounded by ctx) and stops the
// handle's background work. Calls after Close return ErrClosed.
func (b *Breaker) Close(ctx context.Context) error {
	err := b.batch.flush(ctx)
	b.mu.Lock() // start checks closed and adds to wg under mu
	b.closed.Store(true)
	b.mu.Unlock()
	b.cancel()
	b.batch.close()
	b.wg.Wait()
	return err
}

// Flush waits until every outcome reported so far has been sent to Redis
// (or given up on: see Stats).
func (b *Breaker) Flush(ctx context.Context) error { return b.batch.flush(ctx) }

// Stats are counts kept by this handle, in this process only.
type Stats struct {
	// Unrecorded counts outcomes that could not be sent to Redis because
	// it was unreachable; they are not retried, since a lost reply cannot
	// tell whether the script ran.
	Unrecorded int64
	// Outage is true while Redis is considered unreachable.
	Outage bool
}

// Stats returns this handle's local counts.
func (b *Breaker) Stats() Stats {
	return Stats{Unrecorded: b.batch.unrecorded.Load(), Outage: b.outage.active()}
}

// start registers the config and, for Fast admission, starts the
// subscription, once; it is called on the first operation.
func (b *Breaker) start(ctx context.Context) error {
	if b.ready.Load() && !b.closed.Load() {
		return nil
	}
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return fmt.Errorf("breaker %q: %w", b.name, ErrClosed)
	}
	if !b.started {
		b.started = true
		b.wg.Add(1)
		go b.keepConfig()
		if b.o.admission == Fast {
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
	arr, err := b.eval(ctx, append([]any{"configure", b.o.actor}, cfg.fields()...)...)
	if err == nil && len(arr) != 2 {
		err = fmt.Errorf("configure reply has %d elements, want 2", len(arr))
	}
	if err != nil {
		return b.redisFailed(ctx, "register", err)
	}
	if overwritten, _ := asInt(arr[1]); overwritten > 0 {
		b.log.Warn("circuit breaker overwrote the shared config", "config", cfg.fields())
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
		if err == nil && n < int64(len(b.Config().fields())/2) {
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

// fresh reports whether the view may be used without asking the script.
func (b *Breaker) fresh() bool {
	return b.live.Load() && time.Since(time.Unix(0, b.lastHeard.Load())) < freshFor
}

// observe replaces the view with what the script said. Replies older than
// the view (by generation) are ignored unless authoritative (a pub/sub
// message or a full refresh, which arrive in order).
func (b *Breaker) observe(r reply, authoritative bool) {
	nv := &view{state: r.state, gen: r.gen, mode: r.mode}
	switch {
	case r.mode == ModeForcedOpen:
		nv.until = time.Now().Add(24 * time.Hour)
	case r.retryAfterMs > 0 && r.state != Closed:
		nv.until = time.Now().Add(time.Duration(r.retryAfterMs) * time.Millisecond)
	}
	for {
		old := b.view.Load()
		if old != nil && !authoritative && r.gen < old.gen {
			return
		}
		if b.view.CompareAndSwap(old, nv) {
			if old != nil && (old.state != nv.state || old.mode != nv.mode) {
				b.logTransition(old, nv)
			}
			return
		}
	}
}

func (b *Breaker) logTransition(old, nv *view) {
	attrs := []any{"from", old.state.String(), "to", nv.state.String(), "mode", string(nv.mode), "generation", nv.gen}
	switch {
	case nv.state == Open:
		b.log.Warn("circuit breaker opened", attrs...)
	case nv.state == HalfOpen:
		b.log.Info("circuit breaker timeout expired, entering half-open", attrs...)
	default:
		b.log.Info("circuit breaker closed", attrs...)
	}
}

func (b *Breaker) openError(state State, mode Mode, retryAfter time.Duration, cause error) error {
	b.log.Debug("circuit breaker blocked a call", "state", state.String(), "mode", string(mode))
	return &OpenError{Name: b.name, State: state, Mode: mode, RetryAfter: retryAfter, Cause: cause}
}

// Allow asks whether a call may go ahead. When it may, it returns a Permit
// on which the caller reports the call's outcome exactly once; when the
// breaker refuses, it returns an error matching ErrOpen.
func (b *Breaker) Allow(ctx context.Context) (*Permit, error) {
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	if b.outage.active() {
		return b.outage.allow(ctx, b)
	}
	if b.o.admission == Fast && b.fresh() {
		if v := b.view.Load(); v != nil {
			switch {
			case v.mode == ModeDisabled || (v.mode == ModeNormal && v.state == Closed):
				return &Permit{b: b, gen: v.gen, via: viaBatch}, nil
			case v.mode == ModeForcedOpen || time.Now().Before(v.until):
				b.batch.refuse()
				return nil, b.openError(v.state, v.mode, time.Until(v.until), nil)
			}
		}
	}
	arr, err := b.eval(ctx, "allow")
	if err != nil {
		if err := b.redisFailed(ctx, "allow", err); err != nil {
			return nil, err
		}
		return b.outage.allow(ctx, b)
	}
	r, err := parseAllow(arr)
	if err != nil {
		return nil, fmt.Errorf("breaker %q: allow: %w", b.name, err)
	}
	b.observe(r, false)
	if !r.admitted {
		return nil, b.openError(r.state, r.mode, time.Duration(r.retryAfterMs)*time.Millisecond, nil)
	}
	via := viaBatch
	if b.o.admission == Strict {
		via = viaRedis
	}
	return &Permit{b: b, gen: r.gen, lease: r.lease, via: via}, nil
}

// Execute runs fn if the breaker admits it and records its outcome. When
// the breaker refuses, fn is not run and the error matches ErrOpen. fn's
// context is cancelled after RequestTimeout; running out of it is a
// failure. A panic in fn is recorded as a failure and re-panicked. The
// caller's own cancellation is not counted either way.
func (b *Breaker) Execute(ctx context.Context, fn func(context.Context) error) error {
	p, err := b.Allow(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	timeout := b.Config().RequestTimeout
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			_ = p.Failure(ctx, fmt.Errorf("panic: %v", r))
			panic(r)
		}
	}()
	err = fn(callCtx)
	if err == nil && time.Since(start) >= timeout {
		err = fmt.Errorf("call outlived request timeout %s: %w", timeout, context.DeadlineExceeded)
		_ = p.Done(ctx, err)
		return nil // fn succeeded for its caller; the breaker counts the overrun
	}
	_ = p.Done(ctx, err)
	return err
}

// Do runs fn through b like Execute and returns its result.
func Do[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error)) (T, error) {
	var out T
	err := b.Execute(ctx, func(ctx context.Context) error {
		var err error
		out, err = fn(ctx)
		return err
	})
	return out, err
}

// Wrap returns fn protected by b: the decorator style.
func Wrap[A, T any](b *Breaker, fn func(context.Context, A) (T, error)) func(context.Context, A) (T, error) {
	return func(ctx context.Context, a A) (T, error) {
		return Do(ctx, b, func(ctx context.Context) (T, error) { return fn(ctx, a) })
	}
}

type permitVia int

const (
	viaBatch permitVia = iota // outcome queued, sent in order by the batcher
	viaRedis                  // outcome sent at once (Strict admission)
	viaLocal                  // outcome goes to the outage's local breaker
	viaNone                   // admitted by FailOpen; nothing to record
)

// Permit is an admitted call. Report its outcome exactly once with
// Success, Failure, Done or Release.
type Permit struct {
	b     *Breaker
	gen   int64
	lease string
	via   permitVia
	local *localBreaker
	used  atomic.Bool
}

// Generation is the breaker generation the call was admitted in. An outcome
// reported after the breaker has changed generation is counted in the
// totals but cannot move the breaker (see docs/protocol.md).
func (p *Permit) Generation() int64 { return p.gen }

// Probe reports whether the call is a half-open probe holding a lease.
func (p *Permit) Probe() bool { return p.lease != "" }

// Success records a successful call.
func (p *Permit) Success(ctx context.Context) error { return p.finish(ctx, "s", nil) }

// Failure records a failed call and err as the breaker's last error.
func (p *Permit) Failure(ctx context.Context, err error) error { return p.finish(ctx, "f", err) }

// Release gives the permit back without counting the call (for a call that
// never reached the upstream); a probe's lease is freed at once.
func (p *Permit) Release(ctx context.Context) error { return p.finish(ctx, "r", nil) }

// Done records err's outcome: nil is a success; the caller's own
// cancellation is a Release; other errors are failures when the breaker's
// failure classifier says so, successes otherwise.
func (p *Permit) Done(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return p.Success(ctx)
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return p.Release(ctx)
	case p.b.o.isFailure(err):
		return p.Failure(ctx, err)
	}
	return p.Success(ctx)
}

// MaxErrorLen bounds the error text stored with a failure, in bytes.
const MaxErrorLen = 500

func errorText(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > MaxErrorLen {
		s = s[:MaxErrorLen]
	}
	return string([]rune(s)) // drops a rune cut in half
}

func (p *Permit) finish(ctx context.Context, kind string, err error) error {
	if p.used.Swap(true) {
		return fmt.Errorf("breaker %q: %w", p.b.name, ErrPermitUsed)
	}
	o := outcome{kind: kind, gen: p.gen, lease: p.lease, err: errorText(err)}
	if kind == "f" {
		p.b.log.Debug("circuit breaker recorded failure", "err", o.err)
	}
	switch p.via {
	case viaBatch:
		if kind == "r" && p.lease == "" {
			return nil // a release without a probe lease changes nothing in Redis
		}
		if kind == "f" {
			o.sent = make(chan struct{})
		}
		p.b.batch.add(o)
		if o.sent != nil {
			select {
			case <-o.sent:
			case <-p.b.ctx.Done():
			}
		}
	case viaRedis:
		return p.b.recordNow(context.WithoutCancel(ctx), o)
	case viaLocal:
		p.local.record(o)
	}
	return nil
}

// recordNow sends one outcome and waits for the script's answer.
func (b *Breaker) recordNow(ctx context.Context, o outcome) error {
	arr, err := b.eval(ctx, "record", 0, o.kind, o.gen, o.lease, o.err, "", "")
	if err != nil {
		b.batch.unrecorded.Add(1)
		b.outage.begin(b, err)
		return fmt.Errorf("breaker %q: record: %w", b.name, err)
	}
	r, err := parseView(arr, 0)
	if err != nil {
		return fmt.Errorf("breaker %q: record: %w", b.name, err)
	}
	b.observe(r, false)
	return nil
}
