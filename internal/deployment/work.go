package deployment

import (
	"context"
	"fmt"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/release"
	"github.com/rampart-iot/rampart/internal/rollout"
)

var _ fleet.WorkSource = (*Service)(nil)

// unfinished are the statuses whose deployments devices still hear about.
var unfinished = []Status{Running, Paused, Halted}

// Refresh reloads the unfinished deployments PendingWork consults and the count of devices
// updating per limit key. Tick calls it; so does every change made through this Service.
func (s *Service) Refresh(ctx context.Context) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	ds, err := s.store.Deployments(ctx, Query{Statuses: unfinished, Limit: 1000})
	if err != nil {
		return fmt.Errorf("refresh deployments: %w", err)
	}
	set := &liveSet{byID: make(map[string]*live, len(ds))}
	for _, d := range ds {
		rel, ok := s.rels[d.ReleaseID]
		if !ok {
			if rel, err = s.releases.Release(ctx, d.ReleaseID); err != nil {
				return fmt.Errorf("refresh deployment %s: %w", d.ID, err)
			}
			s.rels[d.ReleaseID] = rel
		}
		set.byID[d.ID] = s.liveOf(d, rel)
	}
	loads, err := s.store.Load(ctx, []Status{Running, Paused, Halted, Cancelled, Finished})
	if err != nil {
		return fmt.Errorf("refresh load: %w", err)
	}
	load := make(map[string]int, len(loads))
	for _, l := range loads {
		load[l.Key] = l.N
	}
	s.loadMu.Lock()
	s.load = load
	s.loadMu.Unlock()
	s.live.Store(set)
	return nil
}

func (s *Service) liveOf(d *Deployment, rel *release.Release) *live {
	l := &live{d: d, release: rel}
	if a := installable(rel); a != nil {
		l.artifact = &fleet.WorkArtifact{Path: s.path(rel, *a), Role: string(a.Role), SHA256: a.Digest, Size: a.Size}
	}
	for _, a := range rel.Artifacts {
		if a.Role == release.RoleDelta {
			l.deltas = append(l.deltas, fleet.WorkArtifact{Path: s.path(rel, a), Role: string(a.Role), SHA256: a.Digest, Size: a.Size, DeltaFrom: a.DeltaFrom})
		}
	}
	return l
}

func (s *Service) path(rel *release.Release, a release.Artifact) string {
	if s.targetPath == nil {
		return a.Name
	}
	return s.targetPath(rel, a)
}

// PendingWork implements fleet.WorkSource: the updates a checking-in device should take.
// With no unfinished deployment it does no store I/O; otherwise it reads the device's active
// memberships (one indexed read) and, the first time a device is given an update, records
// that (compare-and-set), after checking the wave has started, the device's maintenance
// window is open, its minimum interval has passed and the concurrency limits allow it.
func (s *Service) PendingWork(ctx context.Context, deviceID string) ([]fleet.Work, error) {
	set := s.live.Load()
	if len(set.byID) == 0 {
		return nil, nil
	}
	ms, err := s.store.ActiveMembers(ctx, deviceID)
	if err != nil {
		return nil, fmt.Errorf("pending work of %s: %w", deviceID, err)
	}
	var out []fleet.Work
	now := s.now()
	for i := range ms {
		m := &ms[i]
		l := set.byID[m.DeploymentID]
		if l == nil || l.artifact == nil {
			continue
		}
		if m.OfferedAt.IsZero() {
			ok, err := s.offer(ctx, l.d, m, now)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
		}
		out = append(out, s.work(l, m, deviceID))
	}
	return out, nil
}

