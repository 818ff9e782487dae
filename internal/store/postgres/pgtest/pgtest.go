// Package pgtest gives tests an isolated PostgreSQL schema on the server named by
// RAMPART_TEST_POSTGRES. Without that variable tests skip, unless RAMPART_REQUIRE_POSTGRES=1
// (set by CI), which turns the skip into a failure. It is test support only: production code
// never imports it.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// DSN returns the server to test against, or skips the test.
func DSN(t testing.TB) string {
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

// NewSchema creates an empty schema, dropped when t ends, and returns a DSN whose search
// path puts everything in it.
func NewSchema(t testing.TB) string {
	t.Helper()
	dsn := DSN(t)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	schema := "rampart_test_" + hex.EncodeToString(suffix[:])
	if _, err := admin.ExecContext(context.Background(), `CREATE SCHEMA `+schema); err != nil {
		admin.Close()
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
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
