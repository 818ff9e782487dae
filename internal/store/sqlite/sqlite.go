// Package sqlite opens Rampart's store on an SQLite file (pure-Go modernc driver) and
// migrates its schema at start-up. It is for single-node installs and tests.
//
// It holds no queries: those are shared with PostgreSQL in store/sqlstore. This package only
// knows the DSN, the pool, the migrations and how SQLite reports a unique-key clash.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// pragmas make every connection wait for the single writer instead of failing with
// SQLITE_BUSY (busy_timeout, and BEGIN IMMEDIATE so a transaction never has to upgrade a read
// lock), let readers run beside it (WAL), and enforce foreign keys.
const pragmas = "_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)" +
	"&_pragma=foreign_keys(ON)&_txlock=immediate"

// maxOpenConns bounds the pool: SQLite has one writer at a time, so more connections only
// add readers, and WAL readers need little more than a handful.
const maxOpenConns = 8

// dialect is SQLite's side of the shared SQL.
var dialect = sqlstore.Dialect{
	Name:              "sqlite",
	IsUniqueViolation: isUniqueViolation,
}

func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	code := se.Code()
	return code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// Open opens (creating if needed) the SQLite database at path, brings its schema up to date,
// and returns the store. The caller closes it.
func Open(ctx context.Context, path string, log *slog.Logger) (*sqlstore.Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if path == "" || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("open sqlite store %q: path must be non-empty and free of '?': %w", path, rampart.ErrInvalid)
	}
	db, err := sql.Open("sqlite", path+"?"+pragmas)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxOpenConns)
	if err := migrate(ctx, db, log); err != nil {
		_ = db.Close() // the migration error is the one to report
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	return sqlstore.New(db, dialect), nil
}

func migrate(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, dir, goose.WithSlog(log), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, r := range results {
		log.InfoContext(ctx, "store migrated", "engine", "sqlite", "version", r.Source.Version, "took", r.Duration)
	}
	return nil
}
