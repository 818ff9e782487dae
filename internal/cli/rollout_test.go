package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/api"
)

// sampleDeployment is a deployment in its second wave, with a failure in the canary.
func sampleDeployment() api.Deployment {
	return api.Deployment{
		ID: "dep_0001", Name: "gw-os 1.1.0", ReleaseID: "rel_0001", Software: "gw-os", Version: "1.1.0",
		Target: api.DeploymentTarget{Group: "prod"},
		Plan:   "10 name=canary success=90% fail=2 bake=1h0m0s jitter=0s; 100% name=all success=95% fail=5% bake=1h0m0s jitter=0s",
		Action: "soft", MaxDeferral: "72h0m0s",
		Windows: []string{"Mon-Fri 02:00-04:00", "Sat,Sun 22:00-06:00"},
		Limits:  map[string]int{"type:acme-gw": 10, "region:eu": 5}, MinInterval: map[string]string{"acme-gw": "168h0m0s"},
		Deadline: fixedTime("2026-03-01T00:00:00Z"),
		Status:   "running", Wave: 1, WaveStarted: fixedTime("2026-02-01T12:00:00Z"), BakeUntil: fixedTime("2026-02-01T13:00:00Z"),
		Total: 50,
		Waves: []api.DeploymentWave{
			{Name: "canary", Size: "10", SuccessThreshold: "90%", FailureThreshold: "2", Bake: "1h0m0s", BakeJitter: "0s", Devices: 10, Started: true,
				States: map[string]int{"success": 9, "failure": 1}},
			{Name: "all", Size: "100%", SuccessThreshold: "95%", FailureThreshold: "5%", Bake: "1h0m0s", BakeJitter: "0s", Devices: 40, Started: true,
				States: map[string]int{"success": 3, "installing": 2, "downloading": 1, "scheduled": 34}},
		},
		States:    map[string]int{"success": 12, "failure": 1, "installing": 2, "downloading": 1, "scheduled": 34},
		CreatedBy: "ops-alice", CreatedAt: *fixedTime("2026-02-01T10:00:00Z"), UpdatedAt: *fixedTime("2026-02-01T12:00:00Z"),
	}
}

// watchSequence is what successive GETs of dep_watch answer: the canary running, the same
// again (nothing new to print), the second wave, then finished.
func watchSequence() []api.Deployment {
	d := sampleDeployment()
	d.ID, d.Wave, d.Status = "dep_watch", 0, "running"
	d.Waves[0].States = map[string]int{"success": 4, "verifying": 1, "scheduled": 5}
	d.Waves[1].Started, d.Waves[1].States = false, map[string]int{"scheduled": 40}
	d.States = map[string]int{"success": 4, "verifying": 1, "scheduled": 45}
	first := d
	second := sampleDeployment()
	second.ID = "dep_watch"
	done := sampleDeployment()
	done.ID, done.Status, done.Reason = "dep_watch", "finished", "wave all: 49 of 50 devices succeeded"
	done.Waves[1].States = map[string]int{"success": 40}
	done.States = map[string]int{"success": 49, "failure": 1}
	done.FinishedAt = fixedTime("2026-02-02T00:00:00Z")
	return []api.Deployment{first, first, second, done}
}

