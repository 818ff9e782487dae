package sim

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/agent/bootenv"
	"github.com/rampart-iot/rampart/internal/agent/installer"
	"github.com/rampart-iot/rampart/internal/agent/journal"
)

// imageMagic starts the first line of a simulator image: "RAMPART-SIM-IMAGE version=V".
const imageMagic = "RAMPART-SIM-IMAGE version="

// Image returns a tiny image of the given size (at least its header line) whose first line
// names version: publish it as a release's artifact, and a virtual device that installs it
// reports that version. Its bytes depend only on version and size.
func Image(version string, size int) []byte {
	b := []byte(imageMagic + version + "\n")
	for i := 0; len(b) < size; i++ {
		b = append(b, "0123456789abcdef"[(i*7+len(version))%16])
	}
	return b
}

// imageVersion reads the version from the first line of a simulator image; "" if the file
// is not one.
func imageVersion(r io.Reader) string {
	line, err := bufio.NewReaderSize(io.LimitReader(r, 256), 256).ReadString('\n')
	if err != nil && line == "" {
		return ""
	}
	v, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), imageMagic)
	if !ok {
		return ""
	}
	return v
}

func fileVersion(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	return imageVersion(f)
}

// memory is a virtual device's A/B hardware held in memory: a boot environment and two slots
// that each hold only the version of the image written to them. It is both the device's
// bootenv.Env and its installer, which follows installer.AB step by step and journal entry
// by journal entry (begin → written → switched, then health check → committed or
// rolled-back) without writing any image. It outlives the agent processes of its device,
// as hardware does.
type memory struct {
	mu                              sync.Mutex
	slot, upgrade, bootCount, limit string
	slots                           [2]string // version in A and B
	health                          func(ctx context.Context) error
	failpoint                       func(point string)
}

var (
	_ installer.Installer = (*memory)(nil)
	_ bootenv.Env         = (*memory)(nil)
)

var memSlots = [2]string{"A", "B"}

func newMemory(version string, health func(context.Context) error, failpoint func(string)) *memory {
	return &memory{slot: "A", limit: "3", slots: [2]string{version, ""}, health: health, failpoint: failpoint}
}

func (m *memory) field(k string) *string {
	switch k {
	case bootenv.BootSlot:
		return &m.slot
	case bootenv.UpgradeAvailable:
		return &m.upgrade
	case bootenv.BootCount:
		return &m.bootCount
	case bootenv.BootLimit:
		return &m.limit
	}
	return nil
}

// Get implements bootenv.Env for the four A/B variables.
func (m *memory) Get(_ context.Context, keys ...string) (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		if p := m.field(k); p != nil && *p != "" {
			out[k] = *p
		}
	}
	return out, nil
}

// Set implements bootenv.Env for the four A/B variables.
func (m *memory) Set(_ context.Context, vars map[string]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range vars {
		if m.field(k) == nil {
			return fmt.Errorf("memory boot environment has no %q: %w", k, rampart.ErrInvalid)
		}
	}
	for k, v := range vars {
		*m.field(k) = v
	}
	return nil
}

func (m *memory) set(vars map[string]string) { _ = m.Set(context.Background(), vars) }

func (m *memory) get(k string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return *m.field(k)
}

// running is the version in the slot the bootloader boots.
func (m *memory) running() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slot == memSlots[1] {
		return m.slots[1]
	}
	return m.slots[0]
}

func (m *memory) fail(p string) {
	if m.failpoint != nil {
		m.failpoint(p)
	}
}

// slotIndex returns the index of the slot named name ("" means A) and of the other one.
func slotIndex(name string) (from, to int) {
	if name == memSlots[1] {
		return 1, 0
	}
	return 0, 1
}

// journalState returns the begin and last entries of the update in progress, as the real
// installers read their journal.
func journalState(j *journal.Journal) (begin, last journal.Entry, busy bool) {
	es := j.Entries()
	if len(es) == 0 {
		return begin, last, false
	}
	last = es[len(es)-1]
	switch last.Step {
	case installer.StepCommitted, installer.StepRolledBack, installer.StepFailed:
		return begin, last, false
	}
	for i := len(es) - 1; i >= 0; i-- {
		if es[i].Step == installer.StepBegin {
			return es[i], last, true
		}
	}
	return begin, last, true
}

