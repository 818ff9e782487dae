package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/rampart-iot/rampart"
)

// ConsumeNonce records a single-use value until expires; a second use is ErrConflict.
func (s *Store) ConsumeNonce(ctx context.Context, nonce string, expires time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO nonces (nonce, expires_at) VALUES (?, ?)`), nonce, unixNanos(expires))
	if err != nil {
		if s.dialect.IsUniqueViolation(err) {
			return fmt.Errorf("consume nonce: already used: %w", rampart.ErrConflict)
		}
		return fmt.Errorf("consume nonce: %w", err)
	}
	return nil
}

// PurgeNonces forgets nonces that expired before before.
func (s *Store) PurgeNonces(ctx context.Context, before time.Time) error {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM nonces WHERE expires_at < ?`), unixNanos(before)); err != nil {
		return fmt.Errorf("purge nonces: %w", err)
	}
	return nil
}

// Secret returns the named server secret, storing candidate first if there is none, so
// every replica sharing the database reads the same value.
func (s *Store) Secret(ctx context.Context, name string, candidate []byte) ([]byte, error) {
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`),
		name, candidate); err != nil {
		return nil, fmt.Errorf("store secret %s: %w", name, err)
	}
	var v []byte
	if err := s.db.QueryRowContext(ctx, s.q(`SELECT value FROM secrets WHERE name = ?`), name).Scan(&v); err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	return v, nil
}
