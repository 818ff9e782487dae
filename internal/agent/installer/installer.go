// Package installer applies a verified update on the device and then commits or undoes it,
// journaling every step before it is taken so that a power loss at any moment leaves a device
// that boots a complete image and an agent that knows how to continue.
//
// It is for the agent: [AB] (two slots and a bootloader environment), [File] (atomic replace
// of a file or directory, keeping the previous copy), [Script] (run a verified script with
// a timeout), [RAUC] (a RAUC bundle through "rauc install", committed with "rauc status
// mark-good") and [SWUpdate] (a .swu through "swupdate -i", committed and rolled back with
// device-specific commands). RAUC and SWUpdate write the slot and switch the bootloader
// themselves; the installer journals around them. It is not for downloading or verifying
// images (internal/agent/fetch and tufclient do that; every image handed to an installer is
// already verified) nor for reporting to the server.
//
// The flow is the same for every installer: Install (journal "begin" … "switched"), then, for
// A/B, RAUC and SWUpdate after the caller has rebooted, Resume, which runs the health check
// and commits or rolls back. After any crash the agent calls Resume first; it continues or
// undoes whatever the journal says was in progress.
package installer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"time"

	"github.com/rampart-iot/rampart"

	"github.com/rampart-iot/rampart/internal/agent/journal"
)

// Installer installs one update at a time.
type Installer interface {
	// Install applies u, journaling each step in j. It refuses with rampart.ErrConflict while
	// another update is unfinished in j; the same update continues where it stopped.
	Install(ctx context.Context, u Update, j *journal.Journal) error
	// Resume continues what j says is in progress: it finishes an interrupted install, or runs
	// the health check and commits or rolls back. With nothing in progress it reports the
	// journal's last outcome (or OutcomeNone).
	Resume(ctx context.Context, j *journal.Journal) (Result, error)
	// Commit makes the installed update permanent.
	Commit(ctx context.Context, j *journal.Journal) error
	// Rollback undoes the update in progress.
	Rollback(ctx context.Context, j *journal.Journal) error
}

// Update is what to install.
type Update struct {
	// Deployment identifies the update in the journal and in reports.
	Deployment string
	// Image is the path of the verified artifact.
	Image string
	// SHA256 is the hex digest Image was verified against; empty skips the re-check.
	SHA256 string
}

// Journal steps. A step is appended (and fsynced) once it is done.
const (
	StepBegin      = "begin"       // the update starts; Data says where from and to
	StepWritten    = "written"     // the new content is written and fsynced where it will run
	StepSwitched   = "switched"    // the device now runs (or boots) the new content, on trial
	StepCommitted  = "committed"   // the health check passed; the update is permanent
	StepRolledBack = "rolled-back" // the previous content is back
	StepFailed     = "failed"      // the install stopped before switching; nothing changed
	// StepRollingBack starts a rollback that takes several steps (File); Resume finishes it.
	StepRollingBack = "rolling-back"
)

// terminal reports whether step ends an update.
func terminal(step string) bool {
	return step == StepCommitted || step == StepRolledBack || step == StepFailed
}

// Outcome is where an update stands after Resume.
type Outcome int

// Outcomes of Resume.
const (
	OutcomeNone       Outcome = iota // no update in the journal
	OutcomeInstalled                 // installed, waiting for a reboot (Result.Reboot) or commit
	OutcomeCommitted                 // the update is permanent
	OutcomeRolledBack                // the previous content is back (after Result.Reboot, if set)
	OutcomeFailed                    // the install failed before switching; nothing changed
)

