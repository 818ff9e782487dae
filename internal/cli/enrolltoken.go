package cli

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-iot/rampart/internal/api"
)

func newEnrollTokenCmd(e *env) *cobra.Command {
	cmd := newCommandGroup("enroll-token", "Manage enrollment tokens, which admit new devices without manual approval")
	f := addAPIFlags(cmd, e)
	cmd.AddCommand(newEnrollTokenCreateCmd(f), newEnrollTokenLsCmd(f), newEnrollTokenRevokeCmd(f))
	return cmd
}

func newEnrollTokenCreateCmd(f *apiFlags) *cobra.Command {
	var req api.EnrollTokenRequest
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "create --max-uses N --ttl 24h",
		Short: "Create an enrollment token and print its secret, once",
		Args:  cobra.NoArgs,
		RunE: f.run(func(s *session, _ []string) error {
			if req.MaxUses < 1 {
				return errors.New("--max-uses must be at least 1")
			}
			if ttl <= 0 {
				return errors.New("--ttl must be a positive duration such as 24h")
			}
			req.TTL = ttl.String()
			t, err := s.api.CreateEnrollToken(s.e.ctx, req)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, t)
			}
			fmt.Fprintf(s.e.stdout, "Created enrollment token %s: %d use(s), expires %s.\n\n", t.ID, t.MaxUses, stamp(&t.ExpiresAt))
			fmt.Fprintf(s.e.stdout, "    %s\n\n", t.Secret)
			fmt.Fprintln(s.e.stdout, "This secret is shown only now; store it safely. Devices enroll with:")
			fmt.Fprintln(s.e.stdout, "    rampart agent --enroll-token <secret> ...   (or RAMPART_ENROLL_TOKEN)")
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.IntVar(&req.MaxUses, "max-uses", 0, "how many devices may enroll with the token")
	fl.DurationVar(&ttl, "ttl", 0, "how long the token is valid, e.g. 24h")
	fl.StringVar(&req.DeviceType, "type", "", "only devices of this type may use the token")
	fl.StringSliceVar(&req.Tags, "tag", nil, "tags given to devices that enroll with it (comma-separated or repeated)")
	fl.StringVar(&req.Description, "description", "", "what the token is for")
	_ = cmd.MarkFlagRequired("max-uses") // the flags exist; these cannot fail
	_ = cmd.MarkFlagRequired("ttl")
	return cmd
}

// enrollTokenState says whether a token still admits devices.
func enrollTokenState(t api.EnrollToken, now time.Time) string {
	switch {
	case t.RevokedAt != nil:
		return "revoked"
	case t.Uses >= t.MaxUses:
		return "used up"
	case !now.Before(t.ExpiresAt):
		return "expired"
	}
	return "active"
}

func newEnrollTokenLsCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List enrollment tokens",
		Args:  cobra.NoArgs,
		RunE: f.run(func(s *session, _ []string) error {
			ts, err := s.api.EnrollTokens(s.e.ctx)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, ts)
			}
			now := time.Now()
			t := newTable("ID", "STATE", "USES", "TYPE", "TAGS", "EXPIRES", "DESCRIPTION")
			for _, tok := range ts.Tokens {
				uses := strconv.Itoa(tok.Uses) + "/" + strconv.Itoa(tok.MaxUses)
				t.row(tok.ID, enrollTokenState(tok, now), uses, tok.DeviceType, list(tok.Tags), stamp(&tok.ExpiresAt), tok.Description)
			}
			return t.write(s.e.stdout)
		}),
	}
}

func newEnrollTokenRevokeCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Stop an enrollment token from admitting more devices",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			if err := s.api.RevokeEnrollToken(s.e.ctx, args[0]); err != nil {
				return about("enrollment token "+args[0], err)
			}
			if !s.json {
				fmt.Fprintf(s.e.stdout, "revoked enrollment token %s\n", args[0])
			}
			return nil
		}),
	}
}
