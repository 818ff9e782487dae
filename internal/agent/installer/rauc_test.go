package installer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mathrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/agent/journal"
)

// requireTools skips t unless every tool is on PATH. With RAMPART_REQUIRE_TOOLS=1 (set by
// .ci/run) a missing tool fails the test instead, so CI cannot pass by skipping.
func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, tool+" is not installed")
		}
	}
}

// requireRoot skips t (or fails it under RAMPART_REQUIRE_TOOLS=1) unless the test runs as
// root; why says what needs it.
func requireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "not root, which "+why+" needs")
	}
}

func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("RAMPART_REQUIRE_TOOLS") == "1" {
		t.Fatalf("RAMPART_REQUIRE_TOOLS=1 but %s", what)
	}
	t.Skip(what)
}

// mustSigningCert writes a self-signed P-256 certificate and its key into dir; RAUC bundles
// and SWUpdate images are signed with it and verified against it.
func mustSigningCert(t testing.TB, dir, name string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// raucBootloader is the one fake in the RAUC tests: there is no bootloader in a test, so RAUC's
// custom bootloader backend is this script, which keeps U-Boot's BOOT_ORDER and BOOT_x_LEFT
// (trial boots left) as files; raucDevice.reboot plays the bootloader's boot script on them.
const raucBootloader = `#!/bin/sh
d=$(dirname "$0")/bootloader
left() { cat "$d/left.$1"; }
# put FILE VALUE replaces FILE at once: the service may read while it installs.
put() { echo "$2" > "$d/$1.$$" && mv "$d/$1.$$" "$d/$1"; }
case "$1" in
get-primary)
	for s in $(cat "$d/order"); do
		if [ "$(left "$s")" -gt 0 ]; then echo "$s"; exit 0; fi
	done
	exit 1 ;;
set-primary)
	order=$2
	for s in $(cat "$d/order"); do [ "$s" = "$2" ] || order="$order $s"; done
	put order "$order"
	put "left.$2" 3 ;;
get-state)
	if [ "$(left "$2")" -gt 0 ]; then echo good; else echo bad; fi ;;
set-state)
	# A test that wants rauc to hang creates the file "hang".
	while [ -e "$d/hang" ]; do sleep 0.05; done
	case "$3" in good) put "left.$2" 3 ;; bad) put "left.$2" 0 ;; *) exit 1 ;; esac ;;
*)
	exit 1 ;;
esac
`

// raucDevice is a device with two raw slots (files), the real rauc service on a private D-Bus
// bus, and the fake bootloader above.
type raucDevice struct {
	t        testing.TB
	dir      string
	env      []string // reaches the private bus
	booted   string   // bootname the "kernel" booted
	old, new []byte   // the image in slot A at the start, the image in the bundle
	service  *exec.Cmd
}

func newRAUCDevice(t testing.TB) *raucDevice {
	t.Helper()
	requireTools(t, "rauc", "mksquashfs", "dbus-daemon")
	requireRoot(t, "rauc install (it mounts the bundle)")
	dir := t.TempDir()
	rng := mathrand.New(mathrand.NewPCG(3, 4))
	d := &raucDevice{t: t, dir: dir, booted: "A", old: randomBytes(rng, 150<<10+3), new: randomBytes(rng, 120<<10+9)}
	mustWriteBytes(t, filepath.Join(dir, "slot-a"), d.old)
	mustWriteBytes(t, filepath.Join(dir, "slot-b"), randomBytes(rng, 200<<10))
	mustWrite(t, filepath.Join(dir, "bootloader.sh"), raucBootloader)
	mustWrite(t, filepath.Join(dir, "bootloader", "order"), "A B\n")
	mustWrite(t, filepath.Join(dir, "bootloader", "left.A"), "3\n")
	mustWrite(t, filepath.Join(dir, "bootloader", "left.B"), "0\n")
	if err := os.Mkdir(filepath.Join(dir, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	cert, _ := mustSigningCert(t, dir, "rauc-signer")
	mustWrite(t, filepath.Join(dir, "system.conf"), fmt.Sprintf(`[system]
compatible=rampart-test
bootloader=custom
mountprefix=%[1]s/mnt
statusfile=%[1]s/status.raucs

[handlers]
bootloader-custom-backend=%[1]s/bootloader.sh

[keyring]
path=%[2]s

[slot.rootfs.0]
device=%[1]s/slot-a
type=raw
bootname=A

[slot.rootfs.1]
device=%[1]s/slot-b
type=raw
bootname=B
`, dir, cert))
	d.startBus()
	d.startService()
	return d
}

func mustWriteBytes(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startBus starts a private dbus-daemon; its socket lives in a short directory because a
// socket path is limited to 107 bytes.
func (d *raucDevice) startBus() {
	t := d.t
	t.Helper()
	sock, err := os.MkdirTemp("", "rauc-bus")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	conf := filepath.Join(d.dir, "bus.conf")
	mustWrite(t, conf, `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=`+sock+`/bus</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`)
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--print-address")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v", err)
	}
	d.env = []string{"DBUS_SESSION_BUS_ADDRESS=" + strings.TrimSpace(addr), "DBUS_STARTER_BUS_TYPE=session"}
}

// startService starts "rauc service" as it would come up after booting d.booted (the real
// service, told which slot booted because there is no kernel command line to read it from),
// and waits until it answers.
func (d *raucDevice) startService() {
	t := d.t
	t.Helper()
	cmd := exec.Command("rauc", "service", "--conf="+filepath.Join(d.dir, "system.conf"), "--override-boot-slot="+d.booted)
	cmd.Env = append(cmd.Environ(), d.env...)
	logPath := filepath.Join(d.dir, "service.log")
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.service = cmd
	t.Cleanup(d.stopService)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := exec.Command("rauc", "status")
		st.Env = append(st.Environ(), d.env...)
		out, err := st.CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rauc service did not answer: %v: %s\nservice log:\n%s", err, out, mustRead(t, logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *raucDevice) stopService() {
	if d.service == nil {
		return
	}
	d.service.Process.Kill()
	d.service.Wait()
	d.service = nil
}

// reboot is a power cycle: the service stops, the fake bootloader picks a slot the way
// U-Boot's RAUC boot script does (the first slot in BOOT_ORDER with trial boots left, one of
// which it uses up), the slot it picked must hold a whole image, and the service starts again.
func (d *raucDevice) reboot() {
	t := d.t
	t.Helper()
	d.stopService()
	bl := filepath.Join(d.dir, "bootloader")
	d.booted = ""
	for _, s := range strings.Fields(mustRead(t, filepath.Join(bl, "order"))) {
		left, err := strconv.Atoi(strings.TrimSpace(mustRead(t, filepath.Join(bl, "left."+s))))
		if err != nil {
			t.Fatal(err)
		}
		if left > 0 {
			mustWrite(t, filepath.Join(bl, "left."+s), strconv.Itoa(left-1)+"\n")
			d.booted = s
			break
		}
	}
	if d.booted == "" {
		t.Fatal("the bootloader finds no slot with boots left")
	}
	want, path := d.old, filepath.Join(d.dir, "slot-a")
	if d.booted == "B" {
		want, path = d.new, filepath.Join(d.dir, "slot-b")
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, want) {
		t.Fatalf("the bootloader boots slot %s, which does not hold its whole image", d.booted)
	}
	d.startService()
}

// bundle builds a signed bundle of d.new with the real "rauc bundle".
func (d *raucDevice) bundle(name, compatible string) string {
	t := d.t
	t.Helper()
	content := filepath.Join(d.dir, name+".content")
	if err := os.Mkdir(content, 0o755); err != nil {
		t.Fatal(err)
	}
	mustWriteBytes(t, filepath.Join(content, "rootfs.img"), d.new)
	mustWrite(t, filepath.Join(content, "manifest.raucm"), "[update]\ncompatible="+compatible+
		"\nversion=2.0\n\n[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=rootfs.img\n")
	cert, key := filepath.Join(d.dir, "rauc-signer.pem"), filepath.Join(d.dir, "rauc-signer.key")
	out := filepath.Join(d.dir, name+".raucb")
	if b, err := exec.Command("rauc", "bundle", "--cert="+cert, "--key="+key, content, out).CombinedOutput(); err != nil {
		t.Fatalf("rauc bundle: %v\n%s", err, b)
	}
	return out
}

func (d *raucDevice) installer(healthFails bool, timeout time.Duration) *RAUC {
	return NewRAUC(RAUCOptions{
		Env:     d.env,
		Timeout: timeout,
		Health: func(ctx context.Context) error {
			if healthFails {
				return errors.New("service did not start")
			}
			return nil
		},
		HealthTimeout: 10 * time.Second,
	})
}

// status is the real "rauc status" of the device.
func (d *raucDevice) status() raucStatus {
	d.t.Helper()
	st, err := NewRAUC(RAUCOptions{Env: d.env}).status(d.t.Context())
	if err != nil {
		d.t.Fatal(err)
	}
	return st
}

func TestRAUC(t *testing.T) {
	t.Parallel()
	happy := []string{"", "begin", "installed", "written", "switched", "health", "commit", "committed"}
	sick := []string{"", "begin", "installed", "written", "switched", "health", "rolling-back", "rollback-marked", "rolled-back"}
	var cases []powerLossCase
	for _, p := range happy {
		cases = append(cases, powerLossCase{name: "healthy/" + p, killAt: p, wantOutcome: StepCommitted, wantSlot: "B"})
	}
	for _, p := range sick {
		cases = append(cases, powerLossCase{name: "health-fails/" + p, killAt: p, healthFails: true, wantOutcome: StepRolledBack, wantSlot: "A"})
	}
	for _, p := range []string{"", "switched"} {
		cases = append(cases, powerLossCase{name: "bad-image/" + p, killAt: p, badImage: true, wantOutcome: StepRolledBack, wantSlot: "A"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lockRAUC(t)
			testRAUC(t, c)
		})
	}
}

// testRAUC runs boot sessions of the agent until the update ends, crashing the agent once at
// c.killAt (a panic unwinding out of the flow, as in TestFileCrash) and power-cycling the
// device after every session that asks for a reboot or crashed.
func testRAUC(t *testing.T, c powerLossCase) {
	d := newRAUCDevice(t)
	bundle := d.bundle("update", "rampart-test")
	jpath := filepath.Join(d.dir, "journal")
	killAt, hit := c.killAt, false
	for session := 0; ; session++ {
		if session > 12 {
			t.Fatalf("no final state after %d boots", session)
		}
		if !c.badImage || d.booted != "B" { // a bad image panics before the agent starts
			r := d.installer(c.healthFails, time.Minute)
			point := killAt
			r.failpoint = func(p string) {
				if p == point {
					panic(powerLoss(p))
				}
			}
			res, crashed := crashSession(t, jpath, r, Update{Deployment: "d1", Image: bundle, SHA256: fileSHA(d.dir, "update.raucb")})
			if crashed {
				hit, killAt = true, ""
			} else if res.Outcome.String() == c.wantOutcome && !res.Reboot {
				break
			}
		}
		d.reboot()
	}
	if c.killAt != "" && !hit {
		t.Errorf("failpoint %q never reached", c.killAt)
	}
	if d.booted != c.wantSlot {
		t.Errorf("final boot slot = %s, want %s", d.booted, c.wantSlot)
	}
	st := d.status()
	if p, _ := st.slot(st.Primary); p.Bootname != c.wantSlot {
		t.Errorf("rauc status: primary %s (%s), want the slot booting %s", st.Primary, p.Bootname, c.wantSlot)
	}
	j, err := journal.Open(jpath)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if e, _ := j.Last(); e.Step != c.wantOutcome || e.Deployment != "d1" || (e.Step == StepRolledBack && e.Data["reason"] == "") {
		t.Errorf("last journal step = %+v, want %s of d1 (with a reason if rolled back)", e, c.wantOutcome)
	}
}

// crashSession is one boot session of the agent: Resume, then Install if nothing is in
// progress. crashed reports that a failpoint panicked with powerLoss.
func crashSession(t *testing.T, jpath string, in Installer, u Update) (res Result, crashed bool) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(powerLoss); !ok {
				panic(r)
			}
			crashed = true
		}
	}()
	j, err := journal.Open(jpath)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	res, err = in.Resume(t.Context(), j)
	if err == nil && res.Outcome == OutcomeNone {
		if err = in.Install(t.Context(), u, j); err == nil {
			res = Result{Outcome: OutcomeInstalled, Deployment: u.Deployment, Reboot: true}
		}
	}
	if err != nil {
		t.Fatalf("agent session: %v", err)
	}
	return res, false
}

func TestRAUCInstallFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		compatible string
		sha256     func(d *raucDevice) string
		wantErr    error
		wantLog    string // in the *LogError
	}{
		{"incompatible", "another-device", nil, nil, "Compatible mismatch"},
		{"wrong sha256", "rampart-test", func(*raucDevice) string { return sha("something else") }, rampart.ErrInvalid, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lockRAUC(t)
			ctx := t.Context()
			d := newRAUCDevice(t)
			u := Update{Deployment: "d1", Image: d.bundle("update", tc.compatible)}
			if tc.sha256 != nil {
				u.SHA256 = tc.sha256(d)
			}
			j := newTestJournal(t)
			r := d.installer(false, time.Minute)
			err := r.Install(ctx, u, j)
			var le *LogError
			switch {
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("Install = %v, want %v", err, tc.wantErr)
			case tc.wantLog != "" && (!errors.As(err, &le) || !strings.Contains(le.Log, tc.wantLog)):
				t.Errorf("Install = %v, want a LogError whose log has %q", err, tc.wantLog)
			}
			if res, err := r.Resume(ctx, j); err != nil || res.Outcome != OutcomeFailed || res.Reason == "" {
				t.Errorf("Resume = %+v, %v, want failed with a reason", res, err)
			}
			if st := d.status(); st.Primary != "rootfs.0" {
				t.Errorf("primary slot after a failed install = %s, want rootfs.0", st.Primary)
			}
			d.reboot()
			if d.booted != "A" {
				t.Errorf("boots %s after a failed install, want A", d.booted)
			}
		})
	}
}

