package deployment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/release"
	"github.com/rampart-iot/rampart/internal/rollout"
)

// notStarted are the states a cancel or a deadline stops at once; started the ones a device
// is left to finish (rollout.Cancel, rollout.TimeOut).
var (
	notStarted = []rollout.DeviceState{rollout.Scheduled, rollout.Downloading, rollout.Downloaded}
	started    = []rollout.DeviceState{rollout.Installing, rollout.Rebooting, rollout.Verifying}
)

// change reads deployment id, lets fn change it and writes it back with the event fn
// returns, retrying when the scheduler changed it in between.
func (s *Service) change(ctx context.Context, id string, fn func(d *Deployment, now time.Time) (Event, error)) (*Deployment, error) {
	for attempt := 0; ; attempt++ {
		d, err := s.store.Deployment(ctx, id)
		if err != nil {
			return nil, err
		}
		now := s.now()
		ev, err := fn(d, now)
		if err != nil {
			return nil, err
		}
		d.UpdatedAt = now
		ev.DeploymentID, ev.At = d.ID, now
		err = s.store.UpdateDeployment(ctx, d, ev)
		if err == nil {
			s.log.InfoContext(ctx, "deployment "+ev.Kind, "deployment", d.ID, "message", ev.Message)
			if err := s.Refresh(ctx); err != nil {
				s.log.WarnContext(ctx, "refresh deployments", "err", err)
			}
			return d, nil
		}
		if !errors.Is(err, rampart.ErrConflict) || attempt >= 5 {
			return nil, err
		}
	}
}

