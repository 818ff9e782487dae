package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/deployment"
	"github.com/rampart-iot/rampart/internal/rollout"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
)

// newTestDeployment returns a running deployment of software with the default plan.
func newTestDeployment(id, software string, created time.Time) *deployment.Deployment {
	return &deployment.Deployment{
		ID: id, Name: "deploy " + id, ReleaseID: "rel_" + software, Software: software, Version: "1.0.0",
		Target: deployment.Target{Group: "all"}, Plan: rollout.DefaultPlan(), Action: rollout.Forced,
		Status: deployment.Running, CreatedAt: created, UpdatedAt: created,
	}
}

// newTestMember returns a member of wave 0 of type "gw", in state since base.
func newTestMember(deviceID string, state rollout.DeviceState) deployment.Member {
	return deployment.Member{DeviceID: deviceID, DeviceType: "gw", Status: rollout.DeviceStatus{State: state, Since: base}}
}

func mustCreateDeployment(t testing.TB, s *sqlstore.Store, d *deployment.Deployment, members ...deployment.Member) []string {
	t.Helper()
	skipped, err := s.CreateDeployment(t.Context(), d, members)
	if err != nil {
		t.Fatalf("CreateDeployment(%s) = %v, want nil", d.ID, err)
	}
	return skipped
}

func mustMember(t testing.TB, s *sqlstore.Store, deploymentID, deviceID string) *deployment.Member {
	t.Helper()
	m, err := s.Member(t.Context(), deploymentID, deviceID)
	if err != nil {
		t.Fatalf("Member(%s, %s) = %v, want nil", deploymentID, deviceID, err)
	}
	return m
}

func mustUpdateMember(t testing.TB, s *sqlstore.Store, m *deployment.Member, prev rollout.DeviceStatus) {
	t.Helper()
	if ok, err := s.UpdateMember(t.Context(), m, prev); !ok || err != nil {
		t.Fatalf("UpdateMember(%s, %s → %s) = %v, %v; want true, nil", m.DeploymentID, m.DeviceID, m.Status.State, ok, err)
	}
}

// activeIn lists the deployments a device is active in, as ActiveMembers orders them.
func activeIn(t testing.TB, s *sqlstore.Store, deviceID string) []string {
	t.Helper()
	ms, err := s.ActiveMembers(t.Context(), deviceID)
	if err != nil {
		t.Fatalf("ActiveMembers(%s) = %v, want nil", deviceID, err)
	}
	out := []string{}
	for _, m := range ms {
		out = append(out, m.DeploymentID)
	}
	return out
}

