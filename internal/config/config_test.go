package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/config"
)

func loadServer(t *testing.T, args []string, env map[string]string) (*config.Server, error) {
	t.Helper()
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	c := config.ServerFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c, config.LoadServer(fs, c, func(k string) string { return env[k] })
}

func TestServerPrecedence(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "rampart.yaml")
	if err := os.WriteFile(file, []byte("listen: \"127.0.0.1:9000\"\npoll_interval: 15m\nlog_level: warn\ndata: /srv/rampart\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadServer(t, []string{"--config", file, "--log-level", "debug"}, map[string]string{"RAMPART_POLL_INTERVAL": "7m"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9000" || c.PollInterval != 7*time.Minute || c.LogLevel != "debug" || c.Data != "/srv/rampart" {
		t.Errorf("config = %+v; want listen from file, poll interval from env, log level from flag", c)
	}
	if c.SQLitePath() != "/srv/rampart/rampart.db" {
		t.Errorf("SQLitePath = %q", c.SQLitePath())
	}
	c, err = loadServer(t, nil, map[string]string{"RAMPART_CONFIG": file, "RAMPART_DATABASE": "postgres://u:secret@db/x"})
	if err != nil || c.SQLitePath() != "" || c.Listen != "127.0.0.1:9000" {
		t.Errorf("RAMPART_CONFIG and RAMPART_DATABASE: %+v, %v", c, err)
	}
}

func TestServerRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("lisen: x\n"), 0o600)
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"bad listen":       {[]string{"--listen", "nonsense"}, nil},
		"bad level":        {[]string{"--log-level", "loud"}, nil},
		"bad database":     {[]string{"--database", "mysql://x"}, nil},
		"bad env value":    {nil, map[string]string{"RAMPART_POLL_INTERVAL": "soon"}},
		"zero interval":    {[]string{"--poll-interval", "0s"}, nil},
		"unknown file key": {[]string{"--config", unknown}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := loadServer(t, tc.args, tc.env); !errors.Is(err, rampart.ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := loadServer(t, []string{"--config", filepath.Join(dir, "missing.yaml")}, nil); err == nil {
		t.Error("missing config file accepted")
	}
}

// TestDocsListEveryFlag keeps docs/configuration.md true.
func TestDocsListEveryFlag(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, fs := range []*pflag.FlagSet{pflag.NewFlagSet("s", pflag.ContinueOnError), pflag.NewFlagSet("a", pflag.ContinueOnError)} {
		if fs.Name() == "s" {
			config.ServerFlags(fs)
		} else {
			config.AgentFlags(fs)
		}
		fs.VisitAll(func(f *pflag.Flag) {
			if !regexp.MustCompile("`--" + regexp.QuoteMeta(f.Name) + "`").Match(doc) {
				t.Errorf("docs/configuration.md does not list --%s", f.Name)
			}
		})
	}
}
