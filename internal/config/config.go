// Package config is the one place Rampart reads its settings: command-line flags, RAMPART_*
// environment variables and a YAML config file, in that order of precedence over built-in
// defaults. It validates them and hands typed Config values to the server and the agent;
// it starts nothing.
//
// Every setting has one name used three ways: the flag --poll-interval, the environment
// variable RAMPART_POLL_INTERVAL and the file key poll_interval. docs/configuration.md lists
// them all.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/rampart-iot/rampart"
)

// DefaultListen is the server's default address. 7780 is not a well-known service port, so
// it collides neither with PostgreSQL, MQTT, NATS nor common web ports.
const DefaultListen = "127.0.0.1:7780"

// Server configures `rampart server`.
type Server struct {
	ConfigFile string
	// Data is the directory holding the SQLite database and artifacts.
	Data string
	// Database is "" (SQLite in Data), "sqlite:PATH", or a postgres:// URL.
	Database  string
	Listen    string
	LogLevel  string
	LogFormat string

	// S3Endpoint, when set, stores artifacts in an S3-compatible bucket instead of Data.
	S3Endpoint  string
	S3Bucket    string
	S3AccessKey string
	S3SecretKey string
	S3Region    string
	S3Prefix    string
	S3TLS       bool

	PollInterval   time.Duration
	DeviceTokenTTL time.Duration
	AuthCacheTTL   time.Duration
	SeenFlush      time.Duration
	// SchedulerInterval is how often the deployment scheduler evaluates wave gates.
	SchedulerInterval time.Duration
}

// ServerFlags registers the server's flags, with their defaults, and returns the Config
// they fill in; call LoadServer after the flags are parsed.
func ServerFlags(fs *pflag.FlagSet) *Server {
	c := &Server{}
	fs.StringVar(&c.ConfigFile, "config", "", "YAML config file (env RAMPART_CONFIG)")
	fs.StringVar(&c.Data, "data", "./rampart-data", "data directory: SQLite database and artifacts")
	fs.StringVar(&c.Database, "database", "", "database: empty for SQLite in the data directory, sqlite:PATH, or postgres://...")
	fs.StringVar(&c.Listen, "listen", DefaultListen, "HTTP listen address (use :7780 to serve other hosts)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", "", "S3-compatible endpoint host:port for artifacts (empty: the data directory)")
	fs.StringVar(&c.S3Bucket, "s3-bucket", "rampart-artifacts", "S3 bucket for artifacts (created if missing)")
	fs.StringVar(&c.S3AccessKey, "s3-access-key", "", "S3 access key")
	fs.StringVar(&c.S3SecretKey, "s3-secret-key", "", "S3 secret key (prefer RAMPART_S3_SECRET_KEY or the config file)")
	fs.StringVar(&c.S3Region, "s3-region", "", "S3 region (empty: ask the server)")
	fs.StringVar(&c.S3Prefix, "s3-prefix", "", "key prefix for everything Rampart writes to the bucket")
	fs.BoolVar(&c.S3TLS, "s3-tls", true, "use HTTPS to reach the S3 endpoint")
	fs.DurationVar(&c.PollInterval, "poll-interval", 5*time.Minute, "check-in interval suggested to devices")
	fs.DurationVar(&c.DeviceTokenTTL, "device-token-ttl", time.Hour, "lifetime of device bearer tokens")
	fs.DurationVar(&c.AuthCacheTTL, "auth-cache-ttl", 5*time.Minute, "how long device admission state stays cached (other replicas' changes arrive through the change feed within a second)")
	fs.DurationVar(&c.SeenFlush, "seen-flush", 2*time.Second, "how often buffered last-seen times are written")
	fs.DurationVar(&c.SchedulerInterval, "scheduler-interval", 2*time.Second, "how often the deployment scheduler evaluates waves, gates and deadlines")
	return c
}

// LoadServer applies the config file and environment under the flags, then validates.
func LoadServer(fs *pflag.FlagSet, c *Server, getenv func(string) string) error {
	if err := layer(fs, getenv, &c.ConfigFile); err != nil {
		return err
	}
	return c.validate()
}

