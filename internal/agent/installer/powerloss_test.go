package installer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/agent/bootenv"
	"github.com/rampart-iot/rampart/internal/agent/journal"
)

// The power-loss harness re-executes this test binary as the "agent". The child runs one boot
// session (Resume, or Install if nothing is in progress) with a failpoint hook: when the flow
// reaches the point named in childKillAt (after the preceding step is durable), the child
// prints "at POINT" and blocks, and the parent SIGKILLs it. A real SIGKILL, rather than an
// os.Exit from inside the hook, makes sure no deferred code, buffered write or Close runs
// after the point, and the handshake makes the kill point exact rather than a race against a
// poller. Then the parent "reboots": it runs bootenv.SimulateBoot, checks that the booted
// slot holds exactly the old or exactly the new image, and starts the next session.
const (
	childDir    = "RAMPART_TEST_AB_DIR"
	childKillAt = "RAMPART_TEST_AB_KILL_AT"
	childHealth = "RAMPART_TEST_AB_HEALTH"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDir); dir != "" {
		os.Exit(childMain(dir, os.Getenv(childKillAt), os.Getenv(childHealth) == "fail"))
	}
	os.Exit(m.Run())
}

// harnessAB is the installer both parent and child build over dir.
func harnessAB(dir string, healthFails bool) *AB {
	return NewAB(ABOptions{
		Env: &bootenv.File{Path: filepath.Join(dir, "bootenv")},
		Slots: [2]Slot{
			{Name: "A", Path: filepath.Join(dir, "slot-a")},
			{Name: "B", Path: filepath.Join(dir, "slot-b")},
		},
		Health: func(ctx context.Context) error {
			if healthFails {
				return errors.New("service did not start")
			}
			return nil
		},
		HealthTimeout: 10 * time.Second,
	})
}

func childMain(dir, killAt string, healthFails bool) int {
	ctx := context.Background()
	a := harnessAB(dir, healthFails)
	seen := map[string]int{}
	a.failpoint = func(p string) {
		seen[p]++
		if p == killAt || fmt.Sprintf("%s#%d", p, seen[p]) == killAt {
			fmt.Printf("at %s\n", killAt)
			time.Sleep(time.Hour) // the parent kills us here
		}
	}
	j, err := journal.Open(filepath.Join(dir, "journal"))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	r, err := a.Resume(ctx, j)
	if err == nil && r.Outcome == OutcomeNone {
		u := Update{Deployment: "d1", Image: filepath.Join(dir, "image"), SHA256: fileSHA(dir, "image")}
		if err = a.Install(ctx, u, j); err == nil {
			r = Result{Outcome: OutcomeInstalled, Deployment: u.Deployment, Reboot: true}
		}
	}
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Printf("result %s reboot=%v\n", r.Outcome, r.Reboot)
	return 0
}

func fileSHA(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// runChild runs one boot session of the agent and returns the point it was killed at ("" if
// it ran to the end) and its result line.
func runChild(t *testing.T, dir, killAt string, healthFails bool) (killed, result string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0])
	// atexit_sleep_ms=0: under -race a child would otherwise linger a second at exit.
	cmd.Env = append(os.Environ(), childDir+"="+dir, childKillAt+"="+killAt, "GORACE=atexit_sleep_ms=0")
	if healthFails {
		cmd.Env = append(cmd.Env, childHealth+"=fail")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "at "); ok {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL: the simulated power loss
				t.Fatal(err)
			}
			cmd.Wait()
			return p, ""
		}
		result = line
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("agent session: %v: %s\n%s", err, result, stderr.String())
	}
	return "", result
}

type powerLossCase struct {
	name        string
	killAt      string // failpoint; "" runs without a power loss
	healthFails bool   // the health check fails after the reboot
	badImage    bool   // the new slot never boots far enough to run the agent
	wantOutcome string
	wantSlot    string
}

