// Package deployment runs rollouts: a deployment takes one release to a target set of devices
// (a group, a filter expression or a list of devices) wave by wave, under a plan and
// constraints, and records every device's progress.
//
// All of a deployment's state lives in the Store: the scheduler (Service.Tick) only reads it,
// decides with the rules of internal/rollout and writes the outcome with compare-and-set, so
// a server killed at any moment continues where the store says it was, and two replicas never
// advance a wave twice. It is for the server; devices reach it through fleet.WorkSource
// (PendingWork) and status reports (Report). It is not for transports or storage engines.
package deployment

import (
	"context"
	"time"

	"github.com/rampart-iot/rampart/internal/rollout"
)

// Status is where a deployment stands.
type Status string

// The deployment statuses. Running, Paused and Halted may still change; Finished and
// Cancelled are final.
const (
	// Running offers the update to the devices of the waves started so far.
	Running Status = "running"
	// Paused offers it to nobody new; devices that already have it continue. Resume restarts it.
	Paused Status = "paused"
	// Halted is Paused decided by a gate: too many devices of a wave failed.
	Halted Status = "halted"
	// Cancelled stopped the deployment: devices that had not started installing were cancelled.
	Cancelled Status = "cancelled"
	// Finished means the last wave passed its gate.
	Finished Status = "finished"
)

// Final reports whether s can no longer change.
func (s Status) Final() bool { return s == Cancelled || s == Finished }

// Target is the set of devices a deployment is for: exactly one of the fields is set.
type Target struct {
	Group   string
	Filter  string
	Devices []string
}

// Constraints say when and how many devices may update.
type Constraints struct {
	// Windows are maintenance windows in each device's own time zone (its "tz" attribute,
	// an IANA name; UTC when it has none). None means any time.
	Windows rollout.Windows
	// Limits caps devices updating at once, across all running deployments, per key:
	// "type:<device type>" or "region:<region>" (a device's "region" attribute).
	Limits map[string]int
	// MinInterval is, per device type, the least time between two updates of one device.
	MinInterval map[string]time.Duration
}

// Deployment is one rollout of a release.
type Deployment struct {
	ID   string
	Name string
	// ReleaseID, Software (the release name) and Version say what is deployed. A device is in
	// at most one unfinished deployment per Software.
	ReleaseID string
	Software  string
	Version   string

	Target      Target
	Plan        rollout.Plan
	Action      rollout.Action
	MaxDeferral time.Duration // Soft only
	Constraints Constraints
	// Deadline, when set, times out devices that have not finished by then.
	Deadline time.Time

	Status Status
	// Reason says why the deployment was halted, cancelled or finished.
	Reason string
	// Wave is the index of the newest wave started; devices of waves up to it get the update.
	Wave        int
	WaveStarted time.Time
	BakeUntil   time.Time
	// Override is set when an operator resumed a halted deployment: the current wave's
	// failure threshold no longer halts it. Starting the next wave clears it.
	Override bool
	// Seed drives the random wave membership and bake times; it is never shown.
	Seed int64
	// Total is how many devices the deployment targets; WaveSizes how many each wave holds.
	Total     int
	WaveSizes []int

	// RollbackOf is the deployment this one rolls back; RolledBackBy the one rolling it back.
	RollbackOf   string
	RolledBackBy string

	CreatedBy  string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	HaltedAt   time.Time
	FinishedAt time.Time // when Finished or Cancelled
	// Reached95At is when 95% of the targeted devices had succeeded (lead time).
	Reached95At time.Time
	// PublishedAt is when the release was published (for lead time).
	PublishedAt time.Time

	// Revision increases with every update; UpdateDeployment refuses a stale one.
	Revision int64
}

// Member is one device in one deployment.
type Member struct {
	DeploymentID string
	DeviceID     string
	// Software repeats the deployment's, for the one-active-deployment rule.
	Software string
	Wave     int
	// DeviceType, Region and TimeZone are copied from the device when it is targeted.
	DeviceType string
	Region     string
	TimeZone   string
	Status     rollout.DeviceStatus
	// OfferedAt is when the device was first given the work; zero until then.
	OfferedAt time.Time
}