// rolloutRoutes serves the deployment endpoints of the fake API.
func rolloutRoutes(mux *http.ServeMux) {
	p := api.Prefix
	var mu sync.Mutex
	polls := 0
	seq := watchSequence()
	created := api.DeploymentCreated{Deployment: sampleDeployment(), Skipped: 3, SkippedDevices: []string{"dev_0007", "dev_0008"}, Incompatible: 2}
	created.Deployment.Wave, created.Deployment.Status = 0, "running"
	mux.HandleFunc("POST "+p+"/deployments", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusCreated, created)
	})
	mux.HandleFunc("GET "+p+"/deployments", func(w http.ResponseWriter, r *http.Request) {
		d := sampleDeployment()
		d.States = nil
		old := sampleDeployment()
		old.ID, old.Name, old.Version, old.Status, old.Wave, old.Total, old.States = "dep_0000", "gw-os 1.0.9", "1.0.9", "finished", 1, 48, nil
		writeTestJSON(w, http.StatusOK, api.DeploymentList{Deployments: []api.Deployment{d, old}, NextBefore: "dep_0000"})
	})
	mux.HandleFunc("GET "+p+"/deployments/{id}", func(w http.ResponseWriter, r *http.Request) {
		switch id := r.PathValue("id"); id {
		case "dep_0001":
			writeTestJSON(w, http.StatusOK, sampleDeployment())
		case "dep_watch":
			mu.Lock()
			d := seq[min(polls, len(seq)-1)]
			polls++
			mu.Unlock()
			writeTestJSON(w, http.StatusOK, d)
		case "dep_halted", "dep_cancelled":
			d := sampleDeployment()
			d.ID, d.Status, d.Reason = id, strings.TrimPrefix(id, "dep_"), "wave canary: 2 of 10 devices failed, threshold 2 (2)"
			writeTestJSON(w, http.StatusOK, d)
		default:
			notFound(w, "deployment "+id)
		}
	})
	mux.HandleFunc("GET "+p+"/deployments/{id}/devices", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusOK, api.DeploymentDeviceList{Devices: []api.DeploymentDevice{
			{DeviceID: "dev_0003", Wave: 0, DeviceType: "acme-gw", Region: "eu", State: "failure", Since: time.Now().Add(-2 * time.Hour), OfferedAt: new(time.Now().Add(-3 * time.Hour)),
				Log: "mounting /dev/mmcblk0p3\nverifying rootfs\nhealth check failed: \x1b[31msshd\x1b[0m not running\n"},
		}, NextAfter: "dev_0003"})
	})
	mux.HandleFunc("GET "+p+"/deployments/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusOK, api.DeploymentEventList{Events: []api.DeploymentEvent{
			{At: *fixedTime("2026-02-01T12:00:00Z"), Kind: "wave-started", Message: "wave all started (40 devices)"},
			{At: *fixedTime("2026-02-01T10:00:00Z"), Kind: "created", Message: "gw-os 1.1.0 to 50 devices in 2 waves by ops-alice"},
		}})
	})
	for verb, status := range map[string]string{"pause": "paused", "resume": "running", "cancel": "cancelled"} {
		mux.HandleFunc("POST "+p+"/deployments/{id}/"+verb, func(w http.ResponseWriter, r *http.Request) {
			if r.PathValue("id") == "dep_done" {
				writeTestJSON(w, http.StatusConflict, api.Error{Error: verb + " deployment dep_done: deployment is finished already"})
				return
			}
			d := sampleDeployment()
			d.Status = status
			writeTestJSON(w, http.StatusOK, d)
		})
	}
	mux.HandleFunc("POST "+p+"/deployments/{id}/rollback", func(w http.ResponseWriter, r *http.Request) {
		d := sampleDeployment()
		d.ID, d.Name, d.Version, d.Total, d.RollbackOf, d.Wave = "dep_0002", "rollback of gw-os 1.1.0", "1.0.9", 12, "dep_0001", 0
		d.Waves = d.Waves[:1]
		writeTestJSON(w, http.StatusCreated, api.DeploymentCreated{Deployment: d})
	})
	mux.HandleFunc("GET "+p+"/metrics/delivery", func(w http.ResponseWriter, r *http.Request) {
		m := api.Delivery{
			Since: *fixedTime("2026-01-01T00:00:00Z"), Until: *fixedTime("2026-01-31T00:00:00Z"), Deployments: 6, Succeeded: 4,
			PerDay: 4.0 / 30, LeadTime: "52h30m0s", LeadTimes: 4, Failed: 2, ChangeFailureRate: 2.0 / 6, TimeToRestore: "3h20m0s", Restores: 1,
		}
		if r.URL.Query().Get("device_type") == "" {
			gw, cam := m, m
			gw.DeviceType = "acme-gw"
			cam = api.Delivery{DeviceType: "acme-cam", Since: m.Since, Until: m.Until}
			m.ByDeviceType = []api.Delivery{cam, gw}
		} else {
			m.DeviceType = r.URL.Query().Get("device_type")
		}
		writeTestJSON(w, http.StatusOK, m)
	})
}

