// Command demo shows several workers sharing one breaker in Redis while
// their upstream fails and recovers. It uses REDIS_URL when set and an
// embedded miniredis otherwise.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/breakerbox/breakerbox/internal/demo"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return demo.Run(ctx, demo.Options{RedisURL: os.Getenv("REDIS_URL"), Out: os.Stdout})
}
