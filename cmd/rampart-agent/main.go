// Command rampart-agent is the device build of Rampart: the agent alone, with no server
// code linked in.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rampart-iot/rampart/internal/agent/agentcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd := agentcli.Command("rampart-agent", os.Getenv, os.Stderr)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rampart-agent:", err)
		os.Exit(1)
	}
}
