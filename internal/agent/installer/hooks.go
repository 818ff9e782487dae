package installer

import (
	"context"
	"fmt"

	"github.com/rampart-iot/rampart/internal/agent/bootenv"
)

// SetFailpoint sets a hook called at each named point of the A/B flow ("begin", "copying",
// "written", "verified", "env-switched", "switched", "health", "commit-env", "committed",
// "rollback-env", "rolled-back"), each reached once the step before it is durable. It is for
// tests and the simulator, which stop the agent there to act out a power loss; nil removes
// it. Set it before the installer is used.
func (a *AB) SetFailpoint(f func(point string)) { a.failpoint = f }

// SetFailpoint sets a hook called at each named point of the file flow ("written",
// "swap-half", "switched", "rolling-back", "restore-half", "rolled-back"); see
// [AB.SetFailpoint].
func (f *File) SetFailpoint(fp func(point string)) { f.failpoint = fp }

// Running returns the path of the slot the device runs now (the one boot_slot names), the
// base a delta update applies to.
func (a *AB) Running(ctx context.Context) (string, error) {
	vars, err := a.o.Env.Get(ctx, bootenv.BootSlot)
	if err != nil {
		return "", fmt.Errorf("running slot: %w", err)
	}
	from, _, err := a.otherSlot(vars[bootenv.BootSlot])
	if err != nil {
		return "", fmt.Errorf("running slot: %w", err)
	}
	return from.Path, nil
}

// Running returns the target the file installer replaces, the base a delta update applies to.
func (f *File) Running(context.Context) (string, error) { return f.o.Target, nil }
