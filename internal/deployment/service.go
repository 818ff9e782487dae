package deployment

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/release"
	"github.com/rampart-iot/rampart/internal/rollout"
)

// Limits on what a deployment may ask for.
const (
	// MaxTargets is the most devices one deployment may target.
	MaxTargets = 1_000_000
	// MaxTargetList is the most device IDs a deployment may name one by one.
	MaxTargetList = 100_000
	// MaxMinInterval is the longest minimum interval between two updates of a device.
	MaxMinInterval = 366 * 24 * time.Hour
	maxLimits      = 256
	maxName        = 128
)

// Fleet is what deployments need of the fleet: the devices of a target set.
type Fleet interface {
	Device(ctx context.Context, id string) (*fleet.Device, error)
	Devices(ctx context.Context, q fleet.ListQuery) (*fleet.Page, error)
}

// Releases is what deployments need of releases.
type Releases interface {
	Release(ctx context.Context, id string) (*release.Release, error)
	Releases(ctx context.Context) ([]*release.Release, error)
}

// Grants issues download grants (release.Grants).
type Grants interface {
	Issue(deviceID, digest string, ttl time.Duration) string
}

// Options configures a Service.
type Options struct {
	Store    Store
	Fleet    Fleet
	Releases Releases
	Grants   Grants
	// TargetPath names a release artifact's TUF target.
	TargetPath func(r *release.Release, a release.Artifact) string
	Log        *slog.Logger
	Now        func() time.Time
	// GrantTTL is how long a download grant in a check-in answer lasts (default 24h).
	GrantTTL time.Duration
}

// Service manages deployments and answers devices' check-ins and status reports.
type Service struct {
	store      Store
	fleet      Fleet
	releases   Releases
	grants     Grants
	targetPath func(r *release.Release, a release.Artifact) string
	log        *slog.Logger
	now        func() time.Time
	grantTTL   time.Duration

	// live is what PendingWork needs of the unfinished deployments, rebuilt by every Tick
	// and after every change made through this Service.
	live atomic.Pointer[liveSet]

	loadMu sync.Mutex
	load   map[string]int

	zones sync.Map // time-zone name → *time.Location (nil for unknown names)

	refreshMu sync.Mutex
	rels      map[string]*release.Release
}

// liveSet is the unfinished deployments by ID with what a check-in answer needs.
type liveSet struct {
	byID map[string]*live
}

type live struct {
	d        *Deployment
	release  *release.Release
	artifact *fleet.WorkArtifact // without grant
	deltas   []fleet.WorkArtifact
}

// NewService returns a Service. Call Refresh (or Tick) before serving devices.
func NewService(o Options) *Service {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.GrantTTL <= 0 {
		o.GrantTTL = 24 * time.Hour
	}
	s := &Service{
		store: o.Store, fleet: o.Fleet, releases: o.Releases, grants: o.Grants, targetPath: o.TargetPath,
		log: o.Log, now: o.Now, grantTTL: o.GrantTTL, load: map[string]int{}, rels: map[string]*release.Release{},
	}
	s.live.Store(&liveSet{byID: map[string]*live{}})
	return s
}

// Spec describes a new deployment.
type Spec struct {
	Name      string
	ReleaseID string
	Target    Target
	// Plan defaults to rollout.DefaultPlan; Action to forced.
	Plan        rollout.Plan
	Action      rollout.Action
	MaxDeferral time.Duration
	Constraints Constraints
	Deadline    time.Time
	CreatedBy   string
}

// Created is a new deployment with what was left out of its target set.
type Created struct {
	Deployment *Deployment
	// Skipped devices are in another unfinished deployment of the same software.
	Skipped []string
	// Incompatible counts targeted devices that are not accepted or whose device type the
	// release does not support.
	Incompatible int
}

func newID(prefix string) (string, error) {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new id: %w", err)
	}
	return prefix + hex.EncodeToString(b[:]), nil
}

func newSeed() (int64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("new seed: %w", err)
	}
	return int64(binary.BigEndian.Uint64(b[:]) >> 1), nil
}

// bakeRand returns the random source BakeUntil uses for wave w: derived from the deployment's
// secret seed, so a restarted scheduler computes the same bake time.
func bakeRand(seed int64, w int) func(int64) int64 {
	r := mrand.New(mrand.NewPCG(uint64(seed), uint64(w)+1))
	return func(n int64) int64 { return r.Int64N(n) }
}

