package installer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/agent/journal"
)

// RAUCOptions configures a RAUC installer.
type RAUCOptions struct {
	// Binary is the rauc program; empty means "rauc" on PATH.
	Binary string
	// Args go before every rauc command, e.g. "--conf=/etc/rauc/system.conf" for a rauc built
	// without its D-Bus service.
	Args []string
	// Env is added to rauc's environment ("KEY=value"), e.g. a DBUS_SESSION_BUS_ADDRESS and
	// DBUS_STARTER_BUS_TYPE=session to reach a service that is not on the system bus.
	Env []string
	// Timeout bounds "rauc install"; zero means DefaultRAUCTimeout.
	Timeout time.Duration
	// Health decides after the reboot whether the new slot works; nil means healthy.
	Health HealthCheck
	// HealthTimeout bounds Health; zero means DefaultHealthTimeout.
	HealthTimeout time.Duration
	// Log receives progress at Info; nil discards it.
	Log *slog.Logger
}

// DefaultRAUCTimeout bounds "rauc install" when no timeout is configured.
const DefaultRAUCTimeout = 30 * time.Minute

// toolTimeout bounds the quick commands around an install: status queries, marks, commit and
// rollback hooks.
const toolTimeout = time.Minute

// maxStatus bounds the JSON read from "rauc status".
const maxStatus = 64 << 10

// RAUC installs a RAUC bundle. RAUC writes the slot that is not booted and makes it the
// bootloader's primary; the agent journals around it and decides after the reboot:
//
//	begin (booted slot) → rauc install BUNDLE → written
//	  (if it fails: rauc status mark-active old → failed) →
//	rauc status: the primary slot is another one → switched (that slot) →
//	(caller reboots; the bootloader tries the new slot and falls back on its own) →
//	Resume: rauc status says which slot booted:
//	  the new one: health check → rauc status mark-good → committed,
//	               or rolling-back → mark-bad new, mark-active old → rolled-back (caller reboots);
//	  the old one, the new one still primary: not rebooted yet;
//	  the old one, the new one no longer primary: the bootloader fell back → rolled-back.
//
// RAUC marks the target slot bad before writing it and primary only once it is complete, so
// the bootloader never boots a half-written slot. "rauc install" is a client of the RAUC
// service: a timeout stops the client, not an install the service has started. If the service
// later finishes, the slot it activated is tried at the next reboot, unless the next Install,
// which first makes the booted slot primary again, comes before.
type RAUC struct {
	o   RAUCOptions
	log *slog.Logger
	// failpoint, when set (tests only), is called at each named point of the flow.
	failpoint func(point string)
}

var _ Installer = (*RAUC)(nil)

// NewRAUC returns a RAUC installer.
func NewRAUC(o RAUCOptions) *RAUC {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RAUC{o: o, log: log}
}

func (r *RAUC) fail(point string) {
	if r.failpoint != nil {
		r.failpoint(point)
	}
}

// Install implements [Installer]. On success the caller reboots to try the new slot. A failing
// "rauc install" returns a *LogError and is journaled failed.
func (r *RAUC) Install(ctx context.Context, u Update, j *journal.Journal) error {
	begin, _, busy, err := current(j)
	if err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	if busy {
		if begin.Deployment != u.Deployment {
			return fmt.Errorf("install %s: %s is unfinished: %w", u.Deployment, begin.Deployment, rampart.ErrConflict)
		}
		_, err := r.Resume(ctx, j)
		return err
	}
	st, err := r.status(ctx)
	if err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	from, ok := st.bootSlot(st.Booted)
	if !ok {
		return fmt.Errorf("install %s: rauc reports booted slot %q, which is not in its slot list", u.Deployment, st.Booted)
	}
	if st.Primary != from.Name {
		// Left over from an install the agent gave up on (a timeout the service outlived):
		// start from "the booted slot is primary", which Resume relies on.
		r.log.InfoContext(ctx, "making the booted slot primary again", "deployment", u.Deployment, "slot", from.Name, "primary", st.Primary)
		if err := r.markActive(ctx, from.Name); err != nil {
			return fmt.Errorf("install %s: %w", u.Deployment, err)
		}
	}
	begin = journal.Entry{Step: StepBegin, Deployment: u.Deployment, Data: map[string]string{
		"image": u.Image, "sha256": u.SHA256, "from": from.Name, "from_boot": from.Bootname,
	}}
	if err := j.Append(ctx, begin); err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	r.fail("begin")
	return r.install(ctx, j, begin)
}

