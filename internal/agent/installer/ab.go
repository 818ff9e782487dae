package installer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/agent/bootenv"
	"github.com/rampart-iot/rampart/internal/agent/journal"
)

// Slot is one of the two A/B slots.
type Slot struct {
	// Name is the value of boot_slot that selects this slot ("A", "B").
	Name string
	// Path is the partition (block device) or, in tests and the simulator, a file.
	Path string
}

// ABOptions configures an A/B installer.
type ABOptions struct {
	// Env is the bootloader environment; boot_slot unset means Slots[0].
	Env bootenv.Env
	// Slots are the two slots.
	Slots [2]Slot
	// Health decides after the reboot whether the new slot works; nil means healthy.
	Health HealthCheck
	// HealthTimeout bounds Health; zero means DefaultHealthTimeout.
	HealthTimeout time.Duration
	// Log receives progress at Info; nil discards it.
	Log *slog.Logger
}

// AB installs an image into the inactive slot and lets the bootloader try it:
//
//	begin → write inactive slot, fsync → written → re-read and hash the slot →
//	env {boot_slot=new, upgrade_available=1, bootcount=0} in one write → switched →
//	(caller reboots; the bootloader counts trial boots and falls back after bootlimit) →
//	Resume: health check → Commit (upgrade_available=0) → committed
//	                     or Rollback (boot_slot=old) → rolled-back (caller reboots).
//
// The environment only ever names a slot whose content was verified, so whatever step a
// power loss interrupts, the bootloader boots a complete image.
type AB struct {
	o   ABOptions
	log *slog.Logger
	// failpoint, when set (tests only), is called at each named point of the flow.
	failpoint func(point string)
}

// NewAB returns an A/B installer.
func NewAB(o ABOptions) *AB {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &AB{o: o, log: log}
}

func (a *AB) fail(point string) {
	if a.failpoint != nil {
		a.failpoint(point)
	}
}

// copyBuf is the copy chunk: small, for devices with little memory.
const copyBuf = 64 << 10

// Install implements [Installer]. On success the caller reboots to try the new slot.
func (a *AB) Install(ctx context.Context, u Update, j *journal.Journal) error {
	begin, _, busy, err := current(j)
	if err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	if busy {
		if begin.Deployment != u.Deployment {
			return fmt.Errorf("install %s: %s is unfinished: %w", u.Deployment, begin.Deployment, rampart.ErrConflict)
		}
		_, err := a.Resume(ctx, j)
		return err
	}
	vars, err := a.o.Env.Get(ctx, bootenv.BootSlot, bootenv.UpgradeAvailable)
	if err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	if vars[bootenv.UpgradeAvailable] == "1" {
		return fmt.Errorf("install %s: a slot is on trial and not committed: %w", u.Deployment, rampart.ErrConflict)
	}
	from, to, err := a.otherSlot(vars[bootenv.BootSlot])
	if err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	fi, err := os.Stat(u.Image)
	if err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	begin = journal.Entry{Step: StepBegin, Deployment: u.Deployment, Data: map[string]string{
		"from": from.Name, "to": to.Name, "image": u.Image, "sha256": u.SHA256, "size": strconv.FormatInt(fi.Size(), 10),
	}}
	if err := j.Append(ctx, begin); err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	a.fail("begin")
	return a.install(ctx, j, begin, "")
}