// TestRAUCTimeout hangs the bootloader backend (the fake, on purpose) so that rauc install
// does not finish; the client is stopped at the timeout and the install journaled failed.
func TestRAUCTimeout(t *testing.T) {
	t.Parallel()
	lockRAUC(t)
	ctx := t.Context()
	d := newRAUCDevice(t)
	bundle := d.bundle("update", "rampart-test")
	hang := filepath.Join(d.dir, "bootloader", "hang")
	mustWrite(t, hang, "")
	// Let the service finish (and unmount the bundle) before it is stopped; Cleanup runs
	// last-in first-out, so this runs before stopService.
	t.Cleanup(func() {
		os.Remove(hang)
		d.waitUnmounted()
	})
	j := newTestJournal(t)
	r := d.installer(false, 2*time.Second)
	start := time.Now()
	err := r.Install(ctx, Update{Deployment: "d1", Image: bundle}, j)
	var le *LogError
	if !errors.As(err, &le) || !strings.Contains(le.Error(), "timed out") || !strings.Contains(le.Log, "Installing") {
		t.Errorf("Install = %v, want a LogError that timed out with rauc's progress in its log", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("Install took %s with a 2s timeout", took)
	}
	if got := lastStep(j); got != StepFailed {
		t.Errorf("last step = %q, want %q", got, StepFailed)
	}

	// The service outlives the client: once unblocked, it finishes and activates slot B
	// although the journal says failed.
	os.Remove(hang)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err := NewRAUC(RAUCOptions{Env: d.env}).status(ctx) // may be refused while it installs
		if err == nil && st.Primary == "rootfs.1" {
			d.waitUnmounted()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rauc service did not finish the abandoned install: %+v, %v", st, err)
		}
	}
	// The next update starts by making the booted slot primary again, so that a power loss
	// right after "begin" boots A, not the slot of the abandoned install.
	jpath := filepath.Join(d.dir, "journal2")
	r2 := d.installer(false, time.Minute)
	r2.failpoint = func(p string) {
		if p == "begin" {
			panic(powerLoss(p))
		}
	}
	u := Update{Deployment: "d2", Image: bundle}
	if _, crashed := crashSession(t, jpath, r2, u); !crashed {
		t.Fatal("no crash at begin")
	}
	d.reboot()
	if d.booted != "A" {
		t.Fatalf("boots %s after a power loss at begin, want A", d.booted)
	}
	for session := 0; ; session++ {
		if session > 6 {
			t.Fatalf("no final state after %d boots", session)
		}
		if res, _ := crashSession(t, jpath, d.installer(false, time.Minute), u); res.Outcome == OutcomeCommitted && !res.Reboot {
			break
		}
		d.reboot()
	}
	if d.booted != "B" {
		t.Errorf("final boot slot = %s, want B", d.booted)
	}
}

