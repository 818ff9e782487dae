package native_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/deployment"
	"github.com/rampart-iot/rampart/internal/deviceapi/native"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/jsonhttp"
	"github.com/rampart-iot/rampart/internal/nativeproto"
	"github.com/rampart-iot/rampart/internal/release"
	"github.com/rampart-iot/rampart/internal/rollout"
	"github.com/rampart-iot/rampart/internal/store/sqlite"
)

// newTestHandler serves the native API over a real SQLite store and enrolls one accepted
// device, returning the handler, the device's key and its bearer token.
func newTestHandler(t testing.TB) (http.Handler, ed25519.PrivateKey, string) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "r.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	secret := bytes.Repeat([]byte{7}, 32)
	f, err := fleet.NewService(fleet.Options{Store: st, Log: log, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	rels := release.NewService(release.Options{Store: st, Log: log})
	deps := deployment.NewService(deployment.Options{Store: st, Fleet: f, Releases: rels, Grants: release.NewGrants(secret, nil), Log: log})
	f.SetWorkSource(deps)
	mux := http.NewServeMux()
	native.New(native.Options{Fleet: f, Deployments: deps, Log: log}).Routes(mux)
	h := jsonhttp.WithRequestID(mux)

	_, key, _ := ed25519.GenerateKey(rand.Reader)
	pub := key.Public().(ed25519.PublicKey)
	if _, err := f.Preauthorize(t.Context(), fleet.Identity{Serial: "FUZZ-1", DeviceType: "t"}, pub, nil, nil); err != nil {
		t.Fatal(err)
	}
	ch, _, err := f.NewChallenge()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(nativeproto.EnrollRequest{Challenge: ch, Identity: nativeproto.Identity{Serial: "FUZZ-1", DeviceType: "t"}, PublicKey: base64.StdEncoding.EncodeToString(pub)})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", nativeproto.PathEnroll, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(nativeproto.SignatureHeader, base64.StdEncoding.EncodeToString(ed25519.Sign(key, body)))
	h.ServeHTTP(rec, req)
	var res nativeproto.EnrollResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || res.Token == "" {
		t.Fatalf("enroll: %d %s", rec.Code, rec.Body)
	}
	// A deployment for the device, so status reports reach a real member.
	now := time.Now()
	r := &release.Release{ID: "rel_fuzz", Name: "fw", Version: "2", DeviceTypes: []string{"t"}, State: release.Published, CreatedAt: now, PublishedAt: now}
	if err := st.CreateRelease(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if err := st.AddArtifact(t.Context(), r.ID, release.Artifact{Name: "fw.img", Role: release.RoleFull, Digest: strings.Repeat("a", 64), Size: 1, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	plan, _ := rollout.ParsePlan("100%")
	c, err := deps.Create(t.Context(), deployment.Spec{Name: "fuzz", ReleaseID: r.ID, Target: deployment.Target{Devices: []string{res.DeviceID}}, Plan: plan})
	if err != nil {
		t.Fatal(err)
	}
	testDeployment = c.Deployment.ID
	return h, key, res.Token
}

var fuzzRoutes = []struct{ method, path string }{
	{"PUT", nativeproto.PathInventory},
	{"POST", nativeproto.PathCheckIn},
	{"POST", nativeproto.PathEvents},
	{"POST", nativeproto.PathEnroll},
	{"POST", nativeproto.PathAuth},
	{"POST", nativeproto.PathRotateKey},
	{"POST", "status"}, // the device's deployment's status path
}

// testDeployment is the ID of the deployment newTestHandler makes for its device.
var testDeployment string

// FuzzDeviceRequest feeds arbitrary bodies, signed by the device's real key, to every
// native endpoint: whatever a device sends, the answer is a 2xx or a 4xx with a JSON error,
// never a 5xx or a crash.
func FuzzDeviceRequest(f *testing.F) {
	for i, name := range []string{"inventory.json", "checkin.json", "events.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), b)
	}
	f.Add(uint8(3), []byte(`{"challenge":"c1.x.y","identity":{"serial":"s","device_type":"t"},"public_key":"AAAA"}`))
	f.Add(uint8(4), []byte(`{"challenge":"c1.x.y","device_id":"dev_1"}`))
	f.Add(uint8(5), []byte(`{"challenge":"c1.x.y","new_public_key":"AAAA"}`))
	f.Add(uint8(6), []byte(`{"state":"downloading","seq":1}`))
	f.Add(uint8(6), []byte(`{"state":"failure","seq":6,"log":"boom"}`))
	h, key, token := newTestHandler(f)
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		if rt.path == "status" {
			rt.path = nativeproto.PathDeployments + testDeployment + "/status"
		}
		req := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		sig := base64.StdEncoding.EncodeToString(ed25519.Sign(key, body))
		req.Header.Set(nativeproto.SignatureHeader, sig)
		req.Header.Set(nativeproto.NewKeySignatureHeader, sig)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s with %q = %d %s", rt.method, rt.path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var e nativeproto.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%d without a JSON error body: %q", rec.Code, rec.Body)
			}
		}
		_, _ = io.Copy(io.Discard, rec.Body)
	})
}
