package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// TestErrorsAreNotOutages: Redis answering with an error is not Redis
// being unreachable. A user without the right to run scripts (NOPERM) and
// a wrong password (WRONGPASS) are returned to the caller as what they
// are, without running the call, and logged; the breaker does not switch
// to its outage policy.
func TestErrorsAreNotOutages(t *testing.T) {
	srv := redistest.Start(t)
	ops := srv.Client(t)
	ctx := context.Background()
	if err := ops.Do(ctx, "ACL", "SETUSER", "noscripts", "on", ">pw", "~*", "&*", "+@all",
		"-evalsha", "-evalsha_ro", "-eval", "-eval_ro").Err(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		opts  redis.Options
		setup func(name string)
		want  string
	}{
		{"NOPERM", redis.Options{Addr: srv.Addr, Username: "noscripts", Password: "pw"}, nil, "NOPERM"},
		{"WRONGPASS", redis.Options{Addr: srv.Addr, Username: "noscripts", Password: "wrong"}, nil, "WRONGPASS"},
	}
	for _, tc := range cases {
		for _, a := range []client.Admission{client.AdmitFast, client.AdmitStrict} {
			t.Run(tc.name+"/"+a.String(), func(t *testing.T) {
				name := "err-" + tc.name + "-" + a.String()
				if tc.setup != nil {
					tc.setup(name)
				}
				opts := tc.opts
				rdb := redis.NewClient(&opts)
				t.Cleanup(func() { rdb.Close() })
				var logs logBuffer
				b := newBreaker(t, rdb, name, quickConfig(), client.WithAdmission(a), client.WithLogger(logs.logger()))
				for i := 0; i < 3; i++ {
					ran := false
					err := b.Execute(ctx, func(context.Context) error { ran = true; return nil })
					if ran || err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, client.ErrOpen) {
						t.Fatalf("call %d: ran %v, err %v; want the %s error returned and the call not run", i, ran, err, tc.want)
					}
				}
				if st := b.Stats(); st.Outage || st.OutageAdmitted+st.OutageRefused > 0 {
					t.Errorf("stats %+v: an error reply started the outage policy", st)
				}
				if !strings.Contains(logs.String(), tc.want) || logs.count("circuit breaker cannot reach redis; following outage policy") > 0 {
					t.Errorf("logs do not name %s as such:\n%s", tc.want, logs.String())
				}
			})
		}
	}
}

// TestACorruptedConfigIsAnErrorNotAnOutage: an operator's bad HSET on the
// config makes the script answer BADCONFIG to the operations that need the
// config (a failure's record, an open breaker's allow). The client logs
// it, counts the outcomes it could not record, returns it from Allow as
// breakerbox.ErrBadConfig, and never takes it for an outage.
func TestACorruptedConfigIsAnErrorNotAnOutage(t *testing.T) {
	srv := redistest.Start(t)
	ops := srv.Client(t)
	ctx := context.Background()
	for _, a := range []client.Admission{client.AdmitFast, client.AdmitStrict} {
		t.Run(a.String(), func(t *testing.T) {
			name := "badconfig-" + a.String()
			var logs logBuffer
			b := newBreaker(t, srv.Client(t), name, quickConfig(), client.WithAdmission(a), client.WithLogger(logs.logger()))
			if err := b.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			if err := ops.HSet(ctx, breakerbox.Key(name, "config"), "failure_threshold", "lots").Err(); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				if err := run(t, b, fail); !errors.Is(err, errBoom) {
					t.Fatalf("failure %d: %v (a closed breaker admits without reading its config)", i, err)
				}
			}
			if st := b.Stats(); st.Outage || st.Unrecorded != 3 {
				t.Errorf("stats %+v, want the 3 failures unrecorded and no outage", st)
			}
			if !strings.Contains(logs.String(), "BADCONFIG") || logs.count("circuit breaker cannot reach redis; following outage policy") > 0 {
				t.Errorf("logs do not name BADCONFIG as such:\n%s", logs.String())
			}
			// An open breaker's allow needs the config: Allow returns the error.
			if err := ops.HSet(ctx, breakerbox.Key(name, "config"), "failure_threshold", "1").Err(); err != nil {
				t.Fatal(err)
			}
			_ = run(t, b, fail)
			if err := ops.HSet(ctx, breakerbox.Key(name, "config"), "recovery_timeout_ms", "soon").Err(); err != nil {
				t.Fatal(err)
			}
			eventually(t, "an allow that reads the config", func() bool {
				_, err := b.Allow(ctx)
				return errors.Is(err, breakerbox.ErrBadConfig)
			})
			if b.Stats().Outage {
				t.Error("BADCONFIG started an outage")
			}
		})
	}
}
