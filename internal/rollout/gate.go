package rollout

import (
	"fmt"
	"time"
)

// Verdict is what a gate decides about a running wave.
type Verdict int

// The verdicts of Evaluate.
const (
	// Wait means the wave is still running or baking.
	Wait Verdict = iota
	// Advance means the next wave may start (or, after the last wave, the deployment is done).
	Advance
	// Halt means the deployment must stop: too many devices of the wave failed.
	Halt
)

// String returns "wait", "advance" or "halt".
func (v Verdict) String() string {
	switch v {
	case Wait:
		return "wait"
	case Advance:
		return "advance"
	case Halt:
		return "halt"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// Decision is a verdict with the reason for it, worded for the operator.
type Decision struct {
	// Verdict is what to do.
	Verdict Verdict
	// Reason says why, with the numbers that led to it.
	Reason string
}

// Counts are how many of a wave's devices are where.
type Counts struct {
	// Scheduled devices have not reported yet.
	Scheduled int
	// InProgress devices are downloading, installing, rebooting or verifying.
	InProgress int
	// Succeeded devices reached Success.
	Succeeded int
	// Failed devices ended in Failure, RolledBack or TimedOut.
	Failed int
}

// Add counts one device in state s. Cancelled devices (and unknown states) are not counted:
// they neither passed nor failed.
func (c *Counts) Add(s DeviceState) { c.AddN(s, 1) }

// AddN counts n devices in state s, as Add does one.
func (c *Counts) AddN(s DeviceState, n int) {
	switch {
	case s == Success:
		c.Succeeded += n
	case s == Failure || s == RolledBack || s == TimedOut:
		c.Failed += n
	case s == Scheduled:
		c.Scheduled += n
	case s.Valid() && !s.Terminal():
		c.InProgress += n
	}
}

// Evaluate decides about wave w, which has waveSize devices of which c says where they are.
//
// It halts as soon as the failures reach w.FailureThreshold (a count, or a percentage of
// waveSize rounded up; at least 1, at most waveSize). It advances once the successes reach
// w.SuccessThreshold (resolved the same way) and now is not before bakeUntil. A wave whose
// devices have all finished without reaching the success threshold halts too, since waiting
// would never end. Otherwise it waits. An empty wave advances once baked.
func Evaluate(w Wave, waveSize int, c Counts, bakeUntil, now time.Time) Decision {
	failAt := max(1, min(w.FailureThreshold.Of(waveSize), waveSize))
	if c.Failed >= failAt {
		return Decision{Halt, fmt.Sprintf("wave %s: %d of %d devices failed, threshold %s (%d)", w.Name, c.Failed, waveSize, w.FailureThreshold, failAt)}
	}
	needed := w.SuccessThreshold.Of(waveSize)
	if c.Succeeded >= needed {
		if now.Before(bakeUntil) {
			return Decision{Wait, fmt.Sprintf("wave %s: %d of %d devices succeeded; baking until %s", w.Name, c.Succeeded, waveSize, bakeUntil.UTC().Format(time.RFC3339))}
		}
		return Decision{Advance, fmt.Sprintf("wave %s: %d of %d devices succeeded, threshold %s (%d), bake over", w.Name, c.Succeeded, waveSize, w.SuccessThreshold, needed)}
	}
	if c.Scheduled+c.InProgress == 0 {
		return Decision{Halt, fmt.Sprintf("wave %s: all devices finished with %d of %d succeeded, below threshold %s (%d)", w.Name, c.Succeeded, waveSize, w.SuccessThreshold, needed)}
	}
	return Decision{Wait, fmt.Sprintf("wave %s: %d of %d devices succeeded, %d needed; %d pending", w.Name, c.Succeeded, waveSize, needed, c.Scheduled+c.InProgress)}
}
