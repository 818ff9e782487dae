package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-iot/rampart/internal/sim"
)

// simProgressEvery is how often `rampart sim` prints its one-line progress.
const simProgressEvery = 5 * time.Second

func newSimCmd(e *env) *cobra.Command {
	var (
		o        sim.Options
		types    string
		duration time.Duration
		logLevel string
		fates    string
	)
	cmd := &cobra.Command{
		Use:   "sim --devices N --server URL --enroll-token T --duration 5m",
		Short: "Simulate a fleet: N virtual devices on the real agent code, with injected faults",
		Long: "Run N virtual devices against a Rampart server. Each one is the real device agent with\n" +
			"its own key and state directory, a synthetic Debian inventory, and the faults you ask for.\n" +
			"It stops after --duration or on Ctrl-C, and prints a summary. The enrollment token may\n" +
			"also come from RAMPART_ENROLL_TOKEN.\n\n" +
			"Devices take the updates deployments hand them with --installer: memory (the A/B flow in\n" +
			"memory, no image written; the default, for large fleets), ab (slot files and a file-backed\n" +
			"boot environment per device), file, or none (ignore work). --fail-install, --fail-health\n" +
			"and --power-loss make that share of devices fail their installs, fail the health check\n" +
			"(and roll back), or lose power once during the install. Which devices is a function of\n" +
			"--seed; --fates writes each device's fate and the final state its update must reach.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if duration <= 0 {
				return errors.New("--duration must be a positive duration such as 5m, so the run ends")
			}
			if o.EnrollToken == "" {
				o.EnrollToken = e.getenv("RAMPART_ENROLL_TOKEN")
			}
			var err error
			if o.Types, err = parseSimTypes(types); err != nil {
				return err
			}
			if o.Log, err = newLogger(e.stderr, logLevel, "text"); err != nil {
				return err
			}
			if o.StateRoot == "" {
				dir, err := os.MkdirTemp("", "rampart-sim-")
				if err != nil {
					return fmt.Errorf("state directory: %w", err)
				}
				defer os.RemoveAll(dir)
				o.StateRoot = dir
			}
			s, err := sim.New(o)
			if err != nil {
				return err
			}
			if fates != "" {
				if err := writeFates(fates, s, o); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), duration)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			tick := time.NewTicker(simProgressEvery)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					fmt.Fprintln(e.stderr, simProgress(s.Stats(), o.Devices))
				case err := <-done:
					if err != nil {
						return err
					}
					return simSummary(s.Stats()).write(e.stdout)
				}
			}
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&o.Devices, "devices", 0, "number of virtual devices (1 to 1000000)")
	fl.StringVar(&o.Server, "server", "", "base URL of the server's device API, such as http://127.0.0.1:9000")
	fl.StringVar(&o.EnrollToken, "enroll-token", "", "enrollment token that admits the devices (default $RAMPART_ENROLL_TOKEN; without one they wait for approval)")
	fl.StringVar(&types, "type", "sim-device", `device type, or weighted types such as "gateway=3,camera=1"`)
	fl.DurationVar(&o.Interval, "interval", 30*time.Second, "check-in interval (at least 1s; 0 follows the server's suggestion)")
	fl.DurationVar(&duration, "duration", 0, "how long to run (required)")
	fl.Float64Var(&o.Faults.OfflineRate, "offline-rate", 0, "probability per check-in that a device goes offline for a spell")
	fl.DurationVar(&o.Faults.OfflineFor, "offline-for", 2*time.Minute, "typical length of an offline spell")
	fl.DurationVar(&o.Faults.SlowLink, "slow-link", 0, "latency added to every request")
	fl.DurationVar(&o.Faults.ClockSkew, "clock-skew", 0, "largest skew of a device's clock, either way")
	fl.Float64Var(&o.Faults.FailRate, "fail-rate", 0, "probability that a request fails with a connection error")
	fl.StringVar(&o.StateRoot, "state", "", "directory for the devices' keys and state, kept for the next run (default a temporary directory removed at the end)")
	fl.Int64Var(&o.Seed, "seed", 1, "seed for serials, types, inventories, skews and faults")
	fl.IntVar(&o.MaxConcurrent, "max-concurrent", 64, "most HTTP requests in flight at once")
	fl.StringVar(&o.Installer, "installer", sim.InstallerMemory, "how devices take updates: memory, ab, file or none")
	fl.Float64Var(&o.Faults.FailInstallRate, "fail-install", 0, "share of devices whose installs fail")
	fl.Float64Var(&o.Faults.FailHealthRate, "fail-health", 0, "share of devices whose health check fails after an update (they roll back)")
	fl.Float64Var(&o.Faults.PowerLossRate, "power-loss", 0, "share of devices that lose power once during their first install")
	fl.StringVar(&fates, "fates", "", "write each device's fate and expected final update state to this file (JSON lines)")
	fl.StringVar(&logLevel, "log-level", "warn", "log level of the simulator and its agents: debug, info, warn, error")
	_ = cmd.MarkFlagRequired("devices")
	_ = cmd.MarkFlagRequired("server")
	_ = cmd.MarkFlagRequired("duration")
	return cmd
}