// String returns the outcome's name as reported to the server ("committed", …).
func (o Outcome) String() string {
	switch o {
	case OutcomeNone:
		return "none"
	case OutcomeInstalled:
		return "installed"
	case OutcomeCommitted:
		return "committed"
	case OutcomeRolledBack:
		return "rolled-back"
	case OutcomeFailed:
		return "failed"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Result is what Resume did.
type Result struct {
	// Outcome is where the update stands.
	Outcome Outcome
	// Deployment is the update concerned.
	Deployment string
	// Reboot asks the caller to reboot now (into the new slot, or back into the old one).
	Reboot bool
	// Reason says why an update failed or rolled back, with a bounded log excerpt.
	Reason string
}

// HealthCheck decides whether the updated device works; nil error means healthy.
type HealthCheck func(ctx context.Context) error

// DefaultHealthTimeout bounds a health check when no timeout is configured.
const DefaultHealthTimeout = 5 * time.Minute

// maxLog bounds a log excerpt kept for a report.
const maxLog = 4 << 10

// Commands returns a HealthCheck that runs each command (argv) in turn; the first that fails
// fails the check, with the end of its output in the error.
func Commands(cmds ...[]string) HealthCheck {
	return func(ctx context.Context) error {
		for _, argv := range cmds {
			if len(argv) == 0 {
				continue
			}
			out := &tailBuffer{max: maxLog}
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Run(); err != nil {
				return &LogError{Op: "health check " + strings.Join(argv, " "), Log: out.String(), Err: err}
			}
		}
		return nil
	}
}

// runHealth runs check (nil means healthy) with timeout.
func runHealth(ctx context.Context, check HealthCheck, timeout time.Duration) error {
	if check == nil {
		return nil
	}
	if timeout <= 0 {
		timeout = DefaultHealthTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := check(ctx)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return err
}

// LogError is a failed command with the end of its output, for the failure report.
type LogError struct {
	// Op says what was run.
	Op string
	// Log is the last few KiB of its output.
	Log string
	// Err is why it failed (exit status, timeout).
	Err error
}

// Error returns the operation, the cause and the log excerpt.
func (e *LogError) Error() string {
	if e.Log == "" {
		return e.Op + ": " + e.Err.Error()
	}
	return e.Op + ": " + e.Err.Error() + "\n" + e.Log
}

// Unwrap returns the cause.
func (e *LogError) Unwrap() error { return e.Err }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf bytes.Buffer
	max int
	cut bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > b.max {
		p, b.cut = p[len(p)-b.max:], true
	}
	if over := b.buf.Len() + len(p) - b.max; over > 0 {
		b.buf.Next(over)
		b.cut = true
	}
	b.buf.Write(p)
	return n, nil
}

func (b *tailBuffer) String() string {
	if b.cut {
		return "…" + b.buf.String()
	}
	return b.buf.String()
}

// reason is an error as a bounded report text.
func reason(err error) string {
	s := err.Error()
	if len(s) > 2*maxLog {
		s = s[:2*maxLog] + "…"
	}
	return s
}

// current returns the "begin" entry and the last entry of the update in progress; inProgress
// is false when the journal is empty or its last step ends an update.
func current(j *journal.Journal) (begin, last journal.Entry, inProgress bool, err error) {
	es := j.Entries()
	if len(es) == 0 {
		return begin, last, false, nil
	}
	last = es[len(es)-1]
	if terminal(last.Step) {
		return begin, last, false, nil
	}
	for i := len(es) - 1; i >= 0; i-- {
		if es[i].Step == StepBegin {
			return es[i], last, true, nil
		}
	}
	return begin, last, false, errNoBegin
}

// toCommit finds the update a Commit request is for; ok is false when it is already
// committed. Only an update that switched (and passed its checks) can be committed.
func toCommit(j *journal.Journal) (begin journal.Entry, ok bool, err error) {
	begin, last, busy, err := current(j)
	if err != nil {
		return begin, false, fmt.Errorf("commit: %w", err)
	}
	if !busy && last.Step == StepCommitted {
		return begin, false, nil
	}
	if !busy || last.Step != StepSwitched {
		return begin, false, fmt.Errorf("commit: last step is %q: %w", last.Step, rampart.ErrConflict)
	}
	return begin, true, nil
}

// journalCommit records that begin's update is committed.
func journalCommit(ctx context.Context, j *journal.Journal, begin journal.Entry) error {
	if err := j.Append(ctx, journal.Entry{Step: StepCommitted, Deployment: begin.Deployment}); err != nil {
		return fmt.Errorf("commit %s: %w", begin.Deployment, err)
	}
	return nil
}

// toRollBack finds the update a Rollback request is for; ok is false when none is in
// progress (nothing to do), and a committed update cannot be rolled back.
func toRollBack(j *journal.Journal) (begin journal.Entry, ok bool, err error) {
	begin, last, busy, err := current(j)
	if err != nil {
		return begin, false, fmt.Errorf("rollback: %w", err)
	}
	if busy {
		return begin, true, nil
	}
	if last.Step == StepCommitted {
		return begin, false, fmt.Errorf("rollback: %s is committed: %w", last.Deployment, rampart.ErrConflict)
	}
	return begin, false, nil
}

// journalFailed journals that begin's install stopped before anything was switched and
// returns the cause, wrapped with the deployment.
func journalFailed(ctx context.Context, j *journal.Journal, begin journal.Entry, cause error) error {
	err := fmt.Errorf("install %s: %w", begin.Deployment, cause)
	if jerr := j.Append(ctx, journal.Entry{Step: StepFailed, Deployment: begin.Deployment, Data: map[string]string{"reason": reason(err)}}); jerr != nil {
		return errors.Join(err, jerr)
	}
	return err
}

// afterFailure turns an install error inside Resume into a Result when it was journaled as
// failed, and passes on an interruption (which the next Resume continues).
func afterFailure(j *journal.Journal, err error) (Result, error) {
	if last, ok := j.Last(); ok && last.Step == StepFailed {
		return finished(last), nil
	}
	return Result{}, err
}

// journalFellBack journals that the bootloader booted the old image instead of the new one
// (its trial boots ran out) and returns the rolled-back Result with why as the reason.
func journalFellBack(ctx context.Context, j *journal.Journal, begin journal.Entry, why string, log *slog.Logger) (Result, error) {
	if err := j.Append(ctx, journal.Entry{Step: StepRolledBack, Deployment: begin.Deployment, Data: map[string]string{"reason": why}}); err != nil {
		return Result{}, fmt.Errorf("resume %s: %w", begin.Deployment, err)
	}
	log.InfoContext(ctx, "update rolled back by the bootloader", "deployment", begin.Deployment)
	return Result{Outcome: OutcomeRolledBack, Deployment: begin.Deployment, Reason: why}, nil
}

// trial ends an update that runs the new content: it runs the health check, then commit,
// or rollback with the check's failure as the reason. reboot says whether the rolled-back
// Result asks the caller to reboot (the old image is back only after one).
func trial(ctx context.Context, begin journal.Entry, health HealthCheck, timeout time.Duration, reboot bool,
	rollback func(why string) error, commit func() error) (Result, error) {
	if herr := runHealth(ctx, health, timeout); herr != nil {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		r := Result{Outcome: OutcomeRolledBack, Deployment: begin.Deployment, Reboot: reboot, Reason: reason(herr)}
		if err := rollback(r.Reason); err != nil {
			return Result{}, err
		}
		return r, nil
	}
	if err := commit(); err != nil {
		return Result{}, err
	}
	return Result{Outcome: OutcomeCommitted, Deployment: begin.Deployment}, nil
}

// finished is the Result of a journal whose last step ends an update (or that is empty).
func finished(last journal.Entry) Result {
	r := Result{Deployment: last.Deployment, Reason: last.Data["reason"]}
	switch last.Step {
	case StepCommitted:
		r.Outcome = OutcomeCommitted
	case StepRolledBack:
		r.Outcome = OutcomeRolledBack
	case StepFailed:
		r.Outcome = OutcomeFailed
	}
	return r
}

// errNoBegin is a journal whose update in progress has no "begin" entry: only possible if
// the journal was edited, since "begin" is written first.
var errNoBegin = errors.New("journal has steps but no begin")

var (
	_ Installer = (*AB)(nil)
	_ Installer = (*File)(nil)
	_ Installer = (*Script)(nil)
)
