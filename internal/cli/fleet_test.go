package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/api"
)

// updateGolden rewrites the golden files under testdata/ instead of comparing with them.
var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden")

// These tests run the real command line against a stand-in of the management API that
// serves fixed data, so the table and JSON output is deterministic. The end-to-end tests run
// the same commands against the real server.

const goodToken = "rmp_good"

// recorded is one request the fake API received.
type recorded struct {
	Method, Path, Query, Auth string
	Body                      map[string]any
}

// fakeAPI serves a small fixed fleet in the shape of internal/api.
type fakeAPI struct {
	t   testing.TB
	mu  sync.Mutex
	got []recorded
	// devices in listing order; the list is served in pages of pageSize.
	devices  []api.Device
	pageSize int
}

func fixedTime(s string) *time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return &t
}

func newFakeAPI(t testing.TB) (*fakeAPI, string) {
	t.Helper()
	now := time.Now()
	minutesAgo := now.Add(-3*time.Minute - 10*time.Second)
	daysAgo := now.Add(-50 * time.Hour)
	f := &fakeAPI{t: t, pageSize: 2, devices: []api.Device{
		{
			ID: "dev_0001", Serial: "SN-0001", MAC: "02:00:00:00:00:01", DeviceType: "acme-gw", HWRevision: "B2",
			Status: "accepted", PublicKey: "MCowBQYDK2VwAyEA", KeyFingerprint: "SHA256:abcdef0123456789",
			FirmwareVersion: "2.4.1", OS: "Yocto 4.0", Kernel: "5.15.0", Hostname: "gw-0001",
			Interfaces: []api.NetInterface{
				{Name: "eth0", MAC: "02:00:00:00:00:01", Addrs: []string{"10.0.0.5/24", "fe80::1/64"}},
				{Name: "wlan0"},
			},
			Attributes:   map[string]string{"site": "berlin", "rack": "r7"},
			Tags:         []string{"prod", "eu"},
			PackageCount: 312,
			FirstSeen:    fixedTime("2026-01-02T03:04:05Z"), LastSeen: &minutesAgo,
			CreatedAt: *fixedTime("2026-01-01T00:00:00Z"), UpdatedAt: *fixedTime("2026-02-03T04:05:06Z"),
		},
		{
			ID: "dev_0002", Serial: "SN-0002", DeviceType: "acme-gw", Status: "pending", Tags: []string{},
			CreatedAt: *fixedTime("2026-01-01T00:00:00Z"), UpdatedAt: *fixedTime("2026-01-01T00:00:00Z"),
		},
		{
			ID: "dev_0003", Serial: "SN-0001", DeviceType: "acme-sensor", Status: "accepted", FirmwareVersion: "1.0",
			CloneSuspect: true, KeyRevoked: true, Tags: []string{"lab"}, LastSeen: &daysAgo,
			CreatedAt: *fixedTime("2026-01-01T00:00:00Z"), UpdatedAt: *fixedTime("2026-01-01T00:00:00Z"),
		},
	}}
	mux := http.NewServeMux()
	f.routes(mux)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := recorded{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization")}
		if r.ContentLength != 0 && r.Method != http.MethodGet {
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s %s: Content-Type %q, want application/json", r.Method, r.URL.Path, ct)
			}
			if err := json.NewDecoder(r.Body).Decode(&rec.Body); err != nil {
				t.Errorf("%s %s: decode body: %v", r.Method, r.URL.Path, err)
			}
		}
		f.mu.Lock()
		f.got = append(f.got, rec)
		f.mu.Unlock()
		if rec.Auth != "Bearer "+goodToken {
			writeTestJSON(w, http.StatusUnauthorized, api.Error{Error: "unknown API token", RequestID: "req-auth"})
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv.URL
}

// requests returns what the fake received so far.
func (f *fakeAPI) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

func writeTestJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter, what string) {
	writeTestJSON(w, http.StatusNotFound, api.Error{Error: what + ": not found", RequestID: "req-404"})
}

func (f *fakeAPI) device(id string) *api.Device {
	for i := range f.devices {
		if f.devices[i].ID == id {
			return &f.devices[i]
		}
	}
	return nil
}

