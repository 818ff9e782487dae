// Command download measures artifact download throughput: many concurrent HTTP Range
// downloads of one 64 MiB artifact from Rampart's device API (grant and device token
// checked on every request), side by side with Debian's nginx serving the same file from
// disk, and prints the ratio as a Markdown table.
//
// It starts the real server (server.Open) on SQLite in a temp dir, enrolls one device,
// uploads a 64 MiB random artifact through the management API, writes an nginx config that
// serves the stored blob on another loopback port, and drives both alternately with wrk
// (Debian's wrk and nginx must be installed). Each request asks for a random 1 MiB range.
//
// Usage: go run ./bench/download [-duration 10s] [-connections 32] [-rounds 2]
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/config"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/nativeproto"
	"github.com/rampart-iot/rampart/internal/server"
)

const artifactSize = 64 << 20

func main() {
	dur := flag.Duration("duration", 10*time.Second, "wrk duration per run")
	conns := flag.Int("connections", 32, "concurrent connections")
	rounds := flag.Int("rounds", 2, "alternating rounds")
	flag.Parse()
	if err := run(*dur, *conns, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "download bench:", err)
		os.Exit(1)
	}
}

func run(dur time.Duration, conns, rounds int) error {
	for _, tool := range []string{"wrk", "nginx"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (apt-get install wrk nginx): %w", tool, err)
		}
	}
	work, err := os.MkdirTemp("", "rampart-download-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ctx := context.Background()
	cfg := config.Server{Data: filepath.Join(work, "data"), Listen: "127.0.0.1:0", LogLevel: "error", LogFormat: "text",
		PollInterval: 5 * time.Minute, DeviceTokenTTL: 24 * time.Hour, AuthCacheTTL: 5 * time.Minute, SeenFlush: 2 * time.Second}
	srv, err := server.Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = srv.Serve(sctx, ln) }()
	base := "http://" + ln.Addr().String()

	deviceID, token, err := enroll(ctx, srv.Fleet)
	if err != nil {
		return err
	}
	digest, err := upload(base, string(srv.InitialToken))
	if err != nil {
		return err
	}
	grant := srv.Grants.Issue(deviceID, digest, 24*time.Hour)
	blobPath := filepath.Join(cfg.Data, "artifacts", "sha256", digest[:2], digest)

	nginxURL, stopNginx, err := startNginx(work, blobPath)
	if err != nil {
		return err
	}
	defer stopNginx()

	script := filepath.Join(work, "range.lua")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(luaScript, artifactSize)), 0o600); err != nil {
		return err
	}
	targets := []struct{ name, url, header string }{
		{"nginx 1.22 (sendfile), same file", nginxURL + "/fw.img", ""},
		{"Rampart device API (token + grant checked)", base + nativeproto.PathArtifacts + digest + "?grant=" + grant, "Bearer " + token},
	}
	type result struct{ mbps, cpu []float64 }
	res := make([]result, len(targets))
	for r := range rounds {
		for i, tg := range targets {
			mbps, cpu, err := runWrk(tg.url, tg.header, script, dur, conns)
			if err != nil {
				return fmt.Errorf("%s: %w", tg.name, err)
			}
			fmt.Fprintf(os.Stderr, "round %d %-45s %8.0f MiB/s\n", r+1, tg.name, mbps)
			res[i].mbps = append(res[i].mbps, mbps)
			res[i].cpu = append(res[i].cpu, cpu)
		}
	}
	fmt.Printf("\n64 MiB artifact, random 1 MiB ranges, wrk -t2 -c%d -d%s, %d alternating rounds\n\n", conns, dur, rounds)
	fmt.Println("| server | MiB/s (per round) | ratio to nginx |")
	fmt.Println("|---|---:|---:|")
	ref := mean(res[0].mbps)
	for i, tg := range targets {
		fmt.Printf("| %s | %s | %.2f |\n", tg.name, join(res[i].mbps), mean(res[i].mbps)/ref)
	}
	return nil
}

