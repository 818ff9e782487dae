package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/access"
	"github.com/rampart-iot/rampart/internal/fleet"
)

const enrollTokenColumns = `id, description, hash, max_uses, uses, expires_at, device_type, tags, created_at, revoked_at`

func scanEnrollToken(sc scanner) (*fleet.EnrollToken, error) {
	var (
		t                           fleet.EnrollToken
		tags                        string
		expires, created, revokedAt int64
	)
	if err := sc.Scan(&t.ID, &t.Description, &t.Hash, &t.MaxUses, &t.Uses, &expires, &t.DeviceType, &tags, &created, &revokedAt); err != nil {
		return nil, err
	}
	if err := fromJSON(tags, &t.Tags); err != nil {
		return nil, fmt.Errorf("enrollment token %s: decode tags: %w", t.ID, err)
	}
	t.ExpiresAt, t.CreatedAt, t.RevokedAt = fromUnixNanos(expires), fromUnixNanos(created), fromUnixNanos(revokedAt)
	return &t, nil
}

// CreateEnrollToken stores t; a clash of ID or hash is ErrConflict.
func (s *Store) CreateEnrollToken(ctx context.Context, t *fleet.EnrollToken) error {
	tags, err := toJSON(t.Tags)
	if err != nil {
		return fmt.Errorf("create enrollment token %s: encode tags: %w", t.ID, err)
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO enroll_tokens (`+enrollTokenColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		t.ID, t.Description, t.Hash, t.MaxUses, t.Uses, unixNanos(t.ExpiresAt), t.DeviceType, tags,
		unixNanos(t.CreatedAt), unixNanos(t.RevokedAt))
	if err != nil {
		if s.dialect.IsUniqueViolation(err) {
			return fmt.Errorf("create enrollment token %s: ID or hash exists: %w", t.ID, rampart.ErrConflict)
		}
		return fmt.Errorf("create enrollment token %s: %w", t.ID, err)
	}
	return nil
}

func (s *Store) enrollTokenWhere(ctx context.Context, what, where string, arg any) (*fleet.EnrollToken, error) {
	t, err := scanEnrollToken(s.db.QueryRowContext(ctx, s.q(`SELECT `+enrollTokenColumns+` FROM enroll_tokens WHERE `+where), arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("enrollment token %s: %w", what, rampart.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read enrollment token %s: %w", what, err)
	}
	return t, nil
}

// EnrollToken returns the enrollment token with the given ID.
func (s *Store) EnrollToken(ctx context.Context, id string) (*fleet.EnrollToken, error) {
	return s.enrollTokenWhere(ctx, id, `id = ?`, id)
}

// EnrollTokenByHash returns the enrollment token whose secret hashes to hash.
func (s *Store) EnrollTokenByHash(ctx context.Context, hash string) (*fleet.EnrollToken, error) {
	return s.enrollTokenWhere(ctx, "with that secret", `hash = ?`, hash)
}

// EnrollTokens lists every enrollment token, oldest first.
func (s *Store) EnrollTokens(ctx context.Context) ([]*fleet.EnrollToken, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+enrollTokenColumns+` FROM enroll_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list enrollment tokens: %w", err)
	}
	defer rows.Close()
	var out []*fleet.EnrollToken
	for rows.Next() {
		t, err := scanEnrollToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list enrollment tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list enrollment tokens: %w", err)
	}
	return out, nil
}

// RevokeEnrollToken marks a token revoked at at; revoking it again keeps the first time.
func (s *Store) RevokeEnrollToken(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE enroll_tokens
		SET revoked_at = CASE WHEN revoked_at = 0 THEN ? ELSE revoked_at END WHERE id = ?`), unixNanos(at), id)
	if err != nil {
		return fmt.Errorf("revoke enrollment token %s: %w", id, err)
	}
	if err := mustAffect(res, rampart.ErrNotFound); err != nil {
		return fmt.Errorf("revoke enrollment token %s: %w", id, err)
	}
	return nil
}

const apiTokenColumns = `id, name, role, hash, created_at, expires_at, revoked_at`

func scanAPIToken(sc scanner) (*access.Token, error) {
	var (
		t                         access.Token
		role                      string
		created, expires, revoked int64
	)
	if err := sc.Scan(&t.ID, &t.Name, &role, &t.Hash, &created, &expires, &revoked); err != nil {
		return nil, err
	}
	t.Role = access.Role(role)
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = fromUnixNanos(created), fromUnixNanos(expires), fromUnixNanos(revoked)
	return &t, nil
}

// CreateAPIToken stores t; a clash of ID or hash is ErrConflict.
func (s *Store) CreateAPIToken(ctx context.Context, t *access.Token) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO api_tokens (`+apiTokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		t.ID, t.Name, string(t.Role), t.Hash, unixNanos(t.CreatedAt), unixNanos(t.ExpiresAt), unixNanos(t.RevokedAt))
	if err != nil {
		if s.dialect.IsUniqueViolation(err) {
			return fmt.Errorf("create API token %s: ID or hash exists: %w", t.ID, rampart.ErrConflict)
		}
		return fmt.Errorf("create API token %s: %w", t.ID, err)
	}
	return nil
}

// APITokenByHash returns the API token whose secret hashes to hash, revoked or not.
func (s *Store) APITokenByHash(ctx context.Context, hash string) (*access.Token, error) {
	t, err := scanAPIToken(s.db.QueryRowContext(ctx, s.q(`SELECT `+apiTokenColumns+` FROM api_tokens WHERE hash = ?`), hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("API token with that secret: %w", rampart.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read API token: %w", err)
	}
	return t, nil
}

// APITokens lists every API token, oldest first.
func (s *Store) APITokens(ctx context.Context) ([]*access.Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list API tokens: %w", err)
	}
	defer rows.Close()
	var out []*access.Token
	for rows.Next() {
		t, err := scanAPIToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list API tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list API tokens: %w", err)
	}
	return out, nil
}

// RevokeAPIToken marks a token revoked at at; revoking it again keeps the first time.
func (s *Store) RevokeAPIToken(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE api_tokens
		SET revoked_at = CASE WHEN revoked_at = 0 THEN ? ELSE revoked_at END WHERE id = ?`), unixNanos(at), id)
	if err != nil {
		return fmt.Errorf("revoke API token %s: %w", id, err)
	}
	if err := mustAffect(res, rampart.ErrNotFound); err != nil {
		return fmt.Errorf("revoke API token %s: %w", id, err)
	}
	return nil
}

// CountAPITokens counts every stored API token, revoked and expired ones included.
func (s *Store) CountAPITokens(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_tokens`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count API tokens: %w", err)
	}
	return n, nil
}