// install runs "rauc install" and journals what RAUC did.
func (r *RAUC) install(ctx context.Context, j *journal.Journal, begin journal.Entry) error {
	image := begin.Data["image"]
	if want := begin.Data["sha256"]; want != "" {
		if got, err := fileDigest(image); err != nil || got != want {
			return journalFailed(ctx, j, begin, fmt.Errorf("bundle %s does not match sha256 %s: %v: %w", image, want, err, rampart.ErrInvalid))
		}
	}
	timeout := r.o.Timeout
	if timeout <= 0 {
		timeout = DefaultRAUCTimeout
	}
	r.log.InfoContext(ctx, "installing bundle", "deployment", begin.Deployment, "bundle", image)
	if err := runTool(ctx, timeout, r.o.Env, nil, r.argv("install", image)); err != nil {
		if ctx.Err() != nil {
			return err // interrupted, not failed: Resume continues
		}
		// RAUC makes the new slot primary only once it is complete, but the client can fail
		// after the service finished (a D-Bus error), so the old slot is made primary again.
		// A service still installing (after a timeout) refuses; the next Install repeats it.
		if merr := r.markActive(ctx, begin.Data["from"]); merr != nil {
			err = errors.Join(err, merr)
		}
		return journalFailed(ctx, j, begin, err)
	}
	r.fail("installed")
	if err := j.Append(ctx, journal.Entry{Step: StepWritten, Deployment: begin.Deployment}); err != nil {
		return fmt.Errorf("install %s: %w", begin.Deployment, err)
	}
	r.fail("written")
	st, err := r.status(ctx)
	if err != nil {
		return fmt.Errorf("install %s: %w", begin.Deployment, err)
	}
	to, ok := st.slot(st.Primary)
	if !ok || to.Name == begin.Data["from"] {
		// The bootloader still boots the old slot (activate-installed=false in system.conf?).
		return journalFailed(ctx, j, begin, fmt.Errorf("rauc install left the primary slot at %q: %w", st.Primary, rampart.ErrInvalid))
	}
	return r.switched(ctx, j, begin, to)
}

func (r *RAUC) switched(ctx context.Context, j *journal.Journal, begin journal.Entry, to raucSlot) error {
	if err := j.Append(ctx, journal.Entry{Step: StepSwitched, Deployment: begin.Deployment, Data: map[string]string{
		"to": to.Name, "to_boot": to.Bootname,
	}}); err != nil {
		return fmt.Errorf("install %s: %w", begin.Deployment, err)
	}
	r.fail("switched")
	r.log.InfoContext(ctx, "rauc activated slot, reboot to try it", "deployment", begin.Deployment, "slot", to.Name)
	return nil
}

// Resume implements [Installer]. It reads "rauc status" to learn which slot booted and which
// is primary, so it tells "not rebooted yet", "booted the new slot" and "the bootloader fell
// back" apart without a journal entry for any of them.
func (r *RAUC) Resume(ctx context.Context, j *journal.Journal) (Result, error) {
	begin, last, busy, err := current(j)
	if err != nil {
		return Result{}, fmt.Errorf("resume: %w", err)
	}
	if !busy {
		return finished(last), nil
	}
	st, err := r.status(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("resume %s: %w", begin.Deployment, err)
	}
	from := begin.Data["from"]
	installed := Result{Outcome: OutcomeInstalled, Deployment: begin.Deployment, Reboot: true}
	switch last.Step {
	case StepRollingBack:
		if err := r.rollback(ctx, j, begin, last.Data["reason"]); err != nil {
			return Result{}, err
		}
		return Result{Outcome: OutcomeRolledBack, Deployment: begin.Deployment, Reason: last.Data["reason"],
			Reboot: st.Booted != begin.Data["from_boot"]}, nil
	case StepBegin, StepWritten:
		// Whatever RAUC finished shows in its status: a reboot into another slot, or another
		// slot made primary.
		to, done := st.bootSlot(st.Booted)
		if !done || to.Name == from {
			to, done = st.slot(st.Primary)
			done = done && to.Name != from
		}
		switch {
		case done:
			if last.Step == StepBegin {
				if err := j.Append(ctx, journal.Entry{Step: StepWritten, Deployment: begin.Deployment}); err != nil {
					return Result{}, fmt.Errorf("resume %s: %w", begin.Deployment, err)
				}
			}
			if err := r.switched(ctx, j, begin, to); err != nil {
				return Result{}, err
			}
			last, _ = j.Last()
		case last.Step == StepBegin:
			if err := r.install(ctx, j, begin); err != nil {
				return afterFailure(j, err)
			}
			return installed, nil
		default:
			// RAUC activated a slot (written) that is neither booted nor primary any more: the
			// bootloader gave up on it.
			return r.fellBack(ctx, j, begin, "the new slot")
		}
	}
	// Switched: what did the bootloader do?
	to := last.Data["to"]
	switch st.Booted {
	case last.Data["to_boot"]:
	case begin.Data["from_boot"]:
		if st.Primary == to {
			return installed, nil // not rebooted since the switch
		}
		return r.fellBack(ctx, j, begin, "slot "+to)
	default:
		return Result{}, fmt.Errorf("resume %s: booted %q, which is neither the old slot %s nor the new slot %s",
			begin.Deployment, st.Booted, from, to)
	}
	r.fail("health")
	return trial(ctx, begin, r.o.Health, r.o.HealthTimeout, true,
		func(why string) error { return r.rollback(ctx, j, begin, why) },
		func() error { return r.Commit(ctx, j) })
}