func testDeploymentRoundTrip(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	d := &deployment.Deployment{
		ID: "dep_1", Name: "spring update", ReleaseID: "rel_9", Software: "gw-os", Version: "2.0.1",
		Target: deployment.Target{Group: "eu", Filter: `device.type == "gw"`, Devices: []string{"dev-1", "dev-2"}},
		Plan: rollout.Plan{Waves: []rollout.Wave{
			{Name: "canary", Size: rollout.Count(3), SuccessThreshold: rollout.Percent(100), FailureThreshold: rollout.Count(1), Bake: 90 * time.Minute, BakeJitter: time.Hour},
			{Name: "rest", Size: rollout.Percent(100), SuccessThreshold: rollout.Percent(95), FailureThreshold: rollout.Percent(5)},
		}},
		Action:      rollout.Soft,
		MaxDeferral: 36 * time.Hour,
		Constraints: deployment.Constraints{
			Windows: rollout.Windows{
				{Days: []time.Weekday{time.Saturday, time.Sunday}, Start: 22 * time.Hour, End: 4 * time.Hour},
				{Start: 2 * time.Hour, End: 3 * time.Hour},
			},
			Limits:      map[string]int{"type:gw": 50, "region:eu": 200},
			MinInterval: map[string]time.Duration{"gw": 7 * 24 * time.Hour, "sensor": time.Hour},
		},
		Deadline:     base.Add(30 * 24 * time.Hour),
		Status:       deployment.Halted,
		Reason:       "wave canary: 2 of 3 failed",
		Wave:         1,
		WaveStarted:  base.Add(time.Hour),
		BakeUntil:    base.Add(3 * time.Hour),
		Override:     true,
		Seed:         -8_070_450_532_247_928_832,
		Total:        1234,
		WaveSizes:    []int{3, 1231},
		RollbackOf:   "dep_0",
		RolledBackBy: "dep_2",
		CreatedBy:    "tok_alice",
		CreatedAt:    base,
		UpdatedAt:    base.Add(2 * time.Hour),
		HaltedAt:     base.Add(4 * time.Hour),
		FinishedAt:   base.Add(5 * time.Hour),
		Reached95At:  base.Add(6 * time.Hour),
		PublishedAt:  base.Add(-time.Hour),
		Revision:     7,
	}
	members := []deployment.Member{
		{DeviceID: "dev-1", Software: "ignored", Wave: 1, DeviceType: "gw", Region: "eu", TimeZone: "Europe/Berlin",
			Status:    rollout.DeviceStatus{State: rollout.Failure, Seq: 1<<63 + 5, Since: base.Add(time.Minute), Log: "dpkg: error ✗\n"},
			OfferedAt: base.Add(30 * time.Second)},
		{DeviceID: "dev-2", DeviceType: "sensor", Status: rollout.NewDeviceStatus(base)},
	}
	if skipped := mustCreateDeployment(t, s, d, members...); len(skipped) != 0 {
		t.Errorf("CreateDeployment skipped %v, want none", skipped)
	}
	got, err := s.Deployment(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, got); diff != "" {
		t.Errorf("Deployment round trip (-want +got):\n%s", diff)
	}
	for _, m := range members {
		want := m
		want.DeploymentID, want.Software = d.ID, d.Software
		if diff := cmp.Diff(&want, mustMember(t, s, d.ID, m.DeviceID)); diff != "" {
			t.Errorf("Member(%s) round trip (-want +got):\n%s", m.DeviceID, diff)
		}
	}
	if list, err := s.Deployments(ctx, deployment.Query{}); err != nil || len(list) != 1 || !cmp.Equal(d, list[0]) {
		t.Errorf("Deployments = %v, %v; want the one deployment as created", list, err)
	}

	// A deployment with nothing set reads back with nothing set: no plan, nil lists and maps.
	bare := &deployment.Deployment{ID: "dep_bare", Software: "gw-os", Target: deployment.Target{Devices: []string{}}}
	mustCreateDeployment(t, s, bare)
	if got, err := s.Deployment(ctx, bare.ID); err != nil || !cmp.Equal(bare, got) {
		t.Errorf("Deployment(bare) = %+v, %v; want %+v", got, err, bare)
	}

	_, err = s.CreateDeployment(ctx, newTestDeployment(d.ID, "other", base), []deployment.Member{newTestMember("dev-9", rollout.Scheduled)})
	checkErr(t, "CreateDeployment(same ID)", err, rampart.ErrConflict)
	if _, err := s.Member(ctx, d.ID, "dev-9"); !errorsIsNotFound(err) {
		t.Errorf("Member(dev-9) after refused CreateDeployment = %v, want ErrNotFound (nothing written)", err)
	}
}

func testDeploymentNotFound(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	mustCreateDeployment(t, s, newTestDeployment("dep_1", "os", base), newTestMember("dev-1", rollout.Scheduled))
	const missing = "dep_missing"
	_, err := s.Deployment(ctx, missing)
	checkErr(t, "Deployment(missing)", err, rampart.ErrNotFound)
	checkErr(t, "UpdateDeployment(missing)", s.UpdateDeployment(ctx, newTestDeployment(missing, "os", base)), rampart.ErrNotFound)
	_, err = s.Member(ctx, missing, "dev-1")
	checkErr(t, "Member(missing deployment)", err, rampart.ErrNotFound)
	_, err = s.Member(ctx, "dep_1", "dev-missing")
	checkErr(t, "Member(missing device)", err, rampart.ErrNotFound)
	_, err = s.Members(ctx, deployment.MemberQuery{DeploymentID: missing, Wave: -1})
	checkErr(t, "Members(missing)", err, rampart.ErrNotFound)
	m := newTestMember("dev-missing", rollout.Downloading)
	m.DeploymentID = "dep_1"
	_, err = s.UpdateMember(ctx, &m, rollout.NewDeviceStatus(base))
	checkErr(t, "UpdateMember(missing)", err, rampart.ErrNotFound)
	_, err = s.SetMembersState(ctx, missing, []rollout.DeviceState{rollout.Scheduled}, rollout.Cancelled, base)
	checkErr(t, "SetMembersState(missing)", err, rampart.ErrNotFound)
	_, err = s.Counts(ctx, missing)
	checkErr(t, "Counts(missing)", err, rampart.ErrNotFound)
	_, err = s.MemberTimes(ctx, missing)
	checkErr(t, "MemberTimes(missing)", err, rampart.ErrNotFound)
	checkErr(t, "AddDeploymentEvent(missing)", s.AddDeploymentEvent(ctx, deployment.Event{DeploymentID: missing, Kind: deployment.EventPaused}), rampart.ErrNotFound)
	_, err = s.DeploymentEvents(ctx, missing, 10)
	checkErr(t, "DeploymentEvents(missing)", err, rampart.ErrNotFound)

	// Existing deployments with nothing to report are empty, not missing.
	empty := newTestDeployment("dep_empty", "os", base)
	mustCreateDeployment(t, s, empty)
	if ms, err := s.Members(ctx, deployment.MemberQuery{DeploymentID: empty.ID, Wave: -1}); err != nil || len(ms) != 0 {
		t.Errorf("Members(empty) = %v, %v; want none, nil", ms, err)
	}
	if cs, err := s.Counts(ctx, empty.ID); err != nil || len(cs) != 0 {
		t.Errorf("Counts(empty) = %v, %v; want none, nil", cs, err)
	}
	if es, err := s.DeploymentEvents(ctx, empty.ID, 0); err != nil || len(es) != 0 {
		t.Errorf("DeploymentEvents(empty) = %v, %v; want none, nil", es, err)
	}
	if n, err := s.SetMembersState(ctx, empty.ID, nil, rollout.Cancelled, base); err != nil || n != 0 {
		t.Errorf("SetMembersState(empty, no states) = %d, %v; want 0, nil", n, err)
	}
	if ms, err := s.ActiveMembers(ctx, "dev-unknown"); err != nil || len(ms) != 0 {
		t.Errorf("ActiveMembers(unknown device) = %v, %v; want none, nil", ms, err)
	}
}

