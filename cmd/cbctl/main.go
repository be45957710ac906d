// Command cbctl inspects and operates breakerbox circuit breakers in Redis:
// list, status, history, reset, open, disable, release, config, watch and
// scripts. Run "cbctl help" for usage and exit codes; the logic lives in
// internal/cbctl.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/breakerbox/breakerbox/internal/cbctl"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cbctl.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
}