func (c *Server) validate() error {
	if c.Data == "" {
		return invalid("data directory is empty")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return invalid("listen address %q: %v", c.Listen, err)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		return invalid("log level %q is not debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return invalid("log format %q is not text or json", c.LogFormat)
	}
	switch {
	case c.Database == "", strings.HasPrefix(c.Database, "sqlite:"),
		strings.HasPrefix(c.Database, "postgres://"), strings.HasPrefix(c.Database, "postgresql://"):
	default:
		return invalid("database %q must be empty, sqlite:PATH or postgres://...", redactDSN(c.Database))
	}
	for name, d := range map[string]time.Duration{
		"poll interval": c.PollInterval, "device token ttl": c.DeviceTokenTTL,
		"auth cache ttl": c.AuthCacheTTL, "seen flush": c.SeenFlush, "scheduler interval": c.SchedulerInterval,
	} {
		if d <= 0 {
			return invalid("%s must be positive", name)
		}
	}
	return nil
}

// SQLitePath is the SQLite database file, or "" when the server runs on PostgreSQL.
func (c *Server) SQLitePath() string {
	if c.Database == "" {
		return filepath.Join(c.Data, "rampart.db")
	}
	if p, ok := strings.CutPrefix(c.Database, "sqlite:"); ok {
		return p
	}
	return ""
}

// redactDSN hides a password in a database URL for messages.
func redactDSN(dsn string) string {
	if at := strings.LastIndex(dsn, "@"); at > 0 {
		if scheme := strings.Index(dsn, "://"); scheme >= 0 && scheme < at {
			return dsn[:scheme+3] + "REDACTED" + dsn[at:]
		}
	}
	return dsn
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("config: "+format+": %w", append(args, rampart.ErrInvalid)...)
}

// EnvName is the environment variable of a setting.
func EnvName(flag string) string {
	return "RAMPART_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// layer fills every flag the command line did not set from the environment, else from the
// config file. configFile points at the --config flag's value.
func layer(fs *pflag.FlagSet, getenv func(string) string, configFile *string) error {
	if !fs.Changed("config") {
		if v := getenv("RAMPART_CONFIG"); v != "" {
			*configFile = v
		}
	}
	file := map[string]any{}
	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		if err := dec.Decode(&file); err != nil && !errors.Is(err, io.EOF) { // empty file: no settings
			return invalid("config file %s: %v", *configFile, err)
		}
	}
	known := map[string]bool{}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		key := strings.ReplaceAll(f.Name, "-", "_")
		known[key] = true
		if f.Name == "config" || f.Changed {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, invalid("%s=%q: %v", EnvName(f.Name), v, err))
			}
			return
		}
		if v, ok := file[key]; ok {
			if err := setFromFile(fs, f, v); err != nil {
				errs = append(errs, invalid("config file key %s: %v", key, err))
			}
		}
	})
	for k := range file {
		if !known[k] {
			errs = append(errs, invalid("config file %s: unknown key %q", *configFile, k))
		}
	}
	return errors.Join(errs...)
}

// setFromFile sets flag f to the config file's value v. A YAML list given to a list-valued
// flag sets one element per item, so a list of commands, each with commas in it, stays a
// list of whole commands instead of being joined and split again at the commas.
func setFromFile(fs *pflag.FlagSet, f *pflag.Flag, v any) error {
	items, isList := v.([]any)
	sv, isSlice := f.Value.(pflag.SliceValue)
	if !isList || !isSlice {
		return fs.Set(f.Name, fileValue(v))
	}
	list := make([]string, 0, len(items))
	for _, it := range items {
		if _, nested := it.([]any); nested {
			return fmt.Errorf("list item %v is itself a list", it)
		}
		list = append(list, fileValue(it))
	}
	if err := sv.Replace(list); err != nil {
		return err
	}
	f.Changed = true
	return nil
}

func fileValue(v any) string {
	switch x := v.(type) {
	case map[string]any:
		parts := make([]string, 0, len(x))
		for k, val := range x {
			parts = append(parts, fmt.Sprintf("%s=%v", k, val))
		}
		slices.Sort(parts)
		return strings.Join(parts, ",")
	case []any:
		parts := make([]string, 0, len(x))
		for _, val := range x {
			parts = append(parts, fmt.Sprint(val))
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}