// TestRolloutCommands checks what each rollout command sends and the gist of what it prints.
func TestRolloutCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args       []string
		wantReq    string // "METHOD path[?query] body-json"
		wantStdout []string
	}{
		{[]string{"rollout", "create", "--release", "gw-os", "--version", "1.1.0", "--group", "prod", "--plan", "10 name=canary; 100%",
			"--action", "soft", "--max-deferral", "72h", "--window", "Mon-Fri 02:00-04:00", "--window", "Sat,Sun 22:00-06:00",
			"--limit", "type:acme-gw=10", "--limit", "region:eu=5", "--min-interval", "acme-gw=168h", "--deadline", "2026-03-01T01:00:00+01:00", "--name", "spring"},
			`POST /api/v1/deployments {"action":"soft","deadline":"2026-03-01T00:00:00Z","limits":{"region:eu":5,"type:acme-gw":10},"max_deferral":"72h0m0s",` +
				`"min_interval":{"acme-gw":"168h"},"name":"spring","plan":"10 name=canary; 100%","release":"gw-os","target":{"group":"prod"},"version":"1.1.0",` +
				`"windows":["Mon-Fri 02:00-04:00","Sat,Sun 22:00-06:00"]}`,
			[]string{"created deployment dep_0001 (gw-os 1.1.0): gw-os 1.1.0 to 50 device(s) in 2 wave(s), wave canary started\n",
				"left out 3 device(s) already in an unfinished deployment of gw-os: dev_0007, dev_0008, ...\n",
				"left out 2 targeted device(s) that are not accepted or of another device type\n"}},
		{[]string{"rollout", "create", "--release-id", "rel_0001", "--devices", "dev_1,dev_2", "--devices", "dev_3"},
			`POST /api/v1/deployments {"release_id":"rel_0001","target":{"devices":["dev_1","dev_2","dev_3"]}}`, []string{"created deployment dep_0001"}},
		{[]string{"rollout", "ls", "--status", "running,paused", "--software", "gw-os", "--limit", "2"},
			`GET /api/v1/deployments?limit=2&software=gw-os&status=running%2Cpaused`,
			[]string{"ID        NAME         RELEASE      STATUS    WAVE     DEVICES  CREATED\n",
				"dep_0001  gw-os 1.1.0  gw-os 1.1.0  running   2/2 all  50       2026-02-01T10:00:00Z\n",
				"dep_0000  gw-os 1.0.9  gw-os 1.0.9  finished  2/2 all  48       2026-02-01T10:00:00Z\n"}},
		{[]string{"rollout", "devices", "dep_0001", "--state", "failure", "--wave", "0"},
			`GET /api/v1/deployments/dep_0001/devices?state=failure&wave=0`,
			[]string{"dev_0003  0     acme-gw  eu      failure  2h ago  3h ago\n",
				"\ndev_0003 failure (wave 0), log:\n    mounting /dev/mmcblk0p3\n    verifying rootfs\n    health check failed: ?[31msshd?[0m not running\n"}},
		{[]string{"rollout", "events", "dep_0001", "--limit", "2"},
			`GET /api/v1/deployments/dep_0001/events?limit=2`,
			[]string{"2026-02-01T12:00:00Z  wave-started  wave all started (40 devices)\n"}},
		{[]string{"rollout", "pause", "dep_0001"}, `POST /api/v1/deployments/dep_0001/pause`, []string{"deployment dep_0001 is paused\n"}},
		{[]string{"rollout", "resume", "dep_0001"}, `POST /api/v1/deployments/dep_0001/resume`, []string{"deployment dep_0001 is running\n"}},
		{[]string{"rollout", "cancel", "dep_0001"}, `POST /api/v1/deployments/dep_0001/cancel`, []string{"deployment dep_0001 is cancelled\n"}},
		{[]string{"rollout", "rollback", "dep_0001", "--to-release-id", "rel_0000", "--plan", "100%"},
			`POST /api/v1/deployments/dep_0001/rollback {"plan":"100%","release_id":"rel_0000"}`,
			[]string{"rolled back dep_0001: created deployment dep_0002 (rollback of gw-os 1.1.0): gw-os 1.0.9 to 12 device(s) in 1 wave(s), wave canary started\n"}},
		{[]string{"rollout", "rollback", "dep_0001"}, `POST /api/v1/deployments/dep_0001/rollback {}`, []string{"created deployment dep_0002"}},
		{[]string{"metrics", "delivery", "--days", "7", "--device-type", "acme-gw"},
			`GET /api/v1/metrics/delivery?days=7&device_type=acme-gw`,
			[]string{"Device type:           acme-gw\n", "Lead time:             2d4h (median of 4 deployment(s))\n", "Change failure rate:   33.3%\n"}},
	}
	// The fake's lists have more pages; the hint goes to stderr.
	wantStderr := map[string]string{
		"ls":      "more deployments: run again with --before dep_0000\n",
		"devices": "more devices: run again with --after dev_0003, or with --all\n",
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[:2], "_"), func(t *testing.T) {
			t.Parallel()
			fake, srv := newFakeAPI(t)
			r := runCLI(t, fleetEnv(srv), tt.args...)
			if want := wantStderr[tt.args[1]]; r.code != 0 || r.stderr != want {
				t.Fatalf("rampart %s: exit %d, stderr %q, want 0 and %q", strings.Join(tt.args, " "), r.code, r.stderr, want)
			}
			out := r.stdout
			for _, want := range tt.wantStdout {
				if !strings.Contains(out, want) {
					t.Errorf("rampart %s printed\n%s\nwant it to contain %q", strings.Join(tt.args, " "), out, want)
				}
			}
			reqs := fake.requests()
			if len(reqs) != 1 {
				t.Fatalf("rampart %s made %d requests, want 1", strings.Join(tt.args, " "), len(reqs))
			}
			got := reqs[0].Method + " " + reqs[0].Path
			if reqs[0].Query != "" {
				got += "?" + reqs[0].Query
			}
			if reqs[0].Body != nil {
				b, _ := json.Marshal(reqs[0].Body)
				got += " " + string(b)
			}
			if got != tt.wantReq {
				t.Errorf("rampart %s sent\n%s\nwant\n%s", strings.Join(tt.args, " "), got, tt.wantReq)
			}
		})
	}
}