func (f *fakeAPI) routes(mux *http.ServeMux) {
	p := api.Prefix
	mux.HandleFunc("GET "+p+"/devices", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("filter") == "type ==" {
			// Like a CEL syntax error: the caret line makes it multi-line.
			writeTestJSON(w, http.StatusBadRequest, api.Error{Error: "filter: Syntax error: mismatched input '<EOF>'\n | type ==\n | .......^"})
			return
		}
		page := f.page(r.URL.Query().Get("cursor"))
		writeTestJSON(w, http.StatusOK, page)
	})
	mux.HandleFunc("GET "+p+"/devices/{id}", func(w http.ResponseWriter, r *http.Request) {
		d := f.device(r.PathValue("id"))
		if d == nil {
			notFound(w, "device "+r.PathValue("id"))
			return
		}
		writeTestJSON(w, http.StatusOK, d)
	})
	for verb, status := range map[string]string{"accept": "accepted", "reject": "rejected", "decommission": "decommissioned"} {
		mux.HandleFunc("POST "+p+"/devices/{id}/"+verb, func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			defer f.mu.Unlock()
			d := f.device(r.PathValue("id"))
			if d == nil {
				notFound(w, "device "+r.PathValue("id"))
				return
			}
			d.Status = status
			writeTestJSON(w, http.StatusOK, d)
		})
	}
	mux.HandleFunc("POST "+p+"/devices/{id}/tags", func(w http.ResponseWriter, r *http.Request) {
		d := *f.device(r.PathValue("id"))
		d.Tags = []string{"eu", "canary"}
		writeTestJSON(w, http.StatusOK, d)
	})
	mux.HandleFunc("POST "+p+"/devices/{id}/revoke-key", func(w http.ResponseWriter, r *http.Request) {
		d := *f.device(r.PathValue("id"))
		d.KeyRevoked = true
		writeTestJSON(w, http.StatusOK, d)
	})
	mux.HandleFunc("POST "+p+"/devices/preauthorize", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusCreated, api.Device{ID: "dev_new", Serial: "SN-9", DeviceType: "acme-gw", Status: "preauthorized", KeyFingerprint: "SHA256:new", Tags: []string{}})
	})
	mux.HandleFunc("GET "+p+"/devices/{id}/packages", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusOK, api.PackageList{Packages: []api.Package{
			{Name: "busybox", Version: "1.36.1-r0", Arch: "armv7", Source: "opkg", PURL: "pkg:opkg/busybox@1.36.1-r0"},
			{Name: "openssl", Version: "3.0.13", Source: "opkg"},
		}})
	})
	mux.HandleFunc("GET "+p+"/devices/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusOK, api.EventList{Events: []api.Event{
			{Kind: "boot", Level: "info", Message: "booted", Data: map[string]string{"slot": "b", "reason": "update"}, At: *fixedTime("2026-02-03T04:05:06Z")},
		}})
	})
	mux.HandleFunc("GET "+p+"/groups", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusOK, api.GroupList{Groups: []api.Group{
			{Name: "canary", Description: "first wave"},
			{Name: "gateways", Filter: `type == "acme-gw"`, Dynamic: true},
		}})
	})
	mux.HandleFunc("POST "+p+"/groups", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusCreated, api.Group{Name: "gateways", Filter: `type == "acme-gw"`, Dynamic: true})
	})
	mux.HandleFunc("GET "+p+"/groups/{name}", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusOK, api.Group{Name: r.PathValue("name"), Description: "first wave", CreatedAt: *fixedTime("2026-01-01T00:00:00Z")})
	})
	mux.HandleFunc("DELETE "+p+"/groups/{name}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("POST "+p+"/groups/{name}/members", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") == "gateways" {
			writeTestJSON(w, http.StatusConflict, api.Error{Error: "group gateways is dynamic; its members follow its filter"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET "+p+"/groups/{name}/devices", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusOK, f.page(r.URL.Query().Get("cursor")))
	})
	mux.HandleFunc("GET "+p+"/enroll-tokens", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusOK, api.EnrollTokenList{Tokens: []api.EnrollToken{
			{ID: "etk_1", MaxUses: 10, Uses: 3, ExpiresAt: time.Now().Add(time.Hour), DeviceType: "acme-gw", Tags: []string{"prod"}},
			{ID: "etk_2", MaxUses: 1, Uses: 0, ExpiresAt: time.Now().Add(time.Hour), RevokedAt: fixedTime("2026-01-01T00:00:00Z")},
		}})
	})
	mux.HandleFunc("POST "+p+"/enroll-tokens", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusCreated, api.EnrollToken{ID: "etk_new", MaxUses: 50, ExpiresAt: *fixedTime("2026-03-01T00:00:00Z"), Secret: "rmpe_s3cret"})
	})
	mux.HandleFunc("DELETE "+p+"/enroll-tokens/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET "+p+"/tokens", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusOK, api.TokenList{Tokens: []api.Token{
			{ID: "tok_1", Name: "ci", Role: "releaser", CreatedAt: *fixedTime("2026-01-01T00:00:00Z")},
		}})
	})
	mux.HandleFunc("POST "+p+"/tokens", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, http.StatusCreated, api.Token{ID: "tok_new", Name: "ci", Role: "viewer", Secret: "rmp_n3w"})
	})
	mux.HandleFunc("DELETE "+p+"/tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		notFound(w, "API token "+r.PathValue("id"))
	})
	rolloutRoutes(mux)
}

