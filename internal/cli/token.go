package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-iot/rampart/internal/api"
)

// newTokenCmd manages API tokens through the API. `rampart admin token create`, which works
// on the server's database directly, is how the first token is made.
func newTokenCmd(e *env) *cobra.Command {
	cmd := newCommandGroup("token", "Manage API tokens")
	f := addAPIFlags(cmd, e)
	cmd.AddCommand(newTokenCreateCmd(f), newTokenLsCmd(f), newTokenRevokeCmd(f))
	return cmd
}

func newTokenCreateCmd(f *apiFlags) *cobra.Command {
	var req api.TokenRequest
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "create --name N --role R",
		Short: "Create an API token and print its secret, once",
		Long:  "Create an API token. Roles: viewer, operator, releaser, security, admin.",
		Args:  cobra.NoArgs,
		RunE: f.run(func(s *session, _ []string) error {
			if ttl < 0 {
				return errors.New("--ttl must be positive")
			}
			if ttl > 0 {
				req.TTL = ttl.String()
			}
			t, err := s.api.CreateToken(s.e.ctx, req)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, t)
			}
			expires := "never expires"
			if t.ExpiresAt != nil {
				expires = "expires " + stamp(t.ExpiresAt)
			}
			fmt.Fprintf(s.e.stdout, "Created API token %s (%s, role %s), %s.\n\n", t.ID, t.Name, t.Role, expires)
			fmt.Fprintf(s.e.stdout, "    %s\n\n", t.Secret)
			fmt.Fprintln(s.e.stdout, "This secret is shown only now; store it safely. Use it with RAMPART_TOKEN or --token.")
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Name, "name", "", "who or what the token is for")
	fl.StringVar(&req.Role, "role", "", "role: viewer, operator, releaser, security or admin")
	fl.DurationVar(&ttl, "ttl", 0, "lifetime, e.g. 720h (default: no expiry)")
	_ = cmd.MarkFlagRequired("name") // the flags exist; these cannot fail
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

// tokenState says whether an API token still authenticates.
func tokenState(t api.Token, now time.Time) string {
	switch {
	case t.RevokedAt != nil:
		return "revoked"
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return "expired"
	}
	return "active"
}

func newTokenLsCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List API tokens",
		Args:  cobra.NoArgs,
		RunE: f.run(func(s *session, _ []string) error {
			ts, err := s.api.Tokens(s.e.ctx)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, ts)
			}
			now := time.Now()
			t := newTable("ID", "NAME", "ROLE", "STATE", "CREATED", "EXPIRES")
			for _, tok := range ts.Tokens {
				expires := "never"
				if tok.ExpiresAt != nil {
					expires = stamp(tok.ExpiresAt)
				}
				t.row(tok.ID, tok.Name, tok.Role, tokenState(tok, now), stamp(&tok.CreatedAt), expires)
			}
			return t.write(s.e.stdout)
		}),
	}
}

func newTokenRevokeCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API token",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			if err := s.api.RevokeToken(s.e.ctx, args[0]); err != nil {
				return about("API token "+args[0], err)
			}
			if !s.json {
				fmt.Fprintf(s.e.stdout, "revoked API token %s\n", args[0])
			}
			return nil
		}),
	}
}
