package admin

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
)

// eval runs one operation of the breaker script for breaker name and
// returns its raw reply; script errors match breakerbox's sentinels.
func eval(ctx context.Context, rdb redis.UniversalClient, name string, args ...any) (any, error) {
	if err := breakerbox.ValidateName(name); err != nil {
		return nil, err
	}
	script := breakerbox.BreakerScript
	if args[0] == "status" {
		script = breakerbox.StatusScript // read-only: EVALSHA_RO, on replicas too
	}
	res, err := script.Run(ctx, rdb, breakerbox.Keys(name), args...).Result()
	if err != nil {
		return nil, fmt.Errorf("breaker %q: %s: %w", name, args[0], breakerbox.ScriptError(err))
	}
	return res, nil
}

// Status returns a snapshot of breaker name, read atomically by the
// script. A breaker nobody has used reads as closed with the defaults.
func Status(ctx context.Context, rdb redis.UniversalClient, name string) (breakerbox.Status, error) {
	res, err := eval(ctx, rdb, name, "status")
	if err != nil {
		return breakerbox.Status{}, err
	}
	st, err := breakerbox.ParseStatus(name, res)
	if err != nil {
		return st, fmt.Errorf("breaker %q: %w", name, err)
	}
	return st, nil
}

// History returns up to limit of the breaker's latest events, newest
// first, with From and To filled in (the stored entries are compact; see
// breakerbox.ParseHistory). An entry that is not valid JSON (a hand-edited
// list) is returned as an event named "unreadable" with the raw text in
// Detail.
func History(ctx context.Context, rdb redis.UniversalClient, name string, limit int) ([]breakerbox.Event, error) {
	if err := breakerbox.ValidateName(name); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	// One entry more than asked: the oldest entry's "from" is its "to".
	raw, err := rdb.LRange(ctx, breakerbox.Key(name, "history"), 0, int64(limit)).Result()
	if err != nil {
		return nil, fmt.Errorf("breaker %q: history: %w", name, err)
	}
	out := breakerbox.ParseHistory(raw, len(raw) <= limit)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Control applies an operator action to breaker name and returns the
// breaker's status after it; actor says who did it (it is written to the
// history and the transition stream). Workers learn of the change from the
// announcement the script publishes.
func Control(ctx context.Context, rdb redis.UniversalClient, name string, action breakerbox.Action, actor string) (breakerbox.Status, error) {
	res, err := eval(ctx, rdb, name, "control", string(action), actor)
	if err != nil {
		return breakerbox.Status{}, err
	}
	if _, err := breakerbox.ParseControlReply(res); err != nil {
		return breakerbox.Status{}, fmt.Errorf("breaker %q: %w", name, err)
	}
	return Status(ctx, rdb, name)
}

// configureArgs returns the script arguments that write cfg as a breaker's
// shared config, every field (the trip rules cfg leaves off included, so
// that an explicit change turns them off): configure ACTOR FIELD VALUE...
func configureArgs(actor string, cfg breakerbox.Config) []any {
	fields := cfg.AllFields()
	args := make([]any, 0, 2+len(fields))
	args = append(args, "configure", actor)
	for _, f := range fields {
		args = append(args, f)
	}
	return args
}

// Configure writes cfg as breaker name's shared config, every field of it
// (a trip rule cfg leaves off is turned off), and reports how many fields
// changed. Every worker follows it from the announcement the script
// publishes. A cfg that fails Validate is refused with an error
// matching breakerbox.ErrInvalidConfig, before any Redis call.
func Configure(ctx context.Context, rdb redis.UniversalClient, name string, cfg breakerbox.Config, actor string) (int, error) {
	if err := cfg.Validate(); err != nil {
		return 0, fmt.Errorf("breaker %q: %w", name, err)
	}
	res, err := eval(ctx, rdb, name, configureArgs(actor, cfg)...)
	if err != nil {
		return 0, err
	}
	r, err := breakerbox.ParseConfigureReply(res)
	if err != nil {
		return 0, fmt.Errorf("breaker %q: %w", name, err)
	}
	return r.Written, nil
}