// waitUnmounted waits until the service has unmounted the bundle, which it does last.
func (d *raucDevice) waitUnmounted() {
	mnt := filepath.Join(d.dir, "mnt")
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil || !bytes.Contains(b, []byte(mnt)) {
			return
		}
	}
	d.t.Errorf("rauc service still has the bundle mounted under %s", mnt)
}

func TestParseRAUCStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file             string
		booted, primary  string
		slots, bootSlots int
	}{
		{"after-install.json", "A", "rootfs.0", 2, 2},
		{"detailed-booted-b.json", "B", "rootfs.0", 2, 2},
		{"child-slots.json", "A", "rootfs.0", 4, 2},
	} {
		t.Run(tc.file, func(t *testing.T) {
			lockRAUC(t)
			st, err := parseRAUCStatus([]byte(mustRead(t, filepath.Join("testdata", "rauc-status", tc.file))))
			if err != nil {
				t.Fatal(err)
			}
			boots := 0
			for _, s := range st.Slots {
				if _, ok := st.bootSlot(s.Bootname); ok && s.Parent == "" {
					boots++
				}
			}
			if st.Booted != tc.booted || st.Primary != tc.primary || len(st.Slots) != tc.slots || boots != tc.bootSlots {
				t.Errorf("parseRAUCStatus = booted %q, primary %q, %d slots (%d bootable), want %q, %q, %d (%d)",
					st.Booted, st.Primary, len(st.Slots), boots, tc.booted, tc.primary, tc.slots, tc.bootSlots)
			}
		})
	}
	for _, bad := range []string{
		`{"slots":[{"":{}}]}`,
		`{"slots":[{"rootfs.0":{"bootname":"A"}},{"rootfs.0":{"bootname":"B"}}]}`,
		`{"slots":[{"rootfs.0":{"bootname":"A"}},{"rootfs.1":{"bootname":"A"}}]}`,
		`{"slots":[{"rootfs.0":{"bootname":7}}]}`,
	} {
		if _, err := parseRAUCStatus([]byte(bad)); err == nil {
			t.Errorf("parseRAUCStatus(%s) accepted it", bad)
		}
	}
}

func FuzzParseRAUCStatus(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/rauc-status/*.json")
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseRAUCStatus(b)
		if err != nil {
			return
		}
		names := map[string]bool{}
		for _, s := range st.Slots {
			if s.Name == "" || names[s.Name] {
				t.Fatalf("accepted a nameless or repeated slot %q from %q", s.Name, b)
			}
			names[s.Name] = true
			if got, ok := st.bootSlot(s.Bootname); s.Bootname != "" && s.Parent == "" && (!ok || got != s) {
				t.Fatalf("bootSlot(%q) = %+v, %v, want %+v", s.Bootname, got, ok, s)
			}
		}
	})
}

// raucMu serializes the RAUC installs of parallel tests: each test runs its own rauc service,
// but they share the kernel's loop devices, and rauc fails ("Error getting loop backing_file")
// when another test's bundle is detached while it looks at them.
var raucMu sync.Mutex

func lockRAUC(t *testing.T) {
	raucMu.Lock()
	t.Cleanup(raucMu.Unlock)
}
