package installer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/agent/journal"
)

// FileOptions configures a file installer.
type FileOptions struct {
	// Target is the file or directory the update replaces.
	Target string
	// Health decides after the swap whether the device works; nil means healthy.
	Health HealthCheck
	// HealthTimeout bounds Health; zero means DefaultHealthTimeout.
	HealthTimeout time.Duration
	// Log receives progress at Info; nil discards it.
	Log *slog.Logger
}

// File replaces a file or a directory tree with the image (a file or a directory):
//
//	begin → copy to Target+".new", fsync → written →
//	rename Target → Target+".prev", rename Target+".new" → Target, fsync dir → switched →
//	Resume: health check → committed, or Rollback: Target+".prev" back → rolled-back.
//
// The previous copy stays as Target+".prev" until the next update. Repeating the swap after a
// power loss between its two renames completes it.
type File struct {
	o   FileOptions
	log *slog.Logger
	// failpoint, when set (tests only), is called at each named point of the flow.
	failpoint func(point string)
}

func (f *File) fail(point string) {
	if f.failpoint != nil {
		f.failpoint(point)
	}
}

// NewFile returns a file installer.
func NewFile(o FileOptions) *File {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &File{o: o, log: log}
}

// Install implements [Installer]. No reboot is needed; the caller calls Resume next.
func (f *File) Install(ctx context.Context, u Update, j *journal.Journal) error {
	begin, _, busy, err := current(j)
	if err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	if busy {
		if begin.Deployment != u.Deployment {
			return fmt.Errorf("install %s: %s is unfinished: %w", u.Deployment, begin.Deployment, rampart.ErrConflict)
		}
		_, err := f.Resume(ctx, j)
		return err
	}
	prev := "0"
	if _, err := os.Lstat(f.o.Target); err == nil {
		prev = "1"
	}
	begin = journal.Entry{Step: StepBegin, Deployment: u.Deployment, Data: map[string]string{"image": u.Image, "sha256": u.SHA256, "prev": prev}}
	if err := j.Append(ctx, begin); err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	return f.install(ctx, j, begin, false)
}

func (f *File) install(ctx context.Context, j *journal.Journal, begin journal.Entry, written bool) error {
	staged := f.o.Target + ".new"
	if !written {
		image := begin.Data["image"]
		if want := begin.Data["sha256"]; want != "" {
			if got, err := fileDigest(image); err != nil || got != want {
				return f.abandon(ctx, j, begin, fmt.Errorf("image %s does not match sha256 %s: %v: %w", image, want, err, rampart.ErrInvalid))
			}
		}
		// Only the copy this update replaces is kept; an older .prev goes.
		for _, p := range []string{staged, f.o.Target + ".prev"} {
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("install %s: %w", begin.Deployment, err)
			}
		}
		if err := copyTree(ctx, image, staged); err != nil {
			if ctx.Err() != nil {
				return err
			}
			return f.abandon(ctx, j, begin, err)
		}
		if err := syncDir(filepath.Dir(staged)); err != nil {
			return fmt.Errorf("install %s: %w", begin.Deployment, err)
		}
		if err := j.Append(ctx, journal.Entry{Step: StepWritten, Deployment: begin.Deployment}); err != nil {
			return fmt.Errorf("install %s: %w", begin.Deployment, err)
		}
		f.fail("written")
	}
	if err := f.swap(); err != nil {
		return fmt.Errorf("install %s: %w", begin.Deployment, err)
	}
	if err := j.Append(ctx, journal.Entry{Step: StepSwitched, Deployment: begin.Deployment}); err != nil {
		return fmt.Errorf("install %s: %w", begin.Deployment, err)
	}
	f.fail("switched")
	f.log.InfoContext(ctx, "file replaced", "deployment", begin.Deployment, "target", f.o.Target)
	return nil
}

// swap moves Target to .prev and .new to Target; it is idempotent, so a repeat after a power
// loss between the renames completes it.
func (f *File) swap() error {
	t := f.o.Target
	if _, err := os.Lstat(t + ".new"); errors.Is(err, fs.ErrNotExist) {
		return nil // already swapped
	}
	if _, err := os.Lstat(t); err == nil {
		if err := os.Rename(t, t+".prev"); err != nil {
			return err
		}
		f.fail("swap-half")
	}
	if err := os.Rename(t+".new", t); err != nil {
		return err
	}
	return syncDir(filepath.Dir(t))
}