// Pause stops offering a running deployment to more devices; devices that have it continue.
func (s *Service) Pause(ctx context.Context, id, by string) (*Deployment, error) {
	d, err := s.change(ctx, id, func(d *Deployment, now time.Time) (Event, error) {
		if d.Status != Running {
			return Event{}, fmt.Errorf("deployment is %s, only a running one can be paused: %w", d.Status, rampart.ErrConflict)
		}
		d.Status = Paused
		return Event{Kind: EventPaused, Message: "paused by " + by}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("pause: %w", err)
	}
	return d, nil
}

// Resume restarts a paused or halted deployment. Resuming a halted one overrides the gate
// that halted it: its wave's failures no longer halt it, and the next wave starts once the
// wave's bake time is over.
func (s *Service) Resume(ctx context.Context, id, by string) (*Deployment, error) {
	d, err := s.change(ctx, id, func(d *Deployment, now time.Time) (Event, error) {
		msg := "resumed by " + by
		switch d.Status {
		case Paused:
		case Halted:
			d.Override = true
			msg = fmt.Sprintf("resumed by %s, overriding the gate of wave %s (%s)", by, d.Plan.Waves[d.Wave].Name, d.Reason)
		default:
			return Event{}, fmt.Errorf("deployment is %s, only a paused or halted one can be resumed: %w", d.Status, rampart.ErrConflict)
		}
		d.Status, d.Reason = Running, ""
		return Event{Kind: EventResumed, Message: msg}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	return d, nil
}

// Cancel ends a deployment: devices that have not started installing are cancelled at once
// (they stop at their next report or check-in); a device already installing finishes and
// reports.
func (s *Service) Cancel(ctx context.Context, id, by string) (*Deployment, error) {
	d, err := s.cancel(ctx, id, "cancelled by "+by, EventCancelled)
	if err != nil {
		return nil, fmt.Errorf("cancel: %w", err)
	}
	return d, nil
}

func (s *Service) cancel(ctx context.Context, id, reason, kind string) (*Deployment, error) {
	d, err := s.store.Deployment(ctx, id)
	if err != nil {
		return nil, err
	}
	if d.Status.Final() {
		return nil, fmt.Errorf("deployment is %s already: %w", d.Status, rampart.ErrConflict)
	}
	// Members first: a crash between the two steps leaves an unfinished deployment whose
	// cancelled devices are no longer offered anything, and cancelling again completes it.
	n, err := s.store.SetMembersState(ctx, id, notStarted, rollout.Cancelled, s.now())
	if err != nil {
		return nil, err
	}
	return s.change(ctx, id, func(d *Deployment, now time.Time) (Event, error) {
		if d.Status.Final() {
			return Event{}, fmt.Errorf("deployment is %s already: %w", d.Status, rampart.ErrConflict)
		}
		d.Status, d.Reason, d.FinishedAt = Cancelled, reason, now
		return Event{Kind: kind, Message: fmt.Sprintf("%s; %d devices cancelled before installing", reason, n)}, nil
	})
}

// RollbackSpec says how to roll a deployment back. Zero values choose: the newest published
// release of the same software published before the deployment's release, one wave, forced.
type RollbackSpec struct {
	ReleaseID string
	Plan      rollout.Plan
	By        string
}

// Rollback cancels deployment id if it is unfinished and deploys the previous known-good
// release to the devices that took its release (succeeded, or are installing it). Devices
// still installing stay in the first deployment until they report, so they are left out
// (Created.Skipped); rolling back again once they have reported takes them too.
func (s *Service) Rollback(ctx context.Context, id string, rs RollbackSpec) (*Created, error) {
	bad, err := s.store.Deployment(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("roll back: %w", err)
	}
	badRel, err := s.releases.Release(ctx, bad.ReleaseID)
	if err != nil {
		return nil, fmt.Errorf("roll back: %w", err)
	}
	to, err := s.previous(ctx, badRel, rs.ReleaseID)
	if err != nil {
		return nil, fmt.Errorf("roll back: %w", err)
	}
	if len(rs.Plan.Waves) == 0 {
		rs.Plan = rollout.Plan{Waves: []rollout.Wave{{
			Name: "rollback", Size: rollout.Percent(100), SuccessThreshold: rollout.Percent(100), FailureThreshold: rollout.Percent(100),
		}}}
	}
	if err := rs.Plan.Validate(); err != nil {
		return nil, fmt.Errorf("roll back: %w", err)
	}
	if !bad.Status.Final() {
		if _, err := s.cancel(ctx, id, "rolled back by "+rs.By, EventRolledBack); err != nil && !errors.Is(err, rampart.ErrConflict) {
			return nil, fmt.Errorf("roll back: %w", err)
		}
	}
	took := append(slices.Clone(started), rollout.Success)
	var devices []target
	for after := ""; ; {
		ms, err := s.store.Members(ctx, MemberQuery{DeploymentID: id, States: took, Wave: -1, After: after, Limit: 5000})
		if err != nil {
			return nil, fmt.Errorf("roll back: %w", err)
		}
		for _, m := range ms {
			dev, err := s.fleet.Device(ctx, m.DeviceID)
			if errors.Is(err, rampart.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("roll back: %w", err)
			}
			if dev.Status == fleet.StatusAccepted {
				devices = append(devices, targetOf(dev))
			}
		}
		if len(ms) < 5000 {
			break
		}
		after = ms[len(ms)-1].DeviceID
	}
	nd := &Deployment{
		Name: "rollback of " + bad.Name, Plan: rs.Plan, Action: rollout.Forced,
		RollbackOf: bad.ID, CreatedBy: rs.By,
	}
	if len(nd.Name) > maxName {
		nd.Name = nd.Name[:maxName]
	}
	c, err := s.start(ctx, nd, to, devices, s.now())
	if err != nil {
		return nil, fmt.Errorf("roll back: %w", err)
	}
	if _, err := s.change(ctx, id, func(d *Deployment, _ time.Time) (Event, error) {
		d.RolledBackBy = nd.ID
		return Event{Kind: EventRolledBack, Message: fmt.Sprintf("rolled back by %s: %s %s to %d devices in deployment %s", rs.By, to.Name, to.Version, nd.Total, nd.ID)}, nil
	}); err != nil {
		return nil, fmt.Errorf("roll back: %w", err)
	}
	return c, nil
}

// previous returns the release to roll bad back to: want if given (same software, published),
// else the newest release of the same software published before bad.
func (s *Service) previous(ctx context.Context, bad *release.Release, want string) (*release.Release, error) {
	if want != "" {
		r, err := s.releases.Release(ctx, want)
		if err != nil {
			return nil, err
		}
		if r.Name != bad.Name || r.State != release.Published || r.ID == bad.ID {
			return nil, fmt.Errorf("release %s %s: want another published release of %s: %w", r.Name, r.Version, bad.Name, rampart.ErrInvalid)
		}
		return r, nil
	}
	rs, err := s.releases.Releases(ctx)
	if err != nil {
		return nil, err
	}
	var best *release.Release
	for _, r := range rs {
		if r.Name != bad.Name || r.State != release.Published || r.ID == bad.ID || !r.PublishedAt.Before(bad.PublishedAt) {
			continue
		}
		if best == nil || r.PublishedAt.After(best.PublishedAt) {
			best = r
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no published release of %s older than %s to roll back to: %w", bad.Name, bad.Version, rampart.ErrConflict)
	}
	return best, nil
}