func testUpdateDeployment(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	d := newTestDeployment("dep_1", "os", base)
	d.Revision = 1
	mustCreateDeployment(t, s, d)
	a, b := *d, *d // two replicas read the same revision

	a.Status, a.Reason, a.Wave, a.Override = deployment.Halted, "too many failures", 2, true
	a.WaveStarted, a.BakeUntil, a.HaltedAt, a.UpdatedAt = base.Add(time.Hour), base.Add(2*time.Hour), base.Add(3*time.Hour), base.Add(3*time.Hour)
	a.Total, a.WaveSizes, a.RolledBackBy, a.Reached95At = 10, []int{1, 2, 3, 4}, "dep_2", base.Add(4*time.Hour)
	a.Constraints.Limits = map[string]int{"type:gw": 5}
	a.Deadline, a.FinishedAt = base.Add(48*time.Hour), base.Add(5*time.Hour)
	halted := deployment.Event{At: a.HaltedAt, Kind: deployment.EventHalted, Message: "wave 2 halted"}
	if err := s.UpdateDeployment(ctx, &a, halted); err != nil {
		t.Fatalf("UpdateDeployment = %v, want nil", err)
	}
	if a.Revision != 2 {
		t.Errorf("Revision after UpdateDeployment = %d, want 2", a.Revision)
	}
	got, err := s.Deployment(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&a, got); diff != "" {
		t.Errorf("Deployment after update (-want +got):\n%s", diff)
	}
	halted.DeploymentID = d.ID
	if es, err := s.DeploymentEvents(ctx, d.ID, 0); err != nil || !cmp.Equal(es, []deployment.Event{halted}) {
		t.Errorf("DeploymentEvents after update = %v, %v; want [%v]", es, err, halted)
	}

	// The replica that read revision 1 loses, and writes nothing, events included.
	b.Status, b.Reason = deployment.Cancelled, "by operator"
	err = s.UpdateDeployment(ctx, &b, deployment.Event{Kind: deployment.EventCancelled})
	checkErr(t, "UpdateDeployment(stale revision)", err, rampart.ErrConflict)
	if b.Revision != 1 {
		t.Errorf("Revision after refused UpdateDeployment = %d, want 1 (unchanged)", b.Revision)
	}
	if got := mustDeployment(t, s, d.ID); got.Status != deployment.Halted || got.Revision != 2 {
		t.Errorf("after stale update: status %s revision %d, want halted 2", got.Status, got.Revision)
	}
	if es, _ := s.DeploymentEvents(ctx, d.ID, 0); len(es) != 1 {
		t.Errorf("DeploymentEvents after stale update = %v, want only the halt", es)
	}

	// An event that cannot be written undoes the update.
	c := *got
	c.Status = deployment.Paused
	err = s.UpdateDeployment(ctx, &c, deployment.Event{DeploymentID: "dep_missing", Kind: deployment.EventPaused})
	if err == nil {
		t.Errorf("UpdateDeployment(event of a missing deployment) = nil, want an error")
	}
	if got := mustDeployment(t, s, d.ID); got.Status != deployment.Halted || got.Revision != 2 {
		t.Errorf("after failed update: status %s revision %d, want halted 2 (rolled back)", got.Status, got.Revision)
	}

	// What the deployment deploys stays as created.
	c = *mustDeployment(t, s, d.ID)
	c.Software, c.ReleaseID, c.Seed = "other", "rel_other", 99
	if err := s.UpdateDeployment(ctx, &c); err != nil {
		t.Fatal(err)
	}
	if got := mustDeployment(t, s, d.ID); got.Software != "os" || got.ReleaseID != d.ReleaseID || got.Seed != d.Seed || got.Revision != 3 {
		t.Errorf("after changing fixed fields: software %q release %q seed %d revision %d, want os %q %d 3",
			got.Software, got.ReleaseID, got.Seed, got.Revision, d.ReleaseID, d.Seed)
	}
}

