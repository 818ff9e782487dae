// Package cli is the rampart command line: cobra commands, flag handling and the table and
// JSON printers. Commands that talk to a running server go through internal/client; the
// server and agent commands hand their Config to internal/server and internal/agent.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// env is what every command may use of the outside world; tests fill it in.
type env struct {
	ctx    context.Context
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// Run executes the rampart command line and returns the process exit code.
func Run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRoot(e)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintln(stderr, "rampart:", err)
		return 1
	}
	return 0
}

// exitError ends the program with a code and no further message (it was already printed).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "rampart",
		Short:         "Keep IoT fleets patched, verified and watched",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.AddCommand(newServerCmd(e), newAgentCmd(e), newAdminCmd(e), newTUFCmd(e), newSimCmd(e), newVersionCmd(e))
	addFleetCommands(root, e)
	return root
}

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(e.stdout, "rampart", Version)
			return nil
		},
	}
}