func TestRolloutShowAndMetrics(t *testing.T) {
	t.Parallel()
	_, srv := newFakeAPI(t)
	env := fleetEnv(srv)
	checkGolden(t, "rollout_show", mustRun(t, env, "rollout", "show", "dep_0001"))
	checkGolden(t, "metrics_delivery", mustRun(t, env, "metrics", "delivery"))

	for _, args := range [][]string{
		{"rollout", "show", "dep_0001", "-o", "json"},
		{"rollout", "ls", "-o", "json"},
		{"rollout", "create", "--release-id", "r", "--group", "g", "-o", "json"},
		{"rollout", "devices", "dep_0001", "-o", "json"},
		{"rollout", "events", "dep_0001", "-o", "json"},
		{"rollout", "cancel", "dep_0001", "-o", "json"},
		{"rollout", "rollback", "dep_0001", "-o", "json"},
		{"metrics", "delivery", "-o", "json"},
	} {
		out := mustRun(t, env, args...)
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) == 0 {
			t.Errorf("rampart %s printed %q, want a JSON object (%v)", strings.Join(args, " "), out, err)
		}
	}
	var d api.Deployment
	if err := json.Unmarshal([]byte(mustRun(t, env, "rollout", "show", "dep_0001", "-o", "json")), &d); err != nil || !jsonEqual(t, d, sampleDeployment()) {
		t.Errorf("rollout show -o json = %+v (%v), want the API's deployment unchanged", d, err)
	}
}

// TestRolloutWatch follows a deployment to its end without a terminal: a snapshot is
// appended whenever something changed, and the exit code says how it ended.
func TestRolloutWatch(t *testing.T) {
	t.Parallel()
	_, srv := newFakeAPI(t)
	env := fleetEnv(srv)
	r := runCLI(t, env, "rollout", "watch", "dep_watch", "--interval", "1ms")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("rollout watch of a deployment that finishes: exit %d, stderr %q", r.code, r.stderr)
	}
	if strings.Contains(r.stdout, "\x1b") {
		t.Errorf("rollout watch without a terminal printed escape sequences:\n%q", r.stdout)
	}
	checkGolden(t, "rollout_watch", r.stdout)

	for _, tt := range []struct {
		id         string
		code       int
		wantStderr string
	}{
		{"dep_halted", 2, "rampart: deployment dep_halted halted: wave canary: 2 of 10 devices failed, threshold 2 (2)\n"},
		{"dep_cancelled", 3, "rampart: deployment dep_cancelled cancelled: wave canary: 2 of 10 devices failed, threshold 2 (2)\n"},
		{"dep_nope", 1, "rampart: deployment dep_nope: not found (HTTP 404)\n"},
	} {
		r := runCLI(t, env, "rollout", "watch", tt.id, "--interval", "1ms")
		if r.code != tt.code || r.stderr != tt.wantStderr {
			t.Errorf("rollout watch %s: exit %d, stderr %q, want %d, %q", tt.id, r.code, r.stderr, tt.code, tt.wantStderr)
		}
	}
}

func TestRolloutWatchJSON(t *testing.T) {
	t.Parallel()
	_, srv := newFakeAPI(t)
	out := mustRun(t, fleetEnv(srv), "rollout", "watch", "dep_watch", "--interval", "1ms", "-o", "json")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var statuses []string
	for _, l := range lines {
		var d api.Deployment
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("line %q is not a deployment: %v", l, err)
		}
		statuses = append(statuses, d.Status+"/"+d.Waves[d.Wave].Name)
	}
	if got := strings.Join(statuses, " "); got != "running/canary running/all finished/all" {
		t.Errorf("rollout watch -o json printed %s, want one line per change: running/canary running/all finished/all", got)
	}
}

