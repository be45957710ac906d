package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
)

// redisStore is the dashboard's Redis access: the operator calls of
// client/admin, the script's configure operation, and plain reads of the
// probes and the transition stream. It is the only file that imports
// go-redis or client/admin.
type redisStore struct{ rdb redis.UniversalClient }

var _ store = redisStore{}

// changedPattern matches every breaker's announcement channel. An ACL
// allows this PSUBSCRIBE only with this exact pattern (&circuit_breaker:*:changed).
const changedPattern = breakerbox.KeyPrefix + "*:changed"

func (s redisStore) names(ctx context.Context) ([]string, error) {
	return admin.Names(ctx, s.rdb)
}

func (s redisStore) statuses(ctx context.Context, names []string) ([]Breaker, error) {
	sts, err := admin.Statuses(ctx, s.rdb, names)
	if err != nil && (!hasBreakerErrors(err) || isPermission(err)) {
		return nil, err // Redis itself failed, or refused the reads (ACL)
	}
	got := make(map[string]breakerbox.Status, len(sts))
	for _, st := range sts {
		got[st.Name] = st
	}
	out := make([]Breaker, 0, len(names))
	for _, n := range names {
		st, ok := got[n]
		if !ok {
			out = append(out, Breaker{Name: n, Error: breakerError(err, n)})
			continue
		}
		out = append(out, fromStatus(st))
	}
	return out, nil
}

// hasBreakerErrors reports whether err joins errors of single breakers
// (admin.Statuses names each), rather than being a failure of Redis.
func hasBreakerErrors(err error) bool {
	j, ok := err.(interface{ Unwrap() []error })
	return ok && len(j.Unwrap()) > 0
}

// breakerError finds the error admin.Statuses gave for breaker name.
func breakerError(err error, name string) string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		prefix := fmt.Sprintf("breaker %q: status: ", name)
		for _, e := range j.Unwrap() {
			if msg, ok := strings.CutPrefix(e.Error(), prefix); ok {
				return msg
			}
		}
	}
	return "could not be read"
}

func fromStatus(st breakerbox.Status) Breaker {
	ms := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixMilli()
	}
	retry := st.RetryAfter.Milliseconds()
	if st.RetryAfter < 0 {
		retry = -1
	}
	b := Breaker{
		Name: st.Name, State: st.State.String(), Mode: string(st.Mode), Generation: st.Generation,
		Failures: st.CurrentFailures, FailureThreshold: st.FailureThreshold, SuccessRate: st.SuccessRate,
		Requests: st.TotalRequests, Successes: st.TotalSuccesses, FailuresTotal: st.TotalFailures,
		Refused: st.TotalRefused, Probes: st.Probes, HalfOpenSuccesses: st.HalfOpenSuccesses,
		RetryAfterMS: retry, OpenedAtMS: ms(st.OpenedAt), LastFailureMS: ms(st.LastFailureTime),
		LastError: st.LastFailureError, TimeMS: ms(st.Time),
		RecoveryTimeoutMS: st.CurrentRecoveryTimeout.Milliseconds(), RetryUntilMS: ms(st.RetryUntil),
		Config: map[string]int64{},
	}
	all := st.Config().AllFields()
	for i := 0; i+1 < len(all); i += 2 {
		b.Config[all[i]], _ = strconv.ParseInt(all[i+1], 10, 64)
	}
	if st.Window > 0 || st.WindowCalls > 0 {
		fr, sr, calls := st.FailureRate, st.SlowCallRate, st.CallsInWindow
		b.FailureRate, b.SlowCallRate, b.WindowCalls = &fr, &sr, &calls
	}
	return b
}

// sinceDepth is how many history entries since looks through for the
// latest transition (config changes, and transitions made after the row
// was read, are listed among them).
const sinceDepth = 10

func (s redisStore) since(ctx context.Context, name string, gen int64) (int64, error) {
	evs, err := admin.History(ctx, s.rdb, name, sinceDepth)
	if err != nil {
		return 0, err
	}
	for _, e := range evs { // newest first
		if e.Event != "config_changed" && e.Event != "unreadable" && e.Generation <= gen {
			return e.TS, nil
		}
	}
	return 0, nil
}