func (f *File) abandon(ctx context.Context, j *journal.Journal, begin journal.Entry, cause error) error {
	os.RemoveAll(f.o.Target + ".new") // best effort; the next install removes it too
	return journalFailed(ctx, j, begin, cause)
}

// Resume implements [Installer].
func (f *File) Resume(ctx context.Context, j *journal.Journal) (Result, error) {
	begin, last, busy, err := current(j)
	if err != nil {
		return Result{}, fmt.Errorf("resume: %w", err)
	}
	if !busy {
		return finished(last), nil
	}
	if last.Step == StepRollingBack {
		if err := f.rollback(ctx, j, begin, last.Data["reason"]); err != nil {
			return Result{}, err
		}
		return finished(journal.Entry{Step: StepRolledBack, Deployment: begin.Deployment, Data: last.Data}), nil
	}
	if last.Step != StepSwitched {
		if err := f.install(ctx, j, begin, last.Step == StepWritten); err != nil {
			return afterFailure(j, err)
		}
	}
	return trial(ctx, begin, f.o.Health, f.o.HealthTimeout, false,
		func(why string) error { return f.rollback(ctx, j, begin, why) },
		func() error { return f.Commit(ctx, j) })
}

// Commit implements [Installer]. The previous copy stays until the next update.
func (f *File) Commit(ctx context.Context, j *journal.Journal) error {
	begin, ok, err := toCommit(j)
	if err != nil || !ok {
		return err
	}
	return journalCommit(ctx, j, begin)
}

// Rollback implements [Installer]: Target+".prev" goes back in place (or, if there was no
// previous copy, Target is removed).
func (f *File) Rollback(ctx context.Context, j *journal.Journal) error {
	begin, ok, err := toRollBack(j)
	if err != nil || !ok {
		return err
	}
	return f.rollback(ctx, j, begin, "rolled back on request")
}

func (f *File) rollback(ctx context.Context, j *journal.Journal, begin journal.Entry, why string) error {
	if last, _ := j.Last(); last.Step != StepRollingBack {
		if err := j.Append(ctx, journal.Entry{Step: StepRollingBack, Deployment: begin.Deployment, Data: map[string]string{"reason": why}}); err != nil {
			return fmt.Errorf("rollback %s: %w", begin.Deployment, err)
		}
	}
	f.fail("rolling-back")
	if err := f.restore(begin.Data["prev"] == "1"); err != nil {
		return fmt.Errorf("rollback %s: %w", begin.Deployment, err)
	}
	if err := j.Append(ctx, journal.Entry{Step: StepRolledBack, Deployment: begin.Deployment, Data: map[string]string{"reason": why}}); err != nil {
		return fmt.Errorf("rollback %s: %w", begin.Deployment, err)
	}
	f.fail("rolled-back")
	f.log.InfoContext(ctx, "file update rolled back", "deployment", begin.Deployment, "reason", why)
	return nil
}

// restore puts the previous copy back (or removes Target if there was none). It is
// idempotent: a repeat after a power loss at any point completes it, and at every point either
// the new or the previous copy is at Target or waiting beside it.
func (f *File) restore(hadPrev bool) error {
	t := f.o.Target
	if !hadPrev {
		if err := os.RemoveAll(t); err != nil {
			return err
		}
	} else if _, err := os.Lstat(t + ".prev"); err == nil {
		if _, err := os.Lstat(t); err == nil {
			if err := os.RemoveAll(t + ".new"); err != nil {
				return err
			}
			if err := os.Rename(t, t+".new"); err != nil {
				return err
			}
			f.fail("restore-half")
		}
		if err := os.Rename(t+".prev", t); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(t + ".new"); err != nil {
		return err
	}
	return syncDir(filepath.Dir(t))
}

// copyTree copies a file or a directory tree from src to dst, fsyncing every file and
// directory it creates.
func copyTree(ctx context.Context, src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode().IsRegular():
		return copyFile(src, dst, fi.Mode().Perm())
	case fi.Mode()&fs.ModeSymlink != 0:
		link, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(link, dst)
	case !fi.IsDir():
		return fmt.Errorf("%s is neither a file, a symlink nor a directory: %w", src, rampart.ErrInvalid)
	}
	if err := os.Mkdir(dst, fi.Mode().Perm()); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := copyTree(ctx, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return syncDir(dst)
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// fileDigest is the hex sha256 of a regular file; a directory has no digest ("").
func fileDigest(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		return "", errors.New("a directory image has no sha256")
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
