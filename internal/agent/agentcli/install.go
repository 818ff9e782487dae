package agentcli

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/rampart-iot/rampart/internal/agent"
	"github.com/rampart-iot/rampart/internal/agent/bootenv"
	"github.com/rampart-iot/rampart/internal/agent/installer"
)

// installFlags say how the agent installs updates. They sit on the same flag set as
// config.AgentFlags, so config.LoadAgent layers RAMPART_* variables and the config file under
// them as for every other agent flag.
type installFlags struct {
	installer     string
	slots         []string
	bootEnv       string
	target        string
	interpreter   string
	healthCmds    []string
	healthTimeout time.Duration
	rebootCmd     string
	downloadDir   string
	toolArgs      string
	swuCommit     string
	swuRollback   string
	swuBooted     string
}

func addInstallFlags(fs *pflag.FlagSet) *installFlags {
	f := &installFlags{}
	fs.StringVar(&f.installer, "installer", "none", "how updates are installed: none (ignore them), ab, file, script, rauc or swupdate")
	fs.StringSliceVar(&f.slots, "slots", nil, "the two A/B slots as NAME=DEVICE, in order, e.g. A=/dev/mmcblk0p2,B=/dev/mmcblk0p3 (names are boot_slot values)")
	fs.StringVar(&f.bootEnv, "bootenv", "uboot", "A/B boot environment: uboot (fw_printenv/fw_setenv), grub:FILE (grub-editenv) or file:PATH")
	fs.StringVar(&f.target, "install-target", "", "file or directory the file installer replaces")
	fs.StringVar(&f.interpreter, "script-interpreter", "/bin/sh", "interpreter of the script installer (empty runs the script itself)")
	fs.StringArrayVar(&f.healthCmds, "health-cmd", nil, "shell command that must succeed after an update for it to be kept (repeatable)")
	fs.DurationVar(&f.healthTimeout, "health-timeout", installer.DefaultHealthTimeout, "time limit of the health check")
	fs.StringVar(&f.rebootCmd, "reboot-cmd", "reboot", "shell command that reboots the device after an A/B, RAUC or SWUpdate switch (empty: wait for someone else to reboot)")
	fs.StringVar(&f.downloadDir, "download-dir", "", "directory for downloaded images (default STATE/downloads)")
	fs.StringVar(&f.toolArgs, "installer-args", "", "arguments for rauc (before the command) or swupdate (before -i), split at spaces")
	fs.StringVar(&f.swuCommit, "swupdate-commit", "", "shell command that makes a healthy SWUpdate image permanent, e.g. fw_setenv upgrade_available 0")
	fs.StringVar(&f.swuRollback, "swupdate-rollback", "", "shell command that makes the bootloader boot the previous image again (required with swupdate)")
	fs.StringVar(&f.swuBooted, "swupdate-booted", "", "shell command that names the image the device runs, e.g. swupdate -g")
	return f
}

// shell is a command line run by /bin/sh, as argv; nil for an empty one.
func shell(cmd string) []string {
	if cmd == "" {
		return nil
	}
	return []string{"/bin/sh", "-c", cmd}
}

// apply sets the update options of o.
func (f *installFlags) apply(o *agent.Options, log *slog.Logger) error {
	var health installer.HealthCheck
	if len(f.healthCmds) > 0 {
		cmds := make([][]string, 0, len(f.healthCmds))
		for _, c := range f.healthCmds {
			cmds = append(cmds, []string{"/bin/sh", "-c", c})
		}
		health = installer.Commands(cmds...)
	}
	o.DownloadDir = f.downloadDir
	switch f.installer {
	case "none", "":
		return nil
	case "file":
		if f.target == "" {
			return fmt.Errorf("--installer file needs --install-target")
		}
		o.Installer = installer.NewFile(installer.FileOptions{Target: f.target, Health: health, HealthTimeout: f.healthTimeout, Log: log})
	case "script":
		o.Installer = installer.NewScript(installer.ScriptOptions{Interpreter: f.interpreter, Log: log})
	case "ab", "rauc", "swupdate":
		switch f.installer {
		case "ab":
			slots, err := parseSlots(f.slots)
			if err != nil {
				return err
			}
			env, err := parseBootEnv(f.bootEnv)
			if err != nil {
				return err
			}
			o.Installer = installer.NewAB(installer.ABOptions{Env: env, Slots: slots, Health: health, HealthTimeout: f.healthTimeout, Log: log})
		case "rauc":
			o.Installer = installer.NewRAUC(installer.RAUCOptions{Args: strings.Fields(f.toolArgs), Health: health, HealthTimeout: f.healthTimeout, Log: log})
		case "swupdate":
			if f.swuRollback == "" {
				return fmt.Errorf("--installer swupdate needs --swupdate-rollback")
			}
			o.Installer = installer.NewSWUpdate(installer.SWUpdateOptions{Args: strings.Fields(f.toolArgs),
				Commit: shell(f.swuCommit), Rollback: shell(f.swuRollback), Booted: shell(f.swuBooted),
				Health: health, HealthTimeout: f.healthTimeout, Log: log})
		}
		if f.rebootCmd != "" {
			cmd := f.rebootCmd
			o.Reboot = func(ctx context.Context) error {
				out, err := exec.CommandContext(ctx, "/bin/sh", "-c", cmd).CombinedOutput()
				if err != nil {
					return fmt.Errorf("%s: %w: %s", cmd, err, strings.TrimSpace(string(out)))
				}
				return nil
			}
		}
	default:
		return fmt.Errorf("--installer %q: want none, ab, file, script, rauc or swupdate", f.installer)
	}
	return nil
}

func parseSlots(specs []string) ([2]installer.Slot, error) {
	var slots [2]installer.Slot
	if len(specs) != 2 {
		return slots, fmt.Errorf("--installer ab needs --slots NAME=DEVICE,NAME=DEVICE (two slots), got %d", len(specs))
	}
	for i, s := range specs {
		name, dev, ok := strings.Cut(s, "=")
		if !ok || name == "" || dev == "" {
			return slots, fmt.Errorf("--slots %q: want NAME=DEVICE", s)
		}
		slots[i] = installer.Slot{Name: name, Path: dev}
	}
	if slots[0].Name == slots[1].Name {
		return slots, fmt.Errorf("--slots: both slots are named %q", slots[0].Name)
	}
	return slots, nil
}

func parseBootEnv(s string) (bootenv.Env, error) {
	kind, arg, _ := strings.Cut(s, ":")
	switch {
	case kind == "uboot" && arg == "":
		return &bootenv.UBoot{}, nil
	case kind == "grub" && arg != "":
		return &bootenv.GRUB{File: arg}, nil
	case kind == "file" && arg != "":
		return &bootenv.File{Path: arg}, nil
	}
	return nil, fmt.Errorf("--bootenv %q: want uboot, grub:FILE or file:PATH", s)
}
