package installer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/agent/journal"
)

// ScriptOptions configures a script installer.
type ScriptOptions struct {
	// Interpreter runs the script, e.g. "/bin/sh"; empty executes the image itself.
	Interpreter string
	// Timeout bounds the script; zero means DefaultScriptTimeout.
	Timeout time.Duration
	// Log receives progress at Info; nil discards it.
	Log *slog.Logger
}

// DefaultScriptTimeout bounds a script when no timeout is configured.
const DefaultScriptTimeout = 10 * time.Minute

// Script runs a verified script as the update: begin → run (with a timeout; the end of its
// output is kept for the report) → switched, or failed. A script cannot be undone and is not
// re-run after a power loss (it may not be idempotent): an interrupted script ends failed.
type Script struct {
	o   ScriptOptions
	log *slog.Logger
}

// NewScript returns a script installer.
func NewScript(o ScriptOptions) *Script {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Script{o: o, log: log}
}

// Install implements [Installer]. A failing script returns a *LogError and is journaled
// failed.
func (s *Script) Install(ctx context.Context, u Update, j *journal.Journal) error {
	begin, _, busy, err := current(j)
	if err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	if busy {
		return fmt.Errorf("install %s: %s is unfinished: %w", u.Deployment, begin.Deployment, rampart.ErrConflict)
	}
	if u.SHA256 != "" {
		if got, err := fileDigest(u.Image); err != nil || got != u.SHA256 {
			return fmt.Errorf("install %s: script does not match sha256 %s: %w", u.Deployment, u.SHA256, rampart.ErrInvalid)
		}
	}
	begin = journal.Entry{Step: StepBegin, Deployment: u.Deployment, Data: map[string]string{"image": u.Image}}
	if err := j.Append(ctx, begin); err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	timeout := s.o.Timeout
	if timeout <= 0 {
		timeout = DefaultScriptTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name, args := u.Image, []string(nil)
	if s.o.Interpreter != "" {
		name, args = s.o.Interpreter, []string{u.Image}
	}
	out := &tailBuffer{max: maxLog}
	cmd := exec.CommandContext(rctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second // children left holding the output pipe do not hang us
	if err := cmd.Run(); err != nil {
		if errors.Is(rctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s: %w", timeout, err)
		}
		lerr := &LogError{Op: "script " + u.Image, Log: out.String(), Err: err}
		ferr := fmt.Errorf("install %s: %w", u.Deployment, lerr)
		if jerr := j.Append(ctx, journal.Entry{Step: StepFailed, Deployment: u.Deployment, Data: map[string]string{"reason": reason(lerr)}}); jerr != nil {
			return errors.Join(ferr, jerr)
		}
		return ferr
	}
	if err := j.Append(ctx, journal.Entry{Step: StepSwitched, Deployment: u.Deployment, Data: map[string]string{"log": out.String()}}); err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	s.log.InfoContext(ctx, "script ran", "deployment", u.Deployment)
	return nil
}

// Resume implements [Installer]: a script that ran is committed; one interrupted by a power
// loss is journaled failed, since whether it did anything is unknown.
func (s *Script) Resume(ctx context.Context, j *journal.Journal) (Result, error) {
	begin, last, busy, err := current(j)
	if err != nil {
		return Result{}, fmt.Errorf("resume: %w", err)
	}
	if !busy {
		return finished(last), nil
	}
	if last.Step == StepSwitched {
		if err := s.Commit(ctx, j); err != nil {
			return Result{}, err
		}
		return Result{Outcome: OutcomeCommitted, Deployment: begin.Deployment}, nil
	}
	e := journal.Entry{Step: StepFailed, Deployment: begin.Deployment, Data: map[string]string{"reason": "script interrupted by a restart"}}
	if err := j.Append(ctx, e); err != nil {
		return Result{}, fmt.Errorf("resume %s: %w", begin.Deployment, err)
	}
	return finished(e), nil
}

// Commit implements [Installer].
func (s *Script) Commit(ctx context.Context, j *journal.Journal) error {
	begin, ok, err := toCommit(j)
	if err != nil || !ok {
		return err
	}
	return journalCommit(ctx, j, begin)
}

// Rollback implements [Installer]. A script that ran cannot be undone: that is
// errors.ErrUnsupported.
func (s *Script) Rollback(ctx context.Context, j *journal.Journal) error {
	_, last, busy, err := current(j)
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if !busy && last.Step != StepCommitted {
		return nil
	}
	return fmt.Errorf("rollback %s: a script cannot be undone: %w", last.Deployment, errors.ErrUnsupported)
}
