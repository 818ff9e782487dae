package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/rampart-iot/rampart/internal/store/sqlite"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
	"github.com/rampart-iot/rampart/internal/store/storetest"
)

func newTestStore(t *testing.T) *sqlstore.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "rampart.db"), nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, newTestStore)
}

// TestReopen checks a second start finds the schema migrated and the data kept.
func TestReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rampart.db")
	for i := range 2 {
		s, err := sqlite.Open(t.Context(), path, nil)
		if err != nil {
			t.Fatalf("Open(start %d) = %v", i, err)
		}
		got, err := s.Secret(t.Context(), "k", []byte{byte(i)})
		if err != nil || len(got) != 1 || got[0] != 0 {
			t.Errorf("Secret(start %d) = %v, %v, want [0]", i, got, err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
	}
}

func TestOpenRefusesBadPath(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"", "x.db?mode=ro"} {
		if s, err := sqlite.Open(context.Background(), path, nil); err == nil {
			s.Close()
			t.Errorf("Open(%q) = nil error, want one", path)
		}
	}
}
