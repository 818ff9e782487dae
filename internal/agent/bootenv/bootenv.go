// Package bootenv reads and writes the bootloader environment of a device: the few variables
// (boot_slot, upgrade_available, bootcount, bootlimit) through which an A/B update tells the
// bootloader which slot to try and the bootloader tells the agent what it did.
//
// It is for the agent's installers and the fleet simulator. It is not a general configuration
// store: keys and values are short strings, and a value set to "" reads back as absent.
// Back-ends: [File] (a file-backed stand-in with two redundant copies, for tests and the
// simulator), [UBoot] (fw_printenv/fw_setenv) and [GRUB] (grub-editenv).
package bootenv

import (
	"context"
	"fmt"
	"strings"

	"github.com/rampart-iot/rampart"
)

// Env is a bootloader environment.
type Env interface {
	// Get returns the values of keys; a key that is not set is absent from the map.
	Get(ctx context.Context, keys ...string) (map[string]string, error)
	// Set changes all of vars at once: after a crash either every change is visible or none.
	// A value of "" removes the key.
	Set(ctx context.Context, vars map[string]string) error
}

// The variables of the A/B protocol shared by the agent and the bootloader (U-Boot's names).
const (
	// BootSlot names the slot the bootloader boots.
	BootSlot = "boot_slot"
	// UpgradeAvailable is "1" while a new slot is on trial and not yet committed.
	UpgradeAvailable = "upgrade_available"
	// BootCount counts boots of the slot on trial; the bootloader increments it.
	BootCount = "bootcount"
	// BootLimit is how many trial boots the bootloader allows before it falls back.
	BootLimit = "bootlimit"
)

// maxValue bounds a value: U-Boot environments are a few KiB in total.
const maxValue = 1024

// checkVars refuses keys and values the back-ends cannot store faithfully.
func checkVars(vars map[string]string) error {
	for k, v := range vars {
		if err := checkKey(k); err != nil {
			return err
		}
		if len(v) > maxValue || strings.ContainsAny(v, "\n\r\x00") {
			return fmt.Errorf("bootenv value of %q: %w", k, rampart.ErrInvalid)
		}
	}
	return nil
}

func checkKey(k string) error {
	if k == "" || len(k) > 128 || strings.ContainsAny(k, "= \t\n\r\x00#") {
		return fmt.Errorf("bootenv key %q: %w", k, rampart.ErrInvalid)
	}
	return nil
}

func checkKeys(keys []string) error {
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	return nil
}
