// Package postgres opens Rampart's store on PostgreSQL (pgx through database/sql) and
// migrates its schema at start-up, safely when several replicas start at once. It is for
// installs that run more than one server or already run PostgreSQL.
//
// It holds no queries: those are shared with SQLite in store/sqlstore. This package only
// knows the driver, the pool, the migrations and how PostgreSQL reports a unique-key clash.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/rampart-iot/rampart/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// maxOpenConns keeps a replica's share of the server's connections (100 by default) modest.
const maxOpenConns = 16

// connIdleTime is how long an unused connection stays open.
const connIdleTime = 5 * time.Minute

// dialect is PostgreSQL's side of the shared SQL.
var dialect = sqlstore.Dialect{
	Name:                 "postgres",
	NumberedPlaceholders: true,
	IsUniqueViolation:    isUniqueViolation,
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" // unique_violation
}

// Open connects to the database dsn names, brings the schema up to date, and returns the
// store. The tables live in the first schema of the search path, which the DSN may set
// (postgres://…/db?search_path=rampart). The caller closes the store.
func Open(ctx context.Context, dsn string, log *slog.Logger) (*sqlstore.Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	// Statements are prepared and cached per connection. A generic plan made while a table
	// was small (a fresh install, or autovacuum off) would keep scanning it sequentially as it
	// grows, so every execution is planned for its own arguments; for the point lookups
	// Rampart runs that costs microseconds.
	if _, set := cfg.RuntimeParams["plan_cache_mode"]; !set {
		cfg.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxOpenConns)
	// Keep every connection the load needed: with fewer idle slots than open ones, a busy
	// server closed a connection on nearly every release and opened another moments later
	// (a backend fork, a cold catalog cache and re-prepared statements each time; the
	// 100,000-device rollout benchmark saw ~26 per second while enrolling). A quiet replica still gives
	// them back after connIdleTime.
	db.SetMaxIdleConns(maxOpenConns)
	db.SetConnMaxIdleTime(connIdleTime)
	if err := migrate(ctx, db, log); err != nil {
		_ = db.Close() // the migration error is the one to report
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	return sqlstore.New(db, dialect), nil
}

func migrate(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	var schema sql.NullString
	if err := db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("find schema: %w", err)
	}
	if !schema.Valid {
		return errors.New("find schema: no schema of the search path exists")
	}
	// The advisory lock is per database; keying it by schema lets stores in different
	// schemas migrate at once while replicas sharing one schema still take turns.
	h := fnv.New64a()
	h.Write([]byte("rampart migrations " + schema.String))
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(int64(h.Sum64())),
		lock.WithLockTimeout(1, 300),
	)
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, dir,
		goose.WithSessionLocker(locker), goose.WithSlog(log), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate schema %s: %w", schema.String, err)
	}
	for _, r := range results {
		log.InfoContext(ctx, "store migrated", "engine", "postgres", "schema", schema.String, "version", r.Source.Version, "took", r.Duration)
	}
	return nil
}
