package sqlstore

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/tuf"
)

// TUF returns the store's view as a tuf.Store (its method names would clash with fleet's).
func (s *Store) TUF() tuf.Store { return tufStore{s} }

type tufStore struct{ s *Store }

var _ tuf.Store = tufStore{}

// PutMetadata stores a version of a role; re-storing the same version replaces it (a
// pending root is rewritten as signatures arrive).
func (t tufStore) PutMetadata(ctx context.Context, role string, version int64, data []byte) error {
	err := t.s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, t.s.q(`DELETE FROM tuf_metadata WHERE role = ? AND version = ?`), role, version); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, t.s.q(`INSERT INTO tuf_metadata (role, version, data) VALUES (?, ?, ?)`), role, version, data)
		return err
	})
	if err != nil {
		return fmt.Errorf("store TUF %s v%d: %w", role, version, err)
	}
	return nil
}

func (t tufStore) Metadata(ctx context.Context, role string, version int64) ([]byte, error) {
	var data []byte
	err := t.s.db.QueryRowContext(ctx, t.s.q(`SELECT data FROM tuf_metadata WHERE role = ? AND version = ?`), role, version).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("TUF %s v%d: %w", role, version, rampart.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read TUF %s v%d: %w", role, version, err)
	}
	return data, nil
}

func (t tufStore) CurrentVersion(ctx context.Context, role string) (int64, error) {
	var v sql.NullInt64
	if err := t.s.db.QueryRowContext(ctx, t.s.q(`SELECT MAX(version) FROM tuf_metadata WHERE role = ?`), role).Scan(&v); err != nil {
		return 0, fmt.Errorf("read TUF %s version: %w", role, err)
	}
	if !v.Valid {
		return 0, fmt.Errorf("TUF role %s: %w", role, rampart.ErrNotFound)
	}
	return v.Int64, nil
}

func (t tufStore) PutKeys(ctx context.Context, role string, keys []ed25519.PrivateKey) error {
	seeds := make([]byte, 0, len(keys)*ed25519.SeedSize)
	for _, k := range keys {
		seeds = append(seeds, k.Seed()...)
	}
	err := t.s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, t.s.q(`DELETE FROM tuf_keys WHERE role = ?`), role); err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, t.s.q(`INSERT INTO tuf_keys (role, keys) VALUES (?, ?)`), role, seeds)
		return err
	})
	if err != nil {
		return fmt.Errorf("store TUF keys of %s: %w", role, err)
	}
	return nil
}

func (t tufStore) Keys(ctx context.Context, role string) ([]ed25519.PrivateKey, error) {
	var seeds []byte
	err := t.s.db.QueryRowContext(ctx, t.s.q(`SELECT keys FROM tuf_keys WHERE role = ?`), role).Scan(&seeds)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("TUF keys of %s: %w", role, rampart.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read TUF keys of %s: %w", role, err)
	}
	if len(seeds)%ed25519.SeedSize != 0 {
		return nil, fmt.Errorf("TUF keys of %s: stored value is not whole seeds", role)
	}
	keys := make([]ed25519.PrivateKey, 0, len(seeds)/ed25519.SeedSize)
	for i := 0; i < len(seeds); i += ed25519.SeedSize {
		keys = append(keys, ed25519.NewKeyFromSeed(seeds[i:i+ed25519.SeedSize]))
	}
	return keys, nil
}
