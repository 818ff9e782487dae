package postgres_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/rampart-iot/rampart/internal/store/postgres"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
	"github.com/rampart-iot/rampart/internal/store/storetest"
)

// testDSN returns the server to test against, skipping when there is none unless
// RAMPART_REQUIRE_POSTGRES=1.
func testDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("RAMPART_TEST_POSTGRES")
	if dsn == "" {
		if os.Getenv("RAMPART_REQUIRE_POSTGRES") == "1" {
			t.Fatal("RAMPART_REQUIRE_POSTGRES=1 but RAMPART_TEST_POSTGRES is empty")
		}
		t.Skip("RAMPART_TEST_POSTGRES is empty")
	}
	return dsn
}

// newTestSchema creates an empty schema that is dropped when t ends, and returns a DSN whose
// search path puts everything in it.
func newTestSchema(t *testing.T) string {
	t.Helper()
	dsn := testDSN(t)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { admin.Close() })
	var suffix [6]byte
	rand.Read(suffix[:])
	schema := "rampart_test_" + hex.EncodeToString(suffix[:])
	if _, err := admin.ExecContext(t.Context(), `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		if _, err := admin.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("RAMPART_TEST_POSTGRES must be a postgres:// URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

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
