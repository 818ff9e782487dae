package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/agent/agenttest"
	"github.com/rampart-iot/rampart/internal/agent/bootenv"
	"github.com/rampart-iot/rampart/internal/agent/collect"
	"github.com/rampart-iot/rampart/internal/agent/installer"
	"github.com/rampart-iot/rampart/internal/delta"
	"github.com/rampart-iot/rampart/internal/nativeproto"
	"github.com/rampart-iot/rampart/internal/rollout"
)

const testDeviceType = "gw"

// testImage is an image whose first line names its version, as the test devices read it.
func testImage(version string, size int) []byte {
	b := []byte("IMAGE version=" + version + "\n")
	rng := rand.New(rand.NewPCG(uint64(len(version)), uint64(size)))
	for len(b) < size {
		b = append(b, byte('a'+rng.IntN(26)))
	}
	return b
}

// imageVersion reads the version from the first line of an image file.
func imageVersion(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	v, _ := strings.CutPrefix(strings.TrimSpace(line), "IMAGE version=")
	return v
}

// powerLoss is the panic a failpoint throws to stop the agent dead, as a power cut would.
type powerLoss struct{ at string }

// testDevice is one device on the fake server: a state directory that survives restarts,
// and the agent process (a new Agent after each power loss or reboot).
type testDevice struct {
	t    *testing.T
	srv  *agenttest.Server
	dir  string
	env  *bootenv.File // nil without A/B
	now  func() time.Time
	opts func(o *Options)
	inst func() installer.Installer

	a               *Agent
	killAt          string // failpoint at which the power fails once
	killed          bool
	rebootRequested bool
	boots           int
}

func newTestDevice(t *testing.T, srv *agenttest.Server, inst func(d *testDevice) installer.Installer, opts func(o *Options)) *testDevice {
	t.Helper()
	d := &testDevice{t: t, srv: srv, dir: t.TempDir(), now: time.Now, opts: opts}
	d.inst = func() installer.Installer { return inst(d) }
	d.start()
	t.Cleanup(func() { d.a.Close() })
	return d
}

// start runs a new agent process on the device's state directory.
func (d *testDevice) start() {
	d.t.Helper()
	o := Options{
		Server: d.srv.URL, StateDir: filepath.Join(d.dir, "state"),
		Identity:    Identity{Serial: "T-" + filepath.Base(d.dir), DeviceType: testDeviceType},
		EnrollToken: "tok",
		Inventory: func(context.Context) (*collect.Snapshot, error) {
			return &collect.Snapshot{OS: "Test OS", Kernel: "6.1"}, nil
		},
		Interval:   time.Minute,
		Now:        func() time.Time { return d.now() },
		Installer:  d.inst(),
		Reboot:     func(context.Context) error { d.rebootRequested = true; return nil },
		HTTPClient: nil,
	}
	if d.opts != nil {
		d.opts(&o)
	}
	a, err := New(o)
	if err != nil {
		d.t.Fatal(err)
	}
	a.failpoint = d.point
	if fp, ok := o.Installer.(interface{ SetFailpoint(func(string)) }); ok {
		fp.SetFailpoint(d.point)
	}
	d.a = a
}

func (d *testDevice) point(p string) {
	if !d.killed && p == d.killAt {
		d.killed = true
		panic(powerLoss{p})
	}
}

// powerCycle boots the device again: the bootloader picks a slot, a new agent starts.
func (d *testDevice) powerCycle() {
	d.t.Helper()
	d.a.Close()
	if d.env != nil {
		if _, err := bootenv.SimulateBoot(context.Background(), d.env, [2]string{"A", "B"}); err != nil {
			d.t.Fatal(err)
		}
	}
	d.boots++
	d.start()
}

var errPowerLoss = errors.New("simulated power loss")

// step runs one agent cycle; a power loss or a requested reboot restarts the device.
func (d *testDevice) step() (err error) {
	d.t.Helper()
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(powerLoss); !ok {
				panic(p)
			}
			d.powerCycle()
			err = errPowerLoss
		}
	}()
	_, err = d.a.Step(d.t.Context())
	if d.rebootRequested {
		d.rebootRequested = false
		d.powerCycle()
	}
	return err
}

func (d *testDevice) mustStep() {
	d.t.Helper()
	if err := d.step(); err != nil {
		d.t.Fatalf("Step() = %v", err)
	}
}