func checkName(s string) error {
	if s == "" || len(s) > maxName {
		return fmt.Errorf("name: want 1 to %d bytes: %w", maxName, rampart.ErrInvalid)
	}
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return fmt.Errorf("name %.40q: unprintable characters: %w", s, rampart.ErrInvalid)
	}
	return nil
}

// validate checks sp and fills in defaults.
func (sp *Spec) validate(now time.Time) error {
	if err := checkName(sp.Name); err != nil {
		return err
	}
	if sp.ReleaseID == "" {
		return fmt.Errorf("release: missing: %w", rampart.ErrInvalid)
	}
	n := 0
	for _, set := range []bool{sp.Target.Group != "", sp.Target.Filter != "", len(sp.Target.Devices) > 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("target: give exactly one of group, filter or devices: %w", rampart.ErrInvalid)
	}
	if len(sp.Target.Devices) > MaxTargetList {
		return fmt.Errorf("target: %d devices listed, at most %d: %w", len(sp.Target.Devices), MaxTargetList, rampart.ErrInvalid)
	}
	if len(sp.Plan.Waves) == 0 {
		sp.Plan = rollout.DefaultPlan()
	}
	if err := sp.Plan.Validate(); err != nil {
		return err
	}
	if sp.Action == "" {
		sp.Action = rollout.Forced
	}
	if _, err := rollout.ParseAction(string(sp.Action)); err != nil {
		return err
	}
	if err := rollout.ValidateDeferral(sp.Action, sp.MaxDeferral); err != nil {
		return err
	}
	if err := sp.Constraints.validate(); err != nil {
		return err
	}
	if !sp.Deadline.IsZero() && !sp.Deadline.After(now) {
		return fmt.Errorf("deadline %s: in the past: %w", sp.Deadline.UTC().Format(time.RFC3339), rampart.ErrInvalid)
	}
	return nil
}

func (c Constraints) validate() error {
	if err := c.Windows.Validate(); err != nil {
		return err
	}
	if len(c.Limits) > maxLimits || len(c.MinInterval) > maxLimits {
		return fmt.Errorf("constraints: at most %d limits and %d intervals: %w", maxLimits, maxLimits, rampart.ErrInvalid)
	}
	for k, n := range c.Limits {
		kind, v, ok := strings.Cut(k, ":")
		if !ok || (kind != "type" && kind != "region") || v == "" || len(v) > maxName {
			return fmt.Errorf("limit %.40q: want type:<device type> or region:<region>: %w", k, rampart.ErrInvalid)
		}
		if n < 0 || n > MaxTargets {
			return fmt.Errorf("limit %s: %d: want 0 to %d: %w", k, n, MaxTargets, rampart.ErrInvalid)
		}
	}
	for t, iv := range c.MinInterval {
		if t == "" || len(t) > maxName || iv <= 0 || iv > MaxMinInterval {
			return fmt.Errorf("minimum interval for %.40q: %s: want a device type and more than 0, at most %s: %w", t, iv, MaxMinInterval, rampart.ErrInvalid)
		}
	}
	return nil
}

// Create starts a deployment: it resolves the target set now (accepted devices of a type the
// release supports), assigns them to waves at random and starts the first wave.
func (s *Service) Create(ctx context.Context, sp Spec) (*Created, error) {
	now := s.now()
	if err := sp.validate(now); err != nil {
		return nil, fmt.Errorf("create deployment: %w", err)
	}
	rel, err := s.releases.Release(ctx, sp.ReleaseID)
	if err != nil {
		return nil, fmt.Errorf("create deployment: %w", err)
	}
	if rel.State != release.Published {
		return nil, fmt.Errorf("create deployment: release %s %s is %s, not published: %w", rel.Name, rel.Version, rel.State, rampart.ErrConflict)
	}
	if installable(rel) == nil {
		return nil, fmt.Errorf("create deployment: release %s %s has no full, package or script artifact: %w", rel.Name, rel.Version, rampart.ErrConflict)
	}
	devices, incompatible, err := s.resolve(ctx, sp.Target, rel)
	if err != nil {
		return nil, fmt.Errorf("create deployment: %w", err)
	}
	d := &Deployment{
		Name: sp.Name, Target: sp.Target, Plan: sp.Plan, Action: sp.Action, MaxDeferral: sp.MaxDeferral,
		Constraints: sp.Constraints, Deadline: sp.Deadline, CreatedBy: sp.CreatedBy,
	}
	c, err := s.start(ctx, d, rel, devices, now)
	if err != nil {
		return nil, fmt.Errorf("create deployment: %w", err)
	}
	c.Incompatible = incompatible
	return c, nil
}

