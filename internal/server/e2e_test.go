package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/agent"
	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/cli"
	"github.com/rampart-iot/rampart/internal/store/postgres/pgtest"
)

// TestEndToEnd starts the real server, runs the real agent code against it over HTTP, and
// finds the device, with its inventory, in the CLI's JSON output.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		endToEnd(t, newTestServer(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(t)
		cfg.Database = pgtest.NewSchema(t)
		endToEnd(t, startServer(t, cfg))
	})
}

func endToEnd(t *testing.T, ts *testServer) {
	enrollTok := ts.enrollToken(t, 5, "acme-gw")
	firmware := "1.4.2"
	a, err := agent.New(agent.Options{
		Server: ts.URL, StateDir: t.TempDir(), Root: writeFakeRoot(t),
		Identity:    agent.Identity{Serial: "E2E-0001", MAC: "02:00:00:00:00:01", DeviceType: "acme-gw", HWRevision: "r3"},
		EnrollToken: enrollTok, Attributes: map[string]string{"region": "eu-west"},
		Firmware: func() string { return firmware },
		Interval: time.Minute, HTTPClient: &http.Client{Timeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := a.Step(ctx); err != nil {
		t.Fatalf("first agent step: %v", err)
	}
	// Enrollment handed the device the fleet's TUF root; the device's TUF client refreshes
	// the server's metadata against it.
	updates, err := a.Updates(ctx, nil)
	if err != nil {
		t.Fatalf("agent TUF client: %v", err)
	}
	if err := updates.Refresh(ctx); err != nil {
		t.Fatalf("agent TUF refresh: %v", err)
	}

	runCLI := func(args ...string) (int, string, string) { return runCLI(t, ts, args...) }
	code, out, errOut := runCLI("device", "ls", "-o", "json")
	if code != 0 {
		t.Fatalf("rampart device ls = %d: %s", code, errOut)
	}
	var list api.DeviceList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("device ls JSON: %v\n%s", err, out)
	}
	if len(list.Devices) != 1 {
		t.Fatalf("device ls listed %d devices, want 1: %s", len(list.Devices), out)
	}
	d := list.Devices[0]
	if d.ID != a.DeviceID() || d.Serial != "E2E-0001" || d.Status != "accepted" || d.FirmwareVersion != "1.4.2" ||
		d.PackageCount != 2 || d.Kernel != "6.1.0-28-arm64" || d.Attributes["region"] != "eu-west" {
		t.Errorf("device as the CLI shows it = %+v", d)
	}

	// A firmware change reaches the server on the next check-in; a filter finds it.
	firmware = "1.5.0"
	if _, err := a.Step(ctx); err != nil {
		t.Fatalf("second agent step: %v", err)
	}
	code, out, errOut = runCLI("device", "ls", "-o", "json", "--filter", `firmware == "1.5.0" && attributes["region"] == "eu-west"`)
	if code != 0 {
		t.Fatalf("device ls --filter = %d: %s", code, errOut)
	}
	list = api.DeviceList{}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Devices) != 1 {
		t.Fatalf("filtered list = %s (%v), want the device", out, err)
	}

	// The agent rotates its key; check-ins keep working with the new one.
	oldKey := a.PublicKey()
	if err := a.RotateKey(ctx); err != nil {
		t.Fatalf("rotate key: %v", err)
	}
	if a.PublicKey().Equal(oldKey) {
		t.Fatal("key did not change")
	}
	if _, err := a.Step(ctx); err != nil {
		t.Fatalf("step after rotation: %v", err)
	}
	if got := ts.device(t, a.DeviceID()).KeyFingerprint; got == "" {
		t.Error("no key fingerprint after rotation")
	}

	// Errors are one line and a non-zero exit.
	code, _, errOut = runCLI("device", "show", "dev_missing")
	if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("device show of a missing device = %d %q, want non-zero and one line", code, errOut)
	}
}

// TestAgentSurvivesOutage runs the agent against a server that goes away and comes back
// on the same data: the agent keeps its identity and resumes.
func TestAgentSurvivesOutage(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	ts := startServer(t, cfg)
	tok := ts.enrollToken(t, 1, "")
	state := t.TempDir()
	opts := agent.Options{
		Server: ts.URL, StateDir: state, Root: writeFakeRoot(t),
		Identity:    agent.Identity{Serial: "OUT-1", DeviceType: "acme-gw"},
		EnrollToken: tok, HTTPClient: &http.Client{Timeout: 5 * time.Second},
	}
	a, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Step(t.Context()); err != nil {
		t.Fatal(err)
	}
	id := a.DeviceID()

	// Server unreachable: the step fails with an error, not a panic or a lost identity.
	down := opts
	down.Server = "http://127.0.0.1:1"
	a2, err := agent.New(down)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a2.Step(t.Context()); err == nil {
		t.Fatal("step against a dead server succeeded")
	}
	if a2.DeviceID() != id {
		t.Fatalf("device ID after outage = %q, want %q", a2.DeviceID(), id)
	}
	// The agent restarts (new process, same state directory) and carries on: the
	// enrollment token was single-use, so success proves it did not enroll again.
	a3, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a3.Step(t.Context()); err != nil {
		t.Fatalf("step after restart: %v", err)
	}
	if a3.DeviceID() != id || len(ts.devices(t)) != 1 {
		t.Errorf("after restart: device %q, %d devices; want %q and 1", a3.DeviceID(), len(ts.devices(t)), id)
	}
}

// runCLI runs the rampart command line against ts as its admin.
func runCLI(t *testing.T, ts *testServer, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := map[string]string{"RAMPART_SERVER": ts.URL, "RAMPART_TOKEN": ts.admin, "HOME": t.TempDir()}
	code := cli.Run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}
