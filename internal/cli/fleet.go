package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// addFleetCommands adds the command groups that manage a running server through its
// management API: device, group, enroll-token, token, release, rollout and metrics. Each
// group carries the shared connection and output flags (--server, --token, --config, -o).
func addFleetCommands(root *cobra.Command, e *env) {
	root.AddCommand(newDeviceCmd(e), newGroupCmd(e), newEnrollTokenCmd(e), newTokenCmd(e), newReleaseCmd(e),
		newRolloutCmd(e), newMetricsCmd(e))
}

// newCommandGroup returns a command group. Run without a subcommand it prints its help; with an
// unknown one it fails instead of printing help and exiting 0.
func newCommandGroup(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
}

// withUsage makes an argument-count error show how the command is called.
func withUsage(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return fmt.Errorf("%w; usage: %s", err, cmd.UseLine())
		}
		return nil
	}
}

// about prefixes err with the thing it concerns, unless the server's message already names it
// ("device dev_x: not found").
func about(what string, err error) error {
	if err == nil || strings.Contains(err.Error(), what) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// eachID applies fn to every id, reporting each failure on stderr as it happens, and fails
// at the end if any did, so one bad ID does not stop the rest.
func eachID(s *session, verb string, ids []string, fn func(id string) error) error {
	failed := 0
	for _, id := range ids {
		if err := fn(id); err != nil {
			failed++
			fmt.Fprintf(s.e.stderr, "rampart: %s\n", oneLine(about(id, err)))
		}
	}
	if failed > 0 {
		return fmt.Errorf("%s: %d of %d failed", verb, failed, len(ids))
	}
	return nil
}