// ended is the Result of a journal whose update has ended (or that is empty).
func ended(last journal.Entry) installer.Result {
	r := installer.Result{Deployment: last.Deployment, Reason: last.Data["reason"]}
	switch last.Step {
	case installer.StepCommitted:
		r.Outcome = installer.OutcomeCommitted
	case installer.StepRolledBack:
		r.Outcome = installer.OutcomeRolledBack
	case installer.StepFailed:
		r.Outcome = installer.OutcomeFailed
	}
	return r
}

// Install implements installer.Installer: it reads the image's version and checks its digest,
// "writes" the version into the inactive slot and switches the boot environment to it.
func (m *memory) Install(ctx context.Context, u installer.Update, j *journal.Journal) error {
	begin, _, busy := journalState(j)
	if busy {
		if begin.Deployment != u.Deployment {
			return fmt.Errorf("install %s: %s is unfinished: %w", u.Deployment, begin.Deployment, rampart.ErrConflict)
		}
		_, err := m.Resume(ctx, j)
		return err
	}
	if m.get(bootenv.UpgradeAvailable) == "1" {
		return fmt.Errorf("install %s: a slot is on trial and not committed: %w", u.Deployment, rampart.ErrConflict)
	}
	from, to := slotIndex(m.get(bootenv.BootSlot))
	version, verr := readImage(u.Image, u.SHA256)
	begin = journal.Entry{Step: installer.StepBegin, Deployment: u.Deployment,
		Data: map[string]string{"from": memSlots[from], "to": memSlots[to], "version": version}}
	if err := j.Append(ctx, begin); err != nil {
		return fmt.Errorf("install %s: %w", u.Deployment, err)
	}
	m.fail("begin")
	if verr != nil {
		return m.abandon(ctx, j, begin, verr)
	}
	return m.install(ctx, j, begin, false)
}

// readImage returns the version an image names after checking its digest.
func readImage(path, sha string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	version := imageVersion(io.TeeReader(f, h))
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	if sha != "" && hex.EncodeToString(h.Sum(nil)) != sha {
		return "", fmt.Errorf("image %s does not match sha256 %s: %w", path, sha, rampart.ErrInvalid)
	}
	if version == "" {
		version = "unknown" // not a simulator image: the agent reports the work's version
	}
	return version, nil
}

func (m *memory) install(ctx context.Context, j *journal.Journal, begin journal.Entry, written bool) error {
	_, to := slotIndex(begin.Data["from"])
	if !written {
		if begin.Data["version"] == "" {
			return m.abandon(ctx, j, begin, errors.New("journal names no image version"))
		}
		m.mu.Lock()
		m.slots[to] = begin.Data["version"]
		m.mu.Unlock()
		if err := j.Append(ctx, journal.Entry{Step: installer.StepWritten, Deployment: begin.Deployment}); err != nil {
			return fmt.Errorf("install %s: %w", begin.Deployment, err)
		}
		m.fail("written")
	}
	m.set(map[string]string{bootenv.BootSlot: memSlots[to], bootenv.UpgradeAvailable: "1", bootenv.BootCount: "0"})
	m.fail("env-switched")
	if err := j.Append(ctx, journal.Entry{Step: installer.StepSwitched, Deployment: begin.Deployment}); err != nil {
		return fmt.Errorf("install %s: %w", begin.Deployment, err)
	}
	m.fail("switched")
	return nil
}

func (m *memory) abandon(ctx context.Context, j *journal.Journal, begin journal.Entry, cause error) error {
	err := fmt.Errorf("install %s: %w", begin.Deployment, cause)
	if jerr := j.Append(ctx, journal.Entry{Step: installer.StepFailed, Deployment: begin.Deployment,
		Data: map[string]string{"reason": err.Error()}}); jerr != nil {
		return errors.Join(err, jerr)
	}
	return err
}

