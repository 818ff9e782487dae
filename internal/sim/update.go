package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/agent/bootenv"
	"github.com/rampart-iot/rampart/internal/agent/installer"
	"github.com/rampart-iot/rampart/internal/agent/journal"
)

// Installers a virtual device can have (Options.Installer).
const (
	// InstallerNone: the device takes no updates; the agent ignores work.
	InstallerNone = "none"
	// InstallerAB: installer.AB on two slot files and a file-backed boot environment in the
	// device's state directory; reboots go through bootenv.SimulateBoot.
	InstallerAB = "ab"
	// InstallerFile: installer.File replacing a file in the device's state directory.
	InstallerFile = "file"
	// InstallerMemory: the A/B flow and its journal with slots and boot environment in
	// memory, and no image written: for large fleets.
	InstallerMemory = "memory"
)

// BaseVersion is the firmware version virtual devices start with.
const BaseVersion = "sim-1.0.0"

// The final states a virtual device's update reaches (internal/rollout's names).
const (
	OutcomeSuccess    = "success"
	OutcomeFailure    = "failure"
	OutcomeRolledBack = "rolled-back"
)

// Fate is what the simulator does to one virtual device's updates. It depends only on the
// seed, the device's index, the fault rates and the installer, so a test can compute it.
type Fate struct {
	// FailInstall makes every install fail (journaled failed): the update ends in failure.
	FailInstall bool
	// FailHealth makes the health check after every update fail: the update rolls back.
	FailHealth bool
	// PowerLossAt is the failpoint of the installer (a point where a journal step or the
	// boot environment just became durable) at which the device loses power once, during
	// its first install; "" for none. The device boots again and its new agent resumes.
	PowerLossAt string
}

// Outcome is the final state an update reaches on a device with this fate. A power loss
// never changes it.
func (f Fate) Outcome() string {
	switch {
	case f.FailInstall:
		return OutcomeFailure
	case f.FailHealth:
		return OutcomeRolledBack
	}
	return OutcomeSuccess
}

// powerLossPoints are the failpoints a device may lose power at, by installer and path.
var powerLossPoints = map[string][3][]string{ // ok, health fails, install fails
	InstallerAB: {
		{"begin", "copying", "written", "verified", "env-switched", "switched", "health", "commit-env", "committed"},
		{"begin", "copying", "written", "verified", "env-switched", "switched", "health", "rollback-env", "rolled-back"},
		{"begin", "failed"},
	},
	InstallerMemory: {
		{"begin", "written", "env-switched", "switched", "health", "commit-env", "committed"},
		{"begin", "written", "env-switched", "switched", "health", "rollback-env", "rolled-back"},
		{"begin", "failed"},
	},
	InstallerFile: {
		{"written", "swap-half", "switched"},
		{"written", "swap-half", "switched", "rolling-back", "restore-half", "rolled-back"},
		{"begin", "failed"},
	},
}

// FateOf is the fate of device i of a simulation with the given seed, faults and installer.
func FateOf(seed int64, i int, f Faults, installerKind string) Fate {
	if installerKind == "" || installerKind == InstallerNone {
		return Fate{}
	}
	rng := rand.New(rand.NewPCG(uint64(seed)^0xfa7e, uint64(i)))
	// Always draw all three, so one rate does not shift another's choices.
	install, health, power := rng.Float64(), rng.Float64(), rng.Float64()
	fate := Fate{FailInstall: install < f.FailInstallRate, FailHealth: health < f.FailHealthRate}
	if power < f.PowerLossRate {
		path := 0
		switch {
		case fate.FailInstall:
			path = 2
		case fate.FailHealth:
			path = 1
		}
		points := powerLossPoints[installerKind][path]
		fate.PowerLossAt = points[rng.IntN(len(points))]
	}
	return fate
}

// Fate returns the fate of virtual device i.
func (s *Sim) Fate(i int) Fate { return FateOf(s.opts.Seed, i, s.opts.Faults, s.opts.Installer) }

// powerLoss is the panic with which a failpoint stops a virtual device's agent dead; the
// device loop recovers it and boots the device again.
type powerLoss struct{}

// hardware is what survives a virtual device's reboots: its boot environment and slots (or
// the file the update replaces), and the faults in store for it.
type hardware struct {
	kind string
	dir  string // ab, file: where the files are
	env  *bootenv.File
	mem  *memory
	fate Fate
	sim  *Sim

	powerLost bool
	counted   string // the last deployment whose outcome was counted
	installed string // the last deployment installed during this run
}

// newHardware sets up device d's hardware on first start (a second run continues with it).
func (s *Sim) newHardware(stateDir string, i int) (*hardware, error) {
	kind := s.opts.Installer
	if kind == "" || kind == InstallerNone {
		return nil, nil
	}
	hw := &hardware{kind: kind, fate: s.Fate(i), sim: s, dir: filepath.Join(stateDir, "hw")}
	switch kind {
	case InstallerMemory:
		hw.mem = newMemory(BaseVersion, hw.health, hw.failpoint)
		return hw, nil
	case InstallerAB:
		hw.env = &bootenv.File{Path: filepath.Join(hw.dir, "bootenv")}
	}
	if err := os.MkdirAll(hw.dir, 0o700); err != nil {
		return nil, fmt.Errorf("device hardware: %w", err)
	}
	first := filepath.Join(hw.dir, "app")
	if kind == InstallerAB {
		first = filepath.Join(hw.dir, "slot-a")
	}
	if _, err := os.Stat(first); err == nil {
		return hw, nil // set up by an earlier run
	}
	if err := os.WriteFile(first, Image(BaseVersion, 256), 0o600); err != nil {
		return nil, fmt.Errorf("device hardware: %w", err)
	}
	if kind == InstallerAB {
		if err := os.WriteFile(filepath.Join(hw.dir, "slot-b"), nil, 0o600); err != nil {
			return nil, fmt.Errorf("device hardware: %w", err)
		}
		if err := hw.env.Set(context.Background(), map[string]string{bootenv.BootSlot: "A", bootenv.BootLimit: "3"}); err != nil {
			return nil, fmt.Errorf("device hardware: %w", err)
		}
	}
	return hw, nil
}