func (s redisStore) detail(ctx context.Context, name string) (Detail, error) {
	var d Detail
	evs, err := admin.History(ctx, s.rdb, name, 100)
	if err != nil {
		return d, err
	}
	d.History = make([]Event, 0, len(evs))
	for _, e := range evs {
		d.History = append(d.History, Event{TS: e.TS, Event: e.Event, From: e.From, To: e.To,
			Generation: e.Generation, Actor: e.Actor, Error: e.Error, Detail: e.Detail})
	}
	pipe := s.rdb.Pipeline()
	probes := pipe.ZRangeWithScores(ctx, breakerbox.Key(name, "probes"), 0, -1)
	length := pipe.XLen(ctx, breakerbox.Key(name, "events"))
	groups := pipe.XInfoGroups(ctx, breakerbox.Key(name, "events"))
	_, _ = pipe.Exec(ctx) // errors are read per command
	zs, err := probes.Result()
	if err != nil && !isWrongType(err) {
		return d, fmt.Errorf("breaker %q: probes: %w", name, err)
	}
	d.Probes = make([]Probe, 0, len(zs))
	for _, z := range zs {
		lease, _ := z.Member.(string)
		d.Probes = append(d.Probes, Probe{Lease: lease, ExpiresMS: int64(z.Score)})
	}
	if d.Stream.Length, err = length.Result(); err != nil && !isWrongType(err) {
		return d, fmt.Errorf("breaker %q: events: %w", name, err)
	}
	gs, err := groups.Result()
	if err != nil && !isWrongType(err) && !strings.Contains(err.Error(), "no such key") {
		return d, fmt.Errorf("breaker %q: events groups: %w", name, err)
	}
	d.Stream.Groups = make([]Group, 0, len(gs))
	for _, g := range gs {
		d.Stream.Groups = append(d.Stream.Groups, Group{Name: g.Name, Consumers: g.Consumers,
			Pending: g.Pending, Lag: g.Lag, LastDelivered: g.LastDeliveredID})
	}
	return d, nil
}

// isWrongType reports a key of the wrong type: the script repairs such
// keys at its next write; the page shows them as empty meanwhile.
func isWrongType(err error) bool { return redis.HasErrorPrefix(err, "WRONGTYPE") }

func (s redisStore) control(ctx context.Context, name, action, actor string) error {
	_, err := admin.Control(ctx, s.rdb, name, breakerbox.Action(action), actor)
	return err
}

// configure runs the script's configure operation with the given fields
// only, so that fields an operator did not touch are not rewritten.
func (s redisStore) configure(ctx context.Context, name string, fields map[string]int64, actor string) error {
	args := []any{"configure", actor}
	for _, f := range configFields {
		if v, ok := fields[f.Field]; ok {
			args = append(args, f.Field, v)
		}
	}
	if err := breakerbox.BreakerScript.Run(ctx, s.rdb, breakerbox.Keys(name), args...).Err(); err != nil {
		return fmt.Errorf("breaker %q: configure: %w", name, breakerbox.ScriptError(err))
	}
	return nil
}

func (s redisStore) subscribe(ctx context.Context, ready func(), changed func(name string)) error {
	ps := s.rdb.PSubscribe(ctx)
	defer ps.Close()
	defer context.AfterFunc(ctx, func() { _ = ps.Close() })() // Receive does not watch ctx
	// PSubscribe sends the command without waiting for the answer; Receive
	// returns the confirmation, or the refusal (NOPERM under an ACL that
	// does not allow the pattern).
	if err := ps.PSubscribe(ctx, changedPattern); err != nil {
		return err
	}
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "psubscribe" {
				ready()
			}
		case *redis.Message:
			if name, ok := breakerbox.NameFromKey(m.Channel); ok && strings.HasSuffix(m.Channel, "}:changed") {
				changed(name)
			}
		case *redis.Pong:
		default:
			return errors.New("unexpected pub/sub message")
		}
	}
}

// classify maps an action's error to an HTTP status and tells whether Redis
// refused it for lack of permission (an ACL without a command, key or
// channel the action needs).
func classify(err error) (code int, permission bool) {
	switch {
	case errors.Is(err, breakerbox.ErrBadArgs), errors.Is(err, breakerbox.ErrBadConfig),
		errors.Is(err, breakerbox.ErrInvalidName), errors.Is(err, breakerbox.ErrInvalidConfig):
		return http.StatusBadRequest, false
	case isPermission(err):
		return http.StatusBadGateway, true
	}
	return http.StatusBadGateway, false
}

// isPermission reports an ACL refusal: NOPERM on a command the client
// sends, or the error Redis gives when a script calls a command, key or
// channel the caller may not use.
func isPermission(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "NOPERM") || strings.Contains(msg, "The user executing the script can't")
}