// page serves the devices in pages, the cursor being the index of the first device.
func (f *fakeAPI) page(cursor string) api.DeviceList {
	f.mu.Lock()
	defer f.mu.Unlock()
	start := 0
	if cursor != "" {
		fmt.Sscanf(cursor, "c%d", &start)
	}
	end := min(start+f.pageSize, len(f.devices))
	out := api.DeviceList{Devices: slices.Clone(f.devices[start:end])}
	if end < len(f.devices) {
		out.Next = fmt.Sprintf("c%d", end)
	}
	return out
}

// result is what one run of the command line did.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the command line with an environment of only env's entries.
func runCLI(t testing.TB, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	getenv := func(k string) string { return env[k] }
	code := Run(t.Context(), args, getenv, strings.NewReader(""), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// fleetEnv is the environment of a user pointed at srv with a good token and no config file.
func fleetEnv(srv string) map[string]string {
	return map[string]string{"RAMPART_SERVER": srv, "RAMPART_TOKEN": goodToken, "HOME": "/nonexistent"}
}

func mustRun(t testing.TB, env map[string]string, args ...string) string {
	t.Helper()
	r := runCLI(t, env, args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("rampart %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

func checkGolden(t testing.TB, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestDeviceLsTable(t *testing.T) {
	t.Parallel()
	_, srv := newFakeAPI(t)
	env := fleetEnv(srv)
	checkGolden(t, "device_ls", mustRun(t, env, "device", "ls", "--all"))

	r := runCLI(t, env, "device", "ls")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 3 {
		t.Errorf("device ls (one page) = exit %d\n%s, want a header and two devices", r.code, r.stdout)
	}
	if want := "more devices: run again with --cursor c2, or with --all\n"; r.stderr != want {
		t.Errorf("device ls (one page) stderr = %q, want %q", r.stderr, want)
	}
}

func TestDeviceLsJSON(t *testing.T) {
	t.Parallel()
	fake, srv := newFakeAPI(t)
	env := fleetEnv(srv)
	tests := []struct {
		args     []string
		wantIDs  string
		wantNext string
	}{
		{[]string{"device", "ls", "-o", "json"}, "dev_0001,dev_0002", "c2"},
		{[]string{"device", "ls", "-o", "json", "--cursor", "c2"}, "dev_0003", ""},
		{[]string{"device", "ls", "--output=json", "--all"}, "dev_0001,dev_0002,dev_0003", ""},
		{[]string{"group", "devices", "canary", "-o", "json", "--all"}, "dev_0001,dev_0002,dev_0003", ""},
	}
	for _, tt := range tests {
		out := mustRun(t, env, tt.args...)
		var got api.DeviceList
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("rampart %v: output is not an api.DeviceList: %v\n%s", tt.args, err, out)
		}
		var ids []string
		for _, d := range got.Devices {
			ids = append(ids, d.ID)
		}
		if strings.Join(ids, ",") != tt.wantIDs || got.Next != tt.wantNext {
			t.Errorf("rampart %v = %v next %q, want %s next %q", tt.args, ids, got.Next, tt.wantIDs, tt.wantNext)
		}
	}
	// The JSON is the API's own: a device round-trips without loss.
	var got api.DeviceList
	if err := json.Unmarshal([]byte(mustRun(t, env, "device", "ls", "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	want := fake.page("")
	if !jsonEqual(t, got, want) {
		t.Errorf("device ls -o json lost data:\ngot  %+v\nwant %+v", got, want)
	}
}

func jsonEqual(t testing.TB, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

func TestDeviceLsSendsQuery(t *testing.T) {
	t.Parallel()
	fake, srv := newFakeAPI(t)
	r := runCLI(t, fleetEnv(srv), "device", "ls", "--status", "accepted", "--type", "acme-gw", "--tag", "prod",
		"--group", "canary", "--filter", `"eu" in tags`, "--limit", "2")
	if r.code != 0 {
		t.Fatalf("device ls with every selector: exit %d, stderr %q", r.code, r.stderr)
	}
	reqs := fake.requests()
	want := "filter=%22eu%22+in+tags&group=canary&limit=2&status=accepted&tag=prod&type=acme-gw"
	if len(reqs) != 1 || reqs[0].Query != want {
		t.Errorf("device ls sent %+v, want one request with query %s", reqs, want)
	}
}

func TestDeviceShow(t *testing.T) {
	t.Parallel()
	fake, srv := newFakeAPI(t)
	fake.devices[0].LastSeen = fixedTime("2026-02-03T04:05:00Z") // show prints it exactly
	env := fleetEnv(srv)
	checkGolden(t, "device_show", mustRun(t, env, "device", "show", "dev_0001"))
	checkGolden(t, "device_show_sparse", mustRun(t, env, "device", "show", "dev_0002"))
	if out := mustRun(t, env, "device", "show", "dev_0003"); !strings.Contains(out, "Key:            (revoked)\nClone suspect:  yes\n") {
		t.Errorf("device show of a revoked clone suspect:\n%s\nwant the key marked revoked and the clone flagged", out)
	}

	var got api.Device
	if err := json.Unmarshal([]byte(mustRun(t, env, "device", "show", "dev_0001", "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, got, fake.devices[0]) {
		t.Errorf("device show -o json = %+v, want %+v", got, fake.devices[0])
	}
}

func TestDeviceStatusSeveral(t *testing.T) {
	t.Parallel()
	fake, srv := newFakeAPI(t)
	r := runCLI(t, fleetEnv(srv), "device", "accept", "dev_0002", "dev_nope", "dev_0003")
	if r.code != 1 {
		t.Errorf("device accept with one unknown ID: exit %d, want 1", r.code)
	}
	if want := "dev_0002: accepted\ndev_0003: accepted\n"; r.stdout != want {
		t.Errorf("device accept stdout = %q, want %q", r.stdout, want)
	}
	wantErr := "rampart: device dev_nope: not found (HTTP 404)\nrampart: accept: 1 of 3 failed\n"
	if r.stderr != wantErr {
		t.Errorf("device accept stderr = %q, want %q", r.stderr, wantErr)
	}
	if got := len(fake.requests()); got != 3 {
		t.Errorf("device accept made %d requests, want 3 (one failure must not stop the rest)", got)
	}

	out := mustRun(t, fleetEnv(srv), "device", "decommission", "dev_0001", "-o", "json")
	var list api.DeviceList
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Devices) != 1 || list.Devices[0].Status != "decommissioned" {
		t.Errorf("device decommission -o json = %s (%v), want one decommissioned device", out, err)
	}
}

// TestCommands checks what each command sends and the gist of what it prints.
func TestCommands(t *testing.T) {
	t.Parallel()
	keyFile := filepath.Join(t.TempDir(), "device.pub")
	if err := os.WriteFile(keyFile, []byte("  MCowBQYDK2VwAyEAkey=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args       []string
		wantReq    string // "METHOD path[?query] body-json"
		wantStdout []string
	}{
		{[]string{"device", "tag", "dev_0001", "--add", "canary", "--remove", "prod"},
			`POST /api/v1/devices/dev_0001/tags {"add":["canary"],"remove":["prod"]}`, []string{"dev_0001: tags eu, canary"}},
		{[]string{"device", "revoke-key", "dev_0001"},
			`POST /api/v1/devices/dev_0001/revoke-key`, []string{"dev_0001: key SHA256:abcdef0123456789 revoked"}},
		{[]string{"device", "preauthorize", "--serial", "SN-9", "--type", "acme-gw", "--public-key-file", keyFile, "--tag", "a,b", "--attr", "site=x"},
			`POST /api/v1/devices/preauthorize {"attributes":{"site":"x"},"device_type":"acme-gw","public_key":"MCowBQYDK2VwAyEAkey=","serial":"SN-9","tags":["a","b"]}`,
			[]string{"dev_new: preauthorized acme-gw SN-9, key SHA256:new"}},
		{[]string{"device", "packages", "dev_0001"},
			`GET /api/v1/devices/dev_0001/packages`, []string{"NAME     VERSION    ARCH   SOURCE  PURL", "openssl  3.0.13     -      opkg    -"}},
		{[]string{"device", "events", "dev_0001", "--limit", "5"},
			`GET /api/v1/devices/dev_0001/events?limit=5`, []string{"2026-02-03T04:05:06Z  info   boot  booted   reason=update slot=b"}},
		{[]string{"group", "ls"},
			`GET /api/v1/groups`, []string{"gateways  dynamic  type == \"acme-gw\"  -"}},
		{[]string{"group", "create", "gateways", "--filter", `type == "acme-gw"`},
			`POST /api/v1/groups {"dynamic":false,"filter":"type == \"acme-gw\"","name":"gateways"}`, []string{"created dynamic group gateways"}},
		{[]string{"group", "show", "canary"},
			`GET /api/v1/groups/canary`, []string{"Kind:         static", "Created:      2026-01-01T00:00:00Z"}},
		{[]string{"group", "rm", "canary"},
			`DELETE /api/v1/groups/canary`, []string{"deleted group canary"}},
		{[]string{"group", "add", "canary", "dev_0001", "dev_0002"},
			`POST /api/v1/groups/canary/members {"add":["dev_0001","dev_0002"]}`, []string{"added 2 device(s) to group canary"}},
		{[]string{"group", "remove", "canary", "dev_0001"},
			`POST /api/v1/groups/canary/members {"remove":["dev_0001"]}`, []string{"removed 1 device(s) from group canary"}},
		{[]string{"enroll-token", "create", "--max-uses", "50", "--ttl", "24h", "--type", "acme-gw", "--tag", "prod", "--description", "line 3"},
			`POST /api/v1/enroll-tokens {"description":"line 3","device_type":"acme-gw","max_uses":50,"tags":["prod"],"ttl":"24h0m0s"}`,
			[]string{"Created enrollment token etk_new: 50 use(s), expires 2026-03-01T00:00:00Z.", "\n    rmpe_s3cret\n", "shown only now"}},
		{[]string{"enroll-token", "ls"},
			`GET /api/v1/enroll-tokens`, []string{"etk_1  active   3/10  acme-gw  prod", "etk_2  revoked  0/1"}},
		{[]string{"enroll-token", "revoke", "etk_1"},
			`DELETE /api/v1/enroll-tokens/etk_1`, []string{"revoked enrollment token etk_1"}},
		{[]string{"token", "create", "--name", "ci", "--role", "viewer", "--ttl", "720h"},
			`POST /api/v1/tokens {"name":"ci","role":"viewer","ttl":"720h0m0s"}`, []string{"Created API token tok_new (ci, role viewer), never expires.", "\n    rmp_n3w\n"}},
		{[]string{"token", "ls"},
			`GET /api/v1/tokens`, []string{"tok_1  ci    releaser  active  2026-01-01T00:00:00Z  never"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[:2], "_"), func(t *testing.T) {
			t.Parallel()
			fake, srv := newFakeAPI(t)
			out := mustRun(t, fleetEnv(srv), tt.args...)
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

func TestSecretsInJSON(t *testing.T) {
	t.Parallel()
	_, srv := newFakeAPI(t)
	env := fleetEnv(srv)
	var et api.EnrollToken
	if err := json.Unmarshal([]byte(mustRun(t, env, "enroll-token", "create", "--max-uses", "1", "--ttl", "1h", "-o", "json")), &et); err != nil || et.Secret != "rmpe_s3cret" {
		t.Errorf("enroll-token create -o json = %+v (%v), want the secret", et, err)
	}
	var tok api.Token
	if err := json.Unmarshal([]byte(mustRun(t, env, "token", "create", "--name", "ci", "--role", "viewer", "-o", "json")), &tok); err != nil || tok.Secret != "rmp_n3w" {
		t.Errorf("token create -o json = %+v (%v), want the secret", tok, err)
	}
}

// TestErrorsAreOneLine checks that every failure is one "rampart: ..." line and exit code 1.
func TestErrorsAreOneLine(t *testing.T) {
	t.Parallel()
	_, srv := newFakeAPI(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	noToken := map[string]string{"RAMPART_SERVER": srv, "HOME": "/nonexistent"}
	badToken := map[string]string{"RAMPART_SERVER": srv, "RAMPART_TOKEN": "rmp_bad", "HOME": "/nonexistent"}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // the whole stderr, or its prefix when it ends in "..."
	}{
		{"no token", noToken, []string{"device", "ls"}, "rampart: no API token: set RAMPART_TOKEN or run with --token\n"},
		{"bad token", badToken, []string{"device", "ls"}, "rampart: unknown API token (HTTP 401)\n"},
		{"not found", fleetEnv(srv), []string{"device", "show", "dev_x"}, "rampart: device dev_x: not found (HTTP 404)\n"},
		{"not found without the ID", fleetEnv(srv), []string{"token", "revoke", "tok_x"}, "rampart: API token tok_x: not found (HTTP 404)\n"},
		{"conflict", fleetEnv(srv), []string{"group", "add", "gateways", "dev_0001"}, "rampart: group gateways is dynamic; its members follow its filter (HTTP 409)\n"},
		{"multi-line server error", fleetEnv(srv), []string{"device", "ls", "--filter", "type =="}, "rampart: filter: Syntax error: mismatched input '<EOF>' | type == | .......^ (HTTP 400)\n"},
		{"server down", fleetEnv(deadURL), []string{"group", "ls"}, "rampart: list groups: Get \"" + deadURL + "/api/v1/groups\": ..."},
		{"bad output", fleetEnv(srv), []string{"device", "ls", "-o", "yaml"}, "rampart: config: output \"yaml\" is not table or json: ..."},
		{"missing argument", fleetEnv(srv), []string{"device", "show"}, "rampart: accepts 1 arg(s), received 0; usage: rampart device show ID [flags]\n"},
		{"unknown subcommand", fleetEnv(srv), []string{"device", "frobnicate"}, "rampart: unknown command \"frobnicate\" for \"rampart device\"\n"},
		{"missing flag", fleetEnv(srv), []string{"enroll-token", "create", "--ttl", "1h"}, "rampart: required flag(s) \"max-uses\" not set\n"},
		{"nothing to tag", fleetEnv(srv), []string{"device", "tag", "dev_0001"}, "rampart: nothing to do: give --add or --remove\n"},
		{"missing config file", fleetEnv(srv), []string{"group", "ls", "--config", "/nonexistent/cli.yaml"}, "rampart: config file: open /nonexistent/cli.yaml: ..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, tt.env, tt.args...)
			if r.code != 1 {
				t.Errorf("rampart %s: exit %d, want 1", strings.Join(tt.args, " "), r.code)
			}
			if r.stdout != "" {
				t.Errorf("rampart %s: stdout %q, want nothing", strings.Join(tt.args, " "), r.stdout)
			}
			if strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
				t.Errorf("rampart %s: stderr %q, want exactly one line", strings.Join(tt.args, " "), r.stderr)
			}
			if prefix, ok := strings.CutSuffix(tt.want, "..."); ok {
				if !strings.HasPrefix(r.stderr, prefix) {
					t.Errorf("rampart %s: stderr %q, want it to start with %q", strings.Join(tt.args, " "), r.stderr, prefix)
				}
			} else if r.stderr != tt.want {
				t.Errorf("rampart %s: stderr %q, want %q", strings.Join(tt.args, " "), r.stderr, tt.want)
			}
		})
	}
}

// TestConnectionSettings checks the order: defaults < config file < environment < flags.
func TestConnectionSettings(t *testing.T) {
	t.Parallel()
	fake, srv := newFakeAPI(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cli.yaml")
	if err := os.WriteFile(cfg, []byte("server: "+srv+"\ntoken: "+goodToken+"\noutput: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	xdg := filepath.Join(dir, "xdg")
	if err := os.MkdirAll(filepath.Join(xdg, "rampart"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(xdg, "rampart", "cli.yaml"), []byte("server: "+srv+"\ntoken: "+goodToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantAuth string
		wantJSON bool
	}{
		{"default config file", map[string]string{"XDG_CONFIG_HOME": xdg}, []string{"group", "ls"}, "Bearer " + goodToken, false},
		{"named config file", nil, []string{"group", "ls", "--config", cfg}, "Bearer " + goodToken, true},
		{"RAMPART_CLI_CONFIG", map[string]string{"RAMPART_CLI_CONFIG": cfg}, []string{"group", "ls"}, "Bearer " + goodToken, true},
		{"env token over file", map[string]string{"RAMPART_CLI_CONFIG": cfg, "RAMPART_TOKEN": "rmp_env"}, []string{"group", "ls"}, "Bearer rmp_env", false},
		{"env output over file", map[string]string{"RAMPART_CLI_CONFIG": cfg, "RAMPART_OUTPUT": "table"}, []string{"group", "ls"}, "Bearer " + goodToken, false},
		{"flags over env", map[string]string{"RAMPART_SERVER": "http://127.0.0.1:1", "RAMPART_TOKEN": "rmp_env", "RAMPART_OUTPUT": "yaml", "HOME": "/nonexistent"},
			[]string{"group", "ls", "--server", srv, "--token", goodToken, "-o", "json"}, "Bearer " + goodToken, true},
	}
	for _, tt := range tests {
		before := len(fake.requests())
		r := runCLI(t, tt.env, tt.args...)
		reqs := fake.requests()
		if len(reqs) != before+1 {
			t.Errorf("%s: made %d requests to the server, want 1 (stderr %q)", tt.name, len(reqs)-before, r.stderr)
			continue
		}
		if got := reqs[before].Auth; got != tt.wantAuth {
			t.Errorf("%s: Authorization = %q, want %q", tt.name, got, tt.wantAuth)
		}
		if isJSON := strings.HasPrefix(r.stdout, "{"); isJSON != tt.wantJSON {
			t.Errorf("%s: printed %q, want JSON %v", tt.name, r.stdout, tt.wantJSON)
		}
	}
}

func TestAgo(t *testing.T) {
	t.Parallel()
	now := *fixedTime("2026-05-01T12:00:00Z")
	at := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	tests := []struct {
		t    *time.Time
		want string
	}{
		{nil, "never"},
		{at(10 * time.Second), "just now"},
		{at(3*time.Minute + 59*time.Second), "3m ago"},
		{at(5 * time.Hour), "5h ago"},
		{at(47 * time.Hour), "47h ago"},
		{at(72 * time.Hour), "3d ago"},
		{at(-time.Hour), "in the future"},
	}
	for _, tt := range tests {
		if got := ago(tt.t, now); got != tt.want {
			t.Errorf("ago(%v, %v) = %q, want %q", tt.t, now, got, tt.want)
		}
	}
}