// target is what a deployment keeps of a device it targets. Creating a deployment holds one
// per device; whole fleet.Device values (interfaces, attributes, tags) cost ~2.4 KB each,
// which made creating a deployment for 100,000 devices the server's memory peak.
type target struct {
	id, deviceType, region, timeZone string
}

func targetOf(d *fleet.Device) target {
	return target{id: d.ID, deviceType: d.Identity.DeviceType, region: d.Attributes["region"], timeZone: d.Attributes["tz"]}
}

// start fills in d for rel and devices, stores it with its members and starts wave 0.
func (s *Service) start(ctx context.Context, d *Deployment, rel *release.Release, devices []target, now time.Time) (*Created, error) {
	if len(devices) == 0 {
		return nil, fmt.Errorf("no device of the target set can take %s %s: %w", rel.Name, rel.Version, rampart.ErrInvalid)
	}
	id, err := newID("dep_")
	if err != nil {
		return nil, err
	}
	seed, err := newSeed()
	if err != nil {
		return nil, err
	}
	d.ID, d.Seed = id, seed
	d.ReleaseID, d.Software, d.Version, d.PublishedAt = rel.ID, rel.Name, rel.Version, rel.PublishedAt
	d.Status, d.Wave, d.WaveStarted = Running, 0, now
	d.BakeUntil = rollout.BakeUntil(d.Plan.Waves[0], now, bakeRand(seed, 0))
	d.CreatedAt, d.UpdatedAt = now, now

	byID := make(map[string]*target, len(devices))
	ids := make([]string, 0, len(devices))
	for i := range devices {
		byID[devices[i].id] = &devices[i]
		ids = append(ids, devices[i].id)
	}
	slices.Sort(ids)
	waves := rollout.AssignWaves(ids, d.Plan, seed)
	members := make([]Member, 0, len(ids))
	for w, wids := range waves {
		for _, did := range wids {
			dev := byID[did]
			members = append(members, Member{
				DeploymentID: d.ID, DeviceID: did, Software: d.Software, Wave: w,
				DeviceType: dev.deviceType, Region: dev.region, TimeZone: dev.timeZone,
				Status: rollout.NewDeviceStatus(now),
			})
		}
	}
	d.Total, d.WaveSizes = len(members), waveSizes(waves, nil)
	skipped, err := s.store.CreateDeployment(ctx, d, members)
	if err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("%s %s to %d devices in %d waves by %s", d.Software, d.Version, d.Total, len(d.Plan.Waves), d.CreatedBy)
	if len(skipped) > 0 {
		left := make(map[string]bool, len(skipped))
		for _, id := range skipped {
			left[id] = true
		}
		d.Total -= len(skipped)
		d.WaveSizes = waveSizes(waves, left)
		msg = fmt.Sprintf("%s %s to %d devices in %d waves by %s; %d devices left out (in another unfinished deployment of %s)",
			d.Software, d.Version, d.Total, len(d.Plan.Waves), d.CreatedBy, len(skipped), d.Software)
	}
	ev := Event{DeploymentID: d.ID, At: now, Kind: EventCreated, Message: msg}
	if d.Total == 0 {
		// Kept (cancelled) as a record of the attempt, but refused.
		d.Status, d.FinishedAt = Cancelled, now
		d.Reason = fmt.Sprintf("every targeted device is in another unfinished deployment of %s", d.Software)
		ev.Kind, ev.Message = EventCancelled, d.Reason
		if err := s.store.UpdateDeployment(ctx, d, ev); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s: %w", d.Reason, rampart.ErrConflict)
	}
	if err := s.store.UpdateDeployment(ctx, d, ev); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "deployment created", "deployment", d.ID, "release", d.Software+" "+d.Version, "devices", d.Total, "skipped", len(skipped))
	if err := s.Refresh(ctx); err != nil {
		s.log.WarnContext(ctx, "refresh deployments", "err", err)
	}
	return &Created{Deployment: d, Skipped: skipped}, nil
}

func waveSizes(waves [][]string, left map[string]bool) []int {
	sizes := make([]int, len(waves))
	for i, w := range waves {
		for _, id := range w {
			if !left[id] {
				sizes[i]++
			}
		}
	}
	return sizes
}