// install runs the steps after "begin"; written is the digest journaled by "written", or ""
// if the slot still has to be written.
func (a *AB) install(ctx context.Context, j *journal.Journal, begin journal.Entry, written string) error {
	d := begin.Data
	_, to, err := a.otherSlot(d["from"])
	if err != nil {
		return journalFailed(ctx, j, begin, err)
	}
	size, err := strconv.ParseInt(d["size"], 10, 64)
	if err != nil {
		return journalFailed(ctx, j, begin, fmt.Errorf("journal size %q: %w", d["size"], rampart.ErrInvalid))
	}
	if written == "" {
		a.log.InfoContext(ctx, "writing slot", "deployment", begin.Deployment, "slot", to.Name)
		sum, err := a.writeSlot(ctx, d["image"], to.Path, size)
		if err != nil {
			if ctx.Err() != nil {
				return err // interrupted, not failed: Resume continues
			}
			return journalFailed(ctx, j, begin, err)
		}
		if want := d["sha256"]; want != "" && want != sum {
			return journalFailed(ctx, j, begin, fmt.Errorf("image %s has sha256 %s, want %s: %w", d["image"], sum, want, rampart.ErrInvalid))
		}
		if err := j.Append(ctx, journal.Entry{Step: StepWritten, Deployment: begin.Deployment, Data: map[string]string{"sha256": sum}}); err != nil {
			return fmt.Errorf("install %s: %w", begin.Deployment, err)
		}
		a.fail("written")
		written = sum
	}
	got, err := hashPrefix(ctx, to.Path, size)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		return journalFailed(ctx, j, begin, err)
	}
	if got != written {
		return journalFailed(ctx, j, begin, fmt.Errorf("slot %s reads back sha256 %s, wrote %s", to.Name, got, written))
	}
	a.fail("verified")
	if err := a.o.Env.Set(ctx, map[string]string{
		bootenv.BootSlot: to.Name, bootenv.UpgradeAvailable: "1", bootenv.BootCount: "0",
	}); err != nil {
		return fmt.Errorf("install %s: switch to slot %s: %w", begin.Deployment, to.Name, err)
	}
	a.fail("env-switched")
	if err := j.Append(ctx, journal.Entry{Step: StepSwitched, Deployment: begin.Deployment}); err != nil {
		return fmt.Errorf("install %s: %w", begin.Deployment, err)
	}
	a.fail("switched")
	a.log.InfoContext(ctx, "slot switched, reboot to try it", "deployment", begin.Deployment, "slot", to.Name)
	return nil
}

// Resume implements [Installer].
func (a *AB) Resume(ctx context.Context, j *journal.Journal) (Result, error) {
	begin, last, busy, err := current(j)
	if err != nil {
		return Result{}, fmt.Errorf("resume: %w", err)
	}
	if !busy {
		return finished(last), nil
	}
	r := Result{Outcome: OutcomeInstalled, Deployment: begin.Deployment, Reboot: true}
	from, to, err := a.otherSlot(begin.Data["from"])
	if err != nil {
		return Result{}, fmt.Errorf("resume %s: %w", begin.Deployment, err)
	}
	vars, err := a.o.Env.Get(ctx, bootenv.BootSlot, bootenv.UpgradeAvailable, bootenv.BootCount)
	if err != nil {
		return Result{}, fmt.Errorf("resume %s: %w", begin.Deployment, err)
	}
	switched := vars[bootenv.BootSlot] == to.Name && vars[bootenv.UpgradeAvailable] == "1"
	switch last.Step {
	case StepBegin:
		if err := a.install(ctx, j, begin, ""); err != nil {
			return afterFailure(j, err)
		}
		return r, nil
	case StepWritten:
		if !switched {
			if err := a.install(ctx, j, begin, last.Data["sha256"]); err != nil {
				return afterFailure(j, err)
			}
			return r, nil
		}
		// Power was lost between switching the environment and journaling it.
		if err := j.Append(ctx, journal.Entry{Step: StepSwitched, Deployment: begin.Deployment}); err != nil {
			return Result{}, fmt.Errorf("resume %s: %w", begin.Deployment, err)
		}
		a.fail("switched")
	}
	// Switched: what did the bootloader do?
	switch {
	case vars[bootenv.BootSlot] == from.Name:
		// The bootloader fell back after bootlimit trial boots, or a Rollback switched back
		// and lost power before journaling it.
		return journalFellBack(ctx, j, begin,
			fmt.Sprintf("slot %s did not come up healthy; the bootloader booted slot %s", to.Name, from.Name), a.log)
	case !switched:
		// Commit set upgrade_available=0 and lost power before journaling it.
		if err := j.Append(ctx, journal.Entry{Step: StepCommitted, Deployment: begin.Deployment}); err != nil {
			return Result{}, fmt.Errorf("resume %s: %w", begin.Deployment, err)
		}
		return Result{Outcome: OutcomeCommitted, Deployment: begin.Deployment}, nil
	case vars[bootenv.BootCount] == "" || vars[bootenv.BootCount] == "0":
		return r, nil // not rebooted since the switch: still running the old slot
	}
	a.fail("health")
	return trial(ctx, begin, a.o.Health, a.o.HealthTimeout, true,
		func(why string) error { return a.rollback(ctx, j, begin, why) },
		func() error { return a.Commit(ctx, j) })
}

