package server_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/agent/fetch"
	"github.com/rampart-iot/rampart/internal/agent/tufclient"
	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/cli"
	"github.com/rampart-iot/rampart/internal/nativeproto"
)

// headerTransport adds the device's token (and a download grant) to every request the TUF
// client makes.
type headerTransport struct {
	token, grant string
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+h.token)
	if h.grant != "" {
		r.Header.Set(nativeproto.GrantHeader, h.grant)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestPublishedReleaseVerifiesEndToEnd publishes a release through the API and has the
// device's real TUF client refresh the server's metadata, find the artifact as a target for
// its device type, and download and verify it; then it shows the same client refusing a
// target meant for another device type and an artifact whose stored bytes were altered.
func TestPublishedReleaseVerifiesEndToEnd(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	d := newFakeDevice(t, "TUF-1")
	d.enroll(t, ts, ts.enrollToken(t, 1, ""))
	var rel api.Release
	ts.mgmt(t, "POST", "/releases", api.ReleaseRequest{Name: "gw-os", Version: "4.1.0", DeviceTypes: []string{d.typ}}, &rel)
	image := bytes.Repeat([]byte("signed-firmware "), 50000)
	code, body := ts.do(t, "PUT", api.Prefix+"/releases/"+rel.ID+"/artifacts/gw-os.img?role=full", ts.admin, "application/octet-stream", image)
	if code != 201 {
		t.Fatalf("upload = %d %s", code, body)
	}
	var art api.Artifact
	if err := jsonUnmarshal(body, &art); err != nil {
		t.Fatal(err)
	}
	if code := ts.mgmt(t, "POST", "/releases/"+rel.ID+"/publish", nil, nil); code != 200 {
		t.Fatalf("publish = %d", code)
	}

	newClient := func(deviceType string) *tufclient.Client {
		state := t.TempDir()
		// Trust on first use of version 1 of the root, as an agent does at enrollment.
		code, root := ts.do(t, "GET", nativeproto.PathTUFMetadata+"1.root.json", d.token, "", nil)
		if code != 200 {
			t.Fatalf("root.json = %d", code)
		}
		if err := os.WriteFile(filepath.Join(state, tufclient.RootFile), root, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := tufclient.New(tufclient.Options{
			MetadataURL: ts.URL + nativeproto.PathTUFMetadata, TargetsURL: ts.URL + nativeproto.PathTUFTargets,
			StateDir: state, DeviceType: deviceType,
			HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: headerTransport{d.token, ts.Grants.Issue(d.id, art.SHA256, time.Minute)}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	path := "releases/gw-os_4.1.0/gw-os.img"
	c := newClient(d.typ)
	ctx := t.Context()
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	info, err := c.Target(ctx, path)
	if err != nil || info.SHA256 != art.SHA256 || info.Version != "4.1.0" {
		t.Fatalf("target = %+v, %v", info, err)
	}
	dest := filepath.Join(t.TempDir(), "image")
	if err := c.Download(ctx, path, dest); err != nil {
		t.Fatalf("download: %v", err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, image) {
		t.Error("downloaded image differs")
	}

	if _, err := newClient("other-type").Target(ctx, path); !errors.Is(err, tufclient.ErrWrongDevice) {
		t.Errorf("target for a device of another type: %v, want ErrWrongDevice", err)
	}

	// The server's storage is tampered with: same name, other bytes. The device refuses.
	blobPath := filepath.Join(ts.DataDir(), "artifacts", "sha256", art.SHA256[:2], art.SHA256)
	evil := bytes.Repeat([]byte("EVIL-firmware!! "), 50000)
	if err := os.Chmod(blobPath, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blobPath, evil, 0o600); err != nil {
		t.Fatal(err)
	}
	dest2 := filepath.Join(t.TempDir(), "image")
	if err := c.Download(ctx, path, dest2); !errors.Is(err, tufclient.ErrMismatch) {
		t.Errorf("download of altered bytes: %v, want ErrMismatch", err)
	}
	if _, err := os.Stat(dest2); !os.IsNotExist(err) {
		t.Error("altered download left a file at the destination")
	}
}

// TestOfflineRootCLI walks the offline-root ceremony with the real CLI: two root key holders,
// threshold 2, the server's repository created before its first start; then a release is
// published and a device verifies it against that root; then the releases role's key and the
// timestamp key are rotated (the latter through another offline signing round).
func TestOfflineRootCLI(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	dir := t.TempDir()
	cmd := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		env := map[string]string{"HOME": dir}
		if code := cli.Run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb); code != 0 {
			t.Fatalf("rampart %v = %d: %s", args, code, errb.String())
		}
		return strings.TrimSpace(out.String())
	}
	k1, k2 := filepath.Join(dir, "root1.key"), filepath.Join(dir, "root2.key")
	pub1 := cmd("tuf", "keygen", "--out", k1)
	pub2 := cmd("tuf", "keygen", "--out", k2)
	unsigned, s1, s2 := filepath.Join(dir, "root.json"), filepath.Join(dir, "root.s1.json"), filepath.Join(dir, "root.s2.json")
	cmd("tuf", "init", "--data", cfg.Data, "--root-key", pub1, "--root-key", pub2, "--threshold", "2", "--out", unsigned)
	cmd("tuf", "sign-root", unsigned, "--key", k1, "--out", s1)
	var out, errb bytes.Buffer
	if code := cli.Run(context.Background(), []string{"tuf", "import-root", "--data", cfg.Data, s1}, func(string) string { return "" }, strings.NewReader(""), &out, &errb); code == 0 {
		t.Fatal("a root signed by 1 of 2 required keys was imported")
	}
	cmd("tuf", "sign-root", s1, "--key", k2, "--out", s2)
	cmd("tuf", "import-root", "--data", cfg.Data, s2)

	ts := startServer(t, cfg)
	d := newFakeDevice(t, "OFF-1")
	d.enroll(t, ts, ts.enrollToken(t, 1, ""))
	var rel api.Release
	ts.mgmt(t, "POST", "/releases", api.ReleaseRequest{Name: "fw", Version: "1.0", DeviceTypes: []string{d.typ}}, &rel)
	image := bytes.Repeat([]byte("offline-root "), 1000)
	code, body := ts.do(t, "PUT", api.Prefix+"/releases/"+rel.ID+"/artifacts/fw.img?role=full", ts.admin, "application/octet-stream", image)
	var art api.Artifact
	if code != 201 || jsonUnmarshal(body, &art) != nil {
		t.Fatalf("upload = %d %s", code, body)
	}
	if code := ts.mgmt(t, "POST", "/releases/"+rel.ID+"/publish", nil, nil); code != 200 {
		t.Fatalf("publish = %d", code)
	}
	state := t.TempDir()
	rootJSON, _ := os.ReadFile(s2) // provisioned at manufacturing
	if err := os.WriteFile(filepath.Join(state, tufclient.RootFile), rootJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := tufclient.New(tufclient.Options{
		MetadataURL: ts.URL + nativeproto.PathTUFMetadata, TargetsURL: ts.URL + nativeproto.PathTUFTargets,
		StateDir: state, DeviceType: d.typ,
		HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: headerTransport{d.token, ts.Grants.Issue(d.id, art.SHA256, time.Minute)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := "releases/fw_1.0/fw.img"
	if err := c.Download(t.Context(), path, filepath.Join(t.TempDir(), "img")); err != nil {
		t.Fatalf("download under the offline root: %v", err)
	}

	// Rotations through the CLI while the server runs (same database).
	cmd("tuf", "rotate", "releases", "--data", cfg.Data)
	newRoot := filepath.Join(dir, "root2.json")
	cmd("tuf", "rotate", "timestamp", "--data", cfg.Data, "--out", newRoot)
	cmd("tuf", "sign-root", newRoot, "--key", k1, "--out", newRoot)
	cmd("tuf", "sign-root", newRoot, "--key", k2, "--out", newRoot)
	cmd("tuf", "import-root", "--data", cfg.Data, newRoot)
	if err := c.Download(t.Context(), path, filepath.Join(t.TempDir(), "img")); err != nil {
		t.Fatalf("download after rotating the releases and timestamp keys: %v", err)
	}
}

// TestDeltaUpdateEndToEnd: the server computes a delta from 1.0 to 2.0 (`release delta`),
// publishes it, and a device on 1.0 rebuilds 2.0 from it, verified against the full image's
// signed digest; a device whose installed image is not the delta's base falls back to the
// full download.
func TestDeltaUpdateEndToEnd(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	d := newFakeDevice(t, "DELTA-1")
	d.enroll(t, ts, ts.enrollToken(t, 1, ""))
	imgA := bytes.Repeat([]byte("version-one firmware block "), 40000)
	imgB := append(bytes.Clone(imgA[:500000]), append([]byte("a patch in the middle"), imgA[500000:]...)...)
	publish := func(version string, img []byte, deltaFrom string) (api.Release, api.Artifact, api.Artifact) {
		t.Helper()
		var rel api.Release
		ts.mgmt(t, "POST", "/releases", api.ReleaseRequest{Name: "fw", Version: version, DeviceTypes: []string{d.typ}}, &rel)
		code, body := ts.do(t, "PUT", api.Prefix+"/releases/"+rel.ID+"/artifacts/fw.img?role=full", ts.admin, "application/octet-stream", img)
		var full, del api.Artifact
		if code != 201 || jsonUnmarshal(body, &full) != nil {
			t.Fatalf("upload %s = %d %s", version, code, body)
		}
		if deltaFrom != "" {
			runOK(t, ts, "release", "delta", rel.ID, "--from", deltaFrom)
			ts.mgmt(t, "GET", "/releases/"+rel.ID, nil, &rel)
			for _, a := range rel.Artifacts {
				if a.Role == "delta" {
					del = a
				}
			}
			if del.Size == 0 || del.Size > int64(len(img))/10 {
				t.Fatalf("delta artifact = %+v; want one much smaller than the %d-byte image", del, len(img))
			}
		}
		if code := ts.mgmt(t, "POST", "/releases/"+rel.ID+"/publish", nil, nil); code != 200 {
			t.Fatalf("publish %s = %d", version, code)
		}
		return rel, full, del
	}
	publish("1.0", imgA, "")
	_, fullB, deltaB := publish("2.0", imgB, "1.0")

	client := func(grants ...string) *tufclient.Client {
		state := t.TempDir()
		_, root := ts.do(t, "GET", nativeproto.PathTUFMetadata+"1.root.json", d.token, "", nil)
		os.WriteFile(filepath.Join(state, tufclient.RootFile), root, 0o600)
		c, err := tufclient.New(tufclient.Options{
			MetadataURL: ts.URL + nativeproto.PathTUFMetadata, TargetsURL: ts.URL + nativeproto.PathTUFTargets,
			StateDir: state, DeviceType: d.typ,
			HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: multiGrant{d.token, grants}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	grantFull := ts.Grants.Issue(d.id, fullB.SHA256, time.Minute)
	grantDelta := ts.Grants.Issue(d.id, deltaB.SHA256, time.Minute)
	req := fetch.Request{FullPath: "releases/fw_2.0/fw.img", DeltaPath: "releases/fw_2.0/" + deltaB.Name,
		Installed: bytes.NewReader(imgA), InstalledSize: int64(len(imgA)), Dest: filepath.Join(t.TempDir(), "fw.img")}
	usedDelta, err := fetch.Image(t.Context(), client(grantFull, grantDelta), req, nil)
	if err != nil || !usedDelta {
		t.Fatalf("fetch via delta = %v, %v; want the delta used", usedDelta, err)
	}
	if got, _ := os.ReadFile(req.Dest); !bytes.Equal(got, imgB) {
		t.Fatal("image rebuilt from the delta differs from 2.0")
	}
	// A device whose installed image is not 1.0 cannot use the delta and falls back.
	req.Installed = bytes.NewReader(imgB)
	req.Dest = filepath.Join(t.TempDir(), "fw.img")
	usedDelta, err = fetch.Image(t.Context(), client(grantFull, grantDelta), req, nil)
	if err != nil || usedDelta {
		t.Fatalf("fetch with the wrong base = %v, %v; want a full download", usedDelta, err)
	}
	if got, _ := os.ReadFile(req.Dest); !bytes.Equal(got, imgB) {
		t.Fatal("full fallback image differs from 2.0")
	}
}

// multiGrant presents the device token and tries each grant: the server picks the grant
// whose artifact is asked for, so the transport sends the one matching the URL's digest.
type multiGrant struct {
	token  string
	grants []string
}

func (m multiGrant) RoundTrip(r *http.Request) (*http.Response, error) {
	var resp *http.Response
	var err error
	for _, g := range append([]string{""}, m.grants...) {
		req := r.Clone(r.Context())
		req.Header.Set("Authorization", "Bearer "+m.token)
		if g != "" {
			req.Header.Set(nativeproto.GrantHeader, g)
		}
		resp, err = http.DefaultTransport.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusForbidden {
			return resp, err
		}
		resp.Body.Close()
	}
	return resp, err
}

func runOK(t *testing.T, ts *testServer, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(t, ts, args...)
	if code != 0 {
		t.Fatalf("rampart %v = %d: %s", args, code, errOut)
	}
	return out
}
