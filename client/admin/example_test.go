package admin_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
)

// An operator forces a breaker open during an incident, reads it, and
// releases it: the workers follow from the script's announcements.
func ExampleControl() {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()

	st, err := admin.Control(ctx, rdb, "payments", breakerbox.ActionForceOpen, "alice@ops")
	if err != nil {
		panic(err)
	}
	fmt.Println(st.Name, st.State, st.Mode)

	st, _ = admin.Control(ctx, rdb, "payments", breakerbox.ActionRelease, "alice@ops")
	fmt.Println(st.Name, st.State, st.Mode) // released from forced open: probes first

	events, _ := admin.History(ctx, rdb, "payments", 10)
	for _, e := range events {
		fmt.Println(e.Event, e.From, "->", e.To, "by", e.Actor)
	}

	all, _ := admin.List(ctx, rdb) // every breaker in Redis
	for _, st := range all {
		fmt.Printf("%s: %s, %d refused\n", st.Name, st.State, st.TotalRefused)
	}
	// Output:
	// payments open forced_open
	// payments half_open normal
	// released open -> half_open by alice@ops
	// forced_open closed -> open by alice@ops
	// payments: half_open, 0 refused
}

// Configure changes a breaker's shared config; Status reads it back.
func ExampleStatus() {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()

	cfg := breakerbox.DefaultConfig()
	cfg.FailureThreshold = 5
	if _, err := admin.Configure(ctx, rdb, "openai_transcription", cfg, "deploy"); err != nil {
		panic(err)
	}
	st, err := admin.Status(ctx, rdb, "openai_transcription")
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s: %s, failures %d/%d, recovery %s\n", st.Name, st.State,
		st.CurrentFailures, st.FailureThreshold, st.RecoveryTimeout)
	// Output:
	// openai_transcription: closed, failures 0/5, recovery 30s
}

// List is the seed's get_all_circuit_breakers: every breaker in Redis.
func ExampleList() {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	for _, name := range []string{"openai_transcription", "payments"} {
		_, _ = admin.Control(ctx, rdb, name, breakerbox.ActionReset, "example") // as a worker's first call would
	}

	breakers, err := admin.List(ctx, rdb)
	if err != nil {
		panic(err)
	}
	for _, cb := range breakers {
		fmt.Printf("%s: %s\n", cb.Name, cb.State)
		fmt.Printf("  Failures: %d/%d\n", cb.CurrentFailures, cb.FailureThreshold)
		fmt.Printf("  Success Rate: %.1f%%\n", cb.SuccessRate)
	}
	// Output:
	// openai_transcription: closed
	//   Failures: 0/3
	//   Success Rate: 100.0%
	// payments: closed
	//   Failures: 0/3
	//   Success Rate: 100.0%
}
