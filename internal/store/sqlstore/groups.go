package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/fleet"
)

func scanGroup(sc scanner) (*fleet.Group, error) {
	var (
		g       fleet.Group
		created int64
	)
	if err := sc.Scan(&g.Name, &g.Description, &g.Filter, &created); err != nil {
		return nil, err
	}
	g.CreatedAt = fromUnixNanos(created)
	return &g, nil
}

// CreateGroup stores g; an existing name is ErrConflict.
func (s *Store) CreateGroup(ctx context.Context, g *fleet.Group) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO device_groups (name, description, filter, created_at) VALUES (?, ?, ?, ?)`),
		g.Name, g.Description, g.Filter, unixNanos(g.CreatedAt))
	if err != nil {
		if s.dialect.IsUniqueViolation(err) {
			return fmt.Errorf("create group %s: name taken: %w", g.Name, rampart.ErrConflict)
		}
		return fmt.Errorf("create group %s: %w", g.Name, err)
	}
	return nil
}

func (s *Store) group(ctx context.Context, q querier, name string) (*fleet.Group, error) {
	g, err := scanGroup(q.QueryRowContext(ctx, s.q(`SELECT name, description, filter, created_at FROM device_groups WHERE name = ?`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("group %s: %w", name, rampart.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read group %s: %w", name, err)
	}
	return g, nil
}

// Group returns the named group.
func (s *Store) Group(ctx context.Context, name string) (*fleet.Group, error) {
	return s.group(ctx, s.db, name)
}

// Groups lists every group by name.
func (s *Store) Groups(ctx context.Context) ([]*fleet.Group, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, description, filter, created_at FROM device_groups ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	defer rows.Close()
	var out []*fleet.Group
	for rows.Next() {
		g, err := scanGroup(rows)
		if err != nil {
			return nil, fmt.Errorf("list groups: %w", err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	return out, nil
}

// DeleteGroup removes a group and its memberships.
func (s *Store) DeleteGroup(ctx context.Context, name string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM group_members WHERE group_name = ?`), name); err != nil {
			return fmt.Errorf("remove members: %w", err)
		}
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM device_groups WHERE name = ?`), name)
		if err != nil {
			return err
		}
		return mustAffect(res, rampart.ErrNotFound)
	})
	if err != nil {
		return fmt.Errorf("delete group %s: %w", name, err)
	}
	return nil
}

// staticGroupDevices checks, inside tx, that group is a static group and every ID names a
// device, and returns the IDs without duplicates.
func (s *Store) staticGroupDevices(ctx context.Context, tx *sql.Tx, group string, deviceIDs []string) ([]string, error) {
	g, err := s.group(ctx, tx, group)
	if err != nil {
		return nil, err
	}
	if g.Dynamic() {
		return nil, fmt.Errorf("group %s is dynamic; its members follow its filter: %w", group, rampart.ErrConflict)
	}
	ids := slices.Clone(deviceIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var missing []string
	for _, id := range ids {
		var one int
		err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM devices WHERE id = ?`), id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			missing = append(missing, id)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("look up device %s: %w", id, err)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("devices %s: %w", strings.Join(missing, ", "), rampart.ErrNotFound)
	}
	return ids, nil
}

// AddGroupMembers adds devices to a static group; existing members stay as they are. An
// unknown group or device is ErrNotFound, a dynamic group ErrConflict, and then nothing is
// written.
func (s *Store) AddGroupMembers(ctx context.Context, group string, deviceIDs []string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		ids, err := s.staticGroupDevices(ctx, tx, group, deviceIDs)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO group_members (group_name, device_id) VALUES (?, ?)
				ON CONFLICT (group_name, device_id) DO NOTHING`), group, id); err != nil {
				return fmt.Errorf("add %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add %d devices to group %s: %w", len(deviceIDs), group, err)
	}
	return nil
}

// RemoveGroupMembers removes devices from a static group; a device that is not a member is
// left alone. An unknown group or device is ErrNotFound, a dynamic group ErrConflict, and
// then nothing is written.
func (s *Store) RemoveGroupMembers(ctx context.Context, group string, deviceIDs []string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		ids, err := s.staticGroupDevices(ctx, tx, group, deviceIDs)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM group_members WHERE group_name = ? AND device_id = ?`), group, id); err != nil {
				return fmt.Errorf("remove %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove %d devices from group %s: %w", len(deviceIDs), group, err)
	}
	return nil
}
