package api_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/access"
	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/deployment"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/release"
	"github.com/rampart-iot/rampart/internal/rollout"
	"github.com/rampart-iot/rampart/internal/store/sqlite"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
)

// These tests run the management API's deployment routes on the real services and a real
// SQLite store; only the deployment service's clock is under the test's control, so that
// bake times can pass. The server package's end-to-end tests check the wiring and roles.

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type grants struct{}

func (grants) Issue(deviceID, digest string, _ time.Duration) string {
	return "g:" + deviceID + ":" + digest
}

type testAPI struct {
	t                       testing.TB
	url                     string
	st                      *sqlstore.Store
	deps                    *deployment.Service
	fleet                   *fleet.Service
	clock                   *clock
	admin, operator, viewer string
}

func newTestAPI(t testing.TB) *testAPI {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	fl, err := fleet.NewService(fleet.Options{Store: st, Secret: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	ac := access.NewService(access.Options{Store: st})
	admin, err := ac.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	token := func(name string, role access.Role) string {
		_, secret, err := ac.CreateToken(ctx, name, role, 0)
		if err != nil {
			t.Fatal(err)
		}
		return string(secret)
	}
	rel := release.NewService(release.Options{Store: st})
	deps := deployment.NewService(deployment.Options{Store: st, Fleet: fl, Releases: rel, Grants: grants{}, Now: c.Now})
	mux := http.NewServeMux()
	api.New(fl, ac, rel, deps, slog.New(slog.DiscardHandler)).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &testAPI{
		t: t, url: srv.URL, st: st, deps: deps, fleet: fl, clock: c,
		admin: string(admin), operator: token("ops-alice", access.Operator), viewer: token("dashboard", access.Viewer),
	}
}

// devices creates n accepted devices of a type, IDs prefix-0000..., with attributes.
func (ta *testAPI) devices(prefix, typ string, n int, attrs map[string]string) []string {
	ta.t.Helper()
	ids := make([]string, n)
	for i := range n {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		id := fmt.Sprintf("%s-%04d", prefix, i)
		d := &fleet.Device{
			ID: id, Identity: fleet.Identity{Serial: id, DeviceType: typ}, Status: fleet.StatusAccepted,
			PublicKey: pub, Attributes: attrs, CreatedAt: ta.clock.Now(), UpdatedAt: ta.clock.Now(),
		}
		if err := ta.st.CreateDevice(ta.t.Context(), d, "", ta.clock.Now()); err != nil {
			ta.t.Fatal(err)
		}
		ids[i] = id
	}
	return ids
}

// release creates a release with one full image, published unless state says otherwise.
func (ta *testAPI) release(name, version string, state release.State, types ...string) *release.Release {
	ta.t.Helper()
	ctx := ta.t.Context()
	r := &release.Release{ID: "rel_" + name + "_" + version, Name: name, Version: version, DeviceTypes: types, State: state, CreatedAt: ta.clock.Now()}
	if state == release.Published {
		r.PublishedAt = ta.clock.Now()
	}
	if err := ta.st.CreateRelease(ctx, r); err != nil {
		ta.t.Fatal(err)
	}
	if err := ta.st.UpdateRelease(ctx, r); err != nil {
		ta.t.Fatal(err)
	}
	digest := fmt.Sprintf("%064x", len(name+version))
	if err := ta.st.AddArtifact(ctx, r.ID, release.Artifact{Name: "fw.img", Role: release.RoleFull, Digest: digest, Size: 4, CreatedAt: ta.clock.Now()}); err != nil {
		ta.t.Fatal(err)
	}
	ta.clock.Add(time.Minute)
	return r
}

// do sends a request with a raw body and returns the status and answer.
func (ta *testAPI) do(method, path, token, body string) (int, []byte) {
	ta.t.Helper()
	req, err := http.NewRequestWithContext(ta.t.Context(), method, ta.url+api.Prefix+path, strings.NewReader(body))
	if err != nil {
		ta.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ta.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		ta.t.Fatal(err)
	}
	if resp.StatusCode >= 400 {
		var e api.Error
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			ta.t.Errorf("%s %s: %d answer without a JSON error: %q", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, b
}

// call sends in as JSON (nil: no body) with the operator's token and decodes a 2xx answer
// into out, refusing fields the wire types do not have.
func (ta *testAPI) call(method, path string, in, out any) int {
	ta.t.Helper()
	body := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			ta.t.Fatal(err)
		}
		body = string(b)
	}
	code, b := ta.do(method, path, ta.operator, body)
	if out != nil && code < 300 {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(out); err != nil {
			ta.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return code
}

func (ta *testAPI) deployment(id string) api.Deployment {
	ta.t.Helper()
	var d api.Deployment
	if code := ta.call("GET", "/deployments/"+id, nil, &d); code != 200 {
		ta.t.Fatalf("GET /deployments/%s = %d", id, code)
	}
	return d
}

func (ta *testAPI) report(dev, dep string, st rollout.DeviceState, seq uint64, log string) {
	ta.t.Helper()
	if _, err := ta.deps.Report(ta.t.Context(), dev, dep, rollout.Report{State: st, Seq: seq, Log: log}); err != nil {
		ta.t.Fatal(err)
	}
}

func TestDeploymentLifecycle(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t)
	ta.devices("gw", "gw", 20, map[string]string{"tz": "Europe/Berlin", "region": "eu"})
	ta.devices("cam", "cam", 2, nil)
	old := ta.release("fw", "1.0", release.Published, "gw")
	ta.release("fw", "2.0", release.Published, "gw")
	deadline := ta.clock.Now().Add(72 * time.Hour).Format(time.RFC3339)

	var c api.DeploymentCreated
	req := api.DeploymentRequest{
		Release: "fw", Version: "2.0",
		Target:      api.DeploymentTarget{Filter: `type == "gw" || type == "cam"`},
		Plan:        "2 name=canary success=100% fail=1 bake=1h; 100% name=rest",
		Action:      "soft",
		MaxDeferral: "72h",
		Windows:     []string{"sat,sun 22:00-6:00", "02:00-04:00"},
		Limits:      map[string]int{"type:gw": 10, "region:eu": 5},
		MinInterval: map[string]string{"gw": "168h"},
		Deadline:    deadline,
	}
	if code := ta.call("POST", "/deployments", req, &c); code != 201 {
		t.Fatalf("POST /deployments = %d", code)
	}
	d := c.Deployment
	if c.Incompatible != 2 || c.Skipped != 0 || d.Total != 20 || d.Name != "fw 2.0" || d.CreatedBy != "ops-alice" || d.Status != "running" {
		t.Errorf("created = %+v, want 20 devices, 2 incompatible, named fw 2.0, by ops-alice, running", c)
	}
	if d.Software != "fw" || d.Version != "2.0" || d.ReleaseID != "rel_fw_2.0" || d.Action != "soft" || d.MaxDeferral != "72h0m0s" {
		t.Errorf("created release/action = %+v", d)
	}
	if !slices.Equal(d.Windows, []string{"Sat,Sun 22:00-06:00", "02:00-04:00"}) || d.Limits["type:gw"] != 10 || d.MinInterval["gw"] != "168h0m0s" {
		t.Errorf("created constraints = windows %q limits %v min interval %v", d.Windows, d.Limits, d.MinInterval)
	}
	if d.Deadline == nil || d.Deadline.Format(time.RFC3339) != deadline {
		t.Errorf("deadline = %v, want %s", d.Deadline, deadline)
	}
	if len(d.Waves) != 2 || d.Waves[0].Name != "canary" || d.Waves[0].Devices != 2 || d.Waves[1].Devices != 18 || !d.Waves[0].Started || d.Waves[1].Started {
		t.Errorf("waves = %+v, want canary of 2 (started) and rest of 18", d.Waves)
	}
	if d.Plan != "2 name=canary success=100% fail=1 bake=1h0m0s jitter=0s; 100% name=rest success=95% fail=5% bake=1h0m0s jitter=0s" {
		t.Errorf("plan = %q", d.Plan)
	}

	got := ta.deployment(d.ID)
	if got.States["scheduled"] != 20 || got.Waves[0].States["scheduled"] != 2 || got.Waves[1].States["scheduled"] != 18 {
		t.Errorf("GET states = %v, waves %+v", got.States, got.Waves)
	}

	// The canary devices take the update: one fails with a log, one succeeds.
	var canary api.DeploymentDeviceList
	if code := ta.call("GET", "/deployments/"+d.ID+"/devices?wave=0", nil, &canary); code != 200 || len(canary.Devices) != 2 {
		t.Fatalf("canary devices = %d %+v", code, canary)
	}
	bad, good := canary.Devices[0].DeviceID, canary.Devices[1].DeviceID
	if m := canary.Devices[0]; m.DeviceType != "gw" || m.Region != "eu" || m.TimeZone != "Europe/Berlin" || m.State != "scheduled" || m.OfferedAt != nil {
		t.Errorf("canary device = %+v", m)
	}
	ta.report(bad, d.ID, rollout.Downloading, 1, "")
	ta.report(bad, d.ID, rollout.Failure, 2, "step 1\nhealth check failed: sshd not running\n")
	ta.report(good, d.ID, rollout.Installing, 1, "")
	ta.report(good, d.ID, rollout.Success, 2, "")

	var failures api.DeploymentDeviceList
	if code := ta.call("GET", "/deployments/"+d.ID+"/devices?state=failure,rolled-back", nil, &failures); code != 200 ||
		len(failures.Devices) != 1 || failures.Devices[0].DeviceID != bad || !strings.Contains(failures.Devices[0].Log, "sshd not running") || failures.Devices[0].OfferedAt == nil {
		t.Errorf("failed devices = %d %+v, want %s with its log", code, failures, bad)
	}
	var page api.DeploymentDeviceList
	if code := ta.call("GET", "/deployments/"+d.ID+"/devices?limit=15", nil, &page); code != 200 || len(page.Devices) != 15 || page.NextAfter != page.Devices[14].DeviceID {
		t.Errorf("first page = %d, %d devices, next %q", code, len(page.Devices), page.NextAfter)
	}
	var page2 api.DeploymentDeviceList
	if code := ta.call("GET", "/deployments/"+d.ID+"/devices?limit=15&after="+page.NextAfter, nil, &page2); code != 200 || len(page2.Devices) != 5 || page2.NextAfter != "" {
		t.Errorf("second page = %d, %d devices, next %q", code, len(page2.Devices), page2.NextAfter)
	}

	// The canary's failure threshold is 1: the scheduler halts the deployment.
	if err := ta.deps.Tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	got = ta.deployment(d.ID)
	if got.Status != "halted" || !strings.Contains(got.Reason, "1 of 2 devices failed") || got.HaltedAt == nil || got.Waves[0].States["failure"] != 1 {
		t.Errorf("after the failure: status %s reason %q halted %v waves %+v", got.Status, got.Reason, got.HaltedAt, got.Waves)
	}

	var ctl api.Deployment
	for _, step := range []struct{ verb, want string }{{"pause", ""}, {"resume", "running"}, {"resume", ""}, {"pause", "paused"}, {"resume", "running"}, {"cancel", "cancelled"}, {"cancel", ""}, {"pause", ""}} {
		ta.clock.Add(time.Second)
		code := ta.call("POST", "/deployments/"+d.ID+"/"+step.verb, nil, &ctl)
		switch {
		case step.want == "" && code != 409:
			t.Errorf("%s in the wrong state = %d, want 409", step.verb, code)
		case step.want != "" && (code != 200 || ctl.Status != step.want):
			t.Errorf("%s = %d %s, want 200 %s", step.verb, code, ctl.Status, step.want)
		}
	}

	var evs api.DeploymentEventList
	if code := ta.call("GET", "/deployments/"+d.ID+"/events", nil, &evs); code != 200 {
		t.Fatalf("events = %d", code)
	}
	var kinds []string
	for _, e := range evs.Events {
		kinds = append(kinds, e.Kind)
	}
	if want := []string{"cancelled", "resumed", "paused", "resumed", "halted", "created"}; !slices.Equal(kinds, want) {
		t.Errorf("events = %v, want %v (newest first)", kinds, want)
	}
	if !strings.Contains(evs.Events[2].Message, "paused by ops-alice") {
		t.Errorf("pause event %q does not say who paused", evs.Events[2].Message)
	}
	if code := ta.call("GET", "/deployments/"+d.ID+"/events?limit=2", nil, &evs); code != 200 || len(evs.Events) != 2 {
		t.Errorf("events?limit=2 = %d, %d events", code, len(evs.Events))
	}

	// Rolling back deploys 1.0 to the device that took 2.0, in one wave.
	ta.clock.Add(time.Minute)
	var rb api.DeploymentCreated
	if code := ta.call("POST", "/deployments/"+d.ID+"/rollback", nil, &rb); code != 201 {
		t.Fatalf("rollback = %d", code)
	}
	if r := rb.Deployment; r.RollbackOf != d.ID || r.ReleaseID != old.ID || r.Total != 1 || len(r.Waves) != 1 || r.CreatedBy != "ops-alice" {
		t.Errorf("rollback = %+v, want 1.0 to 1 device in one wave, rolling back %s", r, d.ID)
	}
	if got := ta.deployment(d.ID); got.RolledBackBy != rb.Deployment.ID {
		t.Errorf("rolled-back deployment's rolled_back_by = %q, want %s", got.RolledBackBy, rb.Deployment.ID)
	}

	var running, list api.DeploymentList
	if code := ta.call("GET", "/deployments?status=running,paused", nil, &running); code != 200 || len(running.Deployments) != 1 || running.Deployments[0].ID != rb.Deployment.ID {
		t.Errorf("running deployments = %d %+v, want only the rollback", code, running)
	}
	if code := ta.call("GET", "/deployments?software=fw&limit=1", nil, &list); code != 200 || len(list.Deployments) != 1 || list.NextBefore != rb.Deployment.ID {
		t.Errorf("first page of fw = %d %+v", code, list)
	}
	var list2 api.DeploymentList
	if code := ta.call("GET", "/deployments?software=fw&limit=1&before="+list.NextBefore, nil, &list2); code != 200 || len(list2.Deployments) != 1 || list2.Deployments[0].ID != d.ID {
		t.Errorf("second page of fw = %d %+v, want %s", code, list2, d.ID)
	}

	var m api.Delivery
	if code := ta.call("GET", "/metrics/delivery", nil, &m); code != 200 || m.Deployments != 2 || m.Failed != 1 || len(m.ByDeviceType) != 1 || m.ByDeviceType[0].DeviceType != "gw" {
		t.Errorf("delivery = %d %+v, want 2 deployments, 1 failed, broken down for gw", code, m)
	}
	var gw api.Delivery
	if code := ta.call("GET", "/metrics/delivery?days=7&device_type=gw", nil, &gw); code != 200 || gw.DeviceType != "gw" || gw.Deployments != 2 || gw.ByDeviceType != nil {
		t.Errorf("delivery for gw = %d %+v", code, gw)
	}
}

func TestDeploymentTargets(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t)
	ids := ta.devices("gw", "gw", 5, nil)
	if _, err := ta.fleet.CreateGroup(t.Context(), fleet.Group{Name: "lab"}); err != nil {
		t.Fatal(err)
	}
	if err := ta.fleet.ChangeMembers(t.Context(), "lab", ids[:2], nil); err != nil {
		t.Fatal(err)
	}
	r := ta.release("fw", "3.0", release.Published, "gw")
	var c api.DeploymentCreated
	if code := ta.call("POST", "/deployments", api.DeploymentRequest{ReleaseID: r.ID, Name: "lab first", Target: api.DeploymentTarget{Group: "lab"}, Plan: "100%"}, &c); code != 201 || c.Deployment.Total != 2 {
		t.Fatalf("deploy to group = %d %+v", code, c)
	}
	if code := ta.call("POST", "/deployments", api.DeploymentRequest{ReleaseID: r.ID, Target: api.DeploymentTarget{Devices: ids}}, &c); code != 201 {
		t.Fatalf("deploy to devices = %d", code)
	}
	if c.Deployment.Total != 3 || c.Deployment.TargetDevices != 5 || len(c.Deployment.Target.Devices) != 5 || c.Skipped != 2 || !slices.Equal(c.SkippedDevices, ids[:2]) || c.Deployment.Name != "fw 3.0" {
		t.Errorf("deploy to devices, two already busy = %+v, want 3 taken and %v skipped", c, ids[:2])
	}
	if len(c.Deployment.Waves) != 4 || c.Deployment.Waves[0].Name != "canary" {
		t.Errorf("without a plan the waves are %+v, want the default plan", c.Deployment.Waves)
	}
}

// TestDeploymentBadInput checks that every malformed request is refused with the right code
// and a message naming what was wrong, and creates nothing.
func TestDeploymentBadInput(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t)
	ta.devices("gw", "gw", 3, nil)
	ta.release("fw", "1.0", release.Published, "gw")
	ta.release("fw", "2.0-rc", release.Draft, "gw")
	var c api.DeploymentCreated
	if code := ta.call("POST", "/deployments", api.DeploymentRequest{ReleaseID: "rel_fw_1.0", Target: api.DeploymentTarget{Devices: []string{"gw-0000"}}, Plan: "100%"}, &c); code != 201 {
		t.Fatalf("create = %d", code)
	}
	id := c.Deployment.ID
	good := `"release_id":"rel_fw_1.0","target":{"filter":"type == \"gw\""}`
	deviceList := func(n int) string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf(`"dev_nope_%06d"`, i)
		}
		return `{"release_id":"rel_fw_1.0","target":{"devices":[` + strings.Join(ids, ",") + `]}}`
	}
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
		msg                      string
	}{
		{"malformed JSON", "POST", "/deployments", `{"release_id":`, 400, "malformed JSON"},
		{"unknown field", "POST", "/deployments", `{` + good + `,"waves":3}`, 400, "unknown field"},
		{"no release", "POST", "/deployments", `{"target":{"group":"g"}}`, 400, "give release_id, or release and version"},
		{"release and release_id", "POST", "/deployments", `{` + good + `,"release":"fw","version":"1.0"}`, 400, "not both"},
		{"release without version", "POST", "/deployments", `{"release":"fw","target":{"group":"g"}}`, 400, "give release_id"},
		{"unknown release", "POST", "/deployments", `{"release_id":"rel_nope","target":{"filter":"true"}}`, 400, "rel_nope"},
		{"unknown version", "POST", "/deployments", `{"release":"fw","version":"9.9","target":{"filter":"true"}}`, 400, "fw 9.9"},
		{"bad release name", "POST", "/deployments", `{"release":"fw x","version":"1.0","target":{"filter":"true"}}`, 400, "release name"},
		{"draft release", "POST", "/deployments", `{"release":"fw","version":"2.0-rc","target":{"filter":"true"}}`, 409, "not published"},
		{"no target", "POST", "/deployments", `{"release_id":"rel_fw_1.0"}`, 400, "exactly one of group, filter or devices"},
		{"two targets", "POST", "/deployments", `{"release_id":"rel_fw_1.0","target":{"group":"g","filter":"true"}}`, 400, "exactly one"},
		{"unknown group", "POST", "/deployments", `{"release_id":"rel_fw_1.0","target":{"group":"nope"}}`, 400, "nope"},
		{"unknown device", "POST", "/deployments", `{"release_id":"rel_fw_1.0","target":{"devices":["dev_nope"]}}`, 400, "dev_nope"},
		{"longest device list", "POST", "/deployments", deviceList(deployment.MaxTargetList), 400, "dev_nope_000000"},
		{"device list too long", "POST", "/deployments", deviceList(deployment.MaxTargetList + 1), 400, "at most 100000"},
		{"bad filter", "POST", "/deployments", `{"release_id":"rel_fw_1.0","target":{"filter":"type =="}}`, 400, "filter"},
		{"bad plan", "POST", "/deployments", `{` + good + `,"plan":"50%; 10%"}`, 400, "plan"},
		{"plan not ending at 100%", "POST", "/deployments", `{` + good + `,"plan":"10; 50%"}`, 400, "want 100%"},
		{"bad action", "POST", "/deployments", `{` + good + `,"action":"later"}`, 400, "action"},
		{"soft without deferral", "POST", "/deployments", `{` + good + `,"action":"soft"}`, 400, "maximum deferral"},
		{"deferral when forced", "POST", "/deployments", `{` + good + `,"max_deferral":"1h"}`, 400, "only to soft"},
		{"bad deferral", "POST", "/deployments", `{` + good + `,"action":"soft","max_deferral":"a week"}`, 400, "max_deferral"},
		{"bad window", "POST", "/deployments", `{` + good + `,"windows":["Mon-Fri 2am-4am"]}`, 400, "window"},
		{"too many windows", "POST", "/deployments", `{` + good + `,"windows":[` + strings.Repeat(`"02:00-03:00",`, rollout.MaxWindows) + `"02:00-03:00"]}`, 400, "windows"},
		{"bad limit key", "POST", "/deployments", `{` + good + `,"limits":{"gw":3}}`, 400, `limit \"gw\": want type:`},
		{"negative limit", "POST", "/deployments", `{` + good + `,"limits":{"type:gw":-1}}`, 400, "limit"},
		{"limit not a number", "POST", "/deployments", `{` + good + `,"limits":{"type:gw":"ten"}}`, 400, "malformed JSON"},
		{"bad interval", "POST", "/deployments", `{` + good + `,"min_interval":{"gw":"weekly"}}`, 400, "min_interval gw"},
		{"interval too long", "POST", "/deployments", `{` + good + `,"min_interval":{"gw":"10000h"}}`, 400, "minimum interval"},
		{"bad deadline", "POST", "/deployments", `{` + good + `,"deadline":"tomorrow"}`, 400, "RFC 3339"},
		{"past deadline", "POST", "/deployments", `{` + good + `,"deadline":"2001-01-01T00:00:00Z"}`, 400, "in the past"},
		{"bad name", "POST", "/deployments", `{` + good + `,"name":"a\u0007b"}`, 400, "unprintable"},
		{"oversized body", "POST", "/deployments", `{"name":"` + strings.Repeat("a", 5<<20) + `"}`, 413, "larger than"},
		{"viewer may not create", "POST", "/deployments", `{` + good + `}`, 403, "may not"},
		{"list: bad status", "GET", "/deployments?status=running,done", "", 400, "status"},
		{"list: bad limit", "GET", "/deployments?limit=0", "", 400, "limit"},
		{"list: limit too high", "GET", "/deployments?limit=5000", "", 400, "limit"},
		{"get: unknown", "GET", "/deployments/dep_nope", "", 404, "dep_nope"},
		{"devices: unknown deployment", "GET", "/deployments/dep_nope/devices", "", 404, "dep_nope"},
		{"devices: bad state", "GET", "/deployments/" + id + "/devices?state=bricked", "", 400, "bricked"},
		{"devices: bad wave", "GET", "/deployments/" + id + "/devices?wave=-1", "", 400, "wave"},
		{"devices: bad limit", "GET", "/deployments/" + id + "/devices?limit=x", "", 400, "limit"},
		{"events: unknown deployment", "GET", "/deployments/dep_nope/events", "", 404, "dep_nope"},
		{"events: limit too high", "GET", "/deployments/" + id + "/events?limit=5000", "", 400, "limit"},
		{"pause: unknown", "POST", "/deployments/dep_nope/pause", "", 404, "dep_nope"},
		{"resume: running", "POST", "/deployments/" + id + "/resume", "", 409, "running"},
		{"rollback: unknown", "POST", "/deployments/dep_nope/rollback", "", 404, "dep_nope"},
		{"rollback: nothing older", "POST", "/deployments/" + id + "/rollback", "", 409, "no published release of fw older"},
		{"rollback: unknown release", "POST", "/deployments/" + id + "/rollback", `{"release_id":"rel_nope"}`, 400, "rel_nope"},
		{"rollback: bad plan", "POST", "/deployments/" + id + "/rollback", `{"plan":"wave"}`, 400, "plan"},
		{"rollback: unknown field", "POST", "/deployments/" + id + "/rollback", `{"to":"x"}`, 400, "unknown field"},
		{"metrics: since and days", "GET", "/metrics/delivery?days=3&since=2026-01-01T00:00:00Z", "", 400, "not both"},
		{"metrics: zero days", "GET", "/metrics/delivery?days=0", "", 400, "days"},
		{"metrics: bad since", "GET", "/metrics/delivery?since=yesterday", "", 400, "since"},
		{"metrics: future since", "GET", "/metrics/delivery?since=2999-01-01T00:00:00Z", "", 400, "since"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := ta.operator
			if strings.HasPrefix(tc.name, "viewer") {
				token = ta.viewer
			}
			code, b := ta.do(tc.method, tc.path, token, tc.body)
			if code != tc.want || !strings.Contains(string(b), tc.msg) {
				t.Errorf("%s %s = %d %s, want %d mentioning %q", tc.method, tc.path, code, b, tc.want, tc.msg)
			}
		})
	}
	var list api.DeploymentList
	if code := ta.call("GET", "/deployments", nil, &list); code != 200 || len(list.Deployments) != 1 || list.Deployments[0].Status != "running" {
		t.Errorf("after the bad requests: %d %+v, want only the first deployment, still running", code, list)
	}
}