// Commit implements [Installer]: the slot on trial becomes the permanent one.
func (a *AB) Commit(ctx context.Context, j *journal.Journal) error {
	begin, ok, err := toCommit(j)
	if err != nil || !ok {
		return err
	}
	if err := a.o.Env.Set(ctx, map[string]string{bootenv.UpgradeAvailable: "0", bootenv.BootCount: "0"}); err != nil {
		return fmt.Errorf("commit %s: %w", begin.Deployment, err)
	}
	a.fail("commit-env")
	if err := journalCommit(ctx, j, begin); err != nil {
		return err
	}
	a.fail("committed")
	a.log.InfoContext(ctx, "update committed", "deployment", begin.Deployment)
	return nil
}

// Rollback implements [Installer]: before the switch it only journals the end of the update
// (the inactive slot is not booted); after it, boot_slot goes back to the old slot and the
// caller reboots.
func (a *AB) Rollback(ctx context.Context, j *journal.Journal) error {
	begin, ok, err := toRollBack(j)
	if err != nil || !ok {
		return err
	}
	return a.rollback(ctx, j, begin, "rolled back on request")
}

func (a *AB) rollback(ctx context.Context, j *journal.Journal, begin journal.Entry, why string) error {
	vars, err := a.o.Env.Get(ctx, bootenv.BootSlot)
	if err != nil {
		return fmt.Errorf("rollback %s: %w", begin.Deployment, err)
	}
	if from := begin.Data["from"]; vars[bootenv.BootSlot] != from {
		if err := a.o.Env.Set(ctx, map[string]string{
			bootenv.BootSlot: from, bootenv.UpgradeAvailable: "0", bootenv.BootCount: "0",
		}); err != nil {
			return fmt.Errorf("rollback %s: %w", begin.Deployment, err)
		}
	}
	a.fail("rollback-env")
	if err := j.Append(ctx, journal.Entry{Step: StepRolledBack, Deployment: begin.Deployment, Data: map[string]string{"reason": why}}); err != nil {
		return fmt.Errorf("rollback %s: %w", begin.Deployment, err)
	}
	a.fail("rolled-back")
	a.log.InfoContext(ctx, "update rolled back", "deployment", begin.Deployment, "reason", why)
	return nil
}

// otherSlot returns the slot named current (empty: Slots[0]) and the other one.
func (a *AB) otherSlot(current string) (from, to Slot, err error) {
	s := a.o.Slots
	switch current {
	case s[0].Name, "":
		return s[0], s[1], nil
	case s[1].Name:
		return s[1], s[0], nil
	}
	return Slot{}, Slot{}, fmt.Errorf("boot_slot %q names no slot: %w", current, rampart.ErrInvalid)
}

// writeSlot streams image into the slot at path, fsyncs it and returns the image's digest.
func (a *AB) writeSlot(ctx context.Context, image, path string, size int64) (string, error) {
	in, err := os.Open(image)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600) // no O_TRUNC: may be a block device
	if err != nil {
		return "", err
	}
	defer out.Close()
	h := sha256.New()
	buf := make([]byte, copyBuf)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		k, rerr := in.Read(buf)
		if k > 0 {
			if _, err := out.Write(buf[:k]); err != nil {
				return "", fmt.Errorf("write slot %s: %w", path, err)
			}
			h.Write(buf[:k])
			n += int64(k)
			a.fail("copying")
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return "", fmt.Errorf("read image %s: %w", image, rerr)
		}
	}
	if n != size {
		return "", fmt.Errorf("image %s is %d bytes, journaled %d: %w", image, n, size, rampart.ErrInvalid)
	}
	if fi, err := out.Stat(); err == nil && fi.Mode().IsRegular() {
		if err := out.Truncate(n); err != nil {
			return "", fmt.Errorf("write slot %s: %w", path, err)
		}
	}
	if err := out.Sync(); err != nil {
		return "", fmt.Errorf("sync slot %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), out.Close()
}

// hashPrefix returns the sha256 of the first size bytes of path.
func hashPrefix(ctx context.Context, path string, size int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, &ctxReader{ctx: ctx, r: io.LimitReader(f, size)}); err != nil {
		return "", fmt.Errorf("read back slot %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
