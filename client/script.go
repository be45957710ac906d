package client

import (
	"context"
	"fmt"
	"strconv"

	"github.com/breakerbox/breakerbox"
)

// reply is what allow, record and control tell about the breaker after
// the operation: its state, generation, mode and how long a refusal holds.
type reply struct {
	admitted     bool
	state        State
	gen          int64
	mode         Mode
	retryAfterMs int64
	lease        string
}

// eval runs one operation of breaker-8.lua with the breaker's keys and maps
// script error codes to breakerbox's sentinel errors.
func (b *Breaker) eval(ctx context.Context, args ...any) ([]any, error) {
	ctx, cancel := context.WithTimeout(ctx, b.o.redisTimeout)
	defer cancel()
	res, err := breakerbox.BreakerScript.Run(ctx, b.rdb, b.keys, args...).Result()
	if err != nil {
		return nil, breakerbox.ScriptError(err)
	}
	arr, ok := res.([]any)
	if !ok {
		return nil, fmt.Errorf("%s reply is %T, want an array", args[0], res)
	}
	return arr, nil
}

func asInt(v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case string:
		return strconv.ParseInt(v, 10, 64)
	}
	return 0, fmt.Errorf("reply element is %T, want an integer", v)
}

func asString(v any) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	return "", fmt.Errorf("reply element is %T, want a string", v)
}

// parseView reads {state, generation, mode, retry_after_ms} from arr[i:].
func parseView(arr []any, i int) (reply, error) {
	var r reply
	if len(arr) < i+4 {
		return r, fmt.Errorf("reply has %d elements, want at least %d", len(arr), i+4)
	}
	s, err := asString(arr[i])
	if err == nil {
		r.state, err = ParseState(s)
	}
	if err != nil {
		return r, err
	}
	if r.gen, err = asInt(arr[i+1]); err != nil {
		return r, err
	}
	m, err := asString(arr[i+2])
	if err != nil {
		return r, err
	}
	r.mode = Mode(m)
	r.retryAfterMs, err = asInt(arr[i+3])
	return r, err
}

// parseAllow reads {admitted, state, generation, mode, retry_after_ms, lease}.
func parseAllow(arr []any) (reply, error) {
	if len(arr) != 6 {
		return reply{}, fmt.Errorf("allow reply has %d elements, want 6", len(arr))
	}
	admitted, err := asInt(arr[0])
	if err != nil {
		return reply{}, err
	}
	r, err := parseView(arr, 1)
	if err != nil {
		return r, err
	}
	r.admitted = admitted == 1
	r.lease, err = asString(arr[5])
	return r, err
}