// Active reports whether the member still holds its device's slot for its software.
func (m *Member) Active() bool { return !m.Status.State.Terminal() }

// Event is something that happened to a deployment, worded for the operator: created, wave
// started, halted (the notification of an automatic halt), paused, resumed, cancelled,
// rolled back, finished.
type Event struct {
	DeploymentID string
	At           time.Time
	Kind         string
	Message      string
}

// The event kinds.
const (
	EventCreated    = "created"
	EventWave       = "wave-started"
	EventHalted     = "halted"
	EventPaused     = "paused"
	EventResumed    = "resumed"
	EventCancelled  = "cancelled"
	EventRolledBack = "rolled-back"
	EventFinished   = "finished"
	EventTimedOut   = "timed-out"
)

// StateCount is how many members of one wave are in one state.
type StateCount struct {
	Wave  int
	State rollout.DeviceState
	N     int
}

// Load is how many devices with one limit key are updating (offered and not finished).
type Load struct {
	Key string // rollout.LimitKey form: "type:gw", "region:eu"
	N   int
}

// Query selects deployments, newest first.
type Query struct {
	Statuses []Status
	Software string
	// Before is the ID of the last deployment of the previous page ("" for the first).
	Before string
	Limit  int
}

// MemberQuery selects members of one deployment, ordered by device ID.
type MemberQuery struct {
	DeploymentID string
	States       []rollout.DeviceState // none: all
	Wave         int                   // -1: all
	After        string
	Limit        int
}

// Store keeps deployments. A missing deployment or member wraps rampart.ErrNotFound; a stale
// Revision wraps rampart.ErrConflict. The store decides nothing: states and times come in.
type Store interface {
	// CreateDeployment inserts d and its members in one transaction. A member whose device is
	// already active in another deployment of the same Software is left out; the IDs left
	// out are returned, and d.Total and d.WaveSizes are written as given.
	CreateDeployment(ctx context.Context, d *Deployment, members []Member) (skipped []string, err error)
	Deployment(ctx context.Context, id string) (*Deployment, error)
	Deployments(ctx context.Context, q Query) ([]*Deployment, error)
	// UpdateDeployment writes every mutable field of d if d.Revision is the stored one, and
	// increments d.Revision; events are added in the same transaction.
	UpdateDeployment(ctx context.Context, d *Deployment, events ...Event) error

	// ActiveMembers returns a device's active memberships (the check-in's one read).
	ActiveMembers(ctx context.Context, deviceID string) ([]Member, error)
	Member(ctx context.Context, deploymentID, deviceID string) (*Member, error)
	Members(ctx context.Context, q MemberQuery) ([]Member, error)
	// UpdateMember writes m's status and OfferedAt if the stored state and seq are still
	// prev's (compare-and-set); ok is false when they are not.
	UpdateMember(ctx context.Context, m *Member, prev rollout.DeviceStatus) (ok bool, err error)
	// SetMembersState moves every member of a deployment whose state is in from to state to
	// (Since now, Log cleared, Seq kept); it returns how many moved.
	SetMembersState(ctx context.Context, deploymentID string, from []rollout.DeviceState, to rollout.DeviceState, now time.Time) (int, error)
	// Counts returns member counts per wave and state.
	Counts(ctx context.Context, deploymentID string) ([]StateCount, error)
	// Load counts active, offered members across deployments in the given statuses, per
	// "type:" and "region:" key.
	Load(ctx context.Context, statuses []Status) ([]Load, error)
	// LastSuccess is when the device last reached success in any deployment (zero if never).
	LastSuccess(ctx context.Context, deviceID string) (time.Time, error)
	// MemberTimes lists, for every member of one deployment, its device type, state and
	// Since (for delivery metrics).
	MemberTimes(ctx context.Context, deploymentID string) ([]TypedTime, error)

	AddDeploymentEvent(ctx context.Context, e Event) error
	// DeploymentEvents returns a deployment's events, newest first.
	DeploymentEvents(ctx context.Context, deploymentID string, limit int) ([]Event, error)
}

// TypedTime is one member's device type, state and the time it entered that state.
type TypedTime struct {
	DeviceType string
	State      rollout.DeviceState
	At         time.Time
}