// fellBack journals that the bootloader booted the old slot instead of the new one.
func (r *RAUC) fellBack(ctx context.Context, j *journal.Journal, begin journal.Entry, what string) (Result, error) {
	return journalFellBack(ctx, j, begin,
		fmt.Sprintf("%s did not come up healthy; the bootloader booted slot %s", what, begin.Data["from"]), r.log)
}

// Commit implements [Installer]: "rauc status mark-good" on the new slot.
func (r *RAUC) Commit(ctx context.Context, j *journal.Journal) error {
	begin, ok, err := toCommit(j)
	if err != nil || !ok {
		return err
	}
	last, _ := j.Last()
	if err := runTool(ctx, toolTimeout, r.o.Env, nil, r.argv("status", "mark-good", last.Data["to"])); err != nil {
		return fmt.Errorf("commit %s: %w", begin.Deployment, err)
	}
	r.fail("commit")
	if err := journalCommit(ctx, j, begin); err != nil {
		return err
	}
	r.fail("committed")
	r.log.InfoContext(ctx, "update committed", "deployment", begin.Deployment, "slot", last.Data["to"])
	return nil
}

// Rollback implements [Installer]: the new slot is marked bad and the old one primary; after a
// switch the caller reboots.
func (r *RAUC) Rollback(ctx context.Context, j *journal.Journal) error {
	begin, ok, err := toRollBack(j)
	if err != nil || !ok {
		return err
	}
	return r.rollback(ctx, j, begin, "rolled back on request")
}

// rollback journals rolling-back, marks the slots and journals rolled-back; both marks are
// idempotent, so Resume repeats them after a crash.
func (r *RAUC) rollback(ctx context.Context, j *journal.Journal, begin journal.Entry, why string) error {
	to := switchedTo(j)
	if last, _ := j.Last(); last.Step != StepRollingBack {
		if err := j.Append(ctx, journal.Entry{Step: StepRollingBack, Deployment: begin.Deployment, Data: map[string]string{"reason": why}}); err != nil {
			return fmt.Errorf("rollback %s: %w", begin.Deployment, err)
		}
	}
	r.fail("rolling-back")
	if to != "" {
		if err := runTool(ctx, toolTimeout, r.o.Env, nil, r.argv("status", "mark-bad", to)); err != nil {
			return fmt.Errorf("rollback %s: %w", begin.Deployment, err)
		}
	}
	if err := r.markActive(ctx, begin.Data["from"]); err != nil {
		return fmt.Errorf("rollback %s: %w", begin.Deployment, err)
	}
	r.fail("rollback-marked")
	if err := j.Append(ctx, journal.Entry{Step: StepRolledBack, Deployment: begin.Deployment, Data: map[string]string{"reason": why}}); err != nil {
		return fmt.Errorf("rollback %s: %w", begin.Deployment, err)
	}
	r.fail("rolled-back")
	r.log.InfoContext(ctx, "update rolled back", "deployment", begin.Deployment, "reason", why)
	return nil
}

// markActive makes slot the bootloader's primary.
func (r *RAUC) markActive(ctx context.Context, slot string) error {
	return runTool(ctx, toolTimeout, r.o.Env, nil, r.argv("status", "mark-active", slot))
}

// switchedTo returns the slot the update in progress switched to, or "" before the switch.
func switchedTo(j *journal.Journal) string {
	es := j.Entries()
	for i := len(es) - 1; i >= 0 && es[i].Step != StepBegin; i-- {
		if es[i].Step == StepSwitched {
			return es[i].Data["to"]
		}
	}
	return ""
}