// parseSimTypes reads "name" or "name=weight,name=weight".
func parseSimTypes(s string) ([]sim.DeviceType, error) {
	var types []sim.DeviceType
	for part := range strings.SplitSeq(s, ",") {
		name, w, weighted := strings.Cut(strings.TrimSpace(part), "=")
		t := sim.DeviceType{Name: name, Weight: 1}
		if weighted {
			n, err := strconv.Atoi(w)
			if err != nil {
				return nil, fmt.Errorf("--type %q: weight of %s is not a number", s, name)
			}
			t.Weight = n
		}
		types = append(types, t)
	}
	return types, nil
}

// simProgress is the one-line progress report.
func simProgress(st sim.Stats, devices int) string {
	return fmt.Sprintf("sim %s: %d/%d devices up, %d enrolled, %d check-ins (%.0f/s), %d failed, %d offline now, %d updated",
		st.Elapsed.Round(time.Second), st.Devices, devices, st.Enrolled, st.CheckIns, perSecond(st.CheckIns, st.Elapsed),
		st.Failures, st.OfflineNow, st.Updated)
}

// simSummary is the final table.
func simSummary(st sim.Stats) *table {
	t := newTable("METRIC", "COUNT", "PER SECOND")
	row := func(name string, n int64) {
		t.row(name, strconv.FormatInt(n, 10), strconv.FormatFloat(perSecond(n, st.Elapsed), 'f', 1, 64))
	}
	t.row("elapsed", st.Elapsed.Round(time.Millisecond).String(), "")
	row("devices", st.Devices)
	row("enrolled", st.Enrolled)
	row("check-ins", st.CheckIns)
	row("pending (awaiting approval)", st.Pending)
	row("failed cycles", st.Failures)
	row("requests", st.Requests)
	row("injected failures", st.Injected)
	row("offline spells", st.Offline)
	row("inventory uploads", st.Inventories)
	row("installs", st.Installs)
	row("updated (success)", st.Updated)
	row("update failures", st.UpdateFailures)
	row("rolled back", st.RolledBack)
	row("reboots", st.Reboots)
	row("power losses", st.PowerLosses)
	return t
}

// simFate is one line of --fates.
type simFate struct {
	Serial      string `json:"serial"`
	FailInstall bool   `json:"fail_install,omitempty"`
	FailHealth  bool   `json:"fail_health,omitempty"`
	PowerLossAt string `json:"power_loss_at,omitempty"`
	Outcome     string `json:"outcome,omitempty"` // the final state of an update; none without an installer
}

// writeFates writes every device's fate, one JSON object a line.
func writeFates(path string, s *sim.Sim, o sim.Options) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--fates: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for i := range o.Devices {
		fate := s.Fate(i)
		line := simFate{Serial: sim.Serial(o.Seed, i), FailInstall: fate.FailInstall, FailHealth: fate.FailHealth, PowerLossAt: fate.PowerLossAt}
		if o.Installer != sim.InstallerNone {
			line.Outcome = fate.Outcome()
		}
		if err := enc.Encode(line); err != nil {
			f.Close()
			return fmt.Errorf("--fates: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("--fates: %w", err)
	}
	return f.Close()
}

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
