package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/client"
	"github.com/rampart-iot/rampart/internal/rollout"
)

// The exit codes of `rollout watch` besides 0 (finished) and 1 (an error).
const (
	exitHalted      = 2
	exitCancelled   = 3
	exitInterrupted = 130 // 128 + SIGINT, as shells report it
)

func newRolloutCmd(e *env) *cobra.Command {
	cmd := newCommandGroup("rollout", "Deploy releases to devices in waves: create, watch, pause, resume, cancel, roll back")
	f := addAPIFlags(cmd, e)
	cmd.AddCommand(newRolloutCreateCmd(f), newRolloutLsCmd(f), newRolloutShowCmd(f), newRolloutDevicesCmd(f),
		newRolloutEventsCmd(f), newRolloutControlCmd(f, "pause"), newRolloutControlCmd(f, "resume"),
		newRolloutControlCmd(f, "cancel"), newRolloutRollbackCmd(f), newRolloutWatchCmd(f))
	return cmd
}

func newRolloutCreateCmd(f *apiFlags) *cobra.Command {
	var req api.DeploymentRequest
	var maxDeferral time.Duration
	var limits, intervals []string
	var deadline string
	cmd := &cobra.Command{
		Use:   "create (--release NAME --version V | --release-id ID) (--group G | --filter EXPR | --devices ID,...)",
		Short: "Start deploying a published release",
		Long: `Start deploying a published release to a group, the devices a filter selects, or a list
of devices, wave by wave.

--plan is a list of waves separated by ';', each a cumulative size (a count or a percentage)
with optional name=, success=, fail=, bake= and jitter= settings; the default is
  "10 name=canary success=100% fail=1 bake=1h jitter=1h; 5% bake=2h jitter=1h; 25% bake=4h jitter=2h; 100%"
--window is a maintenance window in each device's local time ("tz" attribute), repeatable:
  --window "Mon-Fri 02:00-04:00" --window "Sat,Sun 22:00-06:00"
--limit caps devices updating at once across all deployments, per device type or region:
  --limit type:gw=10 --limit region:eu=50
--min-interval is the least time between two updates of one device, per device type:
  --min-interval gw=168h
--deadline is an RFC 3339 time or a duration from now (72h).`,
		Args: withUsage(cobra.NoArgs),
		RunE: f.run(func(s *session, _ []string) error {
			var err error
			if req.Limits, err = parseLimits(limits); err != nil {
				return err
			}
			if req.MinInterval, err = parseIntervals(intervals); err != nil {
				return err
			}
			if req.Deadline, err = parseDeadline(deadline, time.Now()); err != nil {
				return err
			}
			if maxDeferral > 0 {
				req.MaxDeferral = maxDeferral.String()
			}
			c, err := s.api.CreateDeployment(s.e.ctx, req)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, c)
			}
			s.printCreated("created", c)
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Release, "release", "", "the release's name (with --version)")
	fl.StringVar(&req.Version, "version", "", "the release's version (with --release)")
	fl.StringVar(&req.ReleaseID, "release-id", "", "the release's ID (instead of --release and --version)")
	fl.StringVar(&req.Target.Group, "group", "", "deploy to the devices of this group")
	fl.StringVar(&req.Target.Filter, "filter", "", "deploy to the devices this filter expression selects")
	fl.StringSliceVar(&req.Target.Devices, "devices", nil, "deploy to these devices (comma-separated or repeated)")
	fl.StringVar(&req.Plan, "plan", "", "the waves, e.g. \"10 name=canary fail=1; 25%; 100%\" (default: canary of 10, 5%, 25%, 100%)")
	fl.StringVar(&req.Action, "action", "", "forced, soft or download-only (default forced)")
	fl.DurationVar(&maxDeferral, "max-deferral", 0, "with --action soft: how long a device may defer the install")
	fl.StringArrayVar(&req.Windows, "window", nil, "maintenance window \"[DAYS] HH:MM-HH:MM\" in device local time (repeatable)")
	fl.StringArrayVar(&limits, "limit", nil, "concurrency limit KEY=N, KEY type:<device type> or region:<region> (repeatable)")
	fl.StringArrayVar(&intervals, "min-interval", nil, "minimum time between updates TYPE=DURATION, e.g. gw=168h (repeatable)")
	fl.StringVar(&deadline, "deadline", "", "time out devices not done by then: RFC 3339 time or a duration from now")
	fl.StringVar(&req.Name, "name", "", "deployment name (default: release name and version)")
	return cmd
}