func TestPowerLoss(t *testing.T) {
	t.Parallel()
	happy := []string{"", "begin", "copying#1", "copying#3", "written", "verified", "env-switched", "switched", "health", "commit-env", "committed"}
	sick := []string{"", "begin", "copying#2", "written", "verified", "env-switched", "switched", "health", "rollback-env", "rolled-back"}
	var cases []powerLossCase
	for _, p := range happy {
		cases = append(cases, powerLossCase{name: "healthy/" + p, killAt: p, wantOutcome: "committed", wantSlot: "B"})
	}
	for _, p := range sick {
		cases = append(cases, powerLossCase{name: "health-fails/" + p, killAt: p, healthFails: true, wantOutcome: "rolled-back", wantSlot: "A"})
	}
	for _, p := range []string{"", "switched"} {
		cases = append(cases, powerLossCase{name: "bad-image/" + p, killAt: p, badImage: true, wantOutcome: "rolled-back", wantSlot: "A"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			testPowerLoss(t, c)
		})
	}
}

func testPowerLoss(t *testing.T, c powerLossCase) {
	ctx := t.Context()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	oldImage := randomBytes(rng, 200<<10+17)
	newImage := randomBytes(rng, 300<<10+5)
	for name, b := range map[string][]byte{"slot-a": oldImage, "slot-b": randomBytes(rng, 100<<10), "image": newImage} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := &bootenv.File{Path: filepath.Join(dir, "bootenv")}
	if err := env.Set(ctx, map[string]string{bootenv.BootSlot: "A", bootenv.BootLimit: "3"}); err != nil {
		t.Fatal(err)
	}
	content := map[string][]byte{"A": oldImage, "B": newImage}
	slotPath := map[string]string{"A": filepath.Join(dir, "slot-a"), "B": filepath.Join(dir, "slot-b")}

	killAt, hit, booted, last := c.killAt, false, "A", ""
	for session := 0; ; session++ {
		if session > 12 {
			t.Fatalf("no final state after %d boots; last result %q", session, last)
		}
		if c.badImage && booted == "B" {
			last = "" // the kernel panics before the agent starts
		} else {
			killed, result := runChild(t, dir, killAt, c.healthFails)
			if killed != "" {
				hit, killAt = true, "" // power comes back; no second failure
			}
			last = result
			if killed != "" {
				last = "power loss at " + killed
			}
			if result == "result "+c.wantOutcome+" reboot=false" {
				break
			}
		}
		// Reboot: the bootloader picks a slot, which must hold a whole image.
		var err error
		booted, err = bootenv.SimulateBoot(ctx, env, [2]string{"A", "B"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(slotPath[booted])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content[booted]) {
			t.Fatalf("after %q the bootloader boots slot %s with %d bytes that are not the image it should hold (old %d, new %d bytes)",
				last, booted, len(got), len(oldImage), len(newImage))
		}
	}
	if c.killAt != "" && !hit {
		t.Errorf("failpoint %q never reached", c.killAt)
	}
	if booted != c.wantSlot {
		t.Errorf("final boot slot = %s, want %s", booted, c.wantSlot)
	}
	vars, err := env.Get(ctx, bootenv.BootSlot, bootenv.UpgradeAvailable)
	if err != nil || vars[bootenv.BootSlot] != c.wantSlot || vars[bootenv.UpgradeAvailable] != "0" {
		t.Errorf("final env = %v, %v, want boot_slot=%s upgrade_available=0", vars, err, c.wantSlot)
	}
	j, err := journal.Open(filepath.Join(dir, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if e, _ := j.Last(); e.Step != c.wantOutcome || e.Deployment != "d1" {
		t.Errorf("last journal step = %+v, want %s of d1", e, c.wantOutcome)
	}
	if c.wantOutcome == StepRolledBack {
		if e, _ := j.Last(); e.Data["reason"] == "" {
			t.Errorf("rolled-back entry has no reason for the report: %+v", e)
		}
	}
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}
