package deployment_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/deployment"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/release"
	"github.com/rampart-iot/rampart/internal/rollout"
	"github.com/rampart-iot/rampart/internal/store/sqlite"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type grants struct{}

func (grants) Issue(deviceID, digest string, _ time.Duration) string {
	return "g:" + deviceID + ":" + digest
}

// env is a deployment service on a real SQLite store with a fleet and releases.
type env struct {
	t     *testing.T
	st    *sqlstore.Store
	svc   *deployment.Service
	fleet *fleet.Service
	clock *clock
	ctx   context.Context
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	fl, err := fleet.NewService(fleet.Options{Store: st, Secret: make([]byte, 32), Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	rel := release.NewService(release.Options{Store: st, Now: c.Now})
	svc := deployment.NewService(deployment.Options{Store: st, Fleet: fl, Releases: rel, Grants: grants{}, Now: c.Now})
	return &env{t: t, st: st, svc: svc, fleet: fl, clock: c, ctx: ctx}
}

// devices creates n accepted devices of a type with attributes; IDs are prefix-0000...
func (e *env) devices(prefix, typ string, n int, attrs map[string]string) []string {
	e.t.Helper()
	ids := make([]string, n)
	for i := range n {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		id := fmt.Sprintf("%s-%04d", prefix, i)
		d := &fleet.Device{
			ID: id, Identity: fleet.Identity{Serial: id, DeviceType: typ}, Status: fleet.StatusAccepted,
			PublicKey: pub, Attributes: attrs, CreatedAt: e.clock.Now(), UpdatedAt: e.clock.Now(),
		}
		if err := e.st.CreateDevice(e.ctx, d, "", e.clock.Now()); err != nil {
			e.t.Fatal(err)
		}
		ids[i] = id
	}
	return ids
}

// release creates a published release with one full image.
func (e *env) release(name, version string, types ...string) *release.Release {
	e.t.Helper()
	r := &release.Release{
		ID: "rel_" + name + version, Name: name, Version: version, DeviceTypes: types, State: release.Published,
		CreatedAt: e.clock.Now(), PublishedAt: e.clock.Now(),
	}
	if err := e.st.CreateRelease(e.ctx, r); err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.UpdateRelease(e.ctx, r); err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.AddArtifact(e.ctx, r.ID, release.Artifact{Name: "fw.img", Role: release.RoleFull, Digest: fmt.Sprintf("%064x", len(name+version)), Size: 4, CreatedAt: e.clock.Now()}); err != nil {
		e.t.Fatal(err)
	}
	e.clock.Add(time.Minute)
	return r
}

func (e *env) create(sp deployment.Spec) *deployment.Created {
	e.t.Helper()
	c, err := e.svc.Create(e.ctx, sp)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) work(id string) []fleet.Work {
	e.t.Helper()
	w, err := e.svc.PendingWork(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

func (e *env) report(dev, dep string, st rollout.DeviceState, seq uint64) rollout.DeviceStatus {
	e.t.Helper()
	got, err := e.svc.Report(e.ctx, dev, dep, rollout.Report{State: st, Seq: seq, Log: "log of " + dev})
	if err != nil {
		e.t.Fatal(err)
	}
	return got
}

func (e *env) tick() {
	e.t.Helper()
	if err := e.svc.Tick(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) get(id string) *deployment.Progress {
	e.t.Helper()
	p, err := e.svc.Get(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// run takes every device that has work through to the state fate gives it, and returns how
// many got work.
func (e *env) run(ids []string, fate func(id string) rollout.DeviceState) int {
	e.t.Helper()
	n := 0
	for _, id := range ids {
		for _, w := range e.work(id) {
			n++
			e.report(id, w.ID, rollout.Downloading, 1)
			e.report(id, w.ID, rollout.Installing, 3)
			e.report(id, w.ID, fate(id), 6)
		}
	}
	return n
}

func mustPlan(t *testing.T, s string) rollout.Plan {
	t.Helper()
	p, err := rollout.ParsePlan(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func succeed(string) rollout.DeviceState { return rollout.Success }

func TestWavesRunToTheEnd(t *testing.T) {
	e := newEnv(t)
	ids := e.devices("gw", "gw", 100, nil)
	e.devices("cam", "cam", 5, nil) // not targeted: the release is for gw only
	r := e.release("fw", "2.0", "gw")
	c := e.create(deployment.Spec{
		Name: "fw 2.0", ReleaseID: r.ID, Target: deployment.Target{Filter: `type == "gw" || type == "cam"`},
		Plan: mustPlan(t, "10 name=canary success=100% fail=1 bake=1h jitter=30m; 50% bake=2h; 100%"), CreatedBy: "ops",
	})
	d := c.Deployment
	if d.Total != 100 || c.Incompatible != 5 || !slices.Equal(d.WaveSizes, []int{10, 40, 50}) {
		t.Fatalf("total %d incompatible %d sizes %v", d.Total, c.Incompatible, d.WaveSizes)
	}
	if n := e.run(ids, succeed); n != 10 {
		t.Fatalf("%d devices got work in the canary wave, want 10", n)
	}
	e.tick()
	if p := e.get(d.ID); p.Wave != 0 {
		t.Fatalf("wave %d before the bake time is over", p.Wave)
	}
	e.clock.Add(91 * time.Minute) // past bake + the most jitter
	e.tick()
	if p := e.get(d.ID); p.Wave != 1 || p.Waves[0].States[rollout.Success] != 10 {
		t.Fatalf("after canary: wave %d, %v", p.Wave, p.Waves[0].States)
	}
	if n := e.run(ids, succeed); n != 40 {
		t.Fatalf("%d devices got work in wave 2, want 40", n)
	}
	e.clock.Add(2 * time.Hour)
	e.tick()
	if n := e.run(ids, succeed); n != 50 {
		t.Fatalf("%d devices got work in wave 3, want 50", n)
	}
	e.tick()
	p := e.get(d.ID)
	if p.Status != deployment.Finished || p.States[rollout.Success] != 100 || p.Reached95At.IsZero() {
		t.Fatalf("status %s, states %v, reached95 %v", p.Status, p.States, p.Reached95At)
	}
	if w := e.work(ids[0]); len(w) != 0 {
		t.Fatalf("work after the deployment finished: %+v", w)
	}
	evs, err := e.svc.Events(e.ctx, d.ID, 0)
	if err != nil || len(evs) != 4 || evs[0].Kind != deployment.EventFinished || evs[3].Kind != deployment.EventCreated {
		t.Fatalf("events %+v, %v", evs, err)
	}
}

func TestWorkCarriesTheArtifact(t *testing.T) {
	e := newEnv(t)
	ids := e.devices("gw", "gw", 1, nil)
	r := e.release("fw", "2.0", "gw")
	c := e.create(deployment.Spec{Name: "x", ReleaseID: r.ID, Target: deployment.Target{Devices: ids}, Action: rollout.Soft, MaxDeferral: 48 * time.Hour})
	w := e.work(ids[0])
	if len(w) != 1 {
		t.Fatalf("work %+v", w)
	}
	got := w[0]
	if got.ID != c.Deployment.ID || got.Kind != "update" || got.Release != "fw" || got.Version != "2.0" || got.Action != "soft" ||
		!got.InstallBy.Equal(e.clock.Now().Add(48*time.Hour)) || got.Artifact == nil || got.Artifact.Grant != "g:"+ids[0]+":"+got.Artifact.SHA256 {
		t.Fatalf("work %+v artifact %+v", got, got.Artifact)
	}
	// Asking again gives the same work with the original offer time.
	e.clock.Add(time.Hour)
	if w := e.work(ids[0]); len(w) != 1 || !w[0].InstallBy.Equal(got.InstallBy) {
		t.Fatalf("second check-in %+v", w)
	}
}

func TestCanaryFailuresHalt(t *testing.T) {
	e := newEnv(t)
	ids := e.devices("gw", "gw", 200, nil)
	r := e.release("fw", "2.0", "gw")
	c := e.create(deployment.Spec{Name: "x", ReleaseID: r.ID, Target: deployment.Target{Filter: "true"},
		Plan: mustPlan(t, "20 name=canary success=90% fail=20% bake=10m; 100%")})
	failing := 0
	e.run(ids, func(string) rollout.DeviceState {
		failing++
		if failing%10 < 3 { // 30% of the canary fails
			return rollout.Failure
		}
		return rollout.Success
	})
	e.clock.Add(time.Hour)
	e.tick()
	p := e.get(c.Deployment.ID)
	if p.Status != deployment.Halted || p.Wave != 0 || p.HaltedAt.IsZero() {
		t.Fatalf("status %s wave %d: %s", p.Status, p.Wave, p.Reason)
	}
	if n := e.run(ids, succeed); n != 0 {
		t.Fatalf("%d devices got work after the halt", n)
	}
	evs, _ := e.svc.Events(e.ctx, c.Deployment.ID, 1)
	if len(evs) != 1 || evs[0].Kind != deployment.EventHalted {
		t.Fatalf("no halt event: %+v", evs)
	}
	fails, err := e.svc.Members(e.ctx, deployment.MemberQuery{DeploymentID: c.Deployment.ID, States: []rollout.DeviceState{rollout.Failure}, Wave: -1})
	if err != nil || len(fails) != 6 || fails[0].Status.Log == "" {
		t.Fatalf("failed members %d (%v), log %q", len(fails), err, fails[0].Status.Log)
	}
	// Resuming overrides the gate: the next wave starts once baked.
	if _, err := e.svc.Resume(e.ctx, c.Deployment.ID, "ops"); err != nil {
		t.Fatal(err)
	}
	e.tick()
	if p := e.get(c.Deployment.ID); p.Status != deployment.Running || p.Wave != 1 {
		t.Fatalf("after resume: %s wave %d %s", p.Status, p.Wave, p.Reason)
	}
	if n := e.run(ids, succeed); n != 180 {
		t.Fatalf("%d devices got work after resume, want 180", n)
	}
}

func TestReportsAreIdempotent(t *testing.T) {
	e := newEnv(t)
	ids := e.devices("gw", "gw", 1, nil)
	r := e.release("fw", "2.0", "gw")
	c := e.create(deployment.Spec{Name: "x", ReleaseID: r.ID, Target: deployment.Target{Devices: ids}, Plan: mustPlan(t, "100%")})
	dep := c.Deployment.ID
	e.work(ids[0])
	e.report(ids[0], dep, rollout.Installing, 3)
	if got := e.report(ids[0], dep, rollout.Downloading, 1); got.State != rollout.Installing {
		t.Fatalf("a late report moved the state to %s", got.State)
	}
	e.report(ids[0], dep, rollout.Success, 6)
	for _, st := range []rollout.DeviceState{rollout.Success, rollout.Failure, rollout.Verifying} {
		if got := e.report(ids[0], dep, st, 7); got.State != rollout.Success {
			t.Fatalf("report %s after success gave %s", st, got.State)
		}
	}
	if _, err := e.svc.Report(e.ctx, ids[0], dep, rollout.Report{State: rollout.Cancelled}); !errors.Is(err, rampart.ErrInvalid) {
		t.Fatalf("a device reporting cancelled: %v", err)
	}
	other := e.devices("other", "gw", 1, nil)
	if _, err := e.svc.Report(e.ctx, other[0], dep, rollout.Report{State: rollout.Success}); !errors.Is(err, rampart.ErrNotFound) {
		t.Fatalf("a device outside the deployment reporting: %v", err)
	}
}

func TestOneActiveDeploymentPerSoftware(t *testing.T) {
	e := newEnv(t)
	ids := e.devices("gw", "gw", 10, nil)
	r1 := e.release("fw", "2.0", "gw")
	r2 := e.release("fw", "2.1", "gw")
	other := e.release("modem", "1.0", "gw")
	a := e.create(deployment.Spec{Name: "a", ReleaseID: r1.ID, Target: deployment.Target{Devices: ids[:5]}, Plan: mustPlan(t, "100%")})
	b := e.create(deployment.Spec{Name: "b", ReleaseID: r2.ID, Target: deployment.Target{Filter: "true"}, Plan: mustPlan(t, "100%")})
	if len(b.Skipped) != 5 || b.Deployment.Total != 5 {
		t.Fatalf("skipped %v total %d", b.Skipped, b.Deployment.Total)
	}
	m := e.create(deployment.Spec{Name: "m", ReleaseID: other.ID, Target: deployment.Target{Filter: "true"}, Plan: mustPlan(t, "100%")})
	if len(m.Skipped) != 0 || m.Deployment.Total != 10 {
		t.Fatalf("another software: skipped %v", m.Skipped)
	}
	if w := e.work(ids[0]); len(w) != 2 || w[0].ID == w[1].ID {
		t.Fatalf("work %+v", w)
	}
	if _, err := e.svc.Create(e.ctx, deployment.Spec{Name: "c", ReleaseID: r2.ID, Target: deployment.Target{Devices: ids[:3]}, Plan: mustPlan(t, "100%")}); !errors.Is(err, rampart.ErrConflict) {
		t.Fatalf("a deployment whose every device is taken: %v", err)
	}
	if w := e.work(ids[0]); len(w) != 2 || (w[0].ID != a.Deployment.ID && w[1].ID != a.Deployment.ID) {
		t.Fatalf("work after a refused deployment %+v", w)
	}
}

func TestCancelStopsOnlyDevicesNotInstalling(t *testing.T) {
	e := newEnv(t)
	ids := e.devices("gw", "gw", 3, nil)
	r := e.release("fw", "2.0", "gw")
	dep := e.create(deployment.Spec{Name: "x", ReleaseID: r.ID, Target: deployment.Target{Devices: ids}, Plan: mustPlan(t, "100%")}).Deployment.ID
	for _, id := range ids {
		e.work(id)
	}
	e.report(ids[0], dep, rollout.Downloading, 1)
	e.report(ids[1], dep, rollout.Installing, 3)
	if _, err := e.svc.Cancel(e.ctx, dep, "ops"); err != nil {
		t.Fatal(err)
	}
	if got := e.report(ids[0], dep, rollout.Installing, 3); got.State != rollout.Cancelled {
		t.Fatalf("a cancelled device may install: %s", got.State)
	}
	if got := e.report(ids[1], dep, rollout.Success, 6); got.State != rollout.Success {
		t.Fatalf("a device mid-install could not finish: %s", got.State)
	}
	if w := e.work(ids[2]); len(w) != 0 {
		t.Fatalf("work after cancel: %+v", w)
	}
	if _, err := e.svc.Cancel(e.ctx, dep, "ops"); !errors.Is(err, rampart.ErrConflict) {
		t.Fatalf("cancel twice: %v", err)
	}
	if _, err := e.svc.Pause(e.ctx, dep, "ops"); !errors.Is(err, rampart.ErrConflict) {
		t.Fatalf("pause a cancelled deployment: %v", err)
	}
}

func TestPauseAndResume(t *testing.T) {
	e := newEnv(t)
	ids := e.devices("gw", "gw", 2, nil)
	r := e.release("fw", "2.0", "gw")
	dep := e.create(deployment.Spec{Name: "x", ReleaseID: r.ID, Target: deployment.Target{Devices: ids}, Plan: mustPlan(t, "100%")}).Deployment.ID
	e.work(ids[0])
	if _, err := e.svc.Pause(e.ctx, dep, "ops"); err != nil {
		t.Fatal(err)
	}
	if w := e.work(ids[1]); len(w) != 0 {
		t.Fatal("a paused deployment was offered to a new device")
	}
	if w := e.work(ids[0]); len(w) != 1 {
		t.Fatal("a device that already had the update lost it on pause")
	}
	if _, err := e.svc.Resume(e.ctx, dep, "ops"); err != nil {
		t.Fatal(err)
	}
	if w := e.work(ids[1]); len(w) != 1 {
		t.Fatal("no work after resume")
	}
}

func TestRollback(t *testing.T) {
	e := newEnv(t)
	ids := e.devices("gw", "gw", 10, nil)
	good := e.release("fw", "1.0", "gw")
	e.release("fw", "0.9", "gw") // published before 1.0's successor but older than 1.0: not chosen
	bad := e.release("fw", "2.0", "gw")
	_ = good
	dep := e.create(deployment.Spec{Name: "bad", ReleaseID: bad.ID, Target: deployment.Target{Filter: "true"}, Plan: mustPlan(t, "100% fail=50%")}).Deployment.ID
	e.run(ids[:6], succeed)
	c, err := e.svc.Rollback(e.ctx, dep, deployment.RollbackSpec{By: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	rb := c.Deployment
	if rb.Version != "0.9" && rb.Version != "1.0" {
		t.Fatalf("rolled back to %s", rb.Version)
	}
	// 0.9 was published after 1.0 in this test, so it is the newest before 2.0.
	if rb.Version != "0.9" || rb.Total != 6 || rb.RollbackOf != dep {
		t.Fatalf("rollback %s to %d devices, of %s", rb.Version, rb.Total, rb.RollbackOf)
	}
	orig := e.get(dep)
	if orig.Status != deployment.Cancelled || orig.RolledBackBy != rb.ID || orig.States[rollout.Cancelled] != 4 {
		t.Fatalf("original: %s by %q %v", orig.Status, orig.RolledBackBy, orig.States)
	}
	if n := e.run(ids, succeed); n != 6 {
		t.Fatalf("%d devices got the rollback, want 6", n)
	}
	e.tick()
	if p := e.get(rb.ID); p.Status != deployment.Finished {
		t.Fatalf("rollback %s: %s", p.Status, p.Reason)
	}
	d, err := e.svc.Metrics(e.ctx, time.Time{}, "")
	if err != nil || d.Deployments != 2 || d.Failed != 1 || d.ChangeFailureRate != 0.5 || d.Restores != 1 {
		t.Fatalf("metrics %+v %v", d, err)
	}
	if _, err := e.svc.Rollback(e.ctx, rb.ID, deployment.RollbackSpec{ReleaseID: bad.ID, By: "ops"}); err != nil {
		t.Fatalf("roll forward to a chosen release: %v", err)
	}
}

func TestConstraints(t *testing.T) {
	e := newEnv(t)
	// 10:00 UTC is 19:00 in Tokyo and 11:00 in Berlin.
	tokyo := e.devices("tyo", "gw", 2, map[string]string{"tz": "Asia/Tokyo", "region": "ap"})
	berlin := e.devices("ber", "gw", 3, map[string]string{"tz": "Europe/Berlin", "region": "eu"})
	r := e.release("fw", "2.0", "gw")
	ws := rollout.Windows{{Start: 18 * time.Hour, End: 22 * time.Hour}}
	e.create(deployment.Spec{Name: "x", ReleaseID: r.ID, Target: deployment.Target{Filter: "true"}, Plan: mustPlan(t, "100%"),
		Constraints: deployment.Constraints{Windows: ws, Limits: map[string]int{"region:ap": 1}}})
	if len(e.work(tokyo[0])) != 1 {
		t.Fatal("window open in Tokyo, no work")
	}
	if len(e.work(tokyo[1])) != 0 {
		t.Fatal("region limit of 1 exceeded")
	}
	if len(e.work(berlin[0])) != 0 {
		t.Fatal("work outside Berlin's window")
	}
	e.clock.Add(8 * time.Hour) // 19:00 in Berlin
	if len(e.work(berlin[0])) != 1 {
		t.Fatal("window open in Berlin, no work")
	}
}

func TestMinimumInterval(t *testing.T) {
	e := newEnv(t)
	ids := e.devices("gw", "gw", 1, nil)
	r1 := e.release("fw", "2.0", "gw")
	r2 := e.release("fw", "2.1", "gw")
	e.create(deployment.Spec{Name: "a", ReleaseID: r1.ID, Target: deployment.Target{Devices: ids}, Plan: mustPlan(t, "100%")})
	e.run(ids, succeed)
	e.tick()
	e.create(deployment.Spec{Name: "b", ReleaseID: r2.ID, Target: deployment.Target{Devices: ids}, Plan: mustPlan(t, "100%"),
		Constraints: deployment.Constraints{MinInterval: map[string]time.Duration{"gw": 24 * time.Hour}}})
	if len(e.work(ids[0])) != 0 {
		t.Fatal("updated again within the minimum interval")
	}
	e.clock.Add(25 * time.Hour)
	if len(e.work(ids[0])) != 1 {
		t.Fatal("no update after the minimum interval")
	}
}

func TestDeadline(t *testing.T) {
	e := newEnv(t)
	ids := e.devices("gw", "gw", 3, nil)
	r := e.release("fw", "2.0", "gw")
	dep := e.create(deployment.Spec{Name: "x", ReleaseID: r.ID, Target: deployment.Target{Devices: ids}, Plan: mustPlan(t, "100% fail=100%"),
		Deadline: e.clock.Now().Add(time.Hour)}).Deployment.ID
	e.work(ids[0])
	e.work(ids[1])
	e.report(ids[0], dep, rollout.Installing, 3)
	e.clock.Add(time.Hour)
	e.tick()
	p := e.get(dep)
	if p.States[rollout.TimedOut] != 2 || p.States[rollout.Installing] != 1 {
		t.Fatalf("at the deadline: %v", p.States)
	}
	e.clock.Add(rollout.InstallGrace)
	e.tick()
	if p := e.get(dep); p.States[rollout.TimedOut] != 3 || p.Status != deployment.Halted {
		t.Fatalf("after the grace: %v %s %s", p.States, p.Status, p.Reason)
	}
}

func TestBadSpecs(t *testing.T) {
	e := newEnv(t)
	ids := e.devices("gw", "gw", 1, nil)
	r := e.release("fw", "2.0", "gw")
	draft := &release.Release{ID: "rel_draft", Name: "fw", Version: "3.0", DeviceTypes: []string{"gw"}, State: release.Draft, CreatedAt: e.clock.Now()}
	if err := e.st.CreateRelease(e.ctx, draft); err != nil {
		t.Fatal(err)
	}
	for name, sp := range map[string]deployment.Spec{
		"no name":       {ReleaseID: r.ID, Target: deployment.Target{Devices: ids}},
		"two targets":   {Name: "x", ReleaseID: r.ID, Target: deployment.Target{Devices: ids, Group: "g"}},
		"no target":     {Name: "x", ReleaseID: r.ID},
		"bad action":    {Name: "x", ReleaseID: r.ID, Target: deployment.Target{Devices: ids}, Action: "now"},
		"soft no defer": {Name: "x", ReleaseID: r.ID, Target: deployment.Target{Devices: ids}, Action: rollout.Soft},
		"bad limit":     {Name: "x", ReleaseID: r.ID, Target: deployment.Target{Devices: ids}, Constraints: deployment.Constraints{Limits: map[string]int{"planet:mars": 1}}},
		"past deadline": {Name: "x", ReleaseID: r.ID, Target: deployment.Target{Devices: ids}, Deadline: e.clock.Now().Add(-time.Hour)},
		"unknown dev":   {Name: "x", ReleaseID: r.ID, Target: deployment.Target{Devices: []string{"nope"}}},
		"bad filter":    {Name: "x", ReleaseID: r.ID, Target: deployment.Target{Filter: "nope =="}},
		"no devices":    {Name: "x", ReleaseID: r.ID, Target: deployment.Target{Filter: "false"}},
	} {
		if _, err := e.svc.Create(e.ctx, sp); !errors.Is(err, rampart.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := e.svc.Create(e.ctx, deployment.Spec{Name: "x", ReleaseID: draft.ID, Target: deployment.Target{Devices: ids}}); !errors.Is(err, rampart.ErrConflict) {
		t.Errorf("draft release: %v", err)
	}
	if _, err := e.svc.Create(e.ctx, deployment.Spec{Name: "x", ReleaseID: "rel_nope", Target: deployment.Target{Devices: ids}}); !errors.Is(err, rampart.ErrNotFound) {
		t.Errorf("unknown release: %v", err)
	}
	ds, _ := e.svc.List(e.ctx, deployment.Query{})
	if len(ds) != 0 {
		t.Fatalf("a refused deployment was stored: %d", len(ds))
	}
}