func (r *RAUC) argv(cmd ...string) []string {
	bin := r.o.Binary
	if bin == "" {
		bin = "rauc"
	}
	return slices.Concat([]string{bin}, r.o.Args, cmd)
}

// status runs "rauc status --output-format=json".
func (r *RAUC) status(ctx context.Context) (raucStatus, error) {
	out := &limitedBuffer{max: maxStatus}
	if err := runTool(ctx, toolTimeout, r.o.Env, out, r.argv("status", "--output-format=json")); err != nil {
		return raucStatus{}, err
	}
	st, err := parseRAUCStatus(out.buf.Bytes())
	if err != nil {
		return raucStatus{}, fmt.Errorf("rauc status: %w", err)
	}
	return st, nil
}

// raucStatus is what the agent uses of "rauc status --output-format=json".
type raucStatus struct {
	// Booted is the bootname of the slot the system booted from.
	Booted string
	// Primary is the name of the slot the bootloader boots next.
	Primary string
	// Slots are all slots, in RAUC's order.
	Slots []raucSlot
}

// raucSlot is one slot of a raucStatus.
type raucSlot struct {
	Name     string // "rootfs.0"
	Bootname string // "A"; empty for a slot the bootloader does not select (a child slot)
	Parent   string // the slot this one is installed and booted with, if any
}

// slot returns the slot called name.
func (s raucStatus) slot(name string) (raucSlot, bool) {
	for _, sl := range s.Slots {
		if sl.Name == name {
			return sl, true
		}
	}
	return raucSlot{}, false
}

// bootSlot returns the bootable slot with bootname.
func (s raucStatus) bootSlot(bootname string) (raucSlot, bool) {
	for _, sl := range s.Slots {
		if bootname != "" && sl.Bootname == bootname && sl.Parent == "" {
			return sl, true
		}
	}
	return raucSlot{}, false
}

// parseRAUCStatus decodes "rauc status --output-format=json" (RAUC 1.8: "booted" is a
// bootname, "boot_primary" a slot name, "slots" a list of one-key objects). It refuses output
// with a nameless or repeated slot or two bootable slots of one bootname.
func parseRAUCStatus(b []byte) (raucStatus, error) {
	var raw struct {
		Booted  *string                      `json:"booted"`
		Primary *string                      `json:"boot_primary"`
		Slots   []map[string]json.RawMessage `json:"slots"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return raucStatus{}, fmt.Errorf("decode: %w", err)
	}
	st := raucStatus{Booted: deref(raw.Booted), Primary: deref(raw.Primary)}
	seen := map[string]bool{}
	boots := map[string]bool{}
	for _, m := range raw.Slots {
		names := make([]string, 0, len(m))
		for name := range m {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			var s struct {
				Bootname *string `json:"bootname"`
				Parent   *string `json:"parent"`
			}
			if err := json.Unmarshal(m[name], &s); err != nil {
				return raucStatus{}, fmt.Errorf("decode slot %q: %w", name, err)
			}
			sl := raucSlot{Name: name, Bootname: deref(s.Bootname), Parent: deref(s.Parent)}
			if name == "" || seen[name] {
				return raucStatus{}, fmt.Errorf("slot name %q is empty or repeated: %w", name, rampart.ErrInvalid)
			}
			seen[name] = true
			if sl.Bootname != "" && sl.Parent == "" {
				if boots[sl.Bootname] {
					return raucStatus{}, fmt.Errorf("bootname %q names two slots: %w", sl.Bootname, rampart.ErrInvalid)
				}
				boots[sl.Bootname] = true
			}
			st.Slots = append(st.Slots, sl)
		}
	}
	return st, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// runTool runs argv with env added to the agent's environment, bounded by timeout. stdout, if
// not nil, receives the standard output; the rest of the output is kept, up to its last
// maxLog bytes, for the *LogError of a failure.
func runTool(ctx context.Context, timeout time.Duration, env []string, stdout io.Writer, argv []string) error {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tail := &tailBuffer{max: maxLog}
	cmd := exec.CommandContext(rctx, argv[0], argv[1:]...)
	if len(env) > 0 {
		cmd.Env = append(cmd.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = tail, tail
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.WaitDelay = time.Second // children left holding the output pipe do not hang us
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	return &LogError{Op: strings.Join(argv, " "), Log: tail.String(), Err: err}
}

// limitedBuffer keeps what is written to it and fails once more than max bytes arrive.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.buf.Len()+len(p) > b.max {
		return 0, fmt.Errorf("output over %d bytes", b.max)
	}
	return b.buf.Write(p)
}
