package rollout

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/rampart-iot/rampart"
)

// DeviceState is where one device is in one deployment. The states run forward along
// scheduled → downloading → downloaded → installing → rebooting → verifying and end in exactly
// one terminal state: success, failure, rolled-back, cancelled or timed-out.
type DeviceState string

// The states of a device in a deployment, in the order a device passes through them.
const (
	// Scheduled means the device is targeted but has not reported anything yet.
	Scheduled DeviceState = "scheduled"
	// Downloading means the device is fetching the artifact.
	Downloading DeviceState = "downloading"
	// Downloaded means the artifact is on the device and verified.
	Downloaded DeviceState = "downloaded"
	// Installing means the device is writing the update; from here on it can no longer be cancelled.
	Installing DeviceState = "installing"
	// Rebooting means the device is restarting into the new software.
	Rebooting DeviceState = "rebooting"
	// Verifying means the device runs its health checks on the new software.
	Verifying DeviceState = "verifying"
	// Success is terminal: the new software runs and passed its health checks.
	Success DeviceState = "success"
	// Failure is terminal: the update failed; the device keeps its log excerpt.
	Failure DeviceState = "failure"
	// RolledBack is terminal: the device went back to its previous software; it keeps its log excerpt.
	RolledBack DeviceState = "rolled-back"
	// Cancelled is terminal and decided by the server (see Cancel).
	Cancelled DeviceState = "cancelled"
	// TimedOut is terminal and decided by the server (see TimeOut).
	TimedOut DeviceState = "timed-out"
)

// MaxLogExcerpt is how many bytes of a device's log a status keeps: the last ones, where the
// error usually is.
const MaxLogExcerpt = 8 << 10

// InstallGrace is how long after a deployment's deadline a device that has already started
// installing may still report before TimeOut gives up on it. A device mid-install is never
// interrupted, so it gets the chance to finish and report what really happened.
const InstallGrace = 2 * time.Hour

// rank orders the states; all terminal states share the highest rank.
func (s DeviceState) rank() int {
	switch s {
	case Scheduled:
		return 0
	case Downloading:
		return 1
	case Downloaded:
		return 2
	case Installing:
		return 3
	case Rebooting:
		return 4
	case Verifying:
		return 5
	case Success, Failure, RolledBack, Cancelled, TimedOut:
		return 6
	}
	return -1
}

// Valid reports whether s is one of the states above.
func (s DeviceState) Valid() bool { return s.rank() >= 0 }

// Terminal reports whether s is final: once there, a device's state never changes.
func (s DeviceState) Terminal() bool { return s.rank() == 6 }

// Started reports whether the device has begun installing (or is done), so it can no longer be
// cancelled.
func (s DeviceState) Started() bool { return s.rank() >= Installing.rank() }

// Reportable reports whether a device may report s. Scheduled, Cancelled and TimedOut are the
// server's to set.
func (s DeviceState) Reportable() bool {
	return s.Valid() && s != Scheduled && s != Cancelled && s != TimedOut
}

// ParseDeviceState returns the state named s, or an error wrapping rampart.ErrInvalid.
func ParseDeviceState(s string) (DeviceState, error) {
	st := DeviceState(s)
	if !st.Valid() {
		return "", fmt.Errorf("device state %.40q: unknown: %w", s, rampart.ErrInvalid)
	}
	return st, nil
}

// DeviceStatus is what the server knows about one device in one deployment.
type DeviceStatus struct {
	// State is the device's current state.
	State DeviceState
	// Seq is the sequence number of the last report applied; reports with a lower one are late.
	Seq uint64
	// Since is when State was entered.
	Since time.Time
	// Log is the tail of the device's log, kept only in Failure and RolledBack.
	Log string
}

// NewDeviceStatus returns the status of a device just targeted by a deployment.
func NewDeviceStatus(now time.Time) DeviceStatus {
	return DeviceStatus{State: Scheduled, Since: now}
}

// Report is one status report from a device.
type Report struct {
	// State is the state the device says it is in.
	State DeviceState
	// Seq increases with every report the device sends for the deployment (the agent counts
	// per attempt); protocols without one send 0, and then only the order of states counts.
	Seq uint64
	// Log is an excerpt of the device's log; it is kept (its last MaxLogExcerpt bytes) only
	// with Failure or RolledBack.
	Log string
}

// Apply applies a device's report to its current status and says whether anything changed.
//
// A report moves the device forward only: it may skip states (downloading → installing) but
// never goes back. A report in or behind the current state, a report with a sequence number
// lower than the last applied one, and any report once the device is in a terminal state are
// no-ops (changed is false, err is nil), so a repeated or late report never corrupts the state
// and never makes a device retry. The only error is a malformed report (an unknown state, or one
// only the server may set), wrapping rampart.ErrInvalid; cur is then returned unchanged.
func Apply(cur DeviceStatus, r Report, now time.Time) (DeviceStatus, bool, error) {
	if !r.State.Reportable() {
		return cur, false, fmt.Errorf("report state %.40q: not a state a device reports: %w", string(r.State), rampart.ErrInvalid)
	}
	if cur.State.Terminal() || r.Seq < cur.Seq || r.State.rank() <= cur.State.rank() {
		return cur, false, nil
	}
	next := DeviceStatus{State: r.State, Seq: r.Seq, Since: now}
	if r.State == Failure || r.State == RolledBack {
		next.Log = logTail(r.Log)
	}
	return next, true, nil
}

// Cancel ends a device's part in a cancelled deployment if it has not started installing.
// A device installing, rebooting or verifying is left to finish and report, and a device in a
// terminal state keeps it; both return cur with changed false.
func Cancel(cur DeviceStatus, now time.Time) (DeviceStatus, bool) {
	if cur.State.Started() || !cur.State.Valid() {
		return cur, false
	}
	return DeviceStatus{State: Cancelled, Seq: cur.Seq, Since: now}, true
}

// TimeOut marks a device timed out once the deployment's deadline has passed: at deadline for a
// device that has not started installing, InstallGrace later for one that has (it is not
// interrupted and may still report). Terminal states are kept; a zero deadline means none.
func TimeOut(cur DeviceStatus, deadline, now time.Time) (DeviceStatus, bool) {
	if deadline.IsZero() || cur.State.Terminal() || !cur.State.Valid() {
		return cur, false
	}
	if cur.State.Started() {
		deadline = deadline.Add(InstallGrace)
	}
	if now.Before(deadline) {
		return cur, false
	}
	return DeviceStatus{State: TimedOut, Seq: cur.Seq, Since: now}, true
}

// logTail returns at most the last MaxLogExcerpt bytes of s, starting on a UTF-8 boundary.
func logTail(s string) string {
	if len(s) <= MaxLogExcerpt {
		return s
	}
	s = s[len(s)-MaxLogExcerpt:]
	for i := 0; i < utf8.UTFMax && i < len(s); i++ {
		if utf8.RuneStart(s[i]) {
			return s[i:]
		}
	}
	return s
}
