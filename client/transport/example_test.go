package transport_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/client"
	"github.com/breakerbox/breakerbox/client/transport"
)

// Protect an existing HTTP client (or any SDK that takes one) without
// changing its callers: the seed's openai_manager, in Go.
func ExampleNew() {
	mr, _ := miniredis.Run()
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	defer api.Close()

	b, _ := client.New(rdb, "openai_transcription", client.DefaultConfig(),
		client.WithLogger(slog.New(slog.DiscardHandler)))
	defer b.Shutdown(context.Background())
	rt, err := transport.New(http.DefaultTransport, b)
	if err != nil {
		panic(err)
	}
	hc := &http.Client{Transport: rt} // e.g. option.WithHTTPClient(hc) for an SDK

	for i := 1; i <= 4; i++ {
		resp, err := hc.Get(api.URL + "/v1/audio/transcriptions")
		if errors.Is(err, client.ErrOpen) {
			fmt.Printf("call %d: refused without calling the API\n", i)
			continue
		}
		resp.Body.Close()
		fmt.Printf("call %d: %d\n", i, resp.StatusCode)
		_ = b.Flush(context.Background()) // only so the output is deterministic
	}
	// Output:
	// call 1: 503
	// call 2: 503
	// call 3: 503
	// call 4: refused without calling the API
}
