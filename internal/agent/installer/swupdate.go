package installer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/agent/journal"
)

// SWUpdateOptions configures a SWUpdate installer.
type SWUpdateOptions struct {
	// Binary is the swupdate program; empty means "swupdate" on PATH.
	Binary string
	// Args go before "-i IMAGE": the software set to install and the verification key, such as
	// "-e", "stable,copy2", "-k", "/etc/swupdate/public.pem".
	Args []string
	// Env is added to the environment of swupdate and of the commands below ("KEY=value").
	Env []string
	// Timeout bounds swupdate; zero means DefaultSWUpdateTimeout.
	Timeout time.Duration
	// Commit is run (argv) to make the new image permanent once it is healthy, e.g.
	// "fw_setenv", "upgrade_available", "0" or a script that also clears ustate; nil runs
	// nothing.
	Commit []string
	// Rollback is run (argv) to make the bootloader boot the previous image again, e.g. a
	// script that sets boot_slot back. It is required: once SWUpdate has switched, only it
	// undoes the switch.
	Rollback []string
	// Booted, if set, is run (argv) to name the image the device runs, e.g. "swupdate", "-g"
	// (the root device). With it, Resume notices that the bootloader fell back to the old
	// image, and that an install it lost track of had already switched. Without it, the
	// health check is the only judge and an install interrupted at any point is run again.
	Booted []string
	// BootID is a file whose content changes at every boot; empty means
	// /proc/sys/kernel/random/boot_id. Resume reads it to tell whether the device has rebooted
	// since the switch.
	BootID string
	// Health decides after the reboot whether the new image works; nil means healthy.
	Health HealthCheck
	// HealthTimeout bounds Health; zero means DefaultHealthTimeout.
	HealthTimeout time.Duration
	// Log receives progress at Info; nil discards it.
	Log *slog.Logger
}

// DefaultSWUpdateTimeout bounds swupdate when no timeout is configured.
const DefaultSWUpdateTimeout = 30 * time.Minute

// maxBooted bounds the output of the Booted command.
const maxBooted = 4 << 10

// SWUpdate hands an image (.swu) to SWUpdate, whose sw-description and bootloader handling
// write the image and switch the bootloader to it:
//
//	begin (booted image, boot ID) → swupdate ARGS -i IMAGE → written → switched
//	  (if swupdate fails: Rollback command → failed) →
//	(caller reboots) →
//	Resume: same boot ID: not rebooted yet; Booted names the old image: the bootloader fell
//	back → rolled-back; otherwise health check → Commit command → committed,
//	or rolling-back → Rollback command → rolled-back (caller reboots).
//
// SWUpdate switches the bootloader only after writing every image, and keeps its transaction
// marker set while it writes; a swupdate run cut short by a power loss is run again by Resume.
// A failing run is followed by the Rollback command because swupdate can fail after it has
// switched.
type SWUpdate struct {
	o   SWUpdateOptions
	log *slog.Logger
	// failpoint, when set (tests only), is called at each named point of the flow.
	failpoint func(point string)
}

var _ Installer = (*SWUpdate)(nil)

// NewSWUpdate returns a SWUpdate installer.
func NewSWUpdate(o SWUpdateOptions) *SWUpdate {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SWUpdate{o: o, log: log}
}

func (s *SWUpdate) fail(point string) {
	if s.failpoint != nil {
		s.failpoint(point)
	}
}

// Install implements [Installer]. On success the caller reboots into the new image. A failing
// swupdate returns a *LogError and is journaled failed.
func (s *SWUpdate) Install(ctx context.Context, u Update, j *journal.Journal) error {
	begin, _, busy, err := current(j)
	if err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	if busy {
		if begin.Deployment != u.Deployment {
			return fmt.Errorf("install %s: %s is unfinished: %w", u.Deployment, begin.Deployment, rampart.ErrConflict)
		}
		_, err := s.Resume(ctx, j)
		return err
	}
	if len(s.o.Rollback) == 0 {
		return fmt.Errorf("install %s: no rollback command configured for swupdate: %w", u.Deployment, rampart.ErrInvalid)
	}
	from, err := s.booted(ctx)
	if err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	boot, err := s.bootID()
	if err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	begin = journal.Entry{Step: StepBegin, Deployment: u.Deployment, Data: map[string]string{
		"image": u.Image, "sha256": u.SHA256, "from": from, "boot": boot,
	}}
	if err := j.Append(ctx, begin); err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	s.fail("begin")
	return s.install(ctx, j, begin)
}

