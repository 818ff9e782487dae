package tuf_test

import (
	"errors"
	"testing"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/tuf"
	"github.com/rampart-iot/rampart/internal/tuf/tuftest"
)

func newTestRepository(t testing.TB) *tuf.Repository {
	t.Helper()
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	r := tuf.New(tuf.Options{Store: tuftest.NewStore(), Now: func() time.Time { return now }})
	if err := r.Init(t.Context(), tuf.InitOptions{}); err != nil {
		t.Fatalf("Init() = %v", err)
	}
	if err := r.Delegate(t.Context(), "releases-acme", []string{"releases/acme/*"}); err != nil {
		t.Fatalf("Delegate() = %v", err)
	}
	return r
}

func TestMetadataNames(t *testing.T) {
	t.Parallel()
	r := newTestRepository(t)
	for _, tc := range []struct {
		name string
		want error
	}{
		{"root.json", nil},
		{"1.root.json", nil},
		{"timestamp.json", nil},
		{"1.snapshot.json", nil},
		{"2.targets.json", nil},
		{"1.releases-acme.json", nil},
		{"2.root.json", rampart.ErrNotFound},
		{"1.timestamp.json", rampart.ErrNotFound},
		{"01.root.json", rampart.ErrNotFound},
		{"-1.root.json", rampart.ErrNotFound},
		{"1._pending-root.json", rampart.ErrNotFound},
		{"../root.json", rampart.ErrNotFound},
		{"root", rampart.ErrNotFound},
		{"1.releases-other.json", rampart.ErrNotFound},
	} {
		_, err := r.Metadata(t.Context(), tc.name)
		if (tc.want == nil && err != nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("Metadata(%q) = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestAddTargetsRefusesBadTargets(t *testing.T) {
	t.Parallel()
	r := newTestRepository(t)
	good := func() tuf.Target {
		return tuf.Target{Path: "releases/acme/fw.swu", Length: 3, SHA256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
			Custom: map[string]any{tuf.CustomDeviceTypes: []string{"gw-x"}}}
	}
	for _, tc := range []struct {
		name   string
		role   string
		mutate func(*tuf.Target)
		want   error
	}{
		{"unknown role", "releases-nobody", func(*tuf.Target) {}, rampart.ErrNotFound},
		{"path outside delegation", "releases-acme", func(t *tuf.Target) { t.Path = "releases/other/fw.swu" }, rampart.ErrInvalid},
		{"dot-dot path", "releases-acme", func(t *tuf.Target) { t.Path = "releases/acme/../x" }, rampart.ErrInvalid},
		{"no device types", "releases-acme", func(t *tuf.Target) { t.Custom = nil }, rampart.ErrInvalid},
		{"bad hash", "releases-acme", func(t *tuf.Target) { t.SHA256 = "abc" }, rampart.ErrInvalid},
		{"zero length", "releases-acme", func(t *tuf.Target) { t.Length = 0 }, rampart.ErrInvalid},
	} {
		tg := good()
		tc.mutate(&tg)
		before, _ := r.Metadata(t.Context(), "timestamp.json")
		err := r.AddTargets(t.Context(), tc.role, []tuf.Target{tg})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: AddTargets() = %v, want %v", tc.name, err, tc.want)
		}
		if after, _ := r.Metadata(t.Context(), "timestamp.json"); string(after) != string(before) {
			t.Errorf("%s: refused AddTargets published a new timestamp", tc.name)
		}
	}
	if err := r.AddTargets(t.Context(), "releases-acme", []tuf.Target{good()}); err != nil {
		t.Errorf("AddTargets(good) = %v", err)
	}
}

func TestInitTwiceConflicts(t *testing.T) {
	t.Parallel()
	r := newTestRepository(t)
	if err := r.Init(t.Context(), tuf.InitOptions{}); !errors.Is(err, rampart.ErrConflict) {
		t.Errorf("second Init() = %v, want %v", err, rampart.ErrConflict)
	}
}
