// Package sqlstore is the one SQL implementation of fleet.Store and access.Store, shared by
// the SQLite and PostgreSQL engines. Queries are written once, with ? placeholders; a small
// Dialect supplies what differs between engines (placeholder style, unique-violation errors).
//
// It is not an engine: it imports no database driver, opens no database and runs no
// migrations. Use store/sqlite or store/postgres, which do that and return a *Store.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rampart-iot/rampart/internal/access"
	"github.com/rampart-iot/rampart/internal/fleet"
)

var (
	_ fleet.Store  = (*Store)(nil)
	_ access.Store = (*Store)(nil)
)

// Dialect is what an engine package tells Store about its SQL.
type Dialect struct {
	// Name names the engine in messages ("sqlite", "postgres").
	Name string
	// NumberedPlaceholders makes Store rewrite ? to $1, $2, … before running a query.
	NumberedPlaceholders bool
	// IsUniqueViolation reports whether err is the engine's unique- or primary-key clash.
	IsUniqueViolation func(error) bool
}

// Store keeps devices, enrollment tokens, groups, events, nonces, server secrets and API
// tokens in a SQL database.
//
// Store logs nothing: it returns every error, wrapped with what it was doing, to the caller.
type Store struct {
	db      *sql.DB
	dialect Dialect
	// stmts caches prepared statements of hot read queries (the device lookup of every
	// check-in), keyed by their text, so the engine does not parse them on each call.
	stmts sync.Map
}

// New returns a Store over db, whose schema must already be migrated. Store owns db from
// now on: Close closes it.
func New(db *sql.DB, d Dialect) *Store {
	if d.IsUniqueViolation == nil {
		d.IsUniqueViolation = func(error) bool { return false }
	}
	return &Store{db: db, dialect: d}
}

// Close closes the database.
func (s *Store) Close() error {
	s.stmts.Range(func(_, st any) bool {
		_ = st.(*sql.Stmt).Close()
		return true
	})
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close %s store: %w", s.dialect.Name, err)
	}
	return nil
}

// Ping checks the database answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s store: %w", s.dialect.Name, err)
	}
	return nil
}

// queryRow runs a hot single-row read through a cached prepared statement.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt).QueryRowContext(ctx, args...)
	}
	st, err := s.db.PrepareContext(ctx, s.q(query))
	if err != nil {
		// Let the unprepared path report the error in the caller's terms.
		return s.db.QueryRowContext(ctx, s.q(query), args...)
	}
	if prev, loaded := s.stmts.LoadOrStore(query, st); loaded {
		_ = st.Close()
		st = prev.(*sql.Stmt)
	}
	return st.QueryRowContext(ctx, args...)
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// q adapts a query written with ? placeholders to the engine. Queries must not contain a
// literal question mark.
func (s *Store) q(query string) string {
	if !s.dialect.NumberedPlaceholders {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// inTx runs fn in a transaction, committing when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // fn's error is the one that matters
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// mustAffect turns "no row matched" into err.
func mustAffect(res sql.Result, err error) error {
	n, rerr := res.RowsAffected()
	if rerr != nil {
		return fmt.Errorf("rows affected: %w", rerr)
	}
	if n == 0 {
		return err
	}
	return nil
}

// Times are stored as UTC Unix nanoseconds, with 0 for the zero time, so both engines keep
// full precision in one BIGINT and comparisons are plain integer comparisons.
func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// toJSON encodes a list or map column; nil encodes as null so it reads back as nil.
func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func fromJSON(s string, v any) error {
	if s == "" || s == "null" {
		return nil
	}
	return json.Unmarshal([]byte(s), v)
}
