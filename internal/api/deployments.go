package api

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/access"
	"github.com/rampart-iot/rampart/internal/deployment"
	"github.com/rampart-iot/rampart/internal/jsonhttp"
	"github.com/rampart-iot/rampart/internal/release"
	"github.com/rampart-iot/rampart/internal/rollout"
)

// maxDeploymentBody bounds a deployment request: a target list of deployment.MaxTargetList
// device IDs is about 3 MiB of JSON.
const maxDeploymentBody = 4 << 20

// maxSkippedListed bounds the skipped device IDs a creation answer names; it counts them all.
const maxSkippedListed = 100

// maxTargetListed bounds the device IDs of a target list that a deployment's description
// repeats, so that listing deployments stays small; GET /deployments/{id}/devices has them all.
const maxTargetListed = 100

// maxMetricsDays bounds how far back delivery metrics look.
const maxMetricsDays = 3660

// DeploymentRequest creates a deployment. The release is given as release_id, or as release
// (its name) and version. Plan is in rollout's text form ("10 name=canary fail=1; 25%; 100%");
// empty means the default plan. Durations are Go durations ("72h"), windows are
// "[DAYS] HH:MM-HH:MM" in each device's local time, and the deadline is an RFC 3339 time.
type DeploymentRequest struct {
	Name        string            `json:"name,omitempty"`
	ReleaseID   string            `json:"release_id,omitempty"`
	Release     string            `json:"release,omitempty"`
	Version     string            `json:"version,omitempty"`
	Target      DeploymentTarget  `json:"target"`
	Plan        string            `json:"plan,omitempty"`
	Action      string            `json:"action,omitempty"`
	MaxDeferral string            `json:"max_deferral,omitempty"`
	Windows     []string          `json:"windows,omitempty"`
	Limits      map[string]int    `json:"limits,omitempty"`
	MinInterval map[string]string `json:"min_interval,omitempty"`
	Deadline    string            `json:"deadline,omitempty"`
}

// DeploymentTarget is the set of devices a deployment is for: exactly one field is set.
type DeploymentTarget struct {
	Group   string   `json:"group,omitempty"`
	Filter  string   `json:"filter,omitempty"`
	Devices []string `json:"devices,omitempty"`
}

