package health_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/client"
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

	b, _ := client.New(rdb, "openai_transcription", client.DefaultConfig(),
		client.WithLogger(slog.New(slog.DiscardHandler)))
	defer b.Close(ctx)
	_ = b.Reset(ctx)
	show()
	_ = b.ForceOpen(ctx) // as if three calls had failed
	show()
	// Output:
	// 200 {"status":"healthy"}
	// 503 {"status":"degraded","open_circuits":["openai_transcription"]}
}
