package installer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/agent/bootenv"
	"github.com/rampart-iot/rampart/internal/agent/journal"
)

func newTestJournal(t testing.TB) *journal.Journal {
	t.Helper()
	j, err := journal.Open(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func mustWrite(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func lastStep(j *journal.Journal) string {
	e, _ := j.Last()
	return e.Step
}

func TestABRefusesBadImage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	a := harnessAB(dir, false)
	mustWrite(t, filepath.Join(dir, "slot-a"), "old")
	mustWrite(t, filepath.Join(dir, "image"), "new image")
	j := newTestJournal(t)
	err := a.Install(ctx, Update{Deployment: "d1", Image: filepath.Join(dir, "image"), SHA256: sha("something else")}, j)
	if !errors.Is(err, rampart.ErrInvalid) {
		t.Fatalf("Install(wrong sha256) = %v, want ErrInvalid", err)
	}
	if got := lastStep(j); got != StepFailed {
		t.Errorf("last step = %q, want %q", got, StepFailed)
	}
	if slot, err := bootenv.SimulateBoot(ctx, a.o.Env, [2]string{"A", "B"}); err != nil || slot != "A" {
		t.Errorf("boots %q, %v after a refused image, want A", slot, err)
	}
	if r, err := a.Resume(ctx, j); err != nil || r.Outcome != OutcomeFailed || r.Reason == "" {
		t.Errorf("Resume = %+v, %v, want failed with a reason", r, err)
	}
	// The next update may start.
	if err := a.Install(ctx, Update{Deployment: "d2", Image: filepath.Join(dir, "image")}, j); err != nil {
		t.Fatalf("Install(d2) = %v", err)
	}
	if err := a.Install(ctx, Update{Deployment: "d3", Image: filepath.Join(dir, "image")}, j); !errors.Is(err, rampart.ErrConflict) {
		t.Errorf("Install(d3) while d2 is on trial = %v, want ErrConflict", err)
	}
}

func TestFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		dir         bool // image and target are directories
		healthFails bool
		want        Outcome
	}{
		{"file/healthy", false, false, OutcomeCommitted},
		{"file/health-fails", false, true, OutcomeRolledBack},
		{"dir/healthy", true, false, OutcomeCommitted},
		{"dir/health-fails", true, true, OutcomeRolledBack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dir := t.TempDir()
			target, image := filepath.Join(dir, "app"), filepath.Join(dir, "image")
			read := func(p string) string { return mustRead(t, p) }
			if tc.dir {
				mustWrite(t, filepath.Join(target, "bin"), "old")
				mustWrite(t, filepath.Join(image, "bin"), "new")
				mustWrite(t, filepath.Join(image, "etc", "conf"), "conf")
				read = func(p string) string { return mustRead(t, filepath.Join(p, "bin")) }
			} else {
				mustWrite(t, target, "old")
				mustWrite(t, image, "new")
			}
			f := NewFile(FileOptions{Target: target, Health: func(ctx context.Context) error {
				if tc.healthFails {
					return errors.New("unhealthy")
				}
				return nil
			}})
			j := newTestJournal(t)
			if err := f.Install(ctx, Update{Deployment: "d1", Image: image}, j); err != nil {
				t.Fatal(err)
			}
			if got := read(target); got != "new" {
				t.Errorf("target after Install = %q, want new", got)
			}
			r, err := f.Resume(ctx, j)
			if err != nil || r.Outcome != tc.want {
				t.Fatalf("Resume = %+v, %v, want %s", r, err, tc.want)
			}
			want, wantPrev := "new", "old"
			if tc.healthFails {
				want = "old"
			}
			if got := read(target); got != want {
				t.Errorf("target = %q, want %q", got, want)
			}
			if !tc.healthFails {
				if got := read(target + ".prev"); got != wantPrev {
					t.Errorf("previous copy = %q, want %q", got, wantPrev)
				}
			}
		})
	}
}

// TestFileResumesInterruptedSwap: power lost between the two renames of the swap leaves
// Target missing; Resume completes the swap rather than committing nothing.
func TestFileResumesInterruptedSwap(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	target, image := filepath.Join(dir, "app"), filepath.Join(dir, "image")
	mustWrite(t, target, "old")
	mustWrite(t, image, "new")
	j := newTestJournal(t)
	for _, e := range []journal.Entry{
		{Step: StepBegin, Deployment: "d1", Data: map[string]string{"image": image, "prev": "1"}},
		{Step: StepWritten, Deployment: "d1"},
	} {
		if err := j.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, target+".new", "new")
	if err := os.Rename(target, target+".prev"); err != nil {
		t.Fatal(err)
	}
	f := NewFile(FileOptions{Target: target})
	if r, err := f.Resume(ctx, j); err != nil || r.Outcome != OutcomeCommitted {
		t.Fatalf("Resume = %+v, %v, want committed", r, err)
	}
	if got := mustRead(t, target); got != "new" {
		t.Errorf("target = %q, want new", got)
	}
	if got := mustRead(t, target+".prev"); got != "old" {
		t.Errorf("previous copy = %q, want old", got)
	}
	if err := f.Rollback(ctx, j); !errors.Is(err, rampart.ErrConflict) {
		t.Errorf("Rollback after commit = %v, want ErrConflict", err)
	}
}

