package bootenv

import (
	"context"
	"fmt"
	"strconv"
)

// DefaultBootLimit is the number of trial boots SimulateBoot allows when bootlimit is unset.
const DefaultBootLimit = 3

// SimulateBoot is the bootloader's half of the A/B protocol over env, with U-Boot's
// bootcount/altbootcmd semantics, for tests and the simulator. slots are the two slot names;
// boot_slot unset means slots[0]. It returns the slot the bootloader boots:
//
//   - upgrade_available != "1": boot boot_slot; bootcount is left alone.
//   - upgrade_available == "1": increment bootcount and save it; if bootcount now exceeds
//     bootlimit, run the altbootcmd: boot_slot = the other slot, upgrade_available = 0,
//     bootcount = 0, saved in one write, and boot that.
func SimulateBoot(ctx context.Context, env Env, slots [2]string) (string, error) {
	vars, err := env.Get(ctx, BootSlot, UpgradeAvailable, BootCount, BootLimit)
	if err != nil {
		return "", fmt.Errorf("simulated boot: %w", err)
	}
	slot := vars[BootSlot]
	if slot == "" {
		slot = slots[0]
	}
	if slot != slots[0] && slot != slots[1] {
		return "", fmt.Errorf("simulated boot: boot_slot %q is neither %q nor %q", slot, slots[0], slots[1])
	}
	if vars[UpgradeAvailable] != "1" {
		return slot, nil
	}
	limit, err := strconv.Atoi(vars[BootLimit])
	if err != nil || limit < 1 {
		limit = DefaultBootLimit
	}
	count, _ := strconv.Atoi(vars[BootCount]) // garbage counts as 0, as in U-Boot
	count++
	if count > limit {
		other := slots[0]
		if slot == slots[0] {
			other = slots[1]
		}
		if err := env.Set(ctx, map[string]string{BootSlot: other, UpgradeAvailable: "0", BootCount: "0"}); err != nil {
			return "", fmt.Errorf("simulated boot: altbootcmd: %w", err)
		}
		return other, nil
	}
	if err := env.Set(ctx, map[string]string{BootCount: strconv.Itoa(count)}); err != nil {
		return "", fmt.Errorf("simulated boot: save bootcount: %w", err)
	}
	return slot, nil
}
