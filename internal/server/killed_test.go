package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/server"
)

// TestMain lets the test binary double as a server process that a test can kill -9.
func TestMain(m *testing.M) {
	if dir := os.Getenv("RAMPART_TEST_SERVE_DIR"); dir != "" {
		serveForTest(dir)
		return
	}
	os.Exit(m.Run())
}

func serveForTest(dir string) {
	cfg := testConfigAt(filepath.Join(dir, "data"))
	srv, err := server.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	if srv.InitialToken != "" { // only the first start makes one
		if err := os.WriteFile(filepath.Join(dir, "token"), []byte(srv.InitialToken), 0o600); err != nil {
			panic(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "addr"), []byte(ln.Addr().String()), 0o600); err != nil {
		panic(err)
	}
	_ = srv.Serve(context.Background(), ln) // until killed
}

// TestServerKilledMidUpload kills the server process (SIGKILL) while an artifact streams in,
// restarts it on the same data, and finds no half-written blob and no artifact record.
func TestServerKilledMidUpload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "RAMPART_TEST_SERVE_DIR="+dir)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _, _ = child.Process.Wait() })
	var addr []byte
	for deadline := time.Now().Add(20 * time.Second); len(addr) == 0; time.Sleep(20 * time.Millisecond) {
		addr, _ = os.ReadFile(filepath.Join(dir, "addr"))
		if time.Now().After(deadline) {
			t.Fatal("child server did not start")
		}
	}
	token, _ := os.ReadFile(filepath.Join(dir, "token"))
	ts := &testServer{URL: "http://" + string(addr), admin: string(token)}
	d := newFakeDevice(t, "KILL-1")
	d.enroll(t, ts, ts.enrollToken(t, 1, ""))
	var rel api.Release
	if code := ts.mgmt(t, "POST", "/releases", api.ReleaseRequest{Name: "big", Version: "1.0", DeviceTypes: []string{d.typ}}, &rel); code != 201 {
		t.Fatalf("create release = %d", code)
	}

	pr, pw := io.Pipe()
	go func() {
		chunk := []byte(strings.Repeat("firmware", 8192)) // 64 KiB
		for {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
	}()
	req, _ := http.NewRequest("PUT", ts.URL+api.Prefix+"/releases/"+rel.ID+"/artifacts/big.img?role=full", pr)
	req.Header.Set("Authorization", "Bearer "+ts.admin)
	req.Header.Set("Content-Type", "application/octet-stream")
	uploadDone := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		uploadDone <- err
	}()
	incoming := filepath.Join(dir, "data", "artifacts", "incoming")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if dirBytes(incoming) >= 8<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("upload never reached 8 MiB")
		}
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = child.Process.Wait()
	pw.CloseWithError(io.ErrClosedPipe)
	<-uploadDone
	if dirBytes(incoming) == 0 {
		t.Fatal("the kill left no partial upload to clean up; the test proves nothing")
	}

	restarted := startServer(t, testConfigAt(filepath.Join(dir, "data")))
	restarted.admin = ts.admin
	if n := dirBytes(incoming); n != 0 {
		t.Errorf("after restart %d bytes of unfinished uploads remain", n)
	}
	if blobs, _ := filepath.Glob(filepath.Join(dir, "data", "artifacts", "sha256", "*", "*")); len(blobs) != 0 {
		t.Errorf("a killed upload left blobs: %v", blobs)
	}
	var got api.Release
	if code := restarted.mgmt(t, "GET", "/releases/"+rel.ID, nil, &got); code != 200 || len(got.Artifacts) != 0 {
		t.Errorf("release after restart = %d %+v; want it without artifacts", code, got)
	}
}

func dirBytes(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}
