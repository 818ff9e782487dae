// Command rampart is the whole of Rampart in one binary: server, agent, simulator and the
// command-line client.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rampart-iot/rampart/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