func (d *testDevice) id() string { return d.a.DeviceID() }

// runUntil steps until the server holds a final state for the deployment and the agent has
// nothing left to report.
func (d *testDevice) runUntil(deployment string) {
	d.t.Helper()
	for range 40 {
		err := d.step()
		if err != nil {
			d.t.Logf("step: %v", err)
		}
		if d.id() != "" && d.srv.Status(deployment, d.id()).State.Terminal() && d.a.state.Update == nil {
			return
		}
	}
	d.t.Fatalf("deployment %s never ended for the device: server holds %+v, agent %+v", deployment, d.srv.Status(deployment, d.id()), d.a.state.Update)
}

func (d *testDevice) downloads() []string {
	entries, _ := os.ReadDir(filepath.Join(d.dir, "state", downloadsDir))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// reportStates lists the states a device reported, in order.
func reportStates(rs []agenttest.Report) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.State)
	}
	return out
}

// mustMonotonic checks that the reports' sequence numbers never went backwards and match
// their states' positions.
func mustMonotonic(t *testing.T, rs []agenttest.Report) {
	t.Helper()
	for i, r := range rs {
		if r.Seq != seqOf(r.State) {
			t.Errorf("report %d: %s with seq %d, want %d", i, r.State, r.Seq, seqOf(r.State))
		}
		if i > 0 && r.Seq < rs[i-1].Seq {
			t.Errorf("report %d: seq %d after %d: %v", i, r.Seq, rs[i-1].Seq, reportStates(rs))
		}
	}
}

// fileInstaller replaces <dir>/app; its health check fails while *sick is set.
func fileInstaller(sick *bool) func(d *testDevice) installer.Installer {
	return func(d *testDevice) installer.Installer {
		return installer.NewFile(installer.FileOptions{Target: filepath.Join(d.dir, "app"), HealthTimeout: 10 * time.Second,
			Health: func(context.Context) error {
				if sick != nil && *sick {
					return errors.New("app did not answer on :8080")
				}
				return nil
			}})
	}
}

