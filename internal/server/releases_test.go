package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/blob/s3/s3test"
	"github.com/rampart-iot/rampart/internal/nativeproto"
)

func TestReleaseLifecycle(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	d := newFakeDevice(t, "REL-1")
	d.enroll(t, ts, ts.enrollToken(t, 1, ""))

	var rel api.Release
	if code := ts.mgmt(t, "POST", "/releases", api.ReleaseRequest{Name: "gw-os", Version: "2.0.0", DeviceTypes: []string{"no-such-type"}}, nil); code != 400 {
		t.Errorf("release for an unknown device type = %d, want 400", code)
	}
	if code := ts.mgmt(t, "POST", "/releases", api.ReleaseRequest{Name: "gw-os", Version: "2.0.0", DeviceTypes: []string{d.typ}, Notes: "first"}, &rel); code != 201 {
		t.Fatalf("create release = %d", code)
	}
	if code := ts.mgmt(t, "POST", "/releases", api.ReleaseRequest{Name: "gw-os", Version: "2.0.0", DeviceTypes: []string{d.typ}}, nil); code != 409 {
		t.Errorf("duplicate release = %d, want 409", code)
	}
	if code := ts.mgmt(t, "POST", "/releases/"+rel.ID+"/publish", nil, nil); code != 409 {
		t.Errorf("publish without artifacts = %d, want 409", code)
	}

	image := bytes.Repeat([]byte("firmware-block-"), 70000) // ~1 MB
	sum := sha256.Sum256(image)
	digest := hex.EncodeToString(sum[:])
	upload := func(name, query string, body []byte, headers ...string) (int, []byte) {
		return ts.do(t, "PUT", api.Prefix+"/releases/"+rel.ID+"/artifacts/"+name+query, ts.admin, "application/octet-stream", body, headers...)
	}
	// A corrupt upload (hash mismatch) and a truncated one (fewer bytes than declared) are
	// refused and leave no blob behind.
	if code, b := upload("bad.img", "?role=full&sha256="+hex.EncodeToString(make([]byte, 32)), image); code != 400 {
		t.Errorf("upload with wrong sha256 = %d %s, want 400", code, b)
	}
	if code, b := upload("short.img", "?role=full&size="+"2000000", image); code != 400 {
		t.Errorf("truncated upload = %d %s, want 400", code, b)
	}
	if code, b := upload("x.img", "?role=bogus", image); code != 400 {
		t.Errorf("upload with a bad role = %d %s, want 400", code, b)
	}
	blobs, _ := filepath.Glob(filepath.Join(ts.DataDir(), "artifacts", "sha256", "*", "*"))
	if len(blobs) != 0 {
		t.Errorf("refused uploads left blobs: %v", blobs)
	}
	var art api.Artifact
	code, b := upload("gw-os-2.0.0.img", "?role=full&sha256="+digest, image)
	if code != 201 {
		t.Fatalf("upload = %d %s", code, b)
	}
	if err := jsonUnmarshal(b, &art); err != nil || art.SHA256 != digest || art.Size != int64(len(image)) {
		t.Errorf("artifact = %+v (%v), want sha256 %s size %d", art, err, digest, len(image))
	}
	stored, err := os.ReadFile(filepath.Join(ts.DataDir(), "artifacts", "sha256", digest[:2], digest))
	if err != nil || !bytes.Equal(stored, image) {
		t.Errorf("stored blob differs from the upload (%v)", err)
	}

	sbomDoc := []byte(`{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":"gw-os-2.0.0",
		"documentNamespace":"https://example.com/gw-os-2.0.0","creationInfo":{"created":"2026-11-24T00:00:00Z","creators":["Tool: test"]},
		"packages":[{"SPDXID":"SPDXRef-openssl","name":"openssl","versionInfo":"3.0.15-1~deb12u1","downloadLocation":"NOASSERTION",
		"externalRefs":[{"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl","referenceLocator":"pkg:deb/debian/openssl@3.0.15-1~deb12u1?arch=arm64"}]}]}`)
	if code, b := ts.do(t, "PUT", api.Prefix+"/releases/"+rel.ID+"/sbom", ts.admin, "application/json", sbomDoc); code != 200 {
		t.Errorf("attach SBOM = %d %s", code, b)
	}
	var comps api.ComponentList
	if code := ts.mgmt(t, "GET", "/releases/"+rel.ID+"/components", nil, &comps); code != 200 || len(comps.Components) != 1 || comps.Components[0].PURL == "" {
		t.Errorf("components = %d %+v", code, comps)
	}
	if code, b := ts.do(t, "PUT", api.Prefix+"/releases/"+rel.ID+"/sbom", ts.admin, "application/json", []byte(`{"bomFormat":"nope"}`)); code != 400 {
		t.Errorf("bad SBOM = %d %s, want 400", code, b)
	}

	if code := ts.mgmt(t, "POST", "/releases/"+rel.ID+"/publish", nil, &rel); code != 200 || rel.State != "published" {
		t.Fatalf("publish = %d %+v", code, rel)
	}
	if code, _ := upload("late.img", "?role=full", image); code != 409 {
		t.Errorf("upload to a published release = %d, want 409", code)
	}
	if code := ts.mgmt(t, "POST", "/releases/"+rel.ID+"/withdraw", nil, &rel); code != 200 || rel.State != "withdrawn" {
		t.Errorf("withdraw = %d %+v", code, rel)
	}
	var list api.ReleaseList
	if code := ts.mgmt(t, "GET", "/releases", nil, &list); code != 200 || len(list.Releases) != 1 || len(list.Releases[0].Artifacts) != 1 {
		t.Errorf("list releases = %d %+v", code, list)
	}
}

