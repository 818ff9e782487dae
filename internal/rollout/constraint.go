package rollout

import (
	"fmt"
	"time"

	"github.com/rampart-iot/rampart"
)

// MaxDeferral is the longest a Soft deployment may let a device defer.
const MaxDeferral = 90 * 24 * time.Hour

// DueAfter reports whether a device last updated at lastUpdate may update again at now, given
// the minimum interval of its device type. A zero lastUpdate (never updated) or interval is always
// due; a lastUpdate in the future (clock skew) is not.
func DueAfter(lastUpdate time.Time, interval time.Duration, now time.Time) bool {
	if lastUpdate.IsZero() || interval <= 0 {
		return true
	}
	return !now.Before(lastUpdate.Add(interval))
}

// LimitKey returns the concurrency-limit key for a kind and value: LimitKey("type", "gw") is
// "type:gw", LimitKey("region", "eu") is "region:eu".
func LimitKey(kind, value string) string { return kind + ":" + value }

// CanStart reports whether a device with the given limit keys may start updating now: for every
// key that has a limit, fewer devices than the limit are active. A key without a limit is
// unlimited; a limit of 0 or less stops every device with that key (to pause a region).
func CanStart(active map[string]int, limits map[string]int, keys []string) bool {
	for _, k := range keys {
		if limit, ok := limits[k]; ok && active[k] >= max(limit, 0) {
			return false
		}
	}
	return true
}

// Action is what a deployment asks a device to do.
type Action string

// The actions a deployment may take.
const (
	// Forced installs as soon as the constraints allow.
	Forced Action = "forced"
	// Soft lets the device (or its user) defer the install, up to a maximum deferral, after
	// which it is installed as if forced.
	Soft Action = "soft"
	// DownloadOnly stages the artifact on the device without installing it; the device reports
	// Success once downloaded, and a later deployment of the same release installs it.
	DownloadOnly Action = "download-only"
)

// ParseAction returns the action named s, or an error wrapping rampart.ErrInvalid.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case Forced, Soft, DownloadOnly:
		return a, nil
	}
	return "", fmt.Errorf("action %.40q: want forced, soft or download-only: %w", s, rampart.ErrInvalid)
}

// Installs reports whether a device taking action a installs the update.
func (a Action) Installs() bool { return a == Forced || a == Soft }

// ValidateDeferral checks the maximum deferral of action a: more than 0 and at most MaxDeferral
// for Soft, 0 for the others. Errors wrap rampart.ErrInvalid.
func ValidateDeferral(a Action, maxDeferral time.Duration) error {
	switch {
	case a == Soft && (maxDeferral <= 0 || maxDeferral > MaxDeferral):
		return fmt.Errorf("soft action: maximum deferral %s: want more than 0 and at most %s: %w", maxDeferral, MaxDeferral, rampart.ErrInvalid)
	case a != Soft && maxDeferral != 0:
		return fmt.Errorf("%s action: a maximum deferral applies only to soft: %w", a, rampart.ErrInvalid)
	}
	return nil
}

// MayDefer reports whether a device first offered the update at offered may still defer it at
// now: only under Soft, and only until offered + maxDeferral.
func MayDefer(a Action, maxDeferral time.Duration, offered, now time.Time) bool {
	return a == Soft && now.Before(offered.Add(maxDeferral))
}