func mustDeployment(t testing.TB, s *sqlstore.Store, id string) *deployment.Deployment {
	t.Helper()
	d, err := s.Deployment(t.Context(), id)
	if err != nil {
		t.Fatalf("Deployment(%s) = %v, want nil", id, err)
	}
	return d
}

func testListDeployments(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	// dep_1 … dep_6, created a minute apart, except that dep_4 and dep_5 share a time.
	for i, c := range []struct {
		software string
		status   deployment.Status
		created  time.Duration
	}{
		{"os", deployment.Finished, 0},
		{"app", deployment.Running, time.Minute},
		{"os", deployment.Cancelled, 2 * time.Minute},
		{"os", deployment.Running, 3 * time.Minute},
		{"app", deployment.Paused, 3 * time.Minute},
		{"os", deployment.Halted, 4 * time.Minute},
	} {
		d := newTestDeployment(fmt.Sprintf("dep_%d", i+1), c.software, base.Add(c.created))
		d.Status = c.status
		mustCreateDeployment(t, s, d)
	}
	tests := []struct {
		q    deployment.Query
		want []string
	}{
		{deployment.Query{}, []string{"dep_6", "dep_5", "dep_4", "dep_3", "dep_2", "dep_1"}},
		{deployment.Query{Limit: 2}, []string{"dep_6", "dep_5"}},
		{deployment.Query{Before: "dep_5", Limit: 2}, []string{"dep_4", "dep_3"}},
		{deployment.Query{Before: "dep_1"}, nil},
		{deployment.Query{Before: "dep_missing"}, nil},
		{deployment.Query{Software: "app"}, []string{"dep_5", "dep_2"}},
		{deployment.Query{Statuses: []deployment.Status{deployment.Running, deployment.Paused, deployment.Halted}}, []string{"dep_6", "dep_5", "dep_4", "dep_2"}},
		{deployment.Query{Statuses: []deployment.Status{deployment.Running}, Software: "os"}, []string{"dep_4"}},
		{deployment.Query{Statuses: []deployment.Status{deployment.Running, deployment.Paused}, Before: "dep_5"}, []string{"dep_4", "dep_2"}},
	}
	for _, tt := range tests {
		ds, err := s.Deployments(ctx, tt.q)
		if err != nil {
			t.Errorf("Deployments(%+v) = %v", tt.q, err)
			continue
		}
		var got []string
		for _, d := range ds {
			got = append(got, d.ID)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Deployments(%+v) = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func testDeploymentMembership(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	mustCreateDeployment(t, s, newTestDeployment("dep_a", "os", base),
		newTestMember("dev-1", rollout.Scheduled),
		newTestMember("dev-2", rollout.Success),
		newTestMember("dev-3", rollout.Downloading))

	// Same software: devices active in dep_a are left out (listed in device order), the one
	// that finished there is not; a device listed twice is one member.
	skipped := mustCreateDeployment(t, s, newTestDeployment("dep_b", "os", base),
		newTestMember("dev-3", rollout.Scheduled),
		newTestMember("dev-1", rollout.Scheduled),
		newTestMember("dev-2", rollout.Scheduled),
		newTestMember("dev-4", rollout.Scheduled),
		newTestMember("dev-4", rollout.Scheduled))
	if want := []string{"dev-1", "dev-3"}; !slices.Equal(skipped, want) {
		t.Errorf("CreateDeployment(dep_b) skipped %v, want %v", skipped, want)
	}
	// Another software does not compete for the slot.
	if skipped := mustCreateDeployment(t, s, newTestDeployment("dep_c", "app", base), newTestMember("dev-1", rollout.Scheduled)); len(skipped) != 0 {
		t.Errorf("CreateDeployment(other software) skipped %v, want none", skipped)
	}
	for dev, want := range map[string][]string{
		"dev-1": {"dep_c", "dep_a"}, // app, then os
		"dev-2": {"dep_b"},
		"dev-3": {"dep_a"},
		"dev-4": {"dep_b"},
	} {
		if got := activeIn(t, s, dev); !slices.Equal(got, want) {
			t.Errorf("ActiveMembers(%s) in %v, want %v", dev, got, want)
		}
	}
	if _, err := s.Member(ctx, "dep_b", "dev-1"); !errorsIsNotFound(err) {
		t.Errorf("Member(dep_b, skipped dev-1) = %v, want ErrNotFound", err)
	}

	// Once dev-1 finishes in dep_a, a new deployment of the software may take it.
	m := mustMember(t, s, "dep_a", "dev-1")
	prev := m.Status
	m.Status = rollout.DeviceStatus{State: rollout.Failure, Seq: 4, Since: base.Add(time.Hour), Log: "boom"}
	mustUpdateMember(t, s, m, prev)
	if skipped := mustCreateDeployment(t, s, newTestDeployment("dep_d", "os", base), newTestMember("dev-1", rollout.Scheduled)); len(skipped) != 0 {
		t.Errorf("CreateDeployment after dev-1 finished skipped %v, want none", skipped)
	}
	if got, want := activeIn(t, s, "dev-1"), []string{"dep_c", "dep_d"}; !slices.Equal(got, want) {
		t.Errorf("ActiveMembers(dev-1) in %v, want %v", got, want)
	}
	// A member created in a terminal state holds no slot, so it is not left out either.
	if skipped := mustCreateDeployment(t, s, newTestDeployment("dep_e", "os", base), newTestMember("dev-1", rollout.Cancelled)); len(skipped) != 0 {
		t.Errorf("CreateDeployment(terminal member of an active device) skipped %v, want none", skipped)
	}

	// The database itself refuses a second active membership: dev-1 cannot become active in
	// dep_a again while dep_d holds it.
	back := *m
	back.Status = rollout.NewDeviceStatus(base)
	_, err := s.UpdateMember(ctx, &back, m.Status)
	checkErr(t, "UpdateMember(reactivate beside another active deployment)", err, rampart.ErrConflict)
	_, err = s.SetMembersState(ctx, "dep_a", []rollout.DeviceState{rollout.Failure}, rollout.Scheduled, base)
	checkErr(t, "SetMembersState(reactivate beside another active deployment)", err, rampart.ErrConflict)
	if got := mustMember(t, s, "dep_a", "dev-1"); got.Status.State != rollout.Failure {
		t.Errorf("dep_a dev-1 state %s after refused reactivation, want failure", got.Status.State)
	}
}

func testUpdateMember(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	mustCreateDeployment(t, s, newTestDeployment("dep_1", "os", base), newTestMember("dev-1", rollout.Scheduled))
	m := mustMember(t, s, "dep_1", "dev-1")
	stale := m.Status

	m.Status = rollout.DeviceStatus{State: rollout.Downloading, Seq: 3, Since: base.Add(time.Minute)}
	m.OfferedAt = base.Add(30 * time.Second)
	mustUpdateMember(t, s, m, stale)
	if diff := cmp.Diff(m, mustMember(t, s, "dep_1", "dev-1")); diff != "" {
		t.Errorf("Member after UpdateMember (-want +got):\n%s", diff)
	}

	// A stale prev is refused whether the state moved on or only the seq differs.
	for _, prev := range []rollout.DeviceStatus{stale, {State: rollout.Downloading, Seq: 2}} {
		late := *m
		late.Status = rollout.DeviceStatus{State: rollout.Installing, Seq: 9, Since: base.Add(time.Hour)}
		if ok, err := s.UpdateMember(ctx, &late, prev); ok || err != nil {
			t.Errorf("UpdateMember(prev %s/%d) = %v, %v; want false, nil", prev.State, prev.Seq, ok, err)
		}
	}
	if diff := cmp.Diff(m, mustMember(t, s, "dep_1", "dev-1")); diff != "" {
		t.Errorf("Member after refused UpdateMember (-want +got):\n%s", diff)
	}

	prev := m.Status
	m.Status = rollout.DeviceStatus{State: rollout.RolledBack, Seq: 4, Since: base.Add(time.Hour), Log: "health check failed"}
	mustUpdateMember(t, s, m, prev)
	if got := activeIn(t, s, "dev-1"); len(got) != 0 {
		t.Errorf("ActiveMembers(dev-1) after rolled-back = %v, want none", got)
	}
	if got := mustMember(t, s, "dep_1", "dev-1"); got.Status != m.Status {
		t.Errorf("Member status = %+v, want %+v", got.Status, m.Status)
	}
}

func testSetMembersState(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	ms := []deployment.Member{
		newTestMember("dev-1", rollout.Scheduled),
		newTestMember("dev-2", rollout.Scheduled),
		newTestMember("dev-3", rollout.Downloaded),
		newTestMember("dev-4", rollout.Installing),
		newTestMember("dev-5", rollout.Success),
		newTestMember("dev-6", rollout.Failure),
	}
	for i := range ms {
		ms[i].Status.Seq = uint64(i)
	}
	ms[2].Status.Log = "left over"
	ms[5].Status.Log = "kept"
	mustCreateDeployment(t, s, newTestDeployment("dep_1", "os", base), ms...)
	mustCreateDeployment(t, s, newTestDeployment("dep_2", "app", base), newTestMember("dev-1", rollout.Scheduled))

	now := base.Add(time.Hour)
	n, err := s.SetMembersState(ctx, "dep_1", []rollout.DeviceState{rollout.Scheduled, rollout.Downloading, rollout.Downloaded}, rollout.Cancelled, now)
	if err != nil || n != 3 {
		t.Fatalf("SetMembersState(scheduled, downloading, downloaded → cancelled) = %d, %v; want 3, nil", n, err)
	}
	for i, m := range ms {
		got := mustMember(t, s, "dep_1", m.DeviceID)
		want := m.Status
		if i < 3 {
			want = rollout.DeviceStatus{State: rollout.Cancelled, Seq: uint64(i), Since: now}
		}
		if got.Status != want {
			t.Errorf("%s: status %+v, want %+v", m.DeviceID, got.Status, want)
		}
	}
	if got := mustMember(t, s, "dep_2", "dev-1"); got.Status.State != rollout.Scheduled {
		t.Errorf("dev-1 in dep_2: state %s, want scheduled (another deployment)", got.Status.State)
	}
	for _, dev := range []string{"dev-1", "dev-2", "dev-3"} {
		if got := activeIn(t, s, dev); slices.Contains(got, "dep_1") {
			t.Errorf("ActiveMembers(%s) = %v after cancel, want dep_1 gone", dev, got)
		}
	}
	if got := activeIn(t, s, "dev-4"); !slices.Equal(got, []string{"dep_1"}) {
		t.Errorf("ActiveMembers(dev-4) = %v, want [dep_1] (installing, untouched)", got)
	}
	if n, err := s.SetMembersState(ctx, "dep_1", []rollout.DeviceState{rollout.Scheduled}, rollout.Cancelled, now); err != nil || n != 0 {
		t.Errorf("SetMembersState again = %d, %v; want 0, nil", n, err)
	}
}

func testDeploymentCounts(t *testing.T, s *sqlstore.Store) {
	var ms []deployment.Member
	add := func(wave, n int, state rollout.DeviceState) {
		for range n {
			m := newTestMember(fmt.Sprintf("dev-%03d", len(ms)), state)
			m.Wave = wave
			ms = append(ms, m)
		}
	}
	add(0, 3, rollout.Success)
	add(0, 1, rollout.Failure)
	add(1, 4, rollout.Scheduled)
	add(1, 2, rollout.Installing)
	add(2, 5, rollout.Scheduled)
	mustCreateDeployment(t, s, newTestDeployment("dep_1", "os", base), ms...)
	mustCreateDeployment(t, s, newTestDeployment("dep_2", "app", base), newTestMember("dev-000", rollout.Scheduled))
	got, err := s.Counts(t.Context(), "dep_1")
	if err != nil {
		t.Fatal(err)
	}
	want := []deployment.StateCount{
		{Wave: 0, State: rollout.Failure, N: 1},
		{Wave: 0, State: rollout.Success, N: 3},
		{Wave: 1, State: rollout.Installing, N: 2},
		{Wave: 1, State: rollout.Scheduled, N: 4},
		{Wave: 2, State: rollout.Scheduled, N: 5},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Counts (-want +got):\n%s", diff)
	}
}

func testDeploymentLoad(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	offered := func(dev, typ, region string, state rollout.DeviceState, offered bool) deployment.Member {
		m := newTestMember(dev, state)
		m.DeviceType, m.Region = typ, region
		if offered {
			m.OfferedAt = base
		}
		return m
	}
	running := newTestDeployment("dep_run", "os", base)
	mustCreateDeployment(t, s, running,
		offered("dev-1", "gw", "eu", rollout.Downloading, true),
		offered("dev-2", "gw", "", rollout.Scheduled, true),
		offered("dev-3", "gw", "eu", rollout.Scheduled, false),  // not offered yet
		offered("dev-4", "sensor", "eu", rollout.Success, true), // finished
		offered("dev-5", "sensor", "us", rollout.Installing, true))
	paused := newTestDeployment("dep_paused", "app", base)
	paused.Status = deployment.Paused
	mustCreateDeployment(t, s, paused, offered("dev-6", "gw", "eu", rollout.Downloading, true))
	finished := newTestDeployment("dep_done", "fw", base)
	finished.Status = deployment.Finished
	mustCreateDeployment(t, s, finished, offered("dev-7", "gw", "eu", rollout.Installing, true))

	tests := []struct {
		statuses []deployment.Status
		want     []deployment.Load
	}{
		{[]deployment.Status{deployment.Running}, []deployment.Load{
			{Key: "region:eu", N: 1}, {Key: "region:us", N: 1}, {Key: "type:gw", N: 2}, {Key: "type:sensor", N: 1},
		}},
		{[]deployment.Status{deployment.Running, deployment.Paused}, []deployment.Load{
			{Key: "region:eu", N: 2}, {Key: "region:us", N: 1}, {Key: "type:gw", N: 3}, {Key: "type:sensor", N: 1},
		}},
		{nil, nil},
	}
	for _, tt := range tests {
		got, err := s.Load(ctx, tt.statuses)
		if err != nil {
			t.Errorf("Load(%v) = %v", tt.statuses, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Load(%v) (-want +got):\n%s", tt.statuses, diff)
		}
	}
}

func testDeploymentSuccess(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	at := func(dev, typ string, state rollout.DeviceState, since time.Duration) deployment.Member {
		m := newTestMember(dev, state)
		m.DeviceType, m.Status.Since = typ, base.Add(since)
		return m
	}
	mustCreateDeployment(t, s, newTestDeployment("dep_a", "os", base),
		at("dev-1", "gw", rollout.Success, time.Hour),
		at("dev-2", "sensor", rollout.Success, 2*time.Hour),
		at("dev-3", "gw", rollout.Failure, 3*time.Hour),
		at("dev-4", "gw", rollout.Scheduled, 0))
	mustCreateDeployment(t, s, newTestDeployment("dep_b", "app", base),
		at("dev-1", "gw", rollout.Success, 5*time.Hour))
	mustCreateDeployment(t, s, newTestDeployment("dep_c", "fw", base),
		at("dev-1", "gw", rollout.Failure, 9*time.Hour))

	for dev, want := range map[string]time.Time{
		"dev-1": base.Add(5 * time.Hour), // the latest success, not the later failure
		"dev-2": base.Add(2 * time.Hour),
		"dev-3": {},
		"dev-9": {},
	} {
		if got, err := s.LastSuccess(ctx, dev); err != nil || !got.Equal(want) {
			t.Errorf("LastSuccess(%s) = %v, %v; want %v", dev, got, err, want)
		}
	}
	got, err := s.MemberTimes(ctx, "dep_a")
	if err != nil {
		t.Fatal(err)
	}
	want := []deployment.TypedTime{
		{DeviceType: "gw", State: rollout.Success, At: base.Add(time.Hour)},
		{DeviceType: "sensor", State: rollout.Success, At: base.Add(2 * time.Hour)},
		{DeviceType: "gw", State: rollout.Failure, At: base.Add(3 * time.Hour)},
		{DeviceType: "gw", State: rollout.Scheduled, At: base},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("MemberTimes(dep_a) (-want +got):\n%s", diff)
	}
}

func testMembersQuery(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	var ms []deployment.Member
	states := []rollout.DeviceState{rollout.Scheduled, rollout.Downloading, rollout.Success}
	for i := range 25 {
		m := newTestMember(fmt.Sprintf("dev-%02d", i), states[i%3])
		m.Wave = i % 2
		ms = append(ms, m)
	}
	// Given out of order: the listing orders by device ID, not by insertion.
	slices.Reverse(ms)
	mustCreateDeployment(t, s, newTestDeployment("dep_1", "os", base), ms...)
	mustCreateDeployment(t, s, newTestDeployment("dep_2", "app", base), newTestMember("dev-00", rollout.Scheduled), newTestMember("dev-99", rollout.Scheduled))

	ids := func(q deployment.MemberQuery) []string {
		t.Helper()
		q.DeploymentID = "dep_1"
		got, err := s.Members(ctx, q)
		if err != nil {
			t.Fatalf("Members(%+v) = %v", q, err)
		}
		var out []string
		for _, m := range got {
			if m.DeploymentID != "dep_1" {
				t.Errorf("Members(%+v) returned %s of %s", q, m.DeviceID, m.DeploymentID)
			}
			out = append(out, m.DeviceID)
		}
		return out
	}
	devs := func(is ...int) []string {
		var out []string
		for _, i := range is {
			out = append(out, fmt.Sprintf("dev-%02d", i))
		}
		return out
	}
	var all []string
	for after := ""; ; {
		page := ids(deployment.MemberQuery{Wave: -1, After: after, Limit: 10})
		if len(page) == 0 {
			break
		}
		if len(page) > 10 {
			t.Fatalf("page of %d, want at most 10", len(page))
		}
		all = append(all, page...)
		after = page[len(page)-1]
	}
	if want := ids(deployment.MemberQuery{Wave: -1}); len(want) != 25 || !slices.Equal(all, want) || !slices.IsSorted(want) {
		t.Errorf("pages of 10 = %v, want all 25 in device order %v", all, want)
	}
	tests := []struct {
		q    deployment.MemberQuery
		want []string
	}{
		{deployment.MemberQuery{Wave: 1, Limit: 4}, devs(1, 3, 5, 7)},
		{deployment.MemberQuery{Wave: 0, After: "dev-17"}, devs(18, 20, 22, 24)},
		{deployment.MemberQuery{Wave: -1, States: []rollout.DeviceState{rollout.Success}, After: "dev-10"}, devs(11, 14, 17, 20, 23)},
		{deployment.MemberQuery{Wave: 1, States: []rollout.DeviceState{rollout.Scheduled, rollout.Success}, Limit: 5}, devs(3, 5, 9, 11, 15)},
		{deployment.MemberQuery{Wave: 7}, nil},
	}
	for _, tt := range tests {
		if got := ids(tt.q); !slices.Equal(got, tt.want) {
			t.Errorf("Members(%+v) = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func testDeploymentEvents(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	mustCreateDeployment(t, s, newTestDeployment("dep_1", "os", base))
	mustCreateDeployment(t, s, newTestDeployment("dep_2", "app", base))
	events := []deployment.Event{
		{DeploymentID: "dep_1", At: base, Kind: deployment.EventCreated, Message: "created by alice"},
		{DeploymentID: "dep_2", At: base, Kind: deployment.EventCreated},
		{DeploymentID: "dep_1", At: base.Add(time.Hour), Kind: deployment.EventWave, Message: "wave \"canary\" started ✓"},
		// Added later with an earlier time: the order is the order of adding.
		{DeploymentID: "dep_1", At: base.Add(-time.Hour), Kind: deployment.EventPaused, Message: "paused"},
	}
	for _, e := range events {
		if err := s.AddDeploymentEvent(ctx, e); err != nil {
			t.Fatalf("AddDeploymentEvent(%s) = %v", e.Kind, err)
		}
	}
	got, err := s.DeploymentEvents(ctx, "dep_1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]deployment.Event{events[3], events[2], events[0]}, got); diff != "" {
		t.Errorf("DeploymentEvents(dep_1) (-want +got):\n%s", diff)
	}
	if got, err := s.DeploymentEvents(ctx, "dep_1", 2); err != nil || !cmp.Equal(got, []deployment.Event{events[3], events[2]}) {
		t.Errorf("DeploymentEvents(dep_1, 2) = %v, %v; want the newest two", got, err)
	}
}

// testBulkDeployment creates a deployment of 5,000 devices, 500 of which are busy with
// another deployment of the software: ten full insert batches (kept small for -race).
func testBulkDeployment(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	const n, busy = 5000, 500
	members := make([]deployment.Member, n)
	for i := range members {
		members[i] = newTestMember(fmt.Sprintf("dev-%06d", i), rollout.Scheduled)
		members[i].Wave = i % 4
		members[i].Region = []string{"eu", "us"}[i%2]
	}
	var wantSkipped []string
	var first []deployment.Member
	for i := 0; i < n; i += n / busy {
		first = append(first, members[i])
		wantSkipped = append(wantSkipped, members[i].DeviceID)
	}
	mustCreateDeployment(t, s, newTestDeployment("dep_first", "os", base), first...)

	d := newTestDeployment("dep_bulk", "os", base)
	d.Total, d.WaveSizes = n, []int{n / 4, n / 4, n / 4, n / 4}
	start := time.Now()
	skipped := mustCreateDeployment(t, s, d, members...)
	t.Logf("CreateDeployment(%d members, %d skipped) took %v", n, len(skipped), time.Since(start))
	if !slices.Equal(skipped, wantSkipped) {
		t.Errorf("CreateDeployment skipped %d devices, want the %d busy ones in device order", len(skipped), len(wantSkipped))
	}
	counts, err := s.Counts(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range counts {
		total += c.N
	}
	if total != n-busy || len(counts) != 4 {
		t.Errorf("Counts = %v: %d members in %d groups, want %d in 4 waves", counts, total, len(counts), n-busy)
	}
	if got := mustDeployment(t, s, d.ID); got.Total != n {
		t.Errorf("Total = %d, want %d as given", got.Total, n)
	}
}

// testConcurrentCreateDeployment creates deployments of one software for the same devices at
// once, in different orders: each device must end up in exactly one, and none may fail.
func testConcurrentCreateDeployment(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	const devices, creators = 1000, 4
	var wg sync.WaitGroup
	skipped := make([][]string, creators)
	for c := range creators {
		members := make([]deployment.Member, devices)
		for i := range members {
			members[i] = newTestMember(fmt.Sprintf("dev-%04d", i), rollout.Scheduled)
		}
		if c%2 == 1 {
			slices.Reverse(members)
		}
		wg.Go(func() {
			var err error
			skipped[c], err = s.CreateDeployment(ctx, newTestDeployment(fmt.Sprintf("dep_%d", c), "os", base), members)
			if err != nil {
				t.Errorf("CreateDeployment(dep_%d) = %v, want nil", c, err)
			}
		})
	}
	wg.Wait()
	total := 0
	for c := range creators {
		ms, err := s.Members(ctx, deployment.MemberQuery{DeploymentID: fmt.Sprintf("dep_%d", c), Wave: -1, Limit: devices})
		if err != nil {
			t.Fatal(err)
		}
		if len(ms)+len(skipped[c]) != devices {
			t.Errorf("dep_%d: %d members + %d skipped, want %d", c, len(ms), len(skipped[c]), devices)
		}
		total += len(ms)
	}
	if total != devices {
		t.Errorf("%d memberships in all, want %d: one per device", total, devices)
	}
	for _, dev := range []string{"dev-0000", "dev-0500", "dev-0999"} {
		if got := activeIn(t, s, dev); len(got) != 1 {
			t.Errorf("ActiveMembers(%s) in %v, want exactly one", dev, got)
		}
	}
}
