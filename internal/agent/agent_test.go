package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	max := 10 * time.Minute
	for failures := 1; failures < 40; failures++ {
		ceiling := min(2*time.Second<<min(failures-1, 30), max)
		for range 50 {
			d := backoff(failures, max)
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", failures, d, ceiling/2, ceiling)
			}
		}
	}
}

func TestJitterBounds(t *testing.T) {
	t.Parallel()
	for range 1000 {
		if d := jitter(time.Minute); d < 54*time.Second || d > 66*time.Second {
			t.Fatalf("jitter(1m) = %v, want within ±10%%", d)
		}
	}
}

func TestKeySurvivesRestartAndDamagedState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k1, err := loadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, keyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, fi.Mode())
	}
	k2, err := loadOrCreateKey(dir)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("key changed across restarts: %v", err)
	}
	if err := saveState(dir, &State{DeviceID: "dev_1", Token: "t"}); err != nil {
		t.Fatal(err)
	}
	st, err := loadState(dir)
	if err != nil || st.DeviceID != "dev_1" {
		t.Fatalf("loadState = %+v, %v", st, err)
	}
	// Power loss mid-write leaves a damaged state file: the agent re-authenticates, the key
	// (its identity) is untouched.
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(`{"device_id":"de`), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := loadState(dir); err != nil || st.DeviceID != "" {
		t.Errorf("damaged state = %+v, %v; want empty state, no error", st, err)
	}
	// A damaged key is never silently replaced: that would change the device's identity.
	if err := os.WriteFile(filepath.Join(dir, keyFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateKey(dir); err == nil {
		t.Error("damaged key accepted or replaced")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestChangedAttributes(t *testing.T) {
	t.Parallel()
	a := &Agent{opts: Options{Attributes: map[string]string{"region": "eu", "site": "p7"}}, state: &State{ReportedAttrs: map[string]string{"region": "us", "rack": "r1", "site": "p7"}}}
	got := a.changedAttributes()
	want := map[string]string{"region": "eu", "rack": ""}
	if len(got) != len(want) || got["region"] != "eu" || got["rack"] != "" {
		t.Errorf("changedAttributes = %v, want %v", got, want)
	}
	a.state.ReportedAttrs = map[string]string{"region": "eu", "site": "p7"}
	if got := a.changedAttributes(); got != nil {
		t.Errorf("changedAttributes with nothing changed = %v, want nil", got)
	}
}
