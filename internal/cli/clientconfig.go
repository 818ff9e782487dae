package cli

import (
	"errors"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rampart-iot/rampart/internal/client"
	"github.com/rampart-iot/rampart/internal/config"
)

// errNoToken is returned before any request when no API token is configured.
var errNoToken = errors.New("no API token: set RAMPART_TOKEN or run with --token")

// apiFlags are the connection and output flags every command group that calls the
// management API carries: --server, --token, --config and -o/--output.
type apiFlags struct {
	e                                 *env
	server, token, configFile, output string
}

// addAPIFlags registers the shared flags as persistent flags of a command group.
func addAPIFlags(group *cobra.Command, e *env) *apiFlags {
	f := &apiFlags{e: e}
	pf := group.PersistentFlags()
	pf.StringVar(&f.server, "server", "", "server URL (env RAMPART_SERVER; default "+config.DefaultServerURL+")")
	pf.StringVar(&f.token, "token", "", "API token rmp_... (env RAMPART_TOKEN)")
	pf.StringVar(&f.configFile, "config", "", "CLI config file (env RAMPART_CLI_CONFIG; default ~/.config/rampart/cli.yaml)")
	pf.StringVarP(&f.output, "output", "o", "", "output format: table or json (env RAMPART_OUTPUT)")
	return f
}

// session is what a management command runs with: a client and the chosen output.
type session struct {
	e    *env
	api  *client.Client
	json bool
}

// open resolves defaults, config file, environment and then the flags that were set, in that
// order, and connects.
func (f *apiFlags) open(cmd *cobra.Command) (*session, error) {
	c, err := config.LoadClient(f.e.getenv, f.configFile)
	if err != nil {
		return nil, err
	}
	for name, dst := range map[string]*string{"server": &c.Server, "token": &c.Token, "output": &c.Output} {
		if fl := cmd.Flag(name); fl != nil && fl.Changed {
			*dst = fl.Value.String()
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Token == "" {
		return nil, errNoToken
	}
	return &session{e: f.e, api: client.New(c.Server, c.Token, nil), json: c.Output == "json"}, nil
}

// run adapts a command body to cobra: it opens a session first and keeps the error that
// reaches the user on one line.
func (f *apiFlags) run(fn func(s *session, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		s, err := f.open(cmd)
		if err != nil {
			return err
		}
		return oneLine(fn(s, args))
	}
}

// oneLine flattens a multi-line error (filter syntax errors point at the column on a second
// line) so that `rampart: <err>` stays one line; errors.Is and errors.As still see through it.
func oneLine(err error) error {
	if err == nil || !strings.Contains(err.Error(), "\n") {
		return err
	}
	return &flatError{err}
}

type flatError struct{ err error }

func (e *flatError) Error() string {
	lines := strings.Split(e.err.Error(), "\n")
	kept := lines[:0]
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, " ")
}

func (e *flatError) Unwrap() error { return e.err }