// parseLimits reads KEY=N flags ("type:gw=10").
func parseLimits(flags []string) (map[string]int, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	out := make(map[string]int, len(flags))
	for _, fl := range flags {
		i := strings.LastIndex(fl, "=")
		n, err := strconv.Atoi(fl[i+1:])
		if i <= 0 || err != nil {
			return nil, fmt.Errorf("--limit %q: want KEY=N, like type:gw=10 or region:eu=50", fl)
		}
		out[fl[:i]] = n
	}
	return out, nil
}

// parseIntervals reads TYPE=DURATION flags ("gw=168h"); the server checks the durations.
func parseIntervals(flags []string) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(flags))
	for _, fl := range flags {
		t, d, ok := strings.Cut(fl, "=")
		if !ok || t == "" || d == "" {
			return nil, fmt.Errorf("--min-interval %q: want DEVICE-TYPE=DURATION, like gw=168h", fl)
		}
		out[t] = d
	}
	return out, nil
}

// parseDeadline reads an RFC 3339 time or a duration from now.
func parseDeadline(s string, now time.Time) (string, error) {
	if s == "" {
		return "", nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC().Format(time.RFC3339), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d).UTC().Format(time.RFC3339), nil
	}
	return "", fmt.Errorf("--deadline %q: want an RFC 3339 time like 2026-06-01T02:00:00Z or a duration like 72h", s)
}

func (s *session) printCreated(verb string, c *api.DeploymentCreated) {
	d := c.Deployment
	current := ""
	if d.Wave < len(d.Waves) {
		current = ", wave " + d.Waves[d.Wave].Name + " started"
	}
	fmt.Fprintf(s.e.stdout, "%s deployment %s (%s): %s %s to %d device(s) in %d wave(s)%s\n",
		verb, d.ID, d.Name, d.Software, d.Version, d.Total, len(d.Waves), current)
	if c.Skipped > 0 {
		fmt.Fprintf(s.e.stdout, "left out %d device(s) already in an unfinished deployment of %s", c.Skipped, d.Software)
		if len(c.SkippedDevices) > 0 {
			fmt.Fprintf(s.e.stdout, ": %s", strings.Join(c.SkippedDevices, ", "))
			if len(c.SkippedDevices) < c.Skipped {
				fmt.Fprint(s.e.stdout, ", ...")
			}
		}
		fmt.Fprintln(s.e.stdout)
	}
	if c.Incompatible > 0 {
		fmt.Fprintf(s.e.stdout, "left out %d targeted device(s) that are not accepted or of another device type\n", c.Incompatible)
	}
}

func newRolloutLsCmd(f *apiFlags) *cobra.Command {
	var q client.DeploymentQuery
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List deployments, newest first",
		Args:  withUsage(cobra.NoArgs),
		RunE: f.run(func(s *session, _ []string) error {
			if q.Limit < 0 {
				return errors.New("--limit must be positive")
			}
			l, err := s.api.Deployments(s.e.ctx, q)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, l)
			}
			t := newTable("ID", "NAME", "RELEASE", "STATUS", "WAVE", "DEVICES", "CREATED")
			for _, d := range l.Deployments {
				t.row(d.ID, d.Name, d.Software+" "+d.Version, d.Status, waveLabel(&d), strconv.Itoa(d.Total), stamp(&d.CreatedAt))
			}
			if err := t.write(s.e.stdout); err != nil {
				return err
			}
			if l.NextBefore != "" {
				fmt.Fprintf(s.e.stderr, "more deployments: run again with --before %s\n", l.NextBefore)
			}
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&q.Statuses, "status", nil, "only deployments in these statuses: running, paused, halted, cancelled, finished")
	fl.StringVar(&q.Software, "software", "", "only deployments of this release name")
	fl.IntVar(&q.Limit, "limit", 0, "deployments per page (default: the server's)")
	fl.StringVar(&q.Before, "before", "", "continue after this deployment (the next_before of a previous page)")
	return cmd
}