// Resume implements installer.Installer, with installer.AB's decisions.
func (m *memory) Resume(ctx context.Context, j *journal.Journal) (installer.Result, error) {
	begin, last, busy := journalState(j)
	if !busy {
		return ended(last), nil
	}
	dep := begin.Deployment
	installed := installer.Result{Outcome: installer.OutcomeInstalled, Deployment: dep, Reboot: true}
	fromI, toI := slotIndex(begin.Data["from"])
	from, to := memSlots[fromI], memSlots[toI]
	switched := m.get(bootenv.BootSlot) == to && m.get(bootenv.UpgradeAvailable) == "1"
	switch last.Step {
	case installer.StepBegin, installer.StepWritten:
		if last.Step == installer.StepBegin || !switched {
			if err := m.install(ctx, j, begin, last.Step == installer.StepWritten); err != nil {
				if l, ok := j.Last(); ok && l.Step == installer.StepFailed {
					return ended(l), nil
				}
				return installer.Result{}, err
			}
			return installed, nil
		}
		if err := j.Append(ctx, journal.Entry{Step: installer.StepSwitched, Deployment: dep}); err != nil {
			return installer.Result{}, err
		}
		m.fail("switched")
	}
	switch {
	case m.get(bootenv.BootSlot) == from:
		r := installer.Result{Outcome: installer.OutcomeRolledBack, Deployment: dep,
			Reason: fmt.Sprintf("slot %s did not come up healthy; the bootloader booted slot %s", to, from)}
		return r, j.Append(ctx, journal.Entry{Step: installer.StepRolledBack, Deployment: dep, Data: map[string]string{"reason": r.Reason}})
	case !switched:
		return installer.Result{Outcome: installer.OutcomeCommitted, Deployment: dep},
			j.Append(ctx, journal.Entry{Step: installer.StepCommitted, Deployment: dep})
	case m.get(bootenv.BootCount) == "" || m.get(bootenv.BootCount) == "0":
		return installed, nil // not rebooted yet
	}
	m.fail("health")
	if m.health != nil {
		if herr := m.health(ctx); herr != nil {
			r := installer.Result{Outcome: installer.OutcomeRolledBack, Deployment: dep, Reboot: true, Reason: herr.Error()}
			return r, m.rollback(ctx, j, begin, r.Reason)
		}
	}
	if err := m.Commit(ctx, j); err != nil {
		return installer.Result{}, err
	}
	return installer.Result{Outcome: installer.OutcomeCommitted, Deployment: dep}, nil
}

// Commit implements installer.Installer.
func (m *memory) Commit(ctx context.Context, j *journal.Journal) error {
	begin, last, busy := journalState(j)
	if !busy || last.Step != installer.StepSwitched {
		if last.Step == installer.StepCommitted {
			return nil
		}
		return fmt.Errorf("commit: last step is %q: %w", last.Step, rampart.ErrConflict)
	}
	m.set(map[string]string{bootenv.UpgradeAvailable: "0", bootenv.BootCount: "0"})
	m.fail("commit-env")
	if err := j.Append(ctx, journal.Entry{Step: installer.StepCommitted, Deployment: begin.Deployment}); err != nil {
		return err
	}
	m.fail("committed")
	return nil
}

// Rollback implements installer.Installer.
func (m *memory) Rollback(ctx context.Context, j *journal.Journal) error {
	begin, last, busy := journalState(j)
	if !busy {
		if last.Step == installer.StepCommitted {
			return fmt.Errorf("rollback: %s is committed: %w", last.Deployment, rampart.ErrConflict)
		}
		return nil
	}
	return m.rollback(ctx, j, begin, "rolled back on request")
}

func (m *memory) rollback(ctx context.Context, j *journal.Journal, begin journal.Entry, why string) error {
	m.set(map[string]string{bootenv.BootSlot: begin.Data["from"], bootenv.UpgradeAvailable: "0", bootenv.BootCount: "0"})
	m.fail("rollback-env")
	if err := j.Append(ctx, journal.Entry{Step: installer.StepRolledBack, Deployment: begin.Deployment,
		Data: map[string]string{"reason": why}}); err != nil {
		return err
	}
	m.fail("rolled-back")
	return nil
}