// TestReleaseCLI drives the release commands of the real CLI against the real server.
func TestReleaseCLI(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	d := newFakeDevice(t, "RELCLI-1")
	d.enroll(t, ts, ts.enrollToken(t, 1, ""))
	image := filepath.Join(t.TempDir(), "gw-os-3.0.0.img")
	if err := os.WriteFile(image, bytes.Repeat([]byte{0xA5}, 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, ts, args...)
		if code != 0 {
			t.Fatalf("rampart %v = %d: %s", args, code, errOut)
		}
		return out
	}
	var rel api.Release
	if err := jsonUnmarshal([]byte(run("release", "create", "gw-os", "3.0.0", "--type", d.typ, "-o", "json")), &rel); err != nil {
		t.Fatal(err)
	}
	run("release", "upload", rel.ID, image, "--no-progress")
	run("release", "publish", rel.ID)
	if err := jsonUnmarshal([]byte(run("release", "show", rel.ID, "-o", "json")), &rel); err != nil {
		t.Fatal(err)
	}
	if rel.State != "published" || len(rel.Artifacts) != 1 || rel.Artifacts[0].Size != 3<<20 {
		t.Errorf("release after CLI upload and publish = %+v", rel)
	}
	if code, _, errOut := runCLI(t, ts, "release", "upload", rel.ID, image); code == 0 || errOut == "" {
		t.Errorf("upload to a published release succeeded (%d)", code)
	}
}

