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
	"testing"

	"github.com/rampart-iot/rampart/internal/deviceapi/native"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/jsonhttp"
	"github.com/rampart-iot/rampart/internal/nativeproto"
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
	mux := http.NewServeMux()
	native.New(native.Options{Fleet: f, Log: log}).Routes(mux)
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
	return h, key, res.Token
}

var fuzzRoutes = []struct{ method, path string }{
	{"PUT", nativeproto.PathInventory},
	{"POST", nativeproto.PathCheckIn},
	{"POST", nativeproto.PathEvents},
	{"POST", nativeproto.PathEnroll},
	{"POST", nativeproto.PathAuth},
	{"POST", nativeproto.PathRotateKey},
}

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
	h, key, token := newTestHandler(f)
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
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