func TestRolloutWatchInterrupted(t *testing.T) {
	t.Parallel()
	_, srv := newFakeAPI(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // Ctrl-C before the first answer
	var stdout, stderr bytes.Buffer
	env := fleetEnv(srv)
	code := Run(ctx, []string{"rollout", "watch", "dep_0001"}, func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
	if code != exitInterrupted || stderr.Len() != 0 {
		t.Errorf("interrupted rollout watch: exit %d, stderr %q, want %d and nothing", code, stderr.String(), exitInterrupted)
	}
}

func TestRolloutErrors(t *testing.T) {
	t.Parallel()
	_, srv := newFakeAPI(t)
	env := fleetEnv(srv)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"rollout", "create", "--release-id", "r", "--group", "g", "--limit", "type:gw"}, `rampart: --limit "type:gw": want KEY=N, like type:gw=10 or region:eu=50` + "\n"},
		{[]string{"rollout", "create", "--release-id", "r", "--group", "g", "--limit", "=3"}, `rampart: --limit "=3": want KEY=N, like type:gw=10 or region:eu=50` + "\n"},
		{[]string{"rollout", "create", "--release-id", "r", "--group", "g", "--min-interval", "168h"}, `rampart: --min-interval "168h": want DEVICE-TYPE=DURATION, like gw=168h` + "\n"},
		{[]string{"rollout", "create", "--release-id", "r", "--group", "g", "--deadline", "soon"}, `rampart: --deadline "soon": want an RFC 3339 time like 2026-06-01T02:00:00Z or a duration like 72h` + "\n"},
		{[]string{"rollout", "pause", "dep_done"}, "rampart: pause deployment dep_done: deployment is finished already (HTTP 409)\n"},
		{[]string{"rollout", "show"}, "rampart: accepts 1 arg(s), received 0; usage: rampart rollout show DEPLOYMENT [flags]\n"},
		{[]string{"rollout", "watch", "dep_0001", "--interval", "0s"}, "rampart: --interval must be positive\n"},
		{[]string{"metrics", "delivery", "--days", "3", "--since", "2026-01-01T00:00:00Z"}, "rampart: give --since or --days, not both\n"},
		{[]string{"metrics", "delivery", "--since", "January"}, `rampart: --since "January": want an RFC 3339 time like 2026-05-01T00:00:00Z` + "\n"},
	} {
		r := runCLI(t, env, tt.args...)
		if r.code != 1 || r.stdout != "" || r.stderr != tt.want {
			t.Errorf("rampart %s: exit %d, stdout %q, stderr %q, want 1 and %q", strings.Join(tt.args, " "), r.code, r.stdout, r.stderr, tt.want)
		}
	}
}

func TestParseDeadline(t *testing.T) {
	t.Parallel()
	now := *fixedTime("2026-05-01T12:00:00Z")
	for in, want := range map[string]string{
		"":                          "",
		"72h":                       "2026-05-04T12:00:00Z",
		"2026-06-01T02:00:00+02:00": "2026-06-01T00:00:00Z",
	} {
		if got, err := parseDeadline(in, now); err != nil || got != want {
			t.Errorf("parseDeadline(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"-1h", "0s", "tomorrow", "2026-06-01"} {
		if got, err := parseDeadline(in, now); err == nil {
			t.Errorf("parseDeadline(%q) = %q, want an error", in, got)
		}
	}
}

func TestBar(t *testing.T) {
	t.Parallel()
	tests := []struct {
		states map[string]int
		total  int
		want   string
	}{
		{nil, 0, "[                              ]"},
		{map[string]int{"scheduled": 10}, 10, "[..............................]"},
		{map[string]int{"success": 10}, 10, "[##############################]"},
		{map[string]int{"success": 5, "failure": 1, "installing": 2, "scheduled": 2}, 10, "[###############xxx>>>>>>......]"},
		// One failure in a thousand still shows.
		{map[string]int{"success": 999, "rolled-back": 1}, 1000, "[#############################x]"},
		{map[string]int{"success": 1, "cancelled": 1}, 4, "[#######--------               ]"},
	}
	for _, tt := range tests {
		if got := bar(tt.states, tt.total); got != tt.want || len(got) != barWidth+2 {
			t.Errorf("bar(%v, %d) = %q, want %q", tt.states, tt.total, got, tt.want)
		}
	}
}
