package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rampart-iot/rampart/internal/agent/agenttest"
	"github.com/rampart-iot/rampart/internal/nativeproto"
	"github.com/rampart-iot/rampart/internal/sim"
)

// TestSimUpdateFlags runs `rampart sim` against a stand-in of the device API with a
// deployment, every device fated to fail its install, and checks the summary, the fates file
// and the devices' reports.
func TestSimUpdateFlags(t *testing.T) {
	t.Parallel()
	srv := agenttest.NewServer(t)
	art := srv.Publish("fw/sim-2.0.0.img", sim.Image("2.0.0", 512), "2.0.0", "sim-device")
	srv.Deploy(nativeproto.Work{ID: "dep_cli", Kind: nativeproto.WorkUpdate, Version: "2.0.0", Action: "forced", Artifact: &art})
	fates := filepath.Join(t.TempDir(), "fates.jsonl")
	var out, errb bytes.Buffer
	code := Run(context.Background(), []string{"sim", "--server", srv.URL, "--devices", "3", "--duration", "4s", "--interval", "1s",
		"--enroll-token", "t", "--installer", "memory", "--fail-install", "1", "--power-loss", "1", "--seed", "4", "--fates", fates},
		func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	if code != 0 {
		t.Fatalf("rampart sim = %d: %s", code, errb.String())
	}
	for _, row := range []string{"installs", "update failures", "power losses"} {
		if !strings.Contains(out.String(), row) {
			t.Errorf("summary has no %q row:\n%s", row, out.String())
		}
	}
	b, err := os.ReadFile(fates)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 {
		t.Fatalf("fates file has %d lines, want 3:\n%s", len(lines), b)
	}
	ids := srv.Devices()
	for _, l := range lines {
		var f simFate
		if err := json.Unmarshal([]byte(l), &f); err != nil {
			t.Fatal(err)
		}
		if !f.FailInstall || f.Outcome != sim.OutcomeFailure || f.PowerLossAt == "" {
			t.Errorf("fate %+v, want a failing install with a power loss", f)
		}
		if st := srv.Status("dep_cli", ids[f.Serial]); string(st.State) != f.Outcome {
			t.Errorf("device %s ended %s, its fate says %s", f.Serial, st.State, f.Outcome)
		}
	}
}

func TestSimRefusesFaultsWithoutInstaller(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	code := Run(context.Background(), []string{"sim", "--server", "http://127.0.0.1:1", "--devices", "1", "--duration", "1s",
		"--installer", "none", "--fail-health", "0.5", "--state", t.TempDir()},
		func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "need an installer") {
		t.Errorf("rampart sim --installer none --fail-health 0.5 = %d, %q; want refused", code, errb.String())
	}
}