// offer decides whether m's device may be given the update now and records it if so.
func (s *Service) offer(ctx context.Context, d *Deployment, m *Member, now time.Time) (bool, error) {
	if d.Status != Running || m.Wave > d.Wave {
		return false, nil
	}
	if !d.Constraints.Windows.Open(now, s.zone(m.TimeZone)) {
		return false, nil
	}
	if iv := d.Constraints.MinInterval[m.DeviceType]; iv > 0 {
		last, err := s.store.LastSuccess(ctx, m.DeviceID)
		if err != nil {
			return false, fmt.Errorf("pending work of %s: %w", m.DeviceID, err)
		}
		if !rollout.DueAfter(last, iv, now) {
			return false, nil
		}
	}
	keys := limitKeys(m)
	s.loadMu.Lock()
	if !rollout.CanStart(s.load, d.Constraints.Limits, keys) {
		s.loadMu.Unlock()
		return false, nil
	}
	for _, k := range keys {
		s.load[k]++
	}
	s.loadMu.Unlock()
	prev := m.Status
	m.OfferedAt = now
	ok, err := s.store.UpdateMember(ctx, m, prev)
	if err != nil || !ok {
		s.unload(keys)
		if err != nil {
			return false, fmt.Errorf("offer %s to %s: %w", d.ID, m.DeviceID, err)
		}
	}
	return ok, nil
}

func limitKeys(m *Member) []string {
	keys := []string{rollout.LimitKey("type", m.DeviceType)}
	if m.Region != "" {
		keys = append(keys, rollout.LimitKey("region", m.Region))
	}
	return keys
}

func (s *Service) unload(keys []string) {
	s.loadMu.Lock()
	for _, k := range keys {
		if s.load[k] > 0 {
			s.load[k]--
		}
	}
	s.loadMu.Unlock()
}

// zone returns the location named tz, or UTC for an empty or unknown name.
func (s *Service) zone(tz string) *time.Location {
	if tz == "" {
		return time.UTC
	}
	if v, ok := s.zones.Load(tz); ok {
		return v.(*time.Location)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil || len(tz) > 64 {
		loc = time.UTC
	}
	s.zones.Store(tz, loc)
	return loc
}

func (s *Service) work(l *live, m *Member, deviceID string) fleet.Work {
	w := fleet.Work{
		ID: l.d.ID, Kind: "update", Release: l.d.Software, Version: l.d.Version, Action: string(l.d.Action),
	}
	if l.d.Action == rollout.Soft {
		w.InstallBy = m.OfferedAt.Add(l.d.MaxDeferral)
	}
	a := *l.artifact
	a.Grant = s.grants.Issue(deviceID, a.SHA256, s.grantTTL)
	w.Artifact = &a
	for _, d := range l.deltas {
		d.Grant = s.grants.Issue(deviceID, d.SHA256, s.grantTTL)
		w.Deltas = append(w.Deltas, d)
	}
	return w
}

// Report applies a device's status report for one deployment and returns the state the
// server now holds. Repeated, late and out-of-order reports change nothing (rollout.Apply).
func (s *Service) Report(ctx context.Context, deviceID, deploymentID string, r rollout.Report) (rollout.DeviceStatus, error) {
	for attempt := 0; ; attempt++ {
		m, err := s.store.Member(ctx, deploymentID, deviceID)
		if err != nil {
			return rollout.DeviceStatus{}, fmt.Errorf("report of %s for %s: %w", deviceID, deploymentID, err)
		}
		now := s.now()
		next, changed, err := rollout.Apply(m.Status, r, now)
		if err != nil {
			return m.Status, fmt.Errorf("report of %s for %s: %w", deviceID, deploymentID, err)
		}
		if !changed {
			return m.Status, nil
		}
		prev := m.Status
		m.Status = next
		if m.OfferedAt.IsZero() {
			m.OfferedAt = now
		}
		ok, err := s.store.UpdateMember(ctx, m, prev)
		if err != nil {
			return prev, fmt.Errorf("report of %s for %s: %w", deviceID, deploymentID, err)
		}
		if ok {
			if next.State.Terminal() {
				s.unload(limitKeys(m))
			}
			if next.State == rollout.Failure || next.State == rollout.RolledBack {
				s.log.InfoContext(ctx, "device update failed", "deployment", deploymentID, "device", deviceID, "state", next.State)
			}
			return next, nil
		}
		if attempt >= 5 {
			return prev, fmt.Errorf("report of %s for %s: state kept changing underneath: %w", deviceID, deploymentID, rampart.ErrConflict)
		}
	}
}
