package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/fleet"
)

// packageBatch is how many package rows go in one INSERT; 7 columns each stays far below
// both engines' limits on bound parameters.
const packageBatch = 500

// SaveInventory writes d's inventory fields (firmware, OS, kernel, hostname, interfaces,
// attributes, inventory hash, package count, UpdatedAt) and replaces its package list, in
// one transaction.
func (s *Store) SaveInventory(ctx context.Context, d *fleet.Device, pkgs []fleet.Package) error {
	r, err := encodeDevice(d)
	if err != nil {
		return fmt.Errorf("save inventory of %s: %w", d.ID, err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE devices SET firmware_version = ?, os = ?, kernel = ?,
			hostname = ?, interfaces = ?, attributes = ?, inventory_hash = ?, package_count = ?, updated_at = ?
			WHERE id = ?`),
			d.FirmwareVersion, d.OS, d.Kernel, d.Hostname, r.interfaces, r.attributes,
			d.InventoryHash, d.PackageCount, unixNanos(d.UpdatedAt), d.ID)
		if err != nil {
			return err
		}
		if err := mustAffect(res, rampart.ErrNotFound); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM packages WHERE device_id = ?`), d.ID); err != nil {
			return fmt.Errorf("clear packages: %w", err)
		}
		for start := 0; start < len(pkgs); start += packageBatch {
			end := min(start+packageBatch, len(pkgs))
			var q strings.Builder
			q.WriteString(`INSERT INTO packages (device_id, idx, name, version, arch, source, purl) VALUES `)
			args := make([]any, 0, 7*(end-start))
			for i := start; i < end; i++ {
				if i > start {
					q.WriteString(`, `)
				}
				q.WriteString(`(?, ?, ?, ?, ?, ?, ?)`)
				p := pkgs[i]
				args = append(args, d.ID, i, p.Name, p.Version, p.Arch, p.Source, p.PURL)
			}
			if _, err := tx.ExecContext(ctx, s.q(q.String()), args...); err != nil {
				return fmt.Errorf("insert packages %d to %d: %w", start, end, err)
			}
		}
		return s.recordChange(ctx, tx, d)
	})
	if err != nil {
		return fmt.Errorf("save inventory of %s: %w", d.ID, err)
	}
	return nil
}

// Packages returns a device's packages in the order they were saved; an unknown device has
// none.
func (s *Store) Packages(ctx context.Context, deviceID string) ([]fleet.Package, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT name, version, arch, source, purl FROM packages
		WHERE device_id = ? ORDER BY idx`), deviceID)
	if err != nil {
		return nil, fmt.Errorf("packages of %s: %w", deviceID, err)
	}
	defer rows.Close()
	var out []fleet.Package
	for rows.Next() {
		var p fleet.Package
		if err := rows.Scan(&p.Name, &p.Version, &p.Arch, &p.Source, &p.PURL); err != nil {
			return nil, fmt.Errorf("packages of %s: %w", deviceID, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("packages of %s: %w", deviceID, err)
	}
	return out, nil
}

// AddEvents appends events in one transaction.
func (s *Store) AddEvents(ctx context.Context, events []fleet.Event) error {
	if len(events) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, s.q(`INSERT INTO events (device_id, kind, level, message, data, at, received_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`))
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		defer stmt.Close()
		for _, e := range events {
			data, err := toJSON(e.Data)
			if err != nil {
				return fmt.Errorf("encode data of %s event: %w", e.Kind, err)
			}
			if _, err := stmt.ExecContext(ctx, e.DeviceID, e.Kind, e.Level, e.Message, data,
				unixNanos(e.At), unixNanos(e.ReceivedAt)); err != nil {
				return fmt.Errorf("%s event of %s: %w", e.Kind, e.DeviceID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add %d events: %w", len(events), err)
	}
	return nil
}

// defaultEventLimit is how many events Events returns when asked for none in particular.
const defaultEventLimit = 100

// Events returns a device's events, newest first, at most limit (default 100).
func (s *Store) Events(ctx context.Context, deviceID string, limit int) ([]fleet.Event, error) {
	if limit <= 0 {
		limit = defaultEventLimit
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT device_id, kind, level, message, data, at, received_at
		FROM events WHERE device_id = ? ORDER BY id DESC LIMIT ?`), deviceID, limit)
	if err != nil {
		return nil, fmt.Errorf("events of %s: %w", deviceID, err)
	}
	defer rows.Close()
	var out []fleet.Event
	for rows.Next() {
		var (
			e          fleet.Event
			data       string
			at, recvAt int64
		)
		if err := rows.Scan(&e.DeviceID, &e.Kind, &e.Level, &e.Message, &data, &at, &recvAt); err != nil {
			return nil, fmt.Errorf("events of %s: %w", deviceID, err)
		}
		if err := fromJSON(data, &e.Data); err != nil {
			return nil, fmt.Errorf("events of %s: decode data: %w", deviceID, err)
		}
		e.At, e.ReceivedAt = fromUnixNanos(at), fromUnixNanos(recvAt)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events of %s: %w", deviceID, err)
	}
	return out, nil
}