// install runs swupdate and journals written and switched.
func (s *SWUpdate) install(ctx context.Context, j *journal.Journal, begin journal.Entry) error {
	image := begin.Data["image"]
	if want := begin.Data["sha256"]; want != "" {
		if got, err := fileDigest(image); err != nil || got != want {
			return journalFailed(ctx, j, begin, fmt.Errorf("image %s does not match sha256 %s: %v: %w", image, want, err, rampart.ErrInvalid))
		}
	}
	timeout := s.o.Timeout
	if timeout <= 0 {
		timeout = DefaultSWUpdateTimeout
	}
	bin := s.o.Binary
	if bin == "" {
		bin = "swupdate"
	}
	s.log.InfoContext(ctx, "running swupdate", "deployment", begin.Deployment, "image", image)
	if err := runTool(ctx, timeout, s.o.Env, nil, slices.Concat([]string{bin}, s.o.Args, []string{"-i", image})); err != nil {
		if ctx.Err() != nil {
			return err // interrupted, not failed: Resume runs it again
		}
		// swupdate can fail after it has switched the bootloader (2022.12 exits 1 now and then
		// when its post-update step fails after a good install), so the switch is undone
		// before the journal says nothing changed.
		if rerr := runTool(ctx, toolTimeout, s.o.Env, nil, s.o.Rollback); rerr != nil {
			return fmt.Errorf("install %s: %w", begin.Deployment, errors.Join(err, fmt.Errorf("undo a possible switch: %w", rerr)))
		}
		return journalFailed(ctx, j, begin, err)
	}
	s.fail("installed")
	boot, err := s.bootID()
	if err != nil {
		return fmt.Errorf("install %s: %w", begin.Deployment, err)
	}
	if err := j.Append(ctx, journal.Entry{Step: StepWritten, Deployment: begin.Deployment, Data: map[string]string{"boot": boot}}); err != nil {
		return fmt.Errorf("install %s: %w", begin.Deployment, err)
	}
	s.fail("written")
	return s.switched(ctx, j, begin, boot)
}

// switched journals that SWUpdate switched the bootloader during the boot with ID boot.
func (s *SWUpdate) switched(ctx context.Context, j *journal.Journal, begin journal.Entry, boot string) error {
	if err := j.Append(ctx, journal.Entry{Step: StepSwitched, Deployment: begin.Deployment, Data: map[string]string{"boot": boot}}); err != nil {
		return fmt.Errorf("install %s: %w", begin.Deployment, err)
	}
	s.fail("switched")
	s.log.InfoContext(ctx, "swupdate installed the image, reboot to try it", "deployment", begin.Deployment)
	return nil
}

// Resume implements [Installer].
func (s *SWUpdate) Resume(ctx context.Context, j *journal.Journal) (Result, error) {
	begin, last, busy, err := current(j)
	if err != nil {
		return Result{}, fmt.Errorf("resume: %w", err)
	}
	if !busy {
		return finished(last), nil
	}
	booted, err := s.booted(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("resume %s: %w", begin.Deployment, err)
	}
	boot, err := s.bootID()
	if err != nil {
		return Result{}, fmt.Errorf("resume %s: %w", begin.Deployment, err)
	}
	from := begin.Data["from"]
	onOld := from != "" && booted == from // known to run the old image
	installed := Result{Outcome: OutcomeInstalled, Deployment: begin.Deployment, Reboot: true}
	switch last.Step {
	case StepRollingBack:
		if err := s.rollback(ctx, j, begin, last.Data["reason"]); err != nil {
			return Result{}, err
		}
		return Result{Outcome: OutcomeRolledBack, Deployment: begin.Deployment, Reason: last.Data["reason"], Reboot: !onOld}, nil
	case StepBegin:
		if from != "" && booted != from {
			// swupdate finished and the device rebooted into the new image before "written"
			// was journaled.
			if err := j.Append(ctx, journal.Entry{Step: StepWritten, Deployment: begin.Deployment, Data: map[string]string{"boot": begin.Data["boot"]}}); err != nil {
				return Result{}, fmt.Errorf("resume %s: %w", begin.Deployment, err)
			}
			last, _ = j.Last()
			break
		}
		if err := s.install(ctx, j, begin); err != nil {
			return afterFailure(j, err)
		}
		last, _ = j.Last()
	}
	if last.Step == StepWritten {
		if err := s.switched(ctx, j, begin, last.Data["boot"]); err != nil {
			return Result{}, err
		}
		last, _ = j.Last()
	}
	// Switched: has the device rebooted, and into which image?
	switch {
	case boot == last.Data["boot"]:
		return installed, nil
	case onOld:
		return journalFellBack(ctx, j, begin, fmt.Sprintf("the new image did not come up healthy; the bootloader booted %s", from), s.log)
	}
	s.fail("health")
	return trial(ctx, begin, s.o.Health, s.o.HealthTimeout, true,
		func(why string) error { return s.rollback(ctx, j, begin, why) },
		func() error { return s.Commit(ctx, j) })
}

