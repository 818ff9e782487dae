package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/release"
	"github.com/rampart-iot/rampart/internal/sbom"
)

var _ release.Store = (*Store)(nil)

// CreateRelease inserts r (without artifacts).
func (s *Store) CreateRelease(ctx context.Context, r *release.Release) error {
	types, err := toJSON(r.DeviceTypes)
	if err != nil {
		return fmt.Errorf("create release %s: %w", r.ID, err)
	}
	hw, err := toJSON(r.HWRevisions)
	if err != nil {
		return fmt.Errorf("create release %s: %w", r.ID, err)
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO releases (id, name, version, device_types, hw_revisions, notes, state,
		sbom_format, created_at, published_at, withdrawn_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		r.ID, r.Name, r.Version, types, hw, r.Notes, string(r.State), r.SBOMFormat,
		unixNanos(r.CreatedAt), unixNanos(r.PublishedAt), unixNanos(r.WithdrawnAt))
	if err != nil {
		if s.dialect.IsUniqueViolation(err) {
			return fmt.Errorf("release %s %s exists: %w", r.Name, r.Version, rampart.ErrConflict)
		}
		return fmt.Errorf("create release %s: %w", r.ID, err)
	}
	return nil
}

const releaseColumns = `id, name, version, device_types, hw_revisions, notes, state, sbom_format,
	created_at, published_at, withdrawn_at,
	(SELECT COUNT(*) FROM release_components c WHERE c.release_id = releases.id)`

func scanRelease(sc interface{ Scan(...any) error }) (*release.Release, error) {
	var (
		r                    release.Release
		types, hw, state     string
		created, pub, withdr int64
	)
	if err := sc.Scan(&r.ID, &r.Name, &r.Version, &types, &hw, &r.Notes, &state, &r.SBOMFormat,
		&created, &pub, &withdr, &r.Components); err != nil {
		return nil, err
	}
	if err := fromJSON(types, &r.DeviceTypes); err != nil {
		return nil, fmt.Errorf("device types: %w", err)
	}
	if err := fromJSON(hw, &r.HWRevisions); err != nil {
		return nil, fmt.Errorf("hardware revisions: %w", err)
	}
	r.State = release.State(state)
	r.CreatedAt, r.PublishedAt, r.WithdrawnAt = fromUnixNanos(created), fromUnixNanos(pub), fromUnixNanos(withdr)
	return &r, nil
}

// Release returns one release with its artifacts.
func (s *Store) Release(ctx context.Context, id string) (*release.Release, error) {
	return s.releaseWhere(ctx, id, `id = ?`, id)
}

// ReleaseByVersion returns the release with that name and version.
func (s *Store) ReleaseByVersion(ctx context.Context, name, version string) (*release.Release, error) {
	return s.releaseWhere(ctx, name+" "+version, `name = ? AND version = ?`, name, version)
}

func (s *Store) releaseWhere(ctx context.Context, what, where string, args ...any) (*release.Release, error) {
	r, err := scanRelease(s.db.QueryRowContext(ctx, s.q(`SELECT `+releaseColumns+` FROM releases WHERE `+where), args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("release %s: %w", what, rampart.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read release %s: %w", what, err)
	}
	if r.Artifacts, err = s.artifacts(ctx, r.ID); err != nil {
		return nil, err
	}
	return r, nil
}

func (s *Store) artifacts(ctx context.Context, id string) ([]release.Artifact, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT name, role, delta_from, digest, size, created_at
		FROM release_artifacts WHERE release_id = ? ORDER BY created_at, name`), id)
	if err != nil {
		return nil, fmt.Errorf("read artifacts of %s: %w", id, err)
	}
	defer rows.Close()
	var out []release.Artifact
	for rows.Next() {
		var a release.Artifact
		var role string
		var created int64
		if err := rows.Scan(&a.Name, &role, &a.DeltaFrom, &a.Digest, &a.Size, &created); err != nil {
			return nil, fmt.Errorf("read artifacts of %s: %w", id, err)
		}
		a.Role, a.CreatedAt = release.Role(role), fromUnixNanos(created)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read artifacts of %s: %w", id, err)
	}
	return out, nil
}

// Releases lists releases, newest first, with their artifacts.
func (s *Store) Releases(ctx context.Context) ([]*release.Release, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+releaseColumns+` FROM releases ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	var out []*release.Release
	for rows.Next() {
		r, err := scanRelease(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list releases: %w", err)
		}
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	for _, r := range out {
		if r.Artifacts, err = s.artifacts(ctx, r.ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// UpdateRelease writes state, notes and time stamps.
func (s *Store) UpdateRelease(ctx context.Context, r *release.Release) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE releases SET notes = ?, state = ?, published_at = ?, withdrawn_at = ? WHERE id = ?`),
		r.Notes, string(r.State), unixNanos(r.PublishedAt), unixNanos(r.WithdrawnAt), r.ID)
	if err != nil {
		return fmt.Errorf("update release %s: %w", r.ID, err)
	}
	if err := mustAffect(res, rampart.ErrNotFound); err != nil {
		return fmt.Errorf("update release %s: %w", r.ID, err)
	}
	return nil
}

// AddArtifact attaches an artifact to a release.
func (s *Store) AddArtifact(ctx context.Context, releaseID string, a release.Artifact) error {
	res, err := s.db.ExecContext(ctx, s.q(`INSERT INTO release_artifacts (release_id, name, role, delta_from, digest, size, created_at)
		SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM releases WHERE id = ?)`),
		releaseID, a.Name, string(a.Role), a.DeltaFrom, a.Digest, a.Size, unixNanos(a.CreatedAt), releaseID)
	if err != nil {
		if s.dialect.IsUniqueViolation(err) {
			return fmt.Errorf("artifact %s of %s exists: %w", a.Name, releaseID, rampart.ErrConflict)
		}
		return fmt.Errorf("add artifact %s to %s: %w", a.Name, releaseID, err)
	}
	if err := mustAffect(res, rampart.ErrNotFound); err != nil {
		return fmt.Errorf("add artifact %s to release %s: %w", a.Name, releaseID, err)
	}
	return nil
}

// SetComponents replaces a release's SBOM components in one transaction.
func (s *Store) SetComponents(ctx context.Context, releaseID, format string, cs []sbom.Component) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE releases SET sbom_format = ? WHERE id = ?`), format, releaseID)
		if err != nil {
			return err
		}
		if err := mustAffect(res, rampart.ErrNotFound); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM release_components WHERE release_id = ?`), releaseID); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, s.q(`INSERT INTO release_components (release_id, idx, name, version, purl, type, supplier, licenses, hashes)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i, c := range cs {
			lic, err := toJSON(c.Licenses)
			if err != nil {
				return err
			}
			hashes, err := toJSON(c.Hashes)
			if err != nil {
				return err
			}
			if _, err := stmt.ExecContext(ctx, releaseID, i, c.Name, c.Version, c.PURL, c.Type, c.Supplier, lic, hashes); err != nil {
				return fmt.Errorf("component %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set components of %s: %w", releaseID, err)
	}
	return nil
}

// Components returns a release's SBOM components in document order.
func (s *Store) Components(ctx context.Context, releaseID string) ([]sbom.Component, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT name, version, purl, type, supplier, licenses, hashes
		FROM release_components WHERE release_id = ? ORDER BY idx`), releaseID)
	if err != nil {
		return nil, fmt.Errorf("read components of %s: %w", releaseID, err)
	}
	defer rows.Close()
	var out []sbom.Component
	for rows.Next() {
		var c sbom.Component
		var lic, hashes string
		if err := rows.Scan(&c.Name, &c.Version, &c.PURL, &c.Type, &c.Supplier, &lic, &hashes); err != nil {
			return nil, fmt.Errorf("read components of %s: %w", releaseID, err)
		}
		if err := fromJSON(lic, &c.Licenses); err != nil {
			return nil, fmt.Errorf("read components of %s: %w", releaseID, err)
		}
		if err := fromJSON(hashes, &c.Hashes); err != nil {
			return nil, fmt.Errorf("read components of %s: %w", releaseID, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read components of %s: %w", releaseID, err)
	}
	return out, nil
}

// DeviceTypes lists the distinct device types of enrolled devices.
func (s *Store) DeviceTypes(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT device_type FROM devices ORDER BY device_type`)
	if err != nil {
		return nil, fmt.Errorf("list device types: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("list device types: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