// installer is the installer a new agent process of the device gets.
func (hw *hardware) installer() installer.Installer {
	var in installer.Installer
	switch hw.kind {
	case InstallerMemory:
		in = hw.mem
	case InstallerAB:
		ab := installer.NewAB(installer.ABOptions{
			Env:    &bootenv.File{Path: hw.env.Path},
			Slots:  [2]installer.Slot{{Name: "A", Path: filepath.Join(hw.dir, "slot-a")}, {Name: "B", Path: filepath.Join(hw.dir, "slot-b")}},
			Health: hw.health,
		})
		ab.SetFailpoint(hw.failpoint)
		in = ab
	case InstallerFile:
		f := installer.NewFile(installer.FileOptions{Target: filepath.Join(hw.dir, "app"), Health: hw.health})
		f.SetFailpoint(hw.failpoint)
		in = f
	}
	return &simInstaller{Installer: in, hw: hw}
}

// firmware is the version in the slot the device booted (or in its file).
func (hw *hardware) firmware() string {
	switch hw.kind {
	case InstallerMemory:
		return hw.mem.running()
	case InstallerAB:
		vars, err := hw.env.Get(context.Background(), bootenv.BootSlot)
		if err != nil {
			return ""
		}
		slot := "slot-a"
		if vars[bootenv.BootSlot] == "B" {
			slot = "slot-b"
		}
		return fileVersion(filepath.Join(hw.dir, slot))
	}
	return fileVersion(filepath.Join(hw.dir, "app"))
}

// boot is what the bootloader does when the device (re)starts.
func (hw *hardware) boot(ctx context.Context) error {
	var env bootenv.Env
	switch hw.kind {
	case InstallerMemory:
		env = hw.mem
	case InstallerAB:
		env = hw.env
	default:
		return nil
	}
	_, err := bootenv.SimulateBoot(ctx, env, [2]string{"A", "B"})
	return err
}

var errInjectedHealth = errors.New("service did not come up after the update (health check failure injected by the simulator)")

func (hw *hardware) health(context.Context) error {
	if hw.fate.FailHealth {
		return errInjectedHealth
	}
	return nil
}

// failpoint cuts the power at the fate's point, once.
func (hw *hardware) failpoint(p string) {
	if !hw.powerLost && p == hw.fate.PowerLossAt {
		hw.powerLost = true
		hw.sim.c.powerLosses.Add(1)
		panic(powerLoss{})
	}
}

// simInstaller injects install failures and counts what the installer did.
type simInstaller struct {
	installer.Installer
	hw *hardware
}

// Install fails, journaled like a real failure, on a device fated to; else it installs.
func (s *simInstaller) Install(ctx context.Context, u installer.Update, j *journal.Journal) error {
	if s.hw.installed != u.Deployment {
		s.hw.installed = u.Deployment
		s.hw.sim.c.installs.Add(1)
	}
	if !s.hw.fate.FailInstall {
		return s.Installer.Install(ctx, u, j)
	}
	if _, _, busy := journalState(j); busy {
		_, err := s.Resume(ctx, j)
		return err
	}
	if err := j.Append(ctx, journal.Entry{Step: installer.StepBegin, Deployment: u.Deployment}); err != nil {
		return err
	}
	s.hw.failpoint("begin")
	err := fmt.Errorf("install %s: write failed: input/output error (install failure injected by the simulator): %w", u.Deployment, rampart.ErrInvalid)
	if jerr := j.Append(ctx, journal.Entry{Step: installer.StepFailed, Deployment: u.Deployment, Data: map[string]string{"reason": err.Error()}}); jerr != nil {
		return errors.Join(err, jerr)
	}
	s.hw.failpoint("failed")
	return err
}

// Resume counts the outcome of each update installed during this run once.
func (s *simInstaller) Resume(ctx context.Context, j *journal.Journal) (installer.Result, error) {
	if begin, last, busy := journalState(j); busy && s.hw.fate.FailInstall && last.Step == installer.StepBegin && begin.Data == nil {
		// An injected failure cut short by a power loss: it fails again.
		e := journal.Entry{Step: installer.StepFailed, Deployment: begin.Deployment, Data: map[string]string{"reason": "install failure injected by the simulator"}}
		if err := j.Append(ctx, e); err != nil {
			return installer.Result{}, err
		}
	}
	r, err := s.Installer.Resume(ctx, j)
	if err == nil && r.Deployment != "" && r.Deployment == s.hw.installed && r.Deployment != s.hw.counted {
		c := &s.hw.sim.c
		switch r.Outcome {
		case installer.OutcomeCommitted:
			c.updated.Add(1)
		case installer.OutcomeRolledBack:
			c.rolledBack.Add(1)
		case installer.OutcomeFailed:
			c.installFailed.Add(1)
		default:
			return r, err
		}
		s.hw.counted = r.Deployment
	}
	return r, err
}

// Running names the slot the device runs, for delta updates (A/B and file installers).
func (s *simInstaller) Running(ctx context.Context) (string, error) {
	if r, ok := s.Installer.(interface {
		Running(context.Context) (string, error)
	}); ok {
		return r.Running(ctx)
	}
	return "", errors.ErrUnsupported
}
