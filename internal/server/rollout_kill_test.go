package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/nativeproto"
)

// childServer is a server process on a data folder that a test can kill -9 and restart.
type childServer struct {
	t   *testing.T
	dir string
	cmd *exec.Cmd
	url atomic.Pointer[string]
}

func (c *childServer) start() {
	c.t.Helper()
	_ = os.Remove(filepath.Join(c.dir, "addr"))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RAMPART_TEST_SERVE_DIR="+c.dir)
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.cmd = cmd
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if addr, _ := os.ReadFile(filepath.Join(c.dir, "addr")); len(addr) > 0 {
			u := "http://" + string(addr)
			c.url.Store(&u)
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatal("child server did not start")
		}
	}
}

func (c *childServer) kill() {
	_ = c.cmd.Process.Kill()
	_, _ = c.cmd.Process.Wait()
}

// call sends one request to whatever address the server has now; any failure is an error.
func (c *childServer) call(method, path, token string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, *c.url.Load()+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(b, out)
	}
	return resp.StatusCode, nil
}

// killDevice is a device that follows the agent's protocol with plain requests and counts
// how often it really installed: it installs only after the server confirmed "installing".
type killDevice struct {
	token    string
	installs map[string]int
}

// step reports one state until the server answers, and returns the state it holds.
func (d *killDevice) report(c *childServer, dep string, st string, seq uint64, stop <-chan struct{}) (string, bool) {
	for {
		var ans nativeproto.StatusAnswer
		_, err := c.call("POST", nativeproto.PathDeployments+dep+"/status", d.token, nativeproto.StatusReport{State: st, Seq: seq}, &ans)
		if err == nil {
			return ans.State, true
		}
		select {
		case <-stop:
			return "", false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (d *killDevice) run(c *childServer, stop <-chan struct{}) {
	steps := []string{"downloading", "downloaded", "installing", "rebooting", "verifying", "success"}
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(20+rand.IntN(30)) * time.Millisecond):
		}
		var res nativeproto.CheckInResponse
		if _, err := c.call("POST", nativeproto.PathCheckIn, d.token, nativeproto.CheckInRequest{FirmwareVersion: "1.0"}, &res); err != nil {
			continue
		}
		for _, w := range res.Work {
			for i, st := range steps {
				held, ok := d.report(c, w.ID, st, uint64(i+1), stop)
				if !ok {
					return
				}
				if held != st && held != "success" {
					break // cancelled, timed out, or already further along
				}
				if st == "installing" && held == "installing" {
					d.installs[w.ID]++
				}
			}
		}
	}
}

// TestRolloutSurvivesKill9 kills the server process (SIGKILL) again and again while a rollout
// runs, restarting it on the same data each time: every device ends in success exactly once,
// no device installs twice, and no wave starts twice.
func TestRolloutSurvivesKill9(t *testing.T) {
	t.Parallel()
	c := &childServer{t: t, dir: t.TempDir()}
	c.start()
	t.Cleanup(c.kill)
	token, _ := os.ReadFile(filepath.Join(c.dir, "token"))
	ts := &testServer{URL: *c.url.Load(), admin: string(token)}

	const n = 30
	devices := make([]*killDevice, n)
	enroll := ts.enrollToken(t, n, "")
	for i := range devices {
		fd := newFakeDevice(t, fmt.Sprintf("KILL9-%02d", i))
		if code, _ := fd.enroll(t, ts, enroll); code != 200 {
			t.Fatalf("enroll = %d", code)
		}
		devices[i] = &killDevice{token: fd.token, installs: map[string]int{}}
	}
	rel := publishTestRelease(t, ts, "fw", "2.0", []byte("new firmware image"))
	var created api.DeploymentCreated
	if code := ts.mgmt(t, "POST", "/deployments", api.DeploymentRequest{
		Name: "kill", ReleaseID: rel.ID, Target: api.DeploymentTarget{Filter: "true"},
		Plan: "5 name=canary success=100% fail=50% bake=300ms; 50% bake=300ms; 100%",
	}, &created); code != 201 {
		t.Fatalf("create deployment = %d", code)
	}
	dep := created.Deployment.ID

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, d := range devices {
		wg.Add(1)
		go func() { defer wg.Done(); d.run(c, stop) }()
	}
	kills := 0
	var final api.Deployment
	for deadline := time.Now().Add(60 * time.Second); ; {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("rollout did not finish after %d kills: %+v", kills, final)
		}
		if kills < 8 {
			time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
			c.kill()
			kills++
			c.start()
			continue
		}
		time.Sleep(100 * time.Millisecond)
		if _, err := c.call("GET", api.Prefix+"/deployments/"+dep, ts.admin, nil, &final); err == nil && final.Status == "finished" {
			break
		}
	}
	close(stop)
	wg.Wait()

	if final.States["success"] != n || final.Total != n {
		t.Fatalf("after %d kills: total %d, states %v", kills, final.Total, final.States)
	}
	for i, d := range devices {
		if d.installs[dep] != 1 {
			t.Errorf("device %d installed %d times", i, d.installs[dep])
		}
	}
	var evs api.DeploymentEventList
	if _, err := c.call("GET", api.Prefix+"/deployments/"+dep+"/events", ts.admin, nil, &evs); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range evs.Events {
		kinds[e.Kind]++
	}
	if kinds["created"] != 1 || kinds["wave-started"] != 2 || kinds["finished"] != 1 || kinds["halted"] != 0 {
		t.Fatalf("events after %d kills: %v", kills, kinds)
	}
}

// publishTestRelease creates, uploads and publishes a release for the fake devices' type.
func publishTestRelease(t *testing.T, ts *testServer, name, version string, image []byte) api.Release {
	t.Helper()
	var rel api.Release
	if code := ts.mgmt(t, "POST", "/releases", api.ReleaseRequest{Name: name, Version: version, DeviceTypes: []string{"acme-gw"}}, &rel); code != 201 {
		t.Fatalf("create release = %d", code)
	}
	if code, b := ts.do(t, "PUT", api.Prefix+"/releases/"+rel.ID+"/artifacts/fw.img?role=full", ts.admin, "application/octet-stream", image); code != 201 {
		t.Fatalf("upload = %d %s", code, b)
	}
	if code := ts.mgmt(t, "POST", "/releases/"+rel.ID+"/publish", nil, &rel); code != 200 {
		t.Fatalf("publish = %d", code)
	}
	return rel
}