// waveLabel renders the current wave as "2/4 5%".
func waveLabel(d *api.Deployment) string {
	if d.Wave >= len(d.Waves) {
		return ""
	}
	return fmt.Sprintf("%d/%d %s", d.Wave+1, len(d.Waves), d.Waves[d.Wave].Name)
}

func targetLabel(d *api.Deployment) string {
	t := d.Target
	switch {
	case t.Group != "":
		return "group " + t.Group
	case t.Filter != "":
		return "filter " + t.Filter
	}
	n := max(d.TargetDevices, len(t.Devices))
	if n > 3 {
		return fmt.Sprintf("%d devices: %s, ...", n, strings.Join(t.Devices[:3], ", "))
	}
	return fmt.Sprintf("%d device(s): %s", n, strings.Join(t.Devices, ", "))
}

func newRolloutShowCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show DEPLOYMENT",
		Short: "Show a deployment and its waves with the devices per state",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			d, err := s.api.Deployment(s.e.ctx, args[0])
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, d)
			}
			var fs fields
			fs.add("ID", d.ID)
			fs.add("Name", d.Name)
			fs.add("Release", fmt.Sprintf("%s %s (%s)", d.Software, d.Version, d.ReleaseID))
			fs.add("Target", targetLabel(d))
			fs.add("Status", d.Status)
			fs.add("Reason", d.Reason)
			fs.add("Wave", waveLabel(d))
			if d.BakeUntil != nil && !finalStatus(d.Status) {
				fs.add("Bake until", stamp(d.BakeUntil))
			}
			if d.GateOverridden {
				fs.add("Gate", "overridden by an operator for the current wave")
			}
			action := d.Action
			if d.MaxDeferral != "" {
				action += ", devices may defer up to " + d.MaxDeferral
			}
			fs.add("Action", action)
			fs.add("Plan", d.Plan)
			fs.add("Windows", strings.Join(d.Windows, "; "))
			fs.add("Limits", strings.Join(intPairs(d.Limits), " "))
			fs.add("Min interval", strings.Join(pairs(d.MinInterval), " "))
			if d.Deadline != nil {
				fs.add("Deadline", stamp(d.Deadline))
			}
			fs.add("Devices", strconv.Itoa(d.Total))
			fs.add("Created", stamp(&d.CreatedAt)+" by "+d.CreatedBy)
			fs.add("Updated", stamp(&d.UpdatedAt))
			if d.HaltedAt != nil {
				fs.add("Halted", stamp(d.HaltedAt))
			}
			if d.FinishedAt != nil {
				fs.add("Finished", stamp(d.FinishedAt))
			}
			if d.RollbackOf != "" {
				fs.add("Rollback of", d.RollbackOf)
			}
			if d.RolledBackBy != "" {
				fs.add("Rolled back by", d.RolledBackBy)
			}
			if err := fs.write(s.e.stdout); err != nil {
				return err
			}
			fmt.Fprintln(s.e.stdout)
			return wavesTable(d).write(s.e.stdout)
		}),
	}
}

// wavesTable has one row per wave and a total: planned size, devices, whether it started,
// the gate's counts and every state's count.
func wavesTable(d *api.Deployment) *table {
	t := newTable("WAVE", "SIZE", "DEVICES", "STARTED", "SUCCEEDED", "FAILED", "STATES")
	for i, w := range d.Waves {
		started := yesNo(w.Started)
		if i == d.Wave && !finalStatus(d.Status) {
			started = "current"
		}
		t.row(w.Name, w.Size, strconv.Itoa(w.Devices), started, strconv.Itoa(succeeded(w.States)), strconv.Itoa(failed(w.States)), stateCounts(w.States))
	}
	t.row("total", "", strconv.Itoa(d.Total), "", strconv.Itoa(succeeded(d.States)), strconv.Itoa(failed(d.States)), stateCounts(d.States))
	return t
}

func finalStatus(s string) bool { return s == "finished" || s == "cancelled" }

