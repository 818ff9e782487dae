package sim_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/agent/agenttest"
	"github.com/rampart-iot/rampart/internal/nativeproto"
	"github.com/rampart-iot/rampart/internal/sim"
)

// TestUpdatesWithFaults deploys an update to a simulated fleet whose devices fail installs,
// fail health checks and lose power mid-install, as their seeded fates say, and checks that
// each device ends exactly in the state its fate predicts, running the version it should.
func TestUpdatesWithFaults(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{sim.InstallerMemory, sim.InstallerAB, sim.InstallerFile} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			testUpdatesWithFaults(t, kind)
		})
	}
}

func testUpdatesWithFaults(t *testing.T, kind string) {
	const n = 40
	srv := agenttest.NewServer(t)
	art := srv.Publish("fw/sim-2.0.0.img", sim.Image("2.0.0", 4096), "2.0.0", "sim-gw")
	srv.Deploy(nativeproto.Work{ID: "dep_sim", Kind: nativeproto.WorkUpdate, Version: "2.0.0", Action: "forced", Artifact: &art})
	faults := sim.Faults{FailInstallRate: 0.2, FailHealthRate: 0.25, PowerLossRate: 0.5}
	o := sim.Options{Server: srv.URL, Devices: n, EnrollToken: "t", Types: []sim.DeviceType{{Name: "sim-gw", Weight: 1}},
		StateRoot: t.TempDir(), Interval: time.Second, Seed: 11, Faults: faults, Installer: kind}
	s, err := sim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}   // serial → final state
	wantFW := map[string]string{} // serial → firmware after the update
	plannedLosses, outcomes := 0, map[string]int{}
	for i := range n {
		f := s.Fate(i)
		if f != sim.FateOf(o.Seed, i, faults, kind) {
			t.Fatalf("Fate(%d) differs from FateOf", i)
		}
		want[sim.Serial(o.Seed, i)] = f.Outcome()
		outcomes[f.Outcome()]++
		wantFW[sim.Serial(o.Seed, i)] = sim.BaseVersion
		if f.Outcome() == sim.OutcomeSuccess {
			wantFW[sim.Serial(o.Seed, i)] = "2.0.0"
		}
		if f.PowerLossAt != "" {
			plannedLosses++
		}
	}
	if outcomes[sim.OutcomeFailure] == 0 || outcomes[sim.OutcomeRolledBack] == 0 || plannedLosses == 0 {
		t.Fatalf("seed gives no variety: outcomes %v, %d power losses", outcomes, plannedLosses)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		time.Sleep(100 * time.Millisecond)
		if mismatch := compare(srv, want, wantFW); mismatch == "" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("after 60 s: %s; stats %+v", mismatch, s.Stats())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	st := s.Stats()
	t.Logf("%s: outcomes %v, stats %+v", kind, outcomes, st)
	if st.Installs != n || st.Updated != int64(outcomes[sim.OutcomeSuccess]) || st.UpdateFailures != int64(outcomes[sim.OutcomeFailure]) ||
		st.RolledBack != int64(outcomes[sim.OutcomeRolledBack]) {
		t.Errorf("stats %+v, want %d installs and outcomes %v", st, n, outcomes)
	}
	if st.PowerLosses != int64(plannedLosses) {
		t.Errorf("%d power losses, want the %d the fates planned", st.PowerLosses, plannedLosses)
	}
	if kind != sim.InstallerFile && st.Reboots < int64(outcomes[sim.OutcomeSuccess]) {
		t.Errorf("%d reboots for %d A/B updates", st.Reboots, outcomes[sim.OutcomeSuccess])
	}
	for _, r := range srv.Reports("") {
		if r.Seq == 0 {
			t.Errorf("report without a sequence number: %+v", r)
		}
	}
}

// compare returns what differs between the server's view and the expected final states and
// firmware versions ("" when they agree).
func compare(srv *agenttest.Server, want, wantFW map[string]string) string {
	ids := srv.Devices()
	if len(ids) < len(want) {
		return fmt.Sprintf("%d of %d devices enrolled", len(ids), len(want))
	}
	for serial, w := range want {
		id := ids[serial]
		if got := srv.Status("dep_sim", id).State; string(got) != w {
			return fmt.Sprintf("device %s (%s) is %s, want %s", serial, id, got, w)
		}
		if got := srv.Firmware(id); got != wantFW[serial] {
			return fmt.Sprintf("device %s (%s) runs %q, want %q", serial, id, got, wantFW[serial])
		}
	}
	return ""
}

func TestNoInstallerIgnoresWork(t *testing.T) {
	t.Parallel()
	srv := agenttest.NewServer(t)
	art := srv.Publish("fw/sim-2.0.0.img", sim.Image("2.0.0", 100), "2.0.0", "sim-gw")
	srv.Deploy(nativeproto.Work{ID: "dep_sim", Kind: nativeproto.WorkUpdate, Version: "2.0.0", Action: "forced", Artifact: &art})
	s, err := sim.New(sim.Options{Server: srv.URL, Devices: 3, EnrollToken: "t", Types: []sim.DeviceType{{Name: "sim-gw", Weight: 1}},
		StateRoot: t.TempDir(), Interval: time.Second, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for deadline := time.Now().Add(30 * time.Second); s.Stats().CheckIns < 6 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.CheckIns < 6 || st.Installs != 0 {
		t.Errorf("stats %+v, want check-ins and no installs", st)
	}
	if rs := srv.Reports(""); len(rs) != 0 {
		t.Errorf("devices without an installer reported %d states", len(rs))
	}
}

func TestFateOf(t *testing.T) {
	t.Parallel()
	f := sim.Faults{FailInstallRate: 0.1, FailHealthRate: 0.3, PowerLossRate: 0.5}
	counts := map[string]int{}
	for i := range 10_000 {
		a, b := sim.FateOf(5, i, f, sim.InstallerAB), sim.FateOf(5, i, f, sim.InstallerAB)
		if a != b {
			t.Fatalf("FateOf(5, %d) is not deterministic: %+v, %+v", i, a, b)
		}
		if a.FailInstall {
			counts["install"]++
		}
		if a.FailHealth {
			counts["health"]++
		}
		if a.PowerLossAt != "" {
			counts["power"]++
		}
	}
	for name, want := range map[string]int{"install": 1000, "health": 3000, "power": 5000} {
		if got := counts[name]; got < want*8/10 || got > want*12/10 {
			t.Errorf("%s faults on %d of 10000 devices, want about %d", name, got, want)
		}
	}
	if got := sim.FateOf(5, 1, f, sim.InstallerNone); got != (sim.Fate{}) {
		t.Errorf("fate without an installer = %+v, want none", got)
	}
	// One rate does not move another's choices.
	g := f
	g.FailInstallRate = 0
	for i := range 1000 {
		if a, b := sim.FateOf(5, i, f, sim.InstallerMemory), sim.FateOf(5, i, g, sim.InstallerMemory); a.FailHealth != b.FailHealth {
			t.Fatalf("device %d: health fault changed with the install failure rate", i)
		}
	}
}
