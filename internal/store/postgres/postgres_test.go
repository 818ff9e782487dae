package postgres_test

import (
	"net/url"
	"sync"
	"testing"

	"github.com/rampart-iot/rampart/internal/store/postgres"
	"github.com/rampart-iot/rampart/internal/store/postgres/pgtest"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
	"github.com/rampart-iot/rampart/internal/store/storetest"
)

func testDSN(t *testing.T) string { return pgtest.DSN(t) }

func newTestSchema(t *testing.T) string { return pgtest.NewSchema(t) }

func newTestStore(t *testing.T) *sqlstore.Store {
	t.Helper()
	dsn := newTestSchema(t)
	s, err := postgres.Open(t.Context(), dsn, nil)
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
	testDSN(t)
	storetest.Run(t, newTestStore)
}

// TestConcurrentStart checks replicas starting together on an empty schema all come up,
// with the schema migrated once.
func TestConcurrentStart(t *testing.T) {
	t.Parallel()
	dsn := newTestSchema(t)
	const replicas = 4
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), dsn, nil)
			if err != nil {
				t.Errorf("Open(replica %d) = %v", i, err)
				return
			}
			defer s.Close()
			if _, err := s.Secret(t.Context(), "k", []byte{byte(i)}); err != nil {
				t.Errorf("Secret(replica %d) = %v", i, err)
			}
		})
	}
	wg.Wait()
}

func TestOpenRefusesMissingSchema(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", "rampart_test_does_not_exist")
	u.RawQuery = q.Encode()
	if s, err := postgres.Open(t.Context(), u.String(), nil); err == nil {
		s.Close()
		t.Errorf("Open(search_path of a missing schema) = nil error, want one")
	}
}
