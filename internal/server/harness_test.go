package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/config"
	"github.com/rampart-iot/rampart/internal/nativeproto"
	"github.com/rampart-iot/rampart/internal/server"
)

// testServer is a real Rampart server on a loopback port, on SQLite in a temp dir, or on
// PostgreSQL when RAMPART_TEST_POSTGRES is set and the test asks for it.
type testServer struct {
	*server.Server
	URL   string
	admin string
	data  string
}

// DataDir is the server's data directory.
func (ts *testServer) DataDir() string { return ts.data }

func testConfig(t testing.TB) config.Server {
	t.Helper()
	return testConfigAt(t.TempDir())
}

func testConfigAt(data string) config.Server {
	return config.Server{
		Data: data, Listen: "127.0.0.1:0", LogLevel: "error", LogFormat: "text",
		PollInterval: 5 * time.Minute, DeviceTokenTTL: time.Hour, AuthCacheTTL: 10 * time.Second,
		SeenFlush: 50 * time.Millisecond, SchedulerInterval: 50 * time.Millisecond,
	}
}

func newTestServer(t testing.TB) *testServer {
	t.Helper()
	ts := startServer(t, testConfig(t))
	if ts.admin == "" {
		t.Fatal("first start created no admin token")
	}
	return ts
}

func startServer(t testing.TB, cfg config.Server) *testServer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Open(ctx, cfg, log)
	if err != nil {
		t.Fatalf("server.Open: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testServer{Server: srv, URL: "http://" + ln.Addr().String(), admin: string(srv.InitialToken), data: cfg.Data}
}

// do sends a request and returns the status and body.
func (ts *testServer) do(t testing.TB, method, path, token, contentType string, body []byte, headers ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			t.Errorf("%s %s: %d answer without a JSON error body: %q", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, b
}

// mgmt calls the management API as the admin (or the given token) with a JSON body.
func (ts *testServer) mgmt(t testing.TB, method, path string, in, out any, token ...string) int {
	t.Helper()
	tok := ts.admin
	if len(token) > 0 {
		tok = token[0]
	}
	var body []byte
	ct := ""
	if in != nil {
		body, _ = json.Marshal(in)
		ct = "application/json"
	}
	code, b := ts.do(t, method, api.Prefix+path, tok, ct, body)
	if out != nil && code < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return code
}

func (ts *testServer) devices(t testing.TB) []api.Device {
	t.Helper()
	var l api.DeviceList
	if code := ts.mgmt(t, "GET", "/devices?limit=1000", nil, &l); code != 200 {
		t.Fatalf("list devices: %d", code)
	}
	return l.Devices
}

func (ts *testServer) device(t testing.TB, id string) api.Device {
	t.Helper()
	var d api.Device
	if code := ts.mgmt(t, "GET", "/devices/"+id, nil, &d); code != 200 {
		t.Fatalf("get device %s: %d", id, code)
	}
	return d
}

func (ts *testServer) enrollToken(t testing.TB, maxUses int, deviceType string) string {
	t.Helper()
	var et api.EnrollToken
	if code := ts.mgmt(t, "POST", "/enroll-tokens", api.EnrollTokenRequest{MaxUses: maxUses, TTL: "1h", DeviceType: deviceType, Tags: []string{"enrolled-by-token"}}, &et); code != 201 {
		t.Fatalf("create enroll token: %d", code)
	}
	return et.Secret
}

// fakeDevice speaks the native protocol by hand, so tests can also send what a real agent
// never would.
type fakeDevice struct {
	key    ed25519.PrivateKey
	serial string
	typ    string
	id     string
	token  string
}

func newFakeDevice(t testing.TB, serial string) *fakeDevice {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeDevice{key: k, serial: serial, typ: "acme-gw"}
}

func (d *fakeDevice) pub() string {
	return base64.StdEncoding.EncodeToString(d.key.Public().(ed25519.PublicKey))
}

func (ts *testServer) challenge(t testing.TB) string {
	t.Helper()
	code, b := ts.do(t, "POST", nativeproto.PathChallenge, "", "application/json", []byte("{}"))
	if code != 200 {
		t.Fatalf("challenge: %d %s", code, b)
	}
	var c nativeproto.Challenge
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.Challenge
}

func sign(k ed25519.PrivateKey, body []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(k, body))
}

func (d *fakeDevice) enrollBody(t testing.TB, ts *testServer, enrollToken string) []byte {
	t.Helper()
	b, _ := json.Marshal(nativeproto.EnrollRequest{
		Challenge:       ts.challenge(t),
		Identity:        nativeproto.Identity{Serial: d.serial, DeviceType: d.typ, HWRevision: "r2"},
		PublicKey:       d.pub(),
		EnrollmentToken: enrollToken,
	})
	return b
}

// enroll enrolls and returns the HTTP status and answer; it remembers the ID and token.
func (d *fakeDevice) enroll(t testing.TB, ts *testServer, enrollToken string) (int, nativeproto.EnrollResponse) {
	t.Helper()
	body := d.enrollBody(t, ts, enrollToken)
	code, b := ts.do(t, "POST", nativeproto.PathEnroll, "", "application/json", body, nativeproto.SignatureHeader, sign(d.key, body))
	var res nativeproto.EnrollResponse
	if code < 300 {
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		d.id, d.token = res.DeviceID, res.Token
	}
	return code, res
}

func (d *fakeDevice) auth(t testing.TB, ts *testServer) (int, nativeproto.EnrollResponse) {
	t.Helper()
	body, _ := json.Marshal(nativeproto.AuthRequest{Challenge: ts.challenge(t), DeviceID: d.id})
	code, b := ts.do(t, "POST", nativeproto.PathAuth, "", "application/json", body, nativeproto.SignatureHeader, sign(d.key, body))
	var res nativeproto.EnrollResponse
	if code < 300 {
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		d.token = res.Token
	}
	return code, res
}

func (d *fakeDevice) checkIn(t testing.TB, ts *testServer, firmware string) (int, nativeproto.CheckInResponse) {
	t.Helper()
	body, _ := json.Marshal(nativeproto.CheckInRequest{FirmwareVersion: firmware})
	code, b := ts.do(t, "POST", nativeproto.PathCheckIn, d.token, "application/json", body)
	var res nativeproto.CheckInResponse
	if code == 200 {
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
	}
	return code, res
}

// writeFakeRoot makes a device filesystem with os-release and a dpkg database.
func writeFakeRoot(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"etc/os-release":            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
		"proc/sys/kernel/osrelease": "6.1.0-28-arm64\n",
		"proc/sys/kernel/hostname":  "gw-17\n",
		"var/lib/dpkg/status": strings.Join([]string{
			"Package: openssl\nStatus: install ok installed\nArchitecture: arm64\nVersion: 3.0.15-1~deb12u1\n",
			"Package: busybox\nStatus: install ok installed\nArchitecture: arm64\nVersion: 1:1.35.0-4+b3\n",
			"Package: removed-thing\nStatus: deinstall ok config-files\nArchitecture: arm64\nVersion: 1.0\n",
		}, "\n"),
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
