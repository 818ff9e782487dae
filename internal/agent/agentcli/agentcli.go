// Package agentcli is the `agent` command shared by `rampart agent` and the device-only
// `rampart-agent` binary: flags and config in, a running agent.Agent out. It links no
// server code, so the device binary stays small.
package agentcli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rampart-iot/rampart/internal/agent"
	"github.com/rampart-iot/rampart/internal/config"
)

// Command returns the agent command.
func Command(use string, getenv func(string) string, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: "Run the device agent: enroll, check in, report inventory, install updates",
		Args:  cobra.NoArgs,
	}
	cfg := config.AgentFlags(cmd.Flags())
	inst := addInstallFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := config.LoadAgent(cmd.Flags(), cfg, getenv); err != nil {
			return err
		}
		return run(cmd.Context(), cfg, inst, stderr)
	}
	return cmd
}

func run(ctx context.Context, cfg *config.Agent, inst *installFlags, stderr io.Writer) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts, err := Options(cfg, log)
	if err != nil {
		return err
	}
	if err := inst.apply(&opts, log); err != nil {
		return err
	}
	a, err := agent.New(opts)
	if err != nil {
		return err
	}
	defer a.Close()
	log.Info("agent starting", "server", cfg.Server, "serial", opts.Identity.Serial, "type", opts.Identity.DeviceType,
		"state", cfg.State, "installer", inst.installer)
	return a.Run(ctx)
}

// Options turns the agent's config into agent.Options, filling in the serial, MAC and
// firmware version from the device when they are not configured.
func Options(cfg *config.Agent, log *slog.Logger) (agent.Options, error) {
	serial := cfg.Serial
	if serial == "" {
		s, err := firstLine(filepath.Join(cfg.Root, "etc/machine-id"))
		if err != nil || s == "" {
			return agent.Options{}, fmt.Errorf("no serial configured and no machine-id to use instead (--serial): %v", err)
		}
		serial = s
	}
	mac := cfg.MAC
	if mac == "" && cfg.Root == "/" {
		mac = firstMAC()
	}
	firmware := func() string { return cfg.FirmwareVersion }
	if cfg.FirmwareFile != "" {
		path := cfg.FirmwareFile
		firmware = func() string {
			v, err := firstLine(path)
			if err != nil {
				log.Warn("read firmware version", "file", path, "err", err)
				return cfg.FirmwareVersion
			}
			return v
		}
	}
	return agent.Options{
		Server: cfg.Server, StateDir: cfg.State, Root: cfg.Root,
		Identity:    agent.Identity{Serial: serial, MAC: mac, DeviceType: cfg.DeviceType, HWRevision: cfg.HWRevision},
		EnrollToken: cfg.EnrollToken, Attributes: cfg.Attributes, Firmware: firmware,
		Interval: cfg.Interval, MaxBackoff: cfg.MaxBackoff, Log: log,
	}, nil
}

func firstLine(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 4096))
	sc.Scan()
	return strings.TrimSpace(sc.Text()), sc.Err()
}

func firstMAC() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 && len(i.HardwareAddr) > 0 {
			return i.HardwareAddr.String()
		}
	}
	return ""
}