// Commit implements [Installer]: it runs the Commit command, if any.
func (s *SWUpdate) Commit(ctx context.Context, j *journal.Journal) error {
	begin, ok, err := toCommit(j)
	if err != nil || !ok {
		return err
	}
	if len(s.o.Commit) > 0 {
		if err := runTool(ctx, toolTimeout, s.o.Env, nil, s.o.Commit); err != nil {
			return fmt.Errorf("commit %s: %w", begin.Deployment, err)
		}
	}
	s.fail("commit")
	if err := journalCommit(ctx, j, begin); err != nil {
		return err
	}
	s.fail("committed")
	s.log.InfoContext(ctx, "update committed", "deployment", begin.Deployment)
	return nil
}

// Rollback implements [Installer]: it runs the Rollback command; after a switch the caller
// reboots.
func (s *SWUpdate) Rollback(ctx context.Context, j *journal.Journal) error {
	begin, ok, err := toRollBack(j)
	if err != nil || !ok {
		return err
	}
	return s.rollback(ctx, j, begin, "rolled back on request")
}

// rollback journals rolling-back, runs the Rollback command and journals rolled-back; Resume
// runs the command again after a crash, so it must be idempotent.
func (s *SWUpdate) rollback(ctx context.Context, j *journal.Journal, begin journal.Entry, why string) error {
	if len(s.o.Rollback) == 0 {
		return fmt.Errorf("rollback %s: no rollback command configured: %w", begin.Deployment, errors.ErrUnsupported)
	}
	if last, _ := j.Last(); last.Step != StepRollingBack {
		if err := j.Append(ctx, journal.Entry{Step: StepRollingBack, Deployment: begin.Deployment, Data: map[string]string{"reason": why}}); err != nil {
			return fmt.Errorf("rollback %s: %w", begin.Deployment, err)
		}
	}
	s.fail("rolling-back")
	if err := runTool(ctx, toolTimeout, s.o.Env, nil, s.o.Rollback); err != nil {
		return fmt.Errorf("rollback %s: %w", begin.Deployment, err)
	}
	s.fail("rollback-ran")
	if err := j.Append(ctx, journal.Entry{Step: StepRolledBack, Deployment: begin.Deployment, Data: map[string]string{"reason": why}}); err != nil {
		return fmt.Errorf("rollback %s: %w", begin.Deployment, err)
	}
	s.fail("rolled-back")
	s.log.InfoContext(ctx, "update rolled back", "deployment", begin.Deployment, "reason", why)
	return nil
}

// booted runs the Booted command; "" when none is configured.
func (s *SWUpdate) booted(ctx context.Context) (string, error) {
	if len(s.o.Booted) == 0 {
		return "", nil
	}
	out := &limitedBuffer{max: maxBooted}
	if err := runTool(ctx, toolTimeout, s.o.Env, out, s.o.Booted); err != nil {
		return "", fmt.Errorf("booted image: %w", err)
	}
	id := strings.TrimSpace(out.buf.String())
	if id == "" {
		return "", fmt.Errorf("booted image: %s printed nothing: %w", strings.Join(s.o.Booted, " "), rampart.ErrInvalid)
	}
	return id, nil
}

// bootID reads the boot ID.
func (s *SWUpdate) bootID() (string, error) {
	path := s.o.BootID
	if path == "" {
		path = "/proc/sys/kernel/random/boot_id"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", fmt.Errorf("boot id: %s is empty: %w", path, rampart.ErrInvalid)
	}
	return id, nil
}
