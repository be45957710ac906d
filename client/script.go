package client

import (
	"context"

	"github.com/breakerbox/breakerbox"
)

// eval runs one operation of breaker-8.lua with the breaker's keys and maps
// script error codes to breakerbox's sentinel errors.
func (b *Breaker) eval(ctx context.Context, args ...any) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, b.o.redisTimeout)
	defer cancel()
	res, err := breakerbox.BreakerScript.Run(ctx, b.rdb, b.keys, args...).Result()
	if err != nil {
		return nil, breakerbox.ScriptError(err)
	}
	return res, nil
}

// configureArgs returns the arguments of the configure operation.
func configureArgs(actor string, cfg Config) []any {
	args := []any{"configure", actor}
	for _, f := range cfg.Fields() {
		args = append(args, f)
	}
	return args
}
