// Package s3test starts a real S3 server for tests: the versitygw binary named by
// RAMPART_TEST_VERSITYGW, on a loopback port, storing into a temporary folder. Without that
// variable tests skip, unless RAMPART_REQUIRE_S3=1 (set by CI), which turns the skip into a
// failure. It is test support only: production code never imports it.
package s3test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/blob/s3"
)

// Server is a versitygw that lives as long as the test that started it.
type Server struct {
	Endpoint  string // 127.0.0.1:port
	AccessKey string
	SecretKey string
}

// Start starts versitygw with a POSIX backend in t.TempDir() and waits until it answers.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := os.Getenv("RAMPART_TEST_VERSITYGW")
	if bin == "" {
		if os.Getenv("RAMPART_REQUIRE_S3") == "1" {
			t.Fatal("RAMPART_REQUIRE_S3=1 but RAMPART_TEST_VERSITYGW is empty")
		}
		t.Skip("RAMPART_TEST_VERSITYGW is empty")
	}
	srv := &Server{Endpoint: freeAddr(t), AccessKey: "rampart-test", SecretKey: randomHex(16)}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--port", srv.Endpoint, "--quiet", "posix", t.TempDir())
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+srv.AccessKey, "ROOT_SECRET_KEY="+srv.SecretKey)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	// Any HTTP answer (403 to an anonymous GET) means it is serving.
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		resp, err := client.Get("http://" + srv.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return srv
		}
		select {
		case <-exited:
			t.Fatalf("versitygw exited before serving: %s", logs.String())
		case <-poll.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw at %s did not answer within 30 s: %v", srv.Endpoint, err)
		}
	}
}

// Options returns options for a fresh bucket (not yet created) on the server.
func (s *Server) Options() s3.Options {
	return s3.Options{
		Endpoint:  s.Endpoint,
		Bucket:    "rampart-test-" + randomHex(6),
		AccessKey: s.AccessKey,
		SecretKey: s.SecretKey,
		Region:    "us-east-1",
		Prefix:    "blobs/",
	}
}

// freeAddr finds a free loopback port. Another process could take it before versitygw
// does; that shows as a start-up failure, not as a test talking to the wrong server.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