// displayOrder lists the states furthest along first: the ends, then the steps of an
// update backwards, then the devices still waiting.
var displayOrder = []rollout.DeviceState{
	rollout.Success, rollout.Failure, rollout.RolledBack, rollout.TimedOut, rollout.Cancelled,
	rollout.Verifying, rollout.Rebooting, rollout.Installing, rollout.Downloaded, rollout.Downloading, rollout.Scheduled,
}

// stateCounts renders counts as "success=10 failure=1 installing=2", furthest along first.
func stateCounts(m map[string]int) string {
	var parts []string
	for _, st := range displayOrder {
		if n := m[string(st)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", st, n))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(displayOrder, rollout.DeviceState(k)) && m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
		}
	}
	return strings.Join(parts, " ")
}

// intPairs renders a map of counts as sorted key=n pairs.
func intPairs(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+strconv.Itoa(m[k]))
	}
	return out
}

// succeeded and failed count as the wave gates do (rollout.Counts).
func succeeded(m map[string]int) int { return m[string(rollout.Success)] }

func failed(m map[string]int) int {
	return m[string(rollout.Failure)] + m[string(rollout.RolledBack)] + m[string(rollout.TimedOut)]
}

// inProgress counts devices between downloading and verifying.
func inProgress(m map[string]int) int {
	n := 0
	for _, st := range displayOrder {
		if st != rollout.Scheduled && !st.Terminal() {
			n += m[string(st)]
		}
	}
	return n
}

func newRolloutDevicesCmd(f *apiFlags) *cobra.Command {
	var q client.DeploymentDeviceQuery
	var wave int
	var all bool
	cmd := &cobra.Command{
		Use:   "devices DEPLOYMENT [--state failure] [--wave N]",
		Short: "List a deployment's devices with their states, and the log excerpts of failures",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			if q.Limit < 0 {
				return errors.New("--limit must be positive")
			}
			if wave >= 0 {
				q.Wave = &wave
			}
			get := s.api.DeploymentDevices
			if all {
				get = s.api.AllDeploymentDevices
			}
			l, err := get(s.e.ctx, args[0], q)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, l)
			}
			now := time.Now()
			t := newTable("DEVICE", "WAVE", "TYPE", "REGION", "STATE", "SINCE", "OFFERED")
			for _, m := range l.Devices {
				t.row(m.DeviceID, strconv.Itoa(m.Wave), m.DeviceType, m.Region, m.State, ago(&m.Since, now), ago(m.OfferedAt, now))
			}
			if err := t.write(s.e.stdout); err != nil {
				return err
			}
			for _, m := range l.Devices {
				if m.Log != "" {
					writeLog(s.e.stdout, m)
				}
			}
			if l.NextAfter != "" {
				fmt.Fprintf(s.e.stderr, "more devices: run again with --after %s, or with --all\n", l.NextAfter)
			}
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&q.States, "state", nil, "only devices in these states, e.g. failure,rolled-back")
	fl.IntVar(&wave, "wave", -1, "only devices of this wave (0 is the first; default every wave)")
	fl.IntVar(&q.Limit, "limit", 0, "devices per page (default: the server's)")
	fl.StringVar(&q.After, "after", "", "continue after this device (the next_after of a previous page)")
	fl.BoolVar(&all, "all", false, "follow the pages and list every device")
	return cmd
}

// logLines is how many of a device's last log lines the table view prints.
const logLines = 20

// writeLog prints a device's log excerpt under a heading, indented, its last logLines lines.
func writeLog(w io.Writer, m api.DeploymentDevice) {
	lines := strings.Split(strings.TrimRight(m.Log, "\n"), "\n")
	fmt.Fprintf(w, "\n%s %s (wave %d), log:\n", m.DeviceID, m.State, m.Wave)
	if len(lines) > logLines {
		fmt.Fprintf(w, "    ... %d earlier line(s); -o json has them all\n", len(lines)-logLines)
		lines = lines[len(lines)-logLines:]
	}
	for _, l := range lines {
		fmt.Fprintf(w, "    %s\n", strings.Map(printable, l))
	}
}

// printable keeps a device's log from moving the cursor or recolouring the terminal.
func printable(r rune) rune {
	if r == '\t' || (r >= ' ' && r != 0x7f && (r < 0x80 || r >= 0xa0)) {
		return r
	}
	return '?'
}

