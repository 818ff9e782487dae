package release_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/blob/localfs"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/release"
	"github.com/rampart-iot/rampart/internal/store/sqlite"
)

// manifest is the JSON a releaser sends to create a release (api.ReleaseRequest's shape).
type manifest struct {
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	DeviceTypes []string `json:"device_types"`
	HWRevisions []string `json:"hw_revisions"`
	Notes       string   `json:"notes"`
}

func newTestService(t testing.TB) *release.Service {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "r.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d := &fleet.Device{ID: "dev_1", Identity: fleet.Identity{Serial: "s", DeviceType: "gw"}, Status: fleet.StatusAccepted,
		PublicKey: ed25519.PublicKey(bytes.Repeat([]byte{1}, 32)), CreatedAt: time.Now()}
	if err := st.CreateDevice(t.Context(), d, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	blobs, err := localfs.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return release.NewService(release.Options{Store: st, Blobs: blobs})
}

// FuzzCreateRelease feeds arbitrary release manifests to Create: every refusal is a
// client error, and whatever is accepted is stored exactly as given.
func FuzzCreateRelease(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.json")
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s := newTestService(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var m manifest
		if json.Unmarshal(data, &m) != nil {
			return
		}
		r, err := s.Create(t.Context(), release.Spec{Name: m.Name, Version: m.Version, DeviceTypes: m.DeviceTypes, HWRevisions: m.HWRevisions, Notes: m.Notes})
		if err != nil {
			if !errors.Is(err, rampart.ErrInvalid) && !errors.Is(err, rampart.ErrConflict) && !errors.Is(err, rampart.ErrTooLarge) {
				t.Fatalf("Create(%q) = %v, want a client error", data, err)
			}
			return
		}
		got, err := s.Release(t.Context(), r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != m.Name || got.Version != m.Version || got.Notes != m.Notes || got.State != release.Draft {
			t.Errorf("stored %+v from manifest %q", got, data)
		}
	})
}
