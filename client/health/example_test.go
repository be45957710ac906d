package health_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox"
	"github.com/breakerbox/breakerbox/client/admin"
	"github.com/breakerbox/breakerbox/client/health"
)

// The seed's /health endpoint: 200 while no breaker is open, 503 with the
// open ones otherwise.
func ExampleNew() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()

	h, err := health.New(rdb) // every breaker in Redis; health.WithNames(...) for a fixed set
	if err != nil {
		panic(err)
	}
	show := func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
		fmt.Print(rec.Code, " ", rec.Body.String())
	}

	_, _ = admin.Control(ctx, rdb, "openai_transcription", breakerbox.ActionReset, "example")
	show()
	_, _ = admin.Control(ctx, rdb, "openai_transcription", breakerbox.ActionForceOpen, "example") // as if three calls had failed
	show()
	// Output:
	// 200 {"status":"healthy"}
	// 503 {"status":"degraded","open_circuits":["openai_transcription"]}
}