// resolve returns the accepted devices of t that can take rel, and how many it left out.
func (s *Service) resolve(ctx context.Context, t Target, rel *release.Release) ([]target, int, error) {
	var out []target
	incompatible := 0
	take := func(d *fleet.Device) {
		if d.Status == fleet.StatusAccepted && slices.Contains(rel.DeviceTypes, d.Identity.DeviceType) {
			out = append(out, targetOf(d))
		} else {
			incompatible++
		}
	}
	if len(t.Devices) > 0 {
		seen := make(map[string]bool, len(t.Devices))
		for _, id := range t.Devices {
			if seen[id] {
				continue
			}
			seen[id] = true
			d, err := s.fleet.Device(ctx, id)
			if errors.Is(err, rampart.ErrNotFound) {
				return nil, 0, fmt.Errorf("target device %.60q: no such device: %w", id, rampart.ErrInvalid)
			}
			if err != nil {
				return nil, 0, err
			}
			take(d)
		}
		return out, incompatible, nil
	}
	q := fleet.ListQuery{Group: t.Group, Filter: t.Filter, Limit: fleet.MaxPageSize}
	for {
		p, err := s.fleet.Devices(ctx, q)
		if err != nil {
			return nil, 0, err
		}
		for _, d := range p.Devices {
			take(d)
		}
		if len(out)+incompatible > MaxTargets {
			return nil, 0, fmt.Errorf("target: more than %d devices: %w", MaxTargets, rampart.ErrInvalid)
		}
		if p.Next == "" {
			return out, incompatible, nil
		}
		q.Cursor = p.Next
	}
}

// installable returns the artifact a device installs: the full image, else a package, else a
// script.
func installable(r *release.Release) *release.Artifact {
	for _, role := range []release.Role{release.RoleFull, release.RolePackage, release.RoleScript} {
		for i := range r.Artifacts {
			if r.Artifacts[i].Role == role {
				return &r.Artifacts[i]
			}
		}
	}
	return nil
}

// Get returns a deployment with its progress.
func (s *Service) Get(ctx context.Context, id string) (*Progress, error) {
	d, err := s.store.Deployment(ctx, id)
	if err != nil {
		return nil, err
	}
	counts, err := s.store.Counts(ctx, id)
	if err != nil {
		return nil, err
	}
	return progress(d, counts), nil
}

// Progress is a deployment with how many of its devices are where, per wave and overall.
type Progress struct {
	*Deployment
	Waves  []WaveProgress
	States map[rollout.DeviceState]int
}

// WaveProgress is one wave's devices per state.
type WaveProgress struct {
	Name    string
	Size    int
	Started bool
	States  map[rollout.DeviceState]int
}

func progress(d *Deployment, counts []StateCount) *Progress {
	p := &Progress{Deployment: d, States: map[rollout.DeviceState]int{}}
	for i, w := range d.Plan.Waves {
		p.Waves = append(p.Waves, WaveProgress{Name: w.Name, Started: i <= d.Wave, States: map[rollout.DeviceState]int{}})
	}
	for _, c := range counts {
		if c.Wave >= 0 && c.Wave < len(p.Waves) {
			p.Waves[c.Wave].States[c.State] += c.N
			p.Waves[c.Wave].Size += c.N
		}
		p.States[c.State] += c.N
	}
	return p
}

// List returns deployments, newest first.
func (s *Service) List(ctx context.Context, q Query) ([]*Deployment, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	if q.Limit > 1000 {
		return nil, fmt.Errorf("list deployments: limit above 1000: %w", rampart.ErrInvalid)
	}
	ds, err := s.store.Deployments(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return ds, nil
}

// Members lists the devices of a deployment with their states.
func (s *Service) Members(ctx context.Context, q MemberQuery) ([]Member, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	if q.Limit > 10000 {
		return nil, fmt.Errorf("list deployment devices: limit above 10000: %w", rampart.ErrInvalid)
	}
	ms, err := s.store.Members(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("deployment %s devices: %w", q.DeploymentID, err)
	}
	return ms, nil
}

// Events returns a deployment's events, newest first.
func (s *Service) Events(ctx context.Context, id string, limit int) ([]Event, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	evs, err := s.store.DeploymentEvents(ctx, id, limit)
	if err != nil {
		return nil, fmt.Errorf("deployment %s events: %w", id, err)
	}
	return evs, nil
}