func newRolloutEventsCmd(f *apiFlags) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "events DEPLOYMENT",
		Short: "List what happened to a deployment, newest first",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			if limit < 0 {
				return errors.New("--limit must be positive")
			}
			l, err := s.api.DeploymentEvents(s.e.ctx, args[0], limit)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, l)
			}
			t := newTable("AT", "KIND", "MESSAGE")
			for _, ev := range l.Events {
				t.row(stamp(&ev.At), ev.Kind, ev.Message)
			}
			return t.write(s.e.stdout)
		}),
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many events (default: the server's)")
	return cmd
}

func newRolloutControlCmd(f *apiFlags, verb string) *cobra.Command {
	short := map[string]string{
		"pause":  "Stop offering a running deployment to more devices (those updating continue)",
		"resume": "Restart a paused deployment, or a halted one, overriding the gate that halted it",
		"cancel": "End a deployment: devices that have not started installing stop",
	}[verb]
	return &cobra.Command{
		Use:   verb + " DEPLOYMENT",
		Short: short,
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			do := s.api.PauseDeployment
			switch verb {
			case "resume":
				do = s.api.ResumeDeployment
			case "cancel":
				do = s.api.CancelDeployment
			}
			d, err := do(s.e.ctx, args[0])
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, d)
			}
			fmt.Fprintf(s.e.stdout, "deployment %s is %s\n", d.ID, d.Status)
			return nil
		}),
	}
}

func newRolloutRollbackCmd(f *apiFlags) *cobra.Command {
	var req api.RollbackRequest
	cmd := &cobra.Command{
		Use:   "rollback DEPLOYMENT [--to-release-id ID] [--plan PLAN]",
		Short: "Cancel a deployment and deploy the previous release to the devices that took it",
		Long: `Cancel a deployment (if it is unfinished) and start a new one that deploys the previous
release to the devices that took the deployment's release (succeeded, or still installing).
Without --to-release-id the previous release is the newest published release of the same
software published before the deployment's; without --plan every device is in one wave.
Devices still installing are left out until they report; roll back again to take them too.`,
		Args: withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			c, err := s.api.RollbackDeployment(s.e.ctx, args[0], req)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, c)
			}
			s.printCreated("rolled back "+args[0]+": created", c)
			return nil
		}),
	}
	cmd.Flags().StringVar(&req.ReleaseID, "to-release-id", "", "the release to go back to (default: the previous published one)")
	cmd.Flags().StringVar(&req.Plan, "plan", "", "the waves of the rollback (default: one wave of every device)")
	return cmd
}

func newRolloutWatchCmd(f *apiFlags) *cobra.Command {
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "watch DEPLOYMENT [--interval 2s]",
		Short: "Follow a deployment's progress until it finishes, halts or is cancelled",
		Long: `Follow a deployment's progress: one line per wave with a bar and the devices per state,
the overall counts, and the status with its reason. On a terminal the display is redrawn in
place; otherwise (and with -o json, one JSON object per line) a snapshot is appended whenever
something changed.

Exit codes: 0 the deployment finished, 2 it halted, 3 it was cancelled, 130 interrupted
(Ctrl-C), 1 any other error.`,
		Args: withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			if interval <= 0 {
				return errors.New("--interval must be positive")
			}
			return s.watch(args[0], interval)
		}),
	}
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often to ask the server")
	return cmd
}