func enroll(ctx context.Context, f *fleet.Service) (string, string, error) {
	_, secret, err := f.CreateEnrollToken(ctx, fleet.EnrollTokenSpec{MaxUses: 1, TTL: time.Hour})
	if err != nil {
		return "", "", err
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	ch, _, err := f.NewChallenge()
	if err != nil {
		return "", "", err
	}
	body := []byte(ch + "|bench")
	a, err := f.Enroll(ctx, fleet.EnrollRequest{Identity: fleet.Identity{Serial: "DL-BENCH", DeviceType: "bench-gw"}, PublicKey: pub,
		EnrollToken: secret, Challenge: ch, Signed: fleet.Signed{Body: body, Signature: ed25519.Sign(priv, body)}})
	if err != nil {
		return "", "", err
	}
	return a.Device.ID, a.Token, nil
}

func upload(base, admin string) (string, error) {
	call := func(method, path, ct string, body io.Reader, out any) error {
		req, _ := http.NewRequest(method, base+api.Prefix+path, body)
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return json.Unmarshal(b, out)
	}
	var rel api.Release
	req, _ := json.Marshal(api.ReleaseRequest{Name: "bench-fw", Version: "1.0", DeviceTypes: []string{"bench-gw"}})
	if err := call("POST", "/releases", "application/json", bytes.NewReader(req), &rel); err != nil {
		return "", err
	}
	img := make([]byte, artifactSize)
	_, _ = rand.Read(img)
	var art api.Artifact
	if err := call("PUT", "/releases/"+rel.ID+"/artifacts/fw.img?role=full", "application/octet-stream", bytes.NewReader(img), &art); err != nil {
		return "", err
	}
	return art.SHA256, nil
}

func startNginx(work, file string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	root := filepath.Join(work, "www")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", nil, err
	}
	if err := os.Symlink(file, filepath.Join(root, "fw.img")); err != nil {
		return "", nil, err
	}
	// Workers run as the benchmark's user (root here), so they can read the blob in the
	// benchmark's private temp dir; nginx ignores the directive when not started as root.
	conf := fmt.Sprintf(`daemon off;
user root;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp; uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
  server { listen %[2]s; root %[3]s; disable_symlinks off; }
}
`, work, addr, root)
	confPath := filepath.Join(work, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return "", nil, err
	}
	cmd := exec.Command("nginx", "-c", confPath, "-p", work)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if resp, err := http.Get("http://" + addr + "/fw.img"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("nginx did not come up on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "http://" + addr, stop, nil
}

const luaScript = `
local size = %d
local chunk = 1048576
function init(args) math.randomseed(os.time() + math.random(1000)) end
function request()
  local from = math.random(0, size - chunk)
  local h = {["Range"] = "bytes=" .. from .. "-" .. (from + chunk - 1)}
  if wrk.headers["Authorization"] then h["Authorization"] = wrk.headers["Authorization"] end
  return wrk.format("GET", nil, h)
end
function response(status, headers, body)
  if status ~= 206 then io.stderr:write("status " .. status .. "\n"); os.exit(1) end
end
`

var transferRE = regexp.MustCompile(`Transfer/sec:\s+([0-9.]+)([KMG]B)`)

func runWrk(url, auth, script string, dur time.Duration, conns int) (float64, float64, error) {
	args := []string{"-t2", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(dur.Seconds())) + "s", "-s", script}
	if auth != "" {
		args = append(args, "-H", "Authorization: "+auth)
	}
	cmd := exec.Command("wrk", append(args, url)...)
	cpu0 := cpuTime()
	out, err := cmd.CombinedOutput()
	cpu := cpuTime() - cpu0
	if err != nil {
		return 0, 0, fmt.Errorf("wrk: %w: %s", err, out)
	}
	m := transferRE.FindSubmatch(out)
	if m == nil || strings.Contains(string(out), "Non-2xx") {
		return 0, 0, fmt.Errorf("wrk output: %s", out)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	switch string(m[2]) {
	case "KB":
		v /= 1024
	case "GB":
		v *= 1024
	}
	return v, cpu.Seconds(), nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func join(xs []float64) string {
	p := make([]string, len(xs))
	for i, x := range xs {
		p[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(p, " / ")
}