// Deployment describes a deployment. For a target given as a device list, Target names at
// most the first 100 devices and TargetDevices counts them all. Wave is the index of the
// newest wave started. States (devices per state, overall and per wave) are set only when one
// deployment is fetched.
type Deployment struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	ReleaseID      string            `json:"release_id"`
	Software       string            `json:"software"`
	Version        string            `json:"version"`
	Target         DeploymentTarget  `json:"target"`
	TargetDevices  int               `json:"target_devices,omitempty"`
	Plan           string            `json:"plan"`
	Action         string            `json:"action"`
	MaxDeferral    string            `json:"max_deferral,omitempty"`
	Windows        []string          `json:"windows,omitempty"`
	Limits         map[string]int    `json:"limits,omitempty"`
	MinInterval    map[string]string `json:"min_interval,omitempty"`
	Deadline       *time.Time        `json:"deadline,omitempty"`
	Status         string            `json:"status"`
	Reason         string            `json:"reason,omitempty"`
	Wave           int               `json:"wave"`
	WaveStarted    *time.Time        `json:"wave_started,omitempty"`
	BakeUntil      *time.Time        `json:"bake_until,omitempty"`
	GateOverridden bool              `json:"gate_overridden,omitempty"`
	Total          int               `json:"total"`
	Waves          []DeploymentWave  `json:"waves"`
	States         map[string]int    `json:"states,omitempty"`
	RollbackOf     string            `json:"rollback_of,omitempty"`
	RolledBackBy   string            `json:"rolled_back_by,omitempty"`
	CreatedBy      string            `json:"created_by"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
	HaltedAt       *time.Time        `json:"halted_at,omitempty"`
	FinishedAt     *time.Time        `json:"finished_at,omitempty"`
}

// DeploymentWave is one wave of a deployment: its plan (Size is cumulative, a count or a
// percentage of the target set) and the devices it holds.
type DeploymentWave struct {
	Name             string         `json:"name"`
	Size             string         `json:"size"`
	SuccessThreshold string         `json:"success_threshold"`
	FailureThreshold string         `json:"failure_threshold"`
	Bake             string         `json:"bake"`
	BakeJitter       string         `json:"bake_jitter"`
	Devices          int            `json:"devices"`
	Started          bool           `json:"started"`
	States           map[string]int `json:"states,omitempty"`
}

// DeploymentCreated answers the creation of a deployment (or of a rollback): Skipped devices
// are in another unfinished deployment of the same software (SkippedDevices names the first
// 100); Incompatible counts targeted devices that are not accepted or whose type the release
// does not support.
type DeploymentCreated struct {
	Deployment     Deployment `json:"deployment"`
	Skipped        int        `json:"skipped"`
	SkippedDevices []string   `json:"skipped_devices,omitempty"`
	Incompatible   int        `json:"incompatible"`
}

// DeploymentList is one page of deployments, newest first; NextBefore, when set, is the
// before parameter of the next page.
type DeploymentList struct {
	Deployments []Deployment `json:"deployments"`
	NextBefore  string       `json:"next_before,omitempty"`
}

// DeploymentDevice is one device of a deployment. Log is the device's log excerpt, kept when
// it failed or rolled back.
type DeploymentDevice struct {
	DeviceID   string     `json:"device_id"`
	Wave       int        `json:"wave"`
	DeviceType string     `json:"device_type"`
	Region     string     `json:"region,omitempty"`
	TimeZone   string     `json:"tz,omitempty"`
	State      string     `json:"state"`
	Since      time.Time  `json:"since"`
	OfferedAt  *time.Time `json:"offered_at,omitempty"`
	Log        string     `json:"log,omitempty"`
}

// DeploymentDeviceList is one page of a deployment's devices, ordered by device ID;
// NextAfter, when set, is the after parameter of the next page.
type DeploymentDeviceList struct {
	Devices   []DeploymentDevice `json:"devices"`
	NextAfter string             `json:"next_after,omitempty"`
}

// DeploymentEvent is something that happened to a deployment.
type DeploymentEvent struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Message string    `json:"message"`
}

// DeploymentEventList is a deployment's events, newest first.
type DeploymentEventList struct {
	Events []DeploymentEvent `json:"events"`
}

// RollbackRequest rolls a deployment back; both fields are optional. Without release_id the
// newest published release of the same software published before the deployment's is
// chosen; without plan, one wave of every device.
type RollbackRequest struct {
	ReleaseID string `json:"release_id,omitempty"`
	Plan      string `json:"plan,omitempty"`
}

// Delivery is the delivery metrics of a period, for the fleet or one device type. Lead time
// and time to restore are medians, as Go durations, absent when nothing was measured.
// ByDeviceType breaks the fleet's figures down when no device type was asked for.
type Delivery struct {
	DeviceType        string     `json:"device_type,omitempty"`
	Since             time.Time  `json:"since"`
	Until             time.Time  `json:"until"`
	Deployments       int        `json:"deployments"`
	Succeeded         int        `json:"succeeded"`
	PerDay            float64    `json:"per_day"`
	LeadTime          string     `json:"lead_time,omitempty"`
	LeadTimes         int        `json:"lead_times"`
	Failed            int        `json:"failed"`
	ChangeFailureRate float64    `json:"change_failure_rate"`
	TimeToRestore     string     `json:"time_to_restore,omitempty"`
	Restores          int        `json:"restores"`
	ByDeviceType      []Delivery `json:"by_device_type,omitempty"`
}

func durationOut(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func deploymentOut(d *deployment.Deployment) Deployment {
	t := DeploymentTarget{Group: d.Target.Group, Filter: d.Target.Filter, Devices: d.Target.Devices[:min(len(d.Target.Devices), maxTargetListed)]}
	out := Deployment{
		ID: d.ID, Name: d.Name, ReleaseID: d.ReleaseID, Software: d.Software, Version: d.Version, Target: t,
		TargetDevices: len(d.Target.Devices), Plan: d.Plan.String(), Action: string(d.Action), MaxDeferral: durationOut(d.MaxDeferral),
		Limits: d.Constraints.Limits, Deadline: timePtr(d.Deadline), Status: string(d.Status), Reason: d.Reason,
		Wave: d.Wave, WaveStarted: timePtr(d.WaveStarted), BakeUntil: timePtr(d.BakeUntil), GateOverridden: d.Override,
		Total: d.Total, RollbackOf: d.RollbackOf, RolledBackBy: d.RolledBackBy, CreatedBy: d.CreatedBy,
		CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC(), HaltedAt: timePtr(d.HaltedAt), FinishedAt: timePtr(d.FinishedAt),
		Waves: make([]DeploymentWave, 0, len(d.Plan.Waves)),
	}
	for _, w := range d.Constraints.Windows {
		out.Windows = append(out.Windows, w.String())
	}
	if len(d.Constraints.MinInterval) > 0 {
		out.MinInterval = make(map[string]string, len(d.Constraints.MinInterval))
		for t, iv := range d.Constraints.MinInterval {
			out.MinInterval[t] = iv.String()
		}
	}
	for i, w := range d.Plan.Waves {
		dw := DeploymentWave{
			Name: w.Name, Size: w.Size.String(), SuccessThreshold: w.SuccessThreshold.String(),
			FailureThreshold: w.FailureThreshold.String(), Bake: w.Bake.String(), BakeJitter: w.BakeJitter.String(),
			Started: i <= d.Wave,
		}
		if i < len(d.WaveSizes) {
			dw.Devices = d.WaveSizes[i]
		}
		out.Waves = append(out.Waves, dw)
	}
	return out
}

func statesOut(m map[rollout.DeviceState]int) map[string]int {
	out := make(map[string]int, len(m))
	for s, n := range m {
		if n > 0 {
			out[string(s)] = n
		}
	}
	return out
}

func progressOut(p *deployment.Progress) Deployment {
	out := deploymentOut(p.Deployment)
	for i, w := range p.Waves {
		if i < len(out.Waves) {
			out.Waves[i].Devices, out.Waves[i].Started, out.Waves[i].States = w.Size, w.Started, statesOut(w.States)
		}
	}
	out.States = statesOut(p.States)
	return out
}

func createdOut(c *deployment.Created) DeploymentCreated {
	out := DeploymentCreated{Deployment: deploymentOut(c.Deployment), Skipped: len(c.Skipped), Incompatible: c.Incompatible}
	out.SkippedDevices = c.Skipped[:min(len(c.Skipped), maxSkippedListed)]
	return out
}

func deliveryOut(d *deployment.Delivery) Delivery {
	out := Delivery{
		DeviceType: d.DeviceType, Since: d.Since.UTC(), Until: d.Until.UTC(), Deployments: d.Deployments,
		Succeeded: d.Succeeded, PerDay: d.PerDay, LeadTimes: d.LeadTimes, Failed: d.Failed,
		ChangeFailureRate: d.ChangeFailureRate, Restores: d.Restores,
	}
	if d.LeadTimes > 0 {
		out.LeadTime = d.LeadTime.Round(time.Second).String()
	}
	if d.Restores > 0 {
		out.TimeToRestore = d.TimeToRestore.Round(time.Second).String()
	}
	return out
}

// spec turns a creation request into a deployment.Spec; every malformed field is an
// ErrInvalid naming the field.
func (req *DeploymentRequest) spec(now time.Time) (deployment.Spec, error) {
	sp := deployment.Spec{
		Name:   req.Name,
		Target: deployment.Target{Group: req.Target.Group, Filter: req.Target.Filter, Devices: req.Target.Devices},
		Action: rollout.Action(req.Action),
	}
	var err error
	if strings.TrimSpace(req.Plan) != "" {
		if sp.Plan, err = rollout.ParsePlan(req.Plan); err != nil {
			return sp, err
		}
	}
	if req.MaxDeferral != "" {
		if sp.MaxDeferral, err = parseDuration("max_deferral", req.MaxDeferral); err != nil {
			return sp, err
		}
	}
	if len(req.Windows) > rollout.MaxWindows {
		return sp, fmt.Errorf("windows: %d, at most %d: %w", len(req.Windows), rollout.MaxWindows, rampart.ErrInvalid)
	}
	for _, s := range req.Windows {
		w, err := rollout.ParseWindow(s)
		if err != nil {
			return sp, err
		}
		sp.Constraints.Windows = append(sp.Constraints.Windows, w)
	}
	sp.Constraints.Limits = req.Limits
	if len(req.MinInterval) > 0 {
		sp.Constraints.MinInterval = make(map[string]time.Duration, len(req.MinInterval))
		for _, t := range sortedKeys(req.MinInterval) {
			if sp.Constraints.MinInterval[t], err = parseDuration("min_interval "+t, req.MinInterval[t]); err != nil {
				return sp, err
			}
		}
	}
	if req.Deadline != "" {
		if sp.Deadline, err = time.Parse(time.RFC3339, req.Deadline); err != nil {
			return sp, fmt.Errorf("deadline %.40q: want an RFC 3339 time like %s: %w", req.Deadline, now.UTC().Add(72*time.Hour).Format(time.RFC3339), rampart.ErrInvalid)
		}
	}
	return sp, nil
}

func parseDuration(what, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%.60s %.40q: want a positive Go duration like 72h: %w", what, s, rampart.ErrInvalid)
	}
	return d, nil
}

// bodyRelease resolves the release a request body names, by ID or by name and version. A
// release that does not exist is bad input (400), not a missing resource of the path.
func (h *Handler) bodyRelease(r *http.Request, id, name, version string) (*release.Release, error) {
	var rel *release.Release
	var err error
	switch {
	case id != "" && (name != "" || version != ""):
		return nil, fmt.Errorf("release: give release_id, or release and version, not both: %w", rampart.ErrInvalid)
	case id != "":
		rel, err = h.releases.Release(r.Context(), id)
	case name != "" && version != "":
		rel, err = h.releases.ReleaseByVersion(r.Context(), name, version)
	default:
		return nil, fmt.Errorf("release: give release_id, or release and version: %w", rampart.ErrInvalid)
	}
	switch {
	case errors.Is(err, rampart.ErrNotFound) && id != "":
		return nil, fmt.Errorf("release_id %.100q: no such release: %w", id, rampart.ErrInvalid)
	case errors.Is(err, rampart.ErrNotFound):
		return nil, fmt.Errorf("release %s %s: no such release: %w", name, version, rampart.ErrInvalid)
	}
	return rel, err
}

func (h *Handler) createDeployment(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	var req DeploymentRequest
	if err := jsonhttp.Decode(w, r, maxDeploymentBody, &req); err != nil {
		return err
	}
	sp, err := req.spec(h.now())
	if err != nil {
		return err
	}
	rel, err := h.bodyRelease(r, req.ReleaseID, req.Release, req.Version)
	if err != nil {
		return err
	}
	if t := sp.Target; t.Group != "" && t.Filter == "" && len(t.Devices) == 0 {
		// An unknown group in the body is bad input, not a missing resource of the path.
		if _, err := h.fleet.Group(r.Context(), t.Group); errors.Is(err, rampart.ErrNotFound) {
			return fmt.Errorf("target group %.100q: no such group: %w", t.Group, rampart.ErrInvalid)
		} else if err != nil {
			return err
		}
	}
	sp.ReleaseID, sp.CreatedBy = rel.ID, p.Name
	if sp.Name == "" {
		sp.Name = rel.Name + " " + rel.Version
	}
	c, err := h.deployments.Create(r.Context(), sp)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "deployment.create", c.Deployment.ID)
	jsonhttp.Write(w, http.StatusCreated, createdOut(c))
	return nil
}

// deploymentStatuses are the statuses ?status= may name.
var deploymentStatuses = []deployment.Status{deployment.Running, deployment.Paused, deployment.Halted, deployment.Cancelled, deployment.Finished}

// commaList splits a comma-separated query parameter, refusing more than max items.
func commaList(r *http.Request, name string, max int) ([]string, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return nil, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) > max {
		return nil, fmt.Errorf("%s: at most %d values: %w", name, max, rampart.ErrInvalid)
	}
	return parts, nil
}

func (h *Handler) listDeployments(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	limit, err := limitParam(r)
	if err != nil {
		return err
	}
	if limit == 0 {
		limit = 50
	}
	statuses, err := commaList(r, "status", len(deploymentStatuses))
	if err != nil {
		return err
	}
	q := deployment.Query{Software: r.URL.Query().Get("software"), Before: r.URL.Query().Get("before"), Limit: limit}
	for _, s := range statuses {
		st := deployment.Status(s)
		if !slices.Contains(deploymentStatuses, st) {
			return fmt.Errorf("status %.40q: want running, paused, halted, cancelled or finished: %w", s, rampart.ErrInvalid)
		}
		q.Statuses = append(q.Statuses, st)
	}
	ds, err := h.deployments.List(r.Context(), q)
	if err != nil {
		return err
	}
	out := DeploymentList{Deployments: make([]Deployment, 0, len(ds))}
	for _, d := range ds {
		out.Deployments = append(out.Deployments, deploymentOut(d))
	}
	if len(ds) == limit {
		out.NextBefore = ds[len(ds)-1].ID
	}
	jsonhttp.Write(w, http.StatusOK, out)
	return nil
}

func (h *Handler) getDeployment(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	p, err := h.deployments.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	jsonhttp.Write(w, http.StatusOK, progressOut(p))
	return nil
}

func (h *Handler) deploymentDevices(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	limit, err := limitParam(r)
	if err != nil {
		return err
	}
	if limit == 0 {
		limit = 100
	}
	q := deployment.MemberQuery{DeploymentID: r.PathValue("id"), Wave: -1, After: r.URL.Query().Get("after"), Limit: limit}
	states, err := commaList(r, "state", 11)
	if err != nil {
		return err
	}
	for _, s := range states {
		st, err := rollout.ParseDeviceState(s)
		if err != nil {
			return err
		}
		q.States = append(q.States, st)
	}
	if v := r.URL.Query().Get("wave"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n >= rollout.MaxWaves {
			return fmt.Errorf("wave %.20q: want a wave index from 0 to %d: %w", v, rollout.MaxWaves-1, rampart.ErrInvalid)
		}
		q.Wave = n
	}
	ms, err := h.deployments.Members(r.Context(), q)
	if err != nil {
		return err
	}
	out := DeploymentDeviceList{Devices: make([]DeploymentDevice, 0, len(ms))}
	for _, m := range ms {
		out.Devices = append(out.Devices, DeploymentDevice{
			DeviceID: m.DeviceID, Wave: m.Wave, DeviceType: m.DeviceType, Region: m.Region, TimeZone: m.TimeZone,
			State: string(m.Status.State), Since: m.Status.Since.UTC(), OfferedAt: timePtr(m.OfferedAt), Log: m.Status.Log,
		})
	}
	if len(ms) == limit {
		out.NextAfter = ms[len(ms)-1].DeviceID
	}
	jsonhttp.Write(w, http.StatusOK, out)
	return nil
}

func (h *Handler) deploymentEvents(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	limit, err := limitParam(r)
	if err != nil {
		return err
	}
	if limit > 1000 {
		return fmt.Errorf("limit above 1000: %w", rampart.ErrInvalid)
	}
	es, err := h.deployments.Events(r.Context(), r.PathValue("id"), limit)
	if err != nil {
		return err
	}
	out := DeploymentEventList{Events: make([]DeploymentEvent, 0, len(es))}
	for _, e := range es {
		out.Events = append(out.Events, DeploymentEvent{At: e.At.UTC(), Kind: e.Kind, Message: e.Message})
	}
	jsonhttp.Write(w, http.StatusOK, out)
	return nil
}

// controlDeployment serves pause, resume and cancel; the token's name says who did it.
func (h *Handler) controlDeployment(verb string) func(http.ResponseWriter, *http.Request, access.Principal) error {
	return func(w http.ResponseWriter, r *http.Request, p access.Principal) error {
		do := h.deployments.Pause
		switch verb {
		case "resume":
			do = h.deployments.Resume
		case "cancel":
			do = h.deployments.Cancel
		}
		d, err := do(r.Context(), r.PathValue("id"), p.Name)
		if err != nil {
			return err
		}
		h.audit(r.Context(), p, "deployment."+verb, d.ID)
		jsonhttp.Write(w, http.StatusOK, deploymentOut(d))
		return nil
	}
}

func (h *Handler) rollbackDeployment(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	var req RollbackRequest
	if r.ContentLength != 0 {
		body, err := jsonhttp.ReadBody(w, r, maxBody)
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(body)) > 0 {
			if err := jsonhttp.Unmarshal(body, &req); err != nil {
				return err
			}
		}
	}
	rs := deployment.RollbackSpec{By: p.Name}
	if strings.TrimSpace(req.Plan) != "" {
		var err error
		if rs.Plan, err = rollout.ParsePlan(req.Plan); err != nil {
			return err
		}
	}
	if req.ReleaseID != "" {
		rel, err := h.bodyRelease(r, req.ReleaseID, "", "")
		if err != nil {
			return err
		}
		rs.ReleaseID = rel.ID
	}
	c, err := h.deployments.Rollback(r.Context(), r.PathValue("id"), rs)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "deployment.rollback", r.PathValue("id")+" -> "+c.Deployment.ID)
	jsonhttp.Write(w, http.StatusCreated, createdOut(c))
	return nil
}

// deliveryMetrics serves ?since=RFC3339 or ?days=N (default 30), and &device_type=.
func (h *Handler) deliveryMetrics(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	q := r.URL.Query()
	now := h.now()
	since := now.Add(-30 * 24 * time.Hour)
	switch s, days := q.Get("since"), q.Get("days"); {
	case s != "" && days != "":
		return fmt.Errorf("give since or days, not both: %w", rampart.ErrInvalid)
	case s != "":
		t, err := time.Parse(time.RFC3339, s)
		if err != nil || !t.Before(now) || now.Sub(t) > maxMetricsDays*24*time.Hour {
			return fmt.Errorf("since %.40q: want an RFC 3339 time in the last %d days: %w", s, maxMetricsDays, rampart.ErrInvalid)
		}
		since = t
	case days != "":
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > maxMetricsDays {
			return fmt.Errorf("days %.20q: want a whole number from 1 to %d: %w", days, maxMetricsDays, rampart.ErrInvalid)
		}
		since = now.Add(-time.Duration(n) * 24 * time.Hour)
	}
	deviceType := q.Get("device_type")
	if len(deviceType) > 128 {
		return fmt.Errorf("device_type: longer than 128 bytes: %w", rampart.ErrInvalid)
	}
	if deviceType != "" {
		d, err := h.deployments.Metrics(r.Context(), since, deviceType)
		if err != nil {
			return err
		}
		jsonhttp.Write(w, http.StatusOK, deliveryOut(d))
		return nil
	}
	all, byType, err := h.deployments.DeliveryReport(r.Context(), since)
	if err != nil {
		return err
	}
	out := deliveryOut(all)
	for _, d := range byType {
		out.ByDeviceType = append(out.ByDeviceType, deliveryOut(d))
	}
	jsonhttp.Write(w, http.StatusOK, out)
	return nil
}

// sortedKeys returns m's keys in order (for stable error messages and output).
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