func TestScript(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		script  string
		timeout time.Duration
		want    string // last journal step
		wantLog string // in the error
	}{
		{"succeeds", "echo installing\nexit 0\n", time.Minute, StepSwitched, ""},
		{"fails", "echo disk full >&2\nexit 3\n", time.Minute, StepFailed, "disk full"},
		{"times out", "echo started\nsleep 30\n", 200 * time.Millisecond, StepFailed, "started"},
		{"long output", "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; echo the end; exit 1\n", time.Minute, StepFailed, "the end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "update.sh")
			mustWrite(t, path, tc.script)
			s := NewScript(ScriptOptions{Interpreter: "/bin/sh", Timeout: tc.timeout})
			j := newTestJournal(t)
			err := s.Install(ctx, Update{Deployment: "d1", Image: path, SHA256: sha(tc.script)}, j)
			if got := lastStep(j); got != tc.want {
				t.Fatalf("Install: last step %q, want %q (err %v)", got, tc.want, err)
			}
			if tc.wantLog == "" {
				if err != nil {
					t.Fatal(err)
				}
				if r, err := s.Resume(ctx, j); err != nil || r.Outcome != OutcomeCommitted {
					t.Errorf("Resume = %+v, %v, want committed", r, err)
				}
				return
			}
			var le *LogError
			if !errors.As(err, &le) || !strings.Contains(le.Log, tc.wantLog) || len(le.Log) > maxLog+8 {
				t.Errorf("Install error = %v, want a LogError of at most %d bytes containing %q", err, maxLog, tc.wantLog)
			}
		})
	}
}

func TestCommandsHealthCheck(t *testing.T) {
	t.Parallel()
	ok := Commands([]string{"true"}, []string{"sh", "-c", "echo fine"})
	if err := runHealth(t.Context(), ok, time.Minute); err != nil {
		t.Errorf("healthy commands: %v", err)
	}
	bad := Commands([]string{"true"}, []string{"sh", "-c", "echo no network; exit 1"})
	var le *LogError
	if err := runHealth(t.Context(), bad, time.Minute); !errors.As(err, &le) || !strings.Contains(le.Log, "no network") {
		t.Errorf("failing command: %v, want a LogError with its output", err)
	}
	slow := Commands([]string{"sleep", "30"})
	if err := runHealth(t.Context(), slow, 100*time.Millisecond); err == nil {
		t.Error("a health check past its deadline passed")
	}
}

// powerLoss is the panic value of a failpoint that simulates a crash of the agent.
type powerLoss string

// TestFileCrash crashes the file installer at each failpoint (a panic unwinding out of the
// flow, recovered here; enough for rename ordering, which is what a file install can get
// wrong), then resumes with a new installer and journal as a restarted agent would.
func TestFileCrash(t *testing.T) {
	t.Parallel()
	for _, healthFails := range []bool{false, true} {
		for _, point := range []string{"written", "swap-half", "switched", "rolling-back", "restore-half", "rolled-back"} {
			name := point + "/healthy"
			if healthFails {
				name = point + "/health-fails"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				dir := t.TempDir()
				target, image, jpath := filepath.Join(dir, "app"), filepath.Join(dir, "image"), filepath.Join(dir, "journal")
				mustWrite(t, filepath.Join(target, "bin"), "old")
				mustWrite(t, filepath.Join(image, "bin"), "new")
				health := func(ctx context.Context) error {
					if healthFails {
						return errors.New("unhealthy")
					}
					return nil
				}
				f := NewFile(FileOptions{Target: target, Health: health})
				f.failpoint = func(p string) {
					if p == point {
						panic(powerLoss(p))
					}
				}
				crashed := func() (crashed bool) {
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
					if err := f.Install(ctx, Update{Deployment: "d1", Image: image}, j); err != nil {
						t.Fatal(err)
					}
					if _, err := f.Resume(ctx, j); err != nil {
						t.Fatal(err)
					}
					return false
				}()
				wantCrash := healthFails || (point != "rolling-back" && point != "restore-half" && point != "rolled-back")
				if crashed != wantCrash {
					t.Fatalf("crashed = %v, want %v", crashed, wantCrash)
				}
				j, err := journal.Open(jpath)
				if err != nil {
					t.Fatal(err)
				}
				defer j.Close()
				r, err := NewFile(FileOptions{Target: target, Health: health}).Resume(ctx, j)
				want, wantOutcome := "new", OutcomeCommitted
				if healthFails {
					want, wantOutcome = "old", OutcomeRolledBack
				}
				if err != nil || r.Outcome != wantOutcome {
					t.Fatalf("Resume after crash at %s = %+v, %v, want %s", point, r, err, wantOutcome)
				}
				if got := mustRead(t, filepath.Join(target, "bin")); got != want {
					t.Errorf("target after crash at %s and Resume = %q, want %q", point, got, want)
				}
			})
		}
	}
}