// watch polls a deployment and draws it until it ends. Errors that will not go away (unknown
// deployment, bad token) end it; others (the server restarting) are reported and retried.
func (s *session) watch(id string, interval time.Duration) error {
	ctx := s.e.ctx
	tty := isTerminal(s.e.stdout)
	last := ""
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(s.e.stdout)
			}
			return &exitError{code: exitInterrupted}
		case <-timer.C:
		}
		d, err := s.api.Deployment(ctx, id)
		switch {
		case ctx.Err() != nil:
			continue
		case errors.Is(err, rampart.ErrNotFound) || errors.Is(err, rampart.ErrUnauthorized) || errors.Is(err, rampart.ErrForbidden) || errors.Is(err, rampart.ErrInvalid):
			return err
		case err != nil:
			fmt.Fprintf(s.e.stderr, "rampart: %s (retrying)\n", oneLine(err))
			timer.Reset(interval)
			continue
		}
		var frame string
		if s.json {
			b, err := json.Marshal(d)
			if err != nil {
				return err
			}
			frame = string(b) + "\n"
		} else {
			frame = renderWatch(d)
		}
		switch {
		case tty && !s.json:
			fmt.Fprintf(s.e.stdout, "\x1b[H\x1b[2J%s%s\n", frame, time.Now().Format("15:04:05")+" every "+interval.String()+"; Ctrl-C to stop")
		case frame != last:
			fmt.Fprint(s.e.stdout, frame)
			if !s.json {
				fmt.Fprintln(s.e.stdout)
			}
		}
		last = frame
		switch d.Status {
		case "finished":
			return nil
		case "halted":
			fmt.Fprintf(s.e.stderr, "rampart: deployment %s halted: %s\n", d.ID, d.Reason)
			return &exitError{code: exitHalted}
		case "cancelled":
			fmt.Fprintf(s.e.stderr, "rampart: deployment %s cancelled: %s\n", d.ID, d.Reason)
			return &exitError{code: exitCancelled}
		}
		timer.Reset(interval)
	}
}

// isTerminal reports whether w is a terminal, so that redrawing in place makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// barWidth is the width of a progress bar in characters.
const barWidth = 30

// renderWatch draws a deployment: a heading, one line per wave and a total, each with a bar
// (# succeeded, x failed, > in progress, . waiting, - cancelled) and its counts, and the status.
// It holds nothing that changes unless the deployment does.
func renderWatch(d *api.Deployment) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s %s to %s  (%s)\n", d.ID, d.Software, d.Version, targetLabel(d), d.Name)
	t := newTable("  WAVE", "PROGRESS", "SUCCEEDED", "STATES")
	for i, w := range d.Waves {
		name := w.Name
		if i == d.Wave && !finalStatus(d.Status) {
			name = "> " + name
		} else {
			name = "  " + name
		}
		if !w.Started {
			t.row(name, "["+strings.Repeat(" ", barWidth)+"]", fmt.Sprintf("0/%d", w.Devices), "not started")
			continue
		}
		t.row(name, bar(w.States, w.Devices), fmt.Sprintf("%d/%d", succeeded(w.States), w.Devices), stateCounts(w.States))
	}
	t.row("  total", bar(d.States, d.Total), fmt.Sprintf("%d/%d", succeeded(d.States), d.Total), stateCounts(d.States))
	_ = t.write(&b) // a strings.Builder does not fail
	status := d.Status
	if d.Reason != "" {
		status += ": " + d.Reason
	}
	if d.GateOverridden {
		status += " (gate of the current wave overridden)"
	}
	fmt.Fprintf(&b, "status: %s\n", status)
	if d.Status == "running" && d.BakeUntil != nil && d.Wave < len(d.Waves) {
		fmt.Fprintf(&b, "wave %s started %s, bakes until %s\n", d.Waves[d.Wave].Name, stamp(d.WaveStarted), stamp(d.BakeUntil))
	}
	return b.String()
}

// bar draws counts as a bar of barWidth characters, each state group taking its share.
func bar(states map[string]int, total int) string {
	if total <= 0 {
		return "[" + strings.Repeat(" ", barWidth) + "]"
	}
	groups := []struct {
		n int
		c byte
	}{
		{succeeded(states), '#'},
		{failed(states), 'x'},
		{inProgress(states), '>'},
		{states[string(rollout.Scheduled)], '.'},
		{states[string(rollout.Cancelled)], '-'},
	}
	var b strings.Builder
	b.WriteByte('[')
	done, drawn := 0, 0
	for _, g := range groups {
		done += g.n
		upTo := max(drawn, min(barWidth, done*barWidth/total))
		if g.n > 0 && upTo == drawn && drawn < barWidth {
			upTo++ // a group that exists shows, however small
		}
		for ; drawn < upTo; drawn++ {
			b.WriteByte(g.c)
		}
	}
	for ; drawn < barWidth; drawn++ {
		b.WriteByte(' ')
	}
	b.WriteByte(']')
	return b.String()
}
