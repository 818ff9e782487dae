package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/client"
	"github.com/rampart-iot/rampart/internal/sim"
)

// simRollout runs a simulated fleet of n devices with faults against a real server, waits
// until they are enrolled, publishes release 2.0 (a simulator image) and creates a deployment
// with plan. It returns the client, the deployment, the simulator and a stop function.
func simRollout(t *testing.T, n int, faults sim.Faults, installer, plan string) (*client.Client, string, *sim.Sim) {
	t.Helper()
	ts := newTestServer(t)
	c := client.New(ts.URL, ts.admin, nil)
	ctx := t.Context()
	et, err := c.CreateEnrollToken(ctx, api.EnrollTokenRequest{MaxUses: n, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sim.Options{
		Server: ts.URL, Devices: n, EnrollToken: et.Secret, Types: []sim.DeviceType{{Name: "gw", Weight: 1}},
		StateRoot: t.TempDir(), Interval: time.Second, Faults: faults, Seed: 7, Installer: installer,
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	simCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- s.Run(simCtx) }()
	t.Cleanup(func() { stop(); <-done })
	start := time.Now()
	defer func() { t.Logf("enrolled %d devices in %s", n, time.Since(start)) }()
	for deadline := time.Now().Add(5 * time.Minute); s.Stats().Enrolled < int64(n); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d devices enrolled", s.Stats().Enrolled, n)
		}
	}
	rel, err := c.CreateRelease(ctx, api.ReleaseRequest{Name: "fw", Version: "2.0", DeviceTypes: []string{"gw"}})
	if err != nil {
		t.Fatal(err)
	}
	img := sim.Image("2.0", 4096)
	sum := sha256.Sum256(img)
	if _, err := c.UploadArtifact(ctx, rel.ID, client.Upload{Name: "fw.img", Role: "full", Size: int64(len(img)), SHA256: hex.EncodeToString(sum[:])}, bytes.NewReader(img)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, rel.ID); err != nil {
		t.Fatal(err)
	}
	created, err := c.CreateDeployment(ctx, api.DeploymentRequest{Name: "sim", ReleaseID: rel.ID, Target: api.DeploymentTarget{Filter: "true"}, Plan: plan})
	if err != nil {
		t.Fatal(err)
	}
	if created.Deployment.Total != n {
		t.Fatalf("deployment targets %d devices, want %d", created.Deployment.Total, n)
	}
	return c, created.Deployment.ID, s
}

// waitStatus polls the deployment until its status is one of want.
func waitStatus(t *testing.T, c *client.Client, id string, limit time.Duration, want ...string) *api.Deployment {
	t.Helper()
	var d *api.Deployment
	for deadline := time.Now().Add(limit); ; time.Sleep(200 * time.Millisecond) {
		var err error
		if d, err = c.Deployment(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if d.Status == w {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment still %s after %s: %v %s", d.Status, limit, d.States, d.Reason)
		}
	}
}

// serialIndex maps the simulator's serials to device indexes.
func serialIndex(n int) map[string]int {
	m := make(map[string]int, n)
	for i := range n {
		m[sim.Serial(7, i)] = i
	}
	return m
}

// TestRolloutThousandDevicesWithFaults rolls a release out to 1,000 simulated devices (the
// real agent code with an A/B installer) of which about 2% fail to install or fail their
// health check and 5% lose power mid-install, over a network that drops 2% of requests: the
// deployment finishes and every device ends in exactly the state its injected fate says.
func TestRolloutThousandDevicesWithFaults(t *testing.T) {
	if testing.Short() || raceDetector {
		t.Skip("1,000 simulated devices: too slow under -race and -short; .ci/test runs it without -race")
	}
	t.Parallel()
	const n = 1000
	faults := sim.Faults{FailInstallRate: 0.01, FailHealthRate: 0.01, PowerLossRate: 0.05, FailRate: 0.02}
	c, dep, s := simRollout(t, n, faults, sim.InstallerMemory, "50 name=canary success=90% fail=20% bake=0s; 30% success=90% fail=10% bake=0s; 100% success=90% fail=10%")
	d := waitStatus(t, c, dep, 8*time.Minute, "finished", "halted", "cancelled")
	if d.Status != "finished" {
		t.Fatalf("deployment %s: %s (%v)", d.Status, d.Reason, d.States)
	}
	devs, err := c.AllDeploymentDevices(t.Context(), dep, client.DeploymentDeviceQuery{})
	if err != nil {
		t.Fatal(err)
	}
	all, err := c.AllDevices(t.Context(), client.DeviceQuery{})
	if err != nil {
		t.Fatal(err)
	}
	index := serialIndex(n)
	byID := map[string]int{}
	for _, dv := range all.Devices {
		byID[dv.ID] = index[dv.Serial]
	}
	want := map[string]int{}
	for _, m := range devs.Devices {
		i, ok := byID[m.DeviceID]
		if !ok {
			t.Fatalf("deployment device %s is not a simulated device", m.DeviceID)
		}
		fate := s.Fate(i)
		want[fate.Outcome()]++
		if m.State != fate.Outcome() {
			t.Errorf("device %d (%s, fate %+v): %s, want %s", i, m.DeviceID, fate, m.State, fate.Outcome())
		}
		if (m.State == "failure" || m.State == "rolled-back") && m.Log == "" {
			t.Errorf("device %d: %s without a log excerpt", i, m.State)
		}
	}
	if len(devs.Devices) != n || want["failure"]+want["rolled-back"] == 0 {
		t.Fatalf("%d devices, outcomes %v", len(devs.Devices), want)
	}
	for st, k := range want {
		if d.States[st] != k {
			t.Errorf("%s: %d, want %d", st, d.States[st], k)
		}
	}
	st := s.Stats()
	if st.PowerLosses == 0 {
		t.Error("no power loss was injected; the test proves less than it says")
	}
	t.Logf("outcomes %v; %d power losses, %d injected request failures", want, st.PowerLosses, st.Injected)
}

// TestRolloutCanaryFailureHalts: 30% of the fleet fails to install; the canary wave trips its
// failure threshold, the deployment halts, and no device of the second wave is ever offered
// the update.
func TestRolloutCanaryFailureHalts(t *testing.T) {
	t.Parallel()
	const n = 200
	c, dep, _ := simRollout(t, n, sim.Faults{FailInstallRate: 0.3}, sim.InstallerMemory, "20 name=canary success=90% fail=20% bake=0s; 100%")
	d := waitStatus(t, c, dep, time.Minute, "halted", "finished")
	if d.Status != "halted" || d.Wave != 0 {
		t.Fatalf("deployment %s at wave %d: %s", d.Status, d.Wave, d.Reason)
	}
	time.Sleep(2 * time.Second) // devices keep checking in; nothing more may be offered
	wave2 := 1
	devs, err := c.AllDeploymentDevices(t.Context(), dep, client.DeploymentDeviceQuery{Wave: &wave2})
	if err != nil {
		t.Fatal(err)
	}
	if len(devs.Devices) != n-20 {
		t.Fatalf("wave 2 has %d devices, want %d", len(devs.Devices), n-20)
	}
	for _, m := range devs.Devices {
		if m.OfferedAt != nil || m.State != "scheduled" {
			t.Fatalf("wave-2 device %s was offered the update (%s) after the halt", m.DeviceID, m.State)
		}
	}
	evs, err := c.DeploymentEvents(t.Context(), dep, 10)
	if err != nil || len(evs.Events) == 0 || evs.Events[0].Kind != "halted" {
		t.Fatalf("no halt event: %+v %v", evs, err)
	}
	t.Logf("halt reason: %s", d.Reason)
}