// TestArtifactDownload: a device downloads an artifact it was granted, resuming with Range
// and revalidating with If-None-Match; another device with the same URL gets 403.
func TestArtifactDownload(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tok := ts.enrollToken(t, 2, "")
	a, b := newFakeDevice(t, "DL-A"), newFakeDevice(t, "DL-B")
	a.enroll(t, ts, tok)
	b.enroll(t, ts, tok)
	var rel api.Release
	ts.mgmt(t, "POST", "/releases", api.ReleaseRequest{Name: "fw", Version: "1.0", DeviceTypes: []string{a.typ}}, &rel)
	image := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	code, body := ts.do(t, "PUT", api.Prefix+"/releases/"+rel.ID+"/artifacts/fw.img?role=full", ts.admin, "application/octet-stream", image)
	if code != 201 {
		t.Fatalf("upload = %d %s", code, body)
	}
	var art api.Artifact
	if err := jsonUnmarshal(body, &art); err != nil {
		t.Fatal(err)
	}
	url := nativeproto.PathArtifacts + art.SHA256 + "?grant="
	grant := ts.Grants.Issue(a.id, art.SHA256, time.Minute)

	code, got := ts.do(t, "GET", url+grant, a.token, "", nil, "Range", "bytes=1000-")
	if code != 206 || !bytes.Equal(got, image[1000:]) {
		t.Errorf("ranged download = %d, %d bytes; want 206 and the rest of the image", code, len(got))
	}
	if code, _ := ts.do(t, "GET", url+grant, a.token, "", nil, "If-None-Match", `"`+art.SHA256+`"`); code != 304 {
		t.Errorf("conditional download = %d, want 304", code)
	}
	if code, got := ts.do(t, "GET", url+grant, a.token, "", nil); code != 200 || !bytes.Equal(got, image) {
		t.Errorf("full download = %d, %d bytes", code, len(got))
	}
	for name, tc := range map[string]struct {
		grant, token string
		want         int
	}{
		"another device's grant": {grant, b.token, 403},
		"no grant":               {"", a.token, 403},
		"tampered grant":         {grant[:len(grant)-2] + "xx", a.token, 403},
		"expired grant":          {ts.Grants.Issue(a.id, art.SHA256, -time.Second), a.token, 403},
		"grant for another blob": {ts.Grants.Issue(a.id, strings.Repeat("0", 64), time.Minute), a.token, 403},
		"no device token":        {grant, "", 401},
	} {
		if code, _ := ts.do(t, "GET", url+tc.grant, tc.token, "", nil); code != tc.want {
			t.Errorf("%s: download = %d, want %d", name, code, tc.want)
		}
	}
	if code, _ := ts.do(t, "GET", nativeproto.PathArtifacts+"..%2F..%2Fetc?grant="+grant, a.token, "", nil); code < 400 || code >= 500 {
		t.Errorf("path traversal digest = %d, want a 4xx", code)
	}
}

// TestArtifactsOnS3 runs the server with artifacts in a real S3 server (versitygw): an
// upload lands in the bucket, and a granted device is redirected to a pre-signed URL that
// serves Range requests without the bytes passing through Rampart.
func TestArtifactsOnS3(t *testing.T) {
	t.Parallel()
	o := s3test.Start(t).Options()
	cfg := testConfig(t)
	cfg.S3Endpoint, cfg.S3Bucket, cfg.S3AccessKey, cfg.S3SecretKey, cfg.S3Prefix, cfg.S3TLS = o.Endpoint, o.Bucket, o.AccessKey, o.SecretKey, o.Prefix, false
	ts := startServer(t, cfg)
	d := newFakeDevice(t, "S3-1")
	d.enroll(t, ts, ts.enrollToken(t, 1, ""))
	var rel api.Release
	ts.mgmt(t, "POST", "/releases", api.ReleaseRequest{Name: "fw", Version: "1.0", DeviceTypes: []string{d.typ}}, &rel)
	image := bytes.Repeat([]byte("s3-firmware-"), 100000)
	code, body := ts.do(t, "PUT", api.Prefix+"/releases/"+rel.ID+"/artifacts/fw.img?role=full", ts.admin, "application/octet-stream", image)
	if code != 201 {
		t.Fatalf("upload to S3 = %d %s", code, body)
	}
	var art api.Artifact
	if err := jsonUnmarshal(body, &art); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", ts.URL+nativeproto.PathArtifacts+art.SHA256+"?grant="+ts.Grants.Issue(d.id, art.SHA256, time.Minute), nil)
	req.Header.Set("Authorization", "Bearer "+d.token)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 302 || loc == "" {
		t.Fatalf("download with S3 = %d, Location %q; want a redirect to a pre-signed URL", resp.StatusCode, loc)
	}
	req, _ = http.NewRequest("GET", loc, nil)
	req.Header.Set("Range", "bytes=5-")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 206 || !bytes.Equal(got, image[5:]) {
		t.Errorf("pre-signed ranged GET = %d, %d bytes", resp.StatusCode, len(got))
	}
}
