// Command bbbench measures breakerbox side by side with a go-redis PING
// and sony/gobreaker on a redis-server it starts itself, and prints a
// markdown report (docs/performance.md). The logic lives in internal/bench.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/breakerbox/breakerbox/internal/bench"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return bench.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}
