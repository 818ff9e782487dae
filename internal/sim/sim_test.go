package sim_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/config"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/server"
	"github.com/rampart-iot/rampart/internal/sim"
)

// newTestServer starts the real server on a loopback port, on SQLite in a temp dir.
func newTestServer(t testing.TB) (*server.Server, string) {
	t.Helper()
	cfg := config.Server{
		Data: t.TempDir(), Listen: "127.0.0.1:0", LogLevel: "error", LogFormat: "text",
		PollInterval: 5 * time.Minute, DeviceTokenTTL: time.Hour, AuthCacheTTL: 10 * time.Second,
		SeenFlush: 50 * time.Millisecond, SchedulerInterval: time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		t.Fatalf("server.Open: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
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
	return srv, "http://" + ln.Addr().String()
}

func mustEnrollToken(t testing.TB, srv *server.Server) string {
	t.Helper()
	_, secret, err := srv.Fleet.CreateEnrollToken(context.Background(), fleet.EnrollTokenSpec{MaxUses: 10_000, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// serverView counts the devices the server knows and those that have sent an inventory.
func serverView(t testing.TB, srv *server.Server) (devices []*fleet.Device, withInventory int) {
	t.Helper()
	p, err := srv.Fleet.Devices(context.Background(), fleet.ListQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range p.Devices {
		if d.PackageCount > 0 {
			withInventory++
		}
	}
	return p.Devices, withInventory
}

func TestFleetWithFaults(t *testing.T) {
	const n = 200
	srv, url := newTestServer(t)
	opts := sim.Options{
		Server: url, Devices: n, EnrollToken: mustEnrollToken(t, srv),
		Types:     []sim.DeviceType{{Name: "gateway", Weight: 3}, {Name: "camera", Weight: 1}},
		StateRoot: t.TempDir(), Interval: time.Second, Seed: 7, MaxConcurrent: 32,
		Faults: sim.Faults{OfflineRate: 0.03, OfflineFor: time.Second, SlowLink: 5 * time.Millisecond,
			ClockSkew: 5 * time.Minute, FailRate: 0.05},
	}
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	// Run at least three seconds, and until the server has every device with its inventory
	// and every device has seen its upload accepted (an injected fault may lose the answer
	// to an upload the server stored; the device then uploads again).
	start := time.Now()
	deadline := start.Add(40 * time.Second)
	for {
		time.Sleep(250 * time.Millisecond)
		devs, inv := serverView(t, srv)
		if time.Since(start) >= 3*time.Second && len(devs) == n && inv == n && s.Stats().Inventories >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 40 s the server has %d devices, %d with an inventory; stats %+v", len(devs), inv, s.Stats())
		}
	}
	live := s.Stats() // readable while running
	if live.Devices != n || live.Elapsed <= 0 {
		t.Errorf("live stats: %+v", live)
	}
	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of the context ending")
	}
	stopTime := time.Since(stopped)

	st := s.Stats()
	t.Logf("%d devices, %v: %+v; %.0f check-ins/s, %.0f requests/s; stopped in %v",
		n, st.Elapsed.Round(time.Millisecond), st, float64(st.CheckIns)/st.Elapsed.Seconds(),
		float64(st.Requests)/st.Elapsed.Seconds(), stopTime.Round(time.Millisecond))
	if st.Devices != n || st.Enrolled != n {
		t.Errorf("devices %d, enrolled %d, want %d each", st.Devices, st.Enrolled, n)
	}
	if st.CheckIns < n || st.Inventories < n {
		t.Errorf("check-ins %d, inventories %d, want at least %d each", st.CheckIns, st.Inventories, n)
	}
	if st.Pending != 0 {
		t.Errorf("pending cycles %d with an enrollment token", st.Pending)
	}
	if st.Injected == 0 || st.Failures == 0 || st.Offline == 0 {
		t.Errorf("faults were not injected: injected %d, failures %d, offline spells %d", st.Injected, st.Failures, st.Offline)
	}
	// Every cycle makes at least one request.
	if st.Requests < st.CheckIns+st.Failures+st.Pending || st.Injected > st.Requests {
		t.Errorf("inconsistent counts: %+v", st)
	}
	if st.OfflineNow != 0 {
		t.Errorf("%d devices still offline after the run", st.OfflineNow)
	}
	if after := s.Stats(); after != st {
		t.Errorf("counts moved after Run returned: %+v, then %+v", st, after)
	}

	devs, _ := serverView(t, srv)
	types := map[string]int{}
	for _, d := range devs {
		if d.Status != fleet.StatusAccepted || !strings.HasPrefix(d.Identity.Serial, "sim-7-") {
			t.Errorf("device %s: status %s, serial %s", d.ID, d.Status, d.Identity.Serial)
		}
		types[d.Identity.DeviceType]++
	}
	if types["gateway"] <= types["camera"] || types["camera"] == 0 {
		t.Errorf("device types %v, want about 3 gateways per camera", types)
	}
}

func TestPendingWithoutToken(t *testing.T) {
	srv, url := newTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := sim.Run(ctx, sim.Options{Server: url, Devices: 5, Types: []sim.DeviceType{{Name: "t", Weight: 1}},
		StateRoot: t.TempDir(), Interval: time.Second, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if st.Enrolled != 5 || st.Pending == 0 || st.CheckIns != 0 {
		t.Errorf("stats %+v, want 5 enrolled devices waiting for approval", st)
	}
	p, err := srv.Fleet.Devices(context.Background(), fleet.ListQuery{Status: "pending"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Devices) != 5 {
		t.Errorf("%d pending devices on the server, want 5", len(p.Devices))
	}
}

func TestOptionsRefused(t *testing.T) {
	good := sim.Options{Server: "http://127.0.0.1:1", Devices: 1, Types: []sim.DeviceType{{Name: "t", Weight: 1}},
		StateRoot: t.TempDir(), Interval: time.Second}
	if _, err := sim.New(good); err != nil {
		t.Fatalf("good options refused: %v", err)
	}
	for name, change := range map[string]func(o *sim.Options){
		"no server":        func(o *sim.Options) { o.Server = "" },
		"ftp server":       func(o *sim.Options) { o.Server = "ftp://x" },
		"no devices":       func(o *sim.Options) { o.Devices = 0 },
		"too many devices": func(o *sim.Options) { o.Devices = sim.MaxDevices + 1 },
		"no types":         func(o *sim.Options) { o.Types = nil },
		"zero weight":      func(o *sim.Options) { o.Types[0].Weight = 0 },
		"empty type":       func(o *sim.Options) { o.Types[0].Name = "" },
		"no state root":    func(o *sim.Options) { o.StateRoot = "" },
		"short interval":   func(o *sim.Options) { o.Interval = time.Millisecond },
		"fail rate > 1":    func(o *sim.Options) { o.Faults.FailRate = 1.5 },
		"negative rate":    func(o *sim.Options) { o.Faults.OfflineRate = -0.1 },
		"offline no spell": func(o *sim.Options) { o.Faults.OfflineRate = 0.1 },
		"huge skew":        func(o *sim.Options) { o.Faults.ClockSkew = 48 * time.Hour },
		"slow link":        func(o *sim.Options) { o.Faults.SlowLink = time.Hour },
		"negative conc":    func(o *sim.Options) { o.MaxConcurrent = -1 },
	} {
		o := good
		o.Types = []sim.DeviceType{{Name: "t", Weight: 1}}
		change(&o)
		if _, err := sim.New(o); !errors.Is(err, rampart.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

func TestSnapshotDeterministic(t *testing.T) {
	a, b := sim.Snapshot(3, 42), sim.Snapshot(3, 42)
	if a.Hash() != b.Hash() {
		t.Error("the same seed and index gave different inventories")
	}
	if len(a.Packages) < 8 {
		t.Errorf("%d packages, want a plausible system", len(a.Packages))
	}
	for _, p := range a.Packages {
		if p.Source != "dpkg" || !strings.HasPrefix(p.PURL, "pkg:deb/debian/"+p.Name+"@") {
			t.Errorf("package %+v", p)
		}
	}
	distinct := map[string]bool{}
	for i := range 50 {
		distinct[sim.Snapshot(3, i).Hash()] = true
	}
	if len(distinct) < 10 {
		t.Errorf("50 devices have only %d distinct inventories", len(distinct))
	}
}
