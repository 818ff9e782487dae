package cli

import (
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/spf13/cobra"

	"github.com/rampart-iot/rampart/internal/access"
	"github.com/rampart-iot/rampart/internal/agent/agentcli"
	"github.com/rampart-iot/rampart/internal/config"
	"github.com/rampart-iot/rampart/internal/server"
)

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

func newServerCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the Rampart server (management API, device API, metrics)",
		Long: "Run the Rampart server. With no flags it keeps everything in ./rampart-data\n" +
			"(SQLite in WAL mode) and listens on " + config.DefaultListen + ".",
		Args: cobra.NoArgs,
	}
	cfg := config.ServerFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := config.LoadServer(cmd.Flags(), cfg, e.getenv); err != nil {
			return err
		}
		log, err := newLogger(e.stderr, cfg.LogLevel, cfg.LogFormat)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		srv, err := server.Open(ctx, *cfg, log)
		if err != nil {
			return err
		}
		defer srv.Close()
		if srv.InitialToken != "" {
			fmt.Fprintf(e.stderr, "\nInitial admin API token (shown only once, store it now):\n\n    %s\n\n", string(srv.InitialToken))
		}
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		backend := "sqlite " + cfg.SQLitePath()
		if cfg.SQLitePath() == "" {
			backend = "postgres"
		}
		log.Info("rampart server listening", "addr", ln.Addr().String(), "store", backend)
		return srv.Serve(ctx, ln)
	}
	return cmd
}

func newAgentCmd(e *env) *cobra.Command {
	return agentcli.Command("agent", e.getenv, e.stderr)
}

func newAdminCmd(e *env) *cobra.Command {
	admin := &cobra.Command{Use: "admin", Short: "Server-side administration (run on the server host)"}
	tok := &cobra.Command{Use: "token", Short: "API tokens, created directly in the server's database"}
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an API token and print its secret once",
		Args:  cobra.NoArgs,
	}
	cfg := config.ServerFlags(create.Flags())
	name := create.Flags().String("name", "", "token name (required)")
	role := create.Flags().String("role", "admin", "role: viewer, operator, releaser, security or admin")
	ttl := create.Flags().Duration("ttl", 0, "lifetime (0: no expiry)")
	create.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := config.LoadServer(cmd.Flags(), cfg, e.getenv); err != nil {
			return err
		}
		r, err := parseRole(*role)
		if err != nil {
			return err
		}
		log, err := newLogger(e.stderr, "warn", "text")
		if err != nil {
			return err
		}
		t, secret, err := server.CreateToken(cmd.Context(), *cfg, log, *name, r, *ttl)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "created token %s (%s, role %s); the secret is shown only once:\n", t.ID, t.Name, t.Role)
		fmt.Fprintln(e.stdout, string(secret))
		return nil
	}
	tok.AddCommand(create)
	admin.AddCommand(tok)
	return admin
}

func parseRole(s string) (access.Role, error) { return access.ParseRole(s) }
