package config

import (
	"net/url"
	"time"

	"github.com/spf13/pflag"
)

// Agent configures `rampart agent` (and each virtual device of the simulator).
type Agent struct {
	ConfigFile string
	Server     string
	// State is the directory where the agent keeps its key, identity and journal.
	State string
	// Root is the filesystem root inventory is read from ("/" on a device).
	Root string

	Serial          string
	MAC             string
	DeviceType      string
	HWRevision      string
	FirmwareVersion string
	// FirmwareFile, when set, holds the firmware version (first line); it wins over
	// FirmwareVersion so an update that replaces the file changes what is reported.
	FirmwareFile string
	EnrollToken  string
	Attributes   map[string]string

	Interval   time.Duration
	MaxBackoff time.Duration
	LogLevel   string
}

// AgentFlags registers the agent's flags and returns the Config they fill in.
func AgentFlags(fs *pflag.FlagSet) *Agent {
	c := &Agent{}
	fs.StringVar(&c.ConfigFile, "config", "", "YAML config file (env RAMPART_CONFIG)")
	fs.StringVar(&c.Server, "server", "http://"+DefaultListen, "Rampart server URL")
	fs.StringVar(&c.State, "state", "/var/lib/rampart-agent", "state directory (key, identity, journal)")
	fs.StringVar(&c.Root, "root", "/", "filesystem root to read inventory from")
	fs.StringVar(&c.Serial, "serial", "", "device serial number (default: /etc/machine-id)")
	fs.StringVar(&c.MAC, "mac", "", "device MAC address (default: first non-loopback interface)")
	fs.StringVar(&c.DeviceType, "device-type", "", "device type, e.g. acme-gw-v2 (required)")
	fs.StringVar(&c.HWRevision, "hw-revision", "", "hardware revision")
	fs.StringVar(&c.FirmwareVersion, "firmware-version", "", "firmware version to report")
	fs.StringVar(&c.FirmwareFile, "firmware-file", "", "file whose first line is the firmware version")
	fs.StringVar(&c.EnrollToken, "enroll-token", "", "enrollment token (omit to wait for operator approval)")
	fs.StringToStringVar(&c.Attributes, "attr", nil, "custom attribute key=value (repeatable)")
	fs.DurationVar(&c.Interval, "interval", time.Minute, "check-in interval until the server suggests one")
	fs.DurationVar(&c.MaxBackoff, "max-backoff", 10*time.Minute, "longest wait between retries while the server is unreachable")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	return c
}

// LoadAgent applies the config file and environment under the flags, then validates.
func LoadAgent(fs *pflag.FlagSet, c *Agent, getenv func(string) string) error {
	if err := layer(fs, getenv, &c.ConfigFile); err != nil {
		return err
	}
	u, err := url.Parse(c.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid("server %q must be an http:// or https:// URL", c.Server)
	}
	if c.DeviceType == "" {
		return invalid("device type is required (--device-type)")
	}
	if c.State == "" {
		return invalid("state directory is empty")
	}
	if c.Interval <= 0 || c.MaxBackoff <= 0 {
		return invalid("interval and max backoff must be positive")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return invalid("log level %q is not debug, info, warn or error", c.LogLevel)
	}
	return nil
}
