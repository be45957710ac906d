// Command demo shows several workers sharing one breaker in Redis while
// their upstream fails and recovers. It uses REDIS_URL when set and an
// embedded miniredis otherwise.
//
// With --dashboard ADDR it runs until Ctrl-C instead: ten breakers whose
// upstreams fail and recover on a schedule, with the web dashboard served
// at ADDR (for example 127.0.0.1:8080) and an operator to sign in as.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/breakerbox/breakerbox/internal/demo"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("dashboard", "", "run until Ctrl-C with ten changing breakers and serve the dashboard at this address, e.g. 127.0.0.1:8080")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "demo: unexpected arguments: %v\n", fs.Args())
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *addr != "" {
		return demo.RunLive(ctx, demo.LiveOptions{RedisURL: os.Getenv("REDIS_URL"), Addr: *addr, Out: stdout})
	}
	return demo.Run(ctx, demo.Options{RedisURL: os.Getenv("REDIS_URL"), Out: stdout})
}