func newFileDevice(t *testing.T, srv *agenttest.Server, opts func(o *Options)) *testDevice {
	t.Helper()
	d := newTestDevice(t, srv, fileInstaller(nil), opts)
	if err := os.WriteFile(filepath.Join(d.dir, "app"), testImage("1.0", 300), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func forced(id string, art nativeproto.WorkArtifact, version string) nativeproto.Work {
	return nativeproto.Work{ID: id, Kind: nativeproto.WorkUpdate, Version: version, Action: actionForced, Artifact: &art}
}

func TestUpdateFileInstaller(t *testing.T) {
	t.Parallel()
	srv := agenttest.NewServer(t)
	img := testImage("2.0", 40<<10)
	art := srv.Publish("app/app-2.0.bin", img, "2.0", testDeviceType)
	d := newFileDevice(t, srv, nil)
	d.mustStep() // enroll, nothing to do
	srv.Deploy(forced("dep_1", art, "2.0"))
	d.mustStep()

	rs := srv.Reports(d.id())
	if got, want := reportStates(rs), []string{"downloading", "downloaded", "installing", "success"}; !slices.Equal(got, want) {
		t.Fatalf("reports = %v, want %v", got, want)
	}
	mustMonotonic(t, rs)
	if got, _ := os.ReadFile(filepath.Join(d.dir, "app")); !bytes.Equal(got, img) {
		t.Error("the target does not hold the new image")
	}
	if dl := d.downloads(); len(dl) != 0 {
		t.Errorf("downloads left after the install: %v", dl)
	}
	d.mustStep()
	if got := srv.Firmware(d.id()); got != "2.0" {
		t.Errorf("firmware reported after the update = %q, want 2.0", got)
	}
	if n := len(srv.Reports(d.id())); n != 4 {
		t.Errorf("%d reports after an idle check-in, want still 4", n)
	}
	// A restart does not report the outcome again.
	d.powerCycle()
	d.mustStep()
	if n := len(srv.Reports(d.id())); n != 4 {
		t.Errorf("%d reports after a restart, want still 4: %v", n, reportStates(srv.Reports(d.id())))
	}
}

func TestUpdateCancelledBeforeInstall(t *testing.T) {
	t.Parallel()
	t.Run("answer to installing", func(t *testing.T) {
		t.Parallel()
		srv := agenttest.NewServer(t)
		art := srv.Publish("app/app-2.0.bin", testImage("2.0", 20<<10), "2.0", testDeviceType)
		d := newFileDevice(t, srv, nil)
		d.mustStep()
		srv.Deploy(forced("dep_1", art, "2.0"))
		srv.OnReport(func(r agenttest.Report) {
			if r.State == stateInstalling {
				srv.Cancel("dep_1") // the operator was faster
			}
		})
		d.mustStep()
		if got, want := reportStates(srv.Reports(d.id())), []string{"downloading", "downloaded", "installing"}; !slices.Equal(got, want) {
			t.Fatalf("reports = %v, want %v", got, want)
		}
		if st := srv.Status("dep_1", d.id()).State; st != rollout.Cancelled {
			t.Fatalf("server state %s, want cancelled", st)
		}
		if v := imageVersion(filepath.Join(d.dir, "app")); v != "1.0" {
			t.Errorf("installed version %q after a cancellation, want 1.0", v)
		}
		if dl := d.downloads(); len(dl) != 0 {
			t.Errorf("download kept after a cancellation: %v", dl)
		}
		if d.a.state.Update != nil {
			t.Errorf("the agent still holds the cancelled update: %+v", d.a.state.Update)
		}
		d.mustStep()
		if n := len(srv.Reports(d.id())); n != 3 {
			t.Errorf("reports after the cancellation: %v", reportStates(srv.Reports(d.id())))
		}
	})
	t.Run("withdrawn while deferred", func(t *testing.T) {
		t.Parallel()
		srv := agenttest.NewServer(t)
		art := srv.Publish("app/app-2.0.bin", testImage("2.0", 20<<10), "2.0", testDeviceType)
		d := newFileDevice(t, srv, func(o *Options) { o.Defer = func(nativeproto.Work) bool { return true } })
		d.mustStep()
		w := forced("dep_1", art, "2.0")
		w.Action, w.InstallBy = actionSoft, time.Now().Add(time.Hour)
		srv.Deploy(w)
		d.mustStep()
		if len(d.downloads()) != 1 {
			t.Fatalf("downloads after deferring: %v, want the staged image", d.downloads())
		}
		srv.Cancel("dep_1")
		d.mustStep()
		if dl := d.downloads(); len(dl) != 0 || d.a.state.Update != nil {
			t.Errorf("after the deployment was withdrawn: downloads %v, update %+v; want neither", dl, d.a.state.Update)
		}
	})
}

func TestUpdateSoftDeferral(t *testing.T) {
	t.Parallel()
	srv := agenttest.NewServer(t)
	img := testImage("2.0", 30<<10)
	art := srv.Publish("app/app-2.0.bin", img, "2.0", testDeviceType)
	var mu sync.Mutex
	now := time.Now()
	asked := 0
	d := newFileDevice(t, srv, func(o *Options) {
		o.Defer = func(w nativeproto.Work) bool {
			asked++
			return true // the user is busy
		}
	})
	d.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	d.mustStep()
	w := forced("dep_soft", art, "2.0")
	w.Action, w.InstallBy = actionSoft, now.Add(time.Hour)
	srv.Deploy(w)
	d.mustStep()
	d.mustStep()
	if got, want := reportStates(srv.Reports(d.id())), []string{"downloading", "downloaded"}; !slices.Equal(got, want) {
		t.Fatalf("reports while deferred = %v, want %v", got, want)
	}
	if asked != 2 {
		t.Errorf("Defer asked %d times in two check-ins, want 2", asked)
	}
	if n := srv.Served(art.Path); n != int64(len(img)) {
		t.Errorf("served %d bytes over two deferred check-ins, want one download of %d", n, len(img))
	}
	mu.Lock()
	now = now.Add(2 * time.Hour) // past InstallBy
	mu.Unlock()
	d.mustStep()
	if asked != 2 {
		t.Errorf("Defer asked after InstallBy (%d calls)", asked)
	}
	if got, want := reportStates(srv.Reports(d.id())), []string{"downloading", "downloaded", "installing", "success"}; !slices.Equal(got, want) {
		t.Errorf("reports = %v, want %v", got, want)
	}
	if v := imageVersion(filepath.Join(d.dir, "app")); v != "2.0" {
		t.Errorf("installed version %q, want 2.0", v)
	}
}

func TestUpdateDownloadOnlyThenInstall(t *testing.T) {
	t.Parallel()
	srv := agenttest.NewServer(t)
	img := testImage("2.0", 50<<10)
	art := srv.Publish("app/app-2.0.bin", img, "2.0", testDeviceType)
	d := newFileDevice(t, srv, nil)
	d.mustStep()
	w := forced("dep_stage", art, "2.0")
	w.Action = actionDownloadOnly
	srv.Deploy(w)
	d.mustStep()
	if got, want := reportStates(srv.Reports(d.id())), []string{"downloading", "downloaded", "success"}; !slices.Equal(got, want) {
		t.Fatalf("reports = %v, want %v", got, want)
	}
	if v := imageVersion(filepath.Join(d.dir, "app")); v != "1.0" {
		t.Errorf("download-only installed version %q", v)
	}
	if dl := d.downloads(); len(dl) != 1 {
		t.Fatalf("staged downloads %v, want the image", dl)
	}
	served := srv.Served(art.Path)
	d.mustStep() // nothing more
	srv.Deploy(forced("dep_install", art, "2.0"))
	d.mustStep()
	if got := reportStates(srv.Reports(d.id())); !slices.Equal(got[3:], []string{"downloading", "downloaded", "installing", "success"}) {
		t.Errorf("reports of the install = %v", got[3:])
	}
	if n := srv.Served(art.Path) - served; n != 0 {
		t.Errorf("the install downloaded %d bytes again; want the staged image reused", n)
	}
	if v := imageVersion(filepath.Join(d.dir, "app")); v != "2.0" {
		t.Errorf("installed version %q, want 2.0", v)
	}
	if dl := d.downloads(); len(dl) != 0 {
		t.Errorf("downloads left after the install: %v", dl)
	}
}

func TestUpdateFailingInstallReportsLog(t *testing.T) {
	t.Parallel()
	srv := agenttest.NewServer(t)
	script := []byte("#!/bin/sh\necho 'writing /opt/app'\necho 'No space left on device' >&2\nexit 3\n")
	art := srv.Publish("app/fix.sh", script, "2.0", testDeviceType)
	d := newTestDevice(t, srv, func(*testDevice) installer.Installer {
		return installer.NewScript(installer.ScriptOptions{Interpreter: "/bin/sh", Timeout: 10 * time.Second})
	}, nil)
	d.mustStep()
	srv.Deploy(forced("dep_script", art, "2.0"))
	d.mustStep()
	rs := srv.Reports(d.id())
	if got, want := reportStates(rs), []string{"downloading", "downloaded", "installing", "failure"}; !slices.Equal(got, want) {
		t.Fatalf("reports = %v, want %v", got, want)
	}
	st := srv.Status("dep_script", d.id())
	if st.State != rollout.Failure || !strings.Contains(st.Log, "No space left on device") || !strings.Contains(st.Log, "exit status 3") {
		t.Errorf("server status = %+v, want failure with the script's output", st)
	}
	d.mustStep()
	if got := srv.Firmware(d.id()); got != "" {
		t.Errorf("firmware %q after a failed update, want unchanged (none)", got)
	}
}

func TestUpdateRefusedWork(t *testing.T) {
	t.Parallel()
	srv := agenttest.NewServer(t)
	d := newFileDevice(t, srv, nil)
	d.mustStep()
	art := srv.Publish("app/app-2.0.bin", testImage("2.0", 1000), "2.0", testDeviceType)
	other := srv.Publish("app/other.bin", testImage("3.0", 1000), "3.0", "another-type")
	bad := forced("dep_bad", art, "2.0")
	bad.Artifact.SHA256 = strings.Repeat("0", 64) // not what the metadata signs
	wrongType := forced("dep_type", other, "3.0")
	noArt := nativeproto.Work{ID: "dep_none", Kind: nativeproto.WorkUpdate}
	for _, w := range []nativeproto.Work{bad, wrongType, noArt} {
		srv.Deploy(w)
		d.mustStep()
		st := srv.Status(w.ID, d.id())
		if st.State != rollout.Failure || st.Log == "" {
			t.Errorf("%s: server status %+v, want failure with a reason", w.ID, st)
		}
		t.Logf("%s: %s", w.ID, st.Log)
	}
	if v := imageVersion(filepath.Join(d.dir, "app")); v != "1.0" {
		t.Errorf("installed version %q, want 1.0", v)
	}
}

func TestUpdateDownloadResumes(t *testing.T) {
	t.Parallel()
	srv := agenttest.NewServer(t)
	img := testImage("2.0", 512<<10)
	art := srv.Publish("app/app-2.0.bin", img, "2.0", testDeviceType)
	d := newFileDevice(t, srv, nil)
	d.mustStep()
	srv.Deploy(forced("dep_1", art, "2.0"))
	srv.CutNextDownload(200_000)
	if err := d.step(); err == nil {
		t.Fatal("Step() through a dropped download succeeded")
	}
	if n := srv.Served(art.Path); n != 200_000 {
		t.Fatalf("served %d bytes before the drop, want 200000", n)
	}
	d.powerCycle() // and the device lost power too
	d.mustStep()
	if n := srv.Served(art.Path); n != int64(len(img)) {
		t.Errorf("served %d bytes in all, want %d: the resumed download fetched more than the rest", n, len(img))
	}
	if got, want := reportStates(srv.Reports(d.id())), []string{"downloading", "downloaded", "installing", "success"}; !slices.Equal(got, want) {
		t.Errorf("reports = %v, want %v", got, want)
	}
	if v := imageVersion(filepath.Join(d.dir, "app")); v != "2.0" {
		t.Errorf("installed version %q, want 2.0", v)
	}
}

func TestUpdateReportRetried(t *testing.T) {
	t.Parallel()
	srv := agenttest.NewServer(t)
	art := srv.Publish("app/app-2.0.bin", testImage("2.0", 10<<10), "2.0", testDeviceType)
	d := newFileDevice(t, srv, nil)
	d.mustStep()
	srv.Deploy(forced("dep_1", art, "2.0"))
	// downloading, downloaded, installing go through; success fails twice.
	srv.OnReport(func(r agenttest.Report) {
		if r.State == stateInstalling {
			srv.FailReports(2)
		}
	})
	_ = d.step()
	if st := srv.Status("dep_1", d.id()).State; st != rollout.Installing {
		t.Fatalf("server state %s, want installing while the outcome is undelivered", st)
	}
	_ = d.step()
	d.powerCycle()
	d.mustStep()
	if st := srv.Status("dep_1", d.id()); st.State != rollout.Success {
		t.Errorf("server status %+v, want success once the report goes through", st)
	}
	if v := imageVersion(filepath.Join(d.dir, "app")); v != "2.0" {
		t.Errorf("installed version %q, want 2.0", v)
	}
}

// abDevice is a device with two slot files and a file-backed boot environment; its
// firmware version is the version of the image in the slot it booted.
func newABDevice(t *testing.T, srv *agenttest.Server, sick *bool) *testDevice {
	t.Helper()
	dir := t.TempDir()
	env := &bootenv.File{Path: filepath.Join(dir, "bootenv")}
	if err := env.Set(t.Context(), map[string]string{bootenv.BootSlot: "A", bootenv.BootLimit: "3"}); err != nil {
		t.Fatal(err)
	}
	slot := map[string]string{"A": filepath.Join(dir, "slot-a"), "B": filepath.Join(dir, "slot-b")}
	if err := os.WriteFile(slot["A"], testImage("1.0", 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(slot["B"], []byte("never written"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newTestDevice(t, srv, func(d *testDevice) installer.Installer {
		return installer.NewAB(installer.ABOptions{
			Env:   &bootenv.File{Path: env.Path},
			Slots: [2]installer.Slot{{Name: "A", Path: slot["A"]}, {Name: "B", Path: slot["B"]}},
			Health: func(context.Context) error {
				if sick != nil && *sick {
					return errors.New("service rampart-app.service failed to start")
				}
				return nil
			},
			HealthTimeout: 10 * time.Second,
		})
	}, func(o *Options) {
		o.Firmware = func() string {
			vars, err := env.Get(context.Background(), bootenv.BootSlot)
			if err != nil {
				return ""
			}
			return imageVersion(slot[vars[bootenv.BootSlot]])
		}
	})
	d.env = env
	return d
}

func (d *testDevice) bootedSlot() string {
	vars, err := d.env.Get(context.Background(), bootenv.BootSlot, bootenv.UpgradeAvailable)
	if err != nil {
		d.t.Fatal(err)
	}
	if vars[bootenv.UpgradeAvailable] == "1" {
		return "trial " + vars[bootenv.BootSlot]
	}
	return vars[bootenv.BootSlot]
}

func TestUpdateAB(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		sick      bool
		wantState string
		wantSlot  string
		wantFW    string
	}{
		{name: "healthy", wantState: "success", wantSlot: "B", wantFW: "2.0"},
		{name: "health check fails", sick: true, wantState: "rolled-back", wantSlot: "A", wantFW: "1.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := agenttest.NewServer(t)
			art := srv.Publish("fw/rootfs-2.0.img", testImage("2.0", 96<<10), "2.0", testDeviceType)
			sick := tc.sick
			d := newABDevice(t, srv, &sick)
			d.mustStep()
			if got := srv.Firmware(d.id()); got != "1.0" {
				t.Fatalf("firmware = %q, want 1.0", got)
			}
			srv.Deploy(forced("dep_ab", art, "2.0"))
			d.mustStep() // download, install, switch, reboot
			if got, want := reportStates(srv.Reports(d.id())), []string{"downloading", "downloaded", "installing", "rebooting"}; !slices.Equal(got, want) {
				t.Fatalf("reports before the reboot = %v, want %v", got, want)
			}
			if d.boots != 1 {
				t.Fatalf("%d reboots, want 1", d.boots)
			}
			d.mustStep() // health check, commit or roll back (and reboot back)
			rs := srv.Reports(d.id())
			if got, want := reportStates(rs), []string{"downloading", "downloaded", "installing", "rebooting", "verifying", tc.wantState}; !slices.Equal(got, want) {
				t.Fatalf("reports = %v, want %v", got, want)
			}
			mustMonotonic(t, rs)
			st := srv.Status("dep_ab", d.id())
			if tc.sick && !strings.Contains(st.Log, "failed to start") {
				t.Errorf("rolled-back status %+v has no log excerpt of the health check", st)
			}
			d.mustStep()
			if got := d.bootedSlot(); got != tc.wantSlot {
				t.Errorf("booted slot %s, want %s", got, tc.wantSlot)
			}
			if got := srv.Firmware(d.id()); got != tc.wantFW {
				t.Errorf("firmware reported = %q, want %s", got, tc.wantFW)
			}
			if n := len(srv.Reports(d.id())); n != 6 {
				t.Errorf("%d reports, want 6: %v", n, reportStates(srv.Reports(d.id())))
			}
		})
	}
}

// TestUpdatePowerLoss cuts the power at every point of the flow where a step has just been
// made durable (the installer's journal steps and the agent's own), restarts the device, and
// checks that the update ends exactly as it would have without the power loss.
func TestUpdatePowerLoss(t *testing.T) {
	t.Parallel()
	agentPoints := []string{"downloaded", "reported:downloaded", "installing", "reported:installing", "installed",
		"reboot", "reported:rebooting", "reported:verifying", "outcome", "reported:success"}
	type tc struct {
		kind, killAt string
		sick         bool
	}
	var cases []tc
	abHappy := []string{"begin", "copying", "written", "verified", "env-switched", "switched", "health", "commit-env", "committed"}
	for _, p := range append(slices.Clone(agentPoints), abHappy...) {
		cases = append(cases, tc{kind: "ab", killAt: p})
	}
	for _, p := range []string{"switched", "health", "rollback-env", "rolled-back", "outcome", "reported:rolled-back", "reported:verifying"} {
		cases = append(cases, tc{kind: "ab", killAt: p, sick: true})
	}
	for _, p := range []string{"downloaded", "installing", "written", "swap-half", "switched", "outcome", "reported:success"} {
		cases = append(cases, tc{kind: "file", killAt: p})
	}
	for _, p := range []string{"switched", "rolling-back", "restore-half", "rolled-back", "outcome"} {
		cases = append(cases, tc{kind: "file", killAt: p, sick: true})
	}
	for _, c := range cases {
		name := fmt.Sprintf("%s/%s", c.kind, c.killAt)
		if c.sick {
			name = fmt.Sprintf("%s-sick/%s", c.kind, c.killAt)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := agenttest.NewServer(t)
			img := testImage("2.0", 200<<10)
			art := srv.Publish("fw/image-2.0.img", img, "2.0", testDeviceType)
			sick := c.sick
			var d *testDevice
			var installed func() string
			if c.kind == "ab" {
				d = newABDevice(t, srv, &sick)
				installed = func() string { return d.bootedSlot() }
			} else {
				d = newTestDevice(t, srv, fileInstaller(&sick), nil)
				if err := os.WriteFile(filepath.Join(d.dir, "app"), testImage("1.0", 300), 0o644); err != nil {
					t.Fatal(err)
				}
				installed = func() string { return imageVersion(filepath.Join(d.dir, "app")) }
			}
			d.mustStep()
			d.killAt = c.killAt
			srv.Deploy(forced("dep_pl", art, "2.0"))
			d.runUntil("dep_pl")
			if !d.killed {
				t.Fatalf("failpoint %q never reached", c.killAt)
			}
			d.mustStep()
			want, wantInstalled, wantFW := rollout.Success, map[string]string{"ab": "B", "file": "2.0"}[c.kind], "2.0"
			if c.sick {
				want, wantInstalled, wantFW = rollout.RolledBack, map[string]string{"ab": "A", "file": "1.0"}[c.kind], "1.0"
				if c.kind == "file" {
					wantFW = "" // the file device reports the version of its last successful update
				}
			}
			st := srv.Status("dep_pl", d.id())
			rs := srv.Reports(d.id())
			if st.State != want {
				t.Fatalf("final state %s, want %s; reports %v", st.State, want, reportStates(rs))
			}
			if c.sick && st.Log == "" {
				t.Error("rolled back without a log excerpt")
			}
			mustMonotonic(t, rs)
			finals := 0
			for _, r := range rs {
				if terminalState(r.State) {
					finals++
				}
			}
			if finals < 1 || finals > 2 {
				t.Errorf("%d final reports, want 1 (2 if the power failed right after one): %v", finals, reportStates(rs))
			}
			if got := installed(); got != wantInstalled {
				t.Errorf("installed %s, want %s", got, wantInstalled)
			}
			if got := srv.Firmware(d.id()); got != wantFW {
				t.Errorf("firmware reported %q, want %q", got, wantFW)
			}
			if dl := d.downloads(); len(dl) != 0 {
				t.Errorf("downloads left: %v", dl)
			}
		})
	}
}

func TestUpdateViaDelta(t *testing.T) {
	t.Parallel()
	srv := agenttest.NewServer(t)
	old := testImage("1.0", 256<<10)
	img := append(bytes.Clone(old[:100<<10]), append([]byte("a small change in the middle"), old[100<<10:]...)...)
	copy(img, "IMAGE version=2.0\n")
	var patch bytes.Buffer
	if err := delta.Encode(t.Context(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(img), &patch, delta.EncodeOptions{}); err != nil {
		t.Fatal(err)
	}
	art := srv.Publish("app/app-2.0.bin", img, "2.0", testDeviceType)
	del := srv.Publish("app/app-1.0-2.0.delta", patch.Bytes(), "2.0", testDeviceType)
	del.DeltaFrom = "1.0"
	d := newTestDevice(t, srv, fileInstaller(nil), func(o *Options) {
		o.Firmware = func() string { return imageVersion(filepath.Join(filepath.Dir(o.StateDir), "app")) }
	})
	if err := os.WriteFile(filepath.Join(d.dir, "app"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	d.mustStep()
	w := forced("dep_delta", art, "2.0")
	w.Deltas = []nativeproto.WorkArtifact{{Path: "releases/app/other.delta", DeltaFrom: "0.9", SHA256: del.SHA256, Grant: "x"}, del}
	srv.Deploy(w)
	d.mustStep()
	if st := srv.Status("dep_delta", d.id()).State; st != rollout.Success {
		t.Fatalf("server state %s, want success", st)
	}
	if got, _ := os.ReadFile(filepath.Join(d.dir, "app")); !bytes.Equal(got, img) {
		t.Error("the installed image is not 2.0")
	}
	if full, dl := srv.Served(art.Path), srv.Served(del.Path); full != 0 || dl != int64(patch.Len()) {
		t.Errorf("served %d bytes of the full image and %d of the %d-byte delta; want only the delta", full, dl, patch.Len())
	}
	d.mustStep()
	if got := srv.Firmware(d.id()); got != "2.0" {
		t.Errorf("firmware = %q, want 2.0", got)
	}
}
