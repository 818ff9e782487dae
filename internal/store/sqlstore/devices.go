package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/fleet"
)

// deviceColumns is the select list scanDevice reads, in its order.
const deviceColumns = `d.id, d.serial, d.mac, d.device_type, d.hw_revision, d.status,
	d.public_key, d.key_revoked, d.auth_generation, d.clone_suspect,
	d.firmware_version, d.os, d.kernel, d.hostname, d.interfaces, d.attributes, d.tags,
	d.inventory_hash, d.package_count, d.first_seen, d.last_seen, d.created_at, d.updated_at`

// netInterface is the stored JSON form of fleet.NetInterface; its own tags keep the column
// format independent of Go field names.
type netInterface struct {
	Name  string   `json:"name"`
	MAC   string   `json:"mac,omitempty"`
	Addrs []string `json:"addrs"`
}

func interfacesJSON(ifs []fleet.NetInterface) (string, error) {
	if ifs == nil {
		return "null", nil
	}
	out := make([]netInterface, len(ifs))
	for i, ni := range ifs {
		out[i] = netInterface{Name: ni.Name, MAC: ni.MAC, Addrs: ni.Addrs}
	}
	return toJSON(out)
}

func parseInterfaces(s string) ([]fleet.NetInterface, error) {
	var in []netInterface
	if err := fromJSON(s, &in); err != nil {
		return nil, err
	}
	if in == nil {
		return nil, nil
	}
	out := make([]fleet.NetInterface, len(in))
	for i, ni := range in {
		out[i] = fleet.NetInterface{Name: ni.Name, MAC: ni.MAC, Addrs: ni.Addrs}
	}
	return out, nil
}

// deviceRow is a Device flattened into column values.
type deviceRow struct {
	fingerprint                  any // NULL without a key, so keyless devices never clash
	interfaces, attributes, tags string
}

func encodeDevice(d *fleet.Device) (deviceRow, error) {
	var r deviceRow
	if len(d.PublicKey) > 0 {
		r.fingerprint = fleet.KeyFingerprint(d.PublicKey)
	}
	var err error
	if r.interfaces, err = interfacesJSON(d.Interfaces); err != nil {
		return r, fmt.Errorf("encode interfaces: %w", err)
	}
	if r.attributes, err = toJSON(d.Attributes); err != nil {
		return r, fmt.Errorf("encode attributes: %w", err)
	}
	if r.tags, err = toJSON(d.Tags); err != nil {
		return r, fmt.Errorf("encode tags: %w", err)
	}
	return r, nil
}

func publicKeyArg(d *fleet.Device) any {
	if len(d.PublicKey) == 0 {
		return nil
	}
	return []byte(d.PublicKey)
}

type scanner interface{ Scan(dest ...any) error }

func scanDevice(sc scanner) (*fleet.Device, error) {
	var (
		d                                        fleet.Device
		status, interfaces, attributes, tags     string
		key                                      []byte
		firstSeen, lastSeen, createdAt, updateAt int64
	)
	err := sc.Scan(&d.ID, &d.Identity.Serial, &d.Identity.MAC, &d.Identity.DeviceType, &d.Identity.HWRevision, &status,
		&key, &d.KeyRevoked, &d.AuthGeneration, &d.CloneSuspect,
		&d.FirmwareVersion, &d.OS, &d.Kernel, &d.Hostname, &interfaces, &attributes, &tags,
		&d.InventoryHash, &d.PackageCount, &firstSeen, &lastSeen, &createdAt, &updateAt)
	if err != nil {
		return nil, err
	}
	d.Status = fleet.Status(status)
	if len(key) > 0 {
		d.PublicKey = key
	}
	if d.Interfaces, err = parseInterfaces(interfaces); err != nil {
		return nil, fmt.Errorf("device %s: decode interfaces: %w", d.ID, err)
	}
	if err := fromJSON(attributes, &d.Attributes); err != nil {
		return nil, fmt.Errorf("device %s: decode attributes: %w", d.ID, err)
	}
	if err := fromJSON(tags, &d.Tags); err != nil {
		return nil, fmt.Errorf("device %s: decode tags: %w", d.ID, err)
	}
	d.FirstSeen = fromUnixNanos(firstSeen)
	d.LastSeen = fromUnixNanos(lastSeen)
	d.CreatedAt = fromUnixNanos(createdAt)
	d.UpdatedAt = fromUnixNanos(updateAt)
	return &d, nil
}

// ConsumeEnrollToken takes one use of an enrollment token that is neither revoked, expired
// at now, nor used up; otherwise it fails with ErrConflict.
func (s *Store) ConsumeEnrollToken(ctx context.Context, id string, now time.Time) error {
	return s.consumeEnrollToken(ctx, s.db, id, now)
}

func (s *Store) consumeEnrollToken(ctx context.Context, q querier, id string, now time.Time) error {
	res, err := q.ExecContext(ctx, s.q(`UPDATE enroll_tokens SET uses = uses + 1
		WHERE id = ? AND revoked_at = 0 AND expires_at > ? AND uses < max_uses`), id, unixNanos(now))
	if err != nil {
		return fmt.Errorf("consume enrollment token %s: %w", id, err)
	}
	return mustAffect(res, fmt.Errorf("enrollment token %s is unknown, revoked, expired or used up: %w", id, rampart.ErrConflict))
}

// CreateDevice inserts d and, when consumeToken is set, takes one use of that enrollment
// token in the same transaction.
func (s *Store) CreateDevice(ctx context.Context, d *fleet.Device, consumeToken string, now time.Time) error {
	r, err := encodeDevice(d)
	if err != nil {
		return fmt.Errorf("create device %s: %w", d.ID, err)
	}
	// The token's row is the one every enrollment with that token writes, so it is taken
	// last: its lock is held only from this UPDATE to the commit, not across the inserts.
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO devices (id, serial, mac, device_type, hw_revision, status,
			public_key, key_fingerprint, key_revoked, auth_generation, clone_suspect,
			firmware_version, os, kernel, hostname, interfaces, attributes, tags,
			inventory_hash, package_count, first_seen, last_seen, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			d.ID, d.Identity.Serial, d.Identity.MAC, d.Identity.DeviceType, d.Identity.HWRevision, string(d.Status),
			publicKeyArg(d), r.fingerprint, d.KeyRevoked, d.AuthGeneration, d.CloneSuspect,
			d.FirmwareVersion, d.OS, d.Kernel, d.Hostname, r.interfaces, r.attributes, r.tags,
			d.InventoryHash, d.PackageCount, unixNanos(d.FirstSeen), unixNanos(d.LastSeen), unixNanos(d.CreatedAt), unixNanos(d.UpdatedAt))
		if err != nil {
			if s.dialect.IsUniqueViolation(err) {
				return fmt.Errorf("ID, identity %s/%s or key already registered: %w", d.Identity.DeviceType, d.Identity.Serial, rampart.ErrConflict)
			}
			return err
		}
		if err := s.insertTags(ctx, tx, d.ID, d.Tags); err != nil {
			return err
		}
		if consumeToken != "" {
			return s.consumeEnrollToken(ctx, tx, consumeToken, now)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create device %s: %w", d.ID, err)
	}
	return nil
}

// insertTags adds rows to the tag index; duplicates in tags are harmless.
func (s *Store) insertTags(ctx context.Context, tx *sql.Tx, id string, tags []string) error {
	for _, tag := range tags {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO device_tags (device_id, tag) VALUES (?, ?)
			ON CONFLICT (device_id, tag) DO NOTHING`), id, tag); err != nil {
			return fmt.Errorf("index tag %q: %w", tag, err)
		}
	}
	return nil
}

func (s *Store) deviceWhere(ctx context.Context, what, where string, args ...any) (*fleet.Device, error) {
	row := s.queryRow(ctx, `SELECT `+deviceColumns+` FROM devices d WHERE `+where, args...)
	d, err := scanDevice(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("device %s: %w", what, rampart.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read device %s: %w", what, err)
	}
	return d, nil
}

// Device returns the device with the given ID.
func (s *Store) Device(ctx context.Context, id string) (*fleet.Device, error) {
	return s.deviceWhere(ctx, id, `d.id = ?`, id)
}

// DeviceAuthState reads the few columns a check-in needs, through a prepared statement.
func (s *Store) DeviceAuthState(ctx context.Context, id string) (*fleet.AuthState, error) {
	a := &fleet.AuthState{ID: id}
	var status string
	err := s.queryRow(ctx, `SELECT status, auth_generation, key_revoked, firmware_version, inventory_hash FROM devices WHERE id = ?`, id).
		Scan(&status, &a.AuthGeneration, &a.KeyRevoked, &a.FirmwareVersion, &a.InventoryHash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("device %s: %w", id, rampart.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read auth state of device %s: %w", id, err)
	}
	a.Status = fleet.Status(status)
	return a, nil
}

// DeviceByIdentity returns the device with the given type and serial.
func (s *Store) DeviceByIdentity(ctx context.Context, deviceType, serial string) (*fleet.Device, error) {
	return s.deviceWhere(ctx, deviceType+"/"+serial, `d.device_type = ? AND d.serial = ?`, deviceType, serial)
}

// DeviceByKey returns the device whose current public key has the given fingerprint.
func (s *Store) DeviceByKey(ctx context.Context, fingerprint string) (*fleet.Device, error) {
	return s.deviceWhere(ctx, "with key "+fingerprint, `d.key_fingerprint = ?`, fingerprint)
}

// UpdateDevice writes every field of d except its ID and CreatedAt, and keeps the key
// fingerprint and tag index in step.
func (s *Store) UpdateDevice(ctx context.Context, d *fleet.Device) error {
	r, err := encodeDevice(d)
	if err != nil {
		return fmt.Errorf("update device %s: %w", d.ID, err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE devices SET serial = ?, mac = ?, device_type = ?, hw_revision = ?,
			status = ?, public_key = ?, key_fingerprint = ?, key_revoked = ?, auth_generation = ?, clone_suspect = ?,
			firmware_version = ?, os = ?, kernel = ?, hostname = ?, interfaces = ?, attributes = ?, tags = ?,
			inventory_hash = ?, package_count = ?, first_seen = ?, last_seen = ?, updated_at = ?
			WHERE id = ?`),
			d.Identity.Serial, d.Identity.MAC, d.Identity.DeviceType, d.Identity.HWRevision,
			string(d.Status), publicKeyArg(d), r.fingerprint, d.KeyRevoked, d.AuthGeneration, d.CloneSuspect,
			d.FirmwareVersion, d.OS, d.Kernel, d.Hostname, r.interfaces, r.attributes, r.tags,
			d.InventoryHash, d.PackageCount, unixNanos(d.FirstSeen), unixNanos(d.LastSeen), unixNanos(d.UpdatedAt),
			d.ID)
		if err != nil {
			if s.dialect.IsUniqueViolation(err) {
				return fmt.Errorf("identity %s/%s or key belongs to another device: %w", d.Identity.DeviceType, d.Identity.Serial, rampart.ErrConflict)
			}
			return err
		}
		if err := mustAffect(res, rampart.ErrNotFound); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM device_tags WHERE device_id = ?`), d.ID); err != nil {
			return fmt.Errorf("clear tag index: %w", err)
		}
		if err := s.insertTags(ctx, tx, d.ID, d.Tags); err != nil {
			return err
		}
		return s.recordChange(ctx, tx, d)
	})
	if err != nil {
		return fmt.Errorf("update device %s: %w", d.ID, err)
	}
	return nil
}

// defaultDeviceLimit is the page size when a query gives none.
const defaultDeviceLimit = 100

// ListDevices returns devices ordered by ID, after q.After, at most q.Limit (default 100).
func (s *Store) ListDevices(ctx context.Context, q fleet.DeviceQuery) ([]*fleet.Device, error) {
	var (
		query strings.Builder
		args  []any
	)
	query.WriteString(`SELECT ` + deviceColumns + ` FROM devices d`)
	if q.Tag != "" {
		query.WriteString(` JOIN device_tags t ON t.device_id = d.id AND t.tag = ?`)
		args = append(args, q.Tag)
	}
	if q.Group != "" {
		query.WriteString(` JOIN group_members m ON m.device_id = d.id AND m.group_name = ?`)
		args = append(args, q.Group)
	}
	query.WriteString(` WHERE d.id > ?`)
	args = append(args, q.After)
	if q.Status != "" {
		query.WriteString(` AND d.status = ?`)
		args = append(args, string(q.Status))
	}
	if q.DeviceType != "" {
		query.WriteString(` AND d.device_type = ?`)
		args = append(args, q.DeviceType)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultDeviceLimit
	}
	query.WriteString(` ORDER BY d.id LIMIT ?`)
	args = append(args, limit)

	rows, err := s.db.QueryContext(ctx, s.q(query.String()), args...)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	var out []*fleet.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return out, nil
}

// TouchDevices moves last_seen forward for many devices in one transaction; unknown IDs and
// times older than the stored one are ignored.
func (s *Store) TouchDevices(ctx context.Context, seen map[string]time.Time) error {
	if len(seen) == 0 {
		return nil
	}
	// A fixed order keeps two concurrent batches from deadlocking on PostgreSQL row locks.
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, s.q(`UPDATE devices SET last_seen = ? WHERE id = ? AND last_seen < ?`))
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		defer stmt.Close()
		for _, id := range ids {
			at := unixNanos(seen[id])
			if _, err := stmt.ExecContext(ctx, at, id, at); err != nil {
				return fmt.Errorf("device %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("touch %d devices: %w", len(seen), err)
	}
	return nil
}

// recordChange appends to the change feed other replicas poll to drop cached device state.
func (s *Store) recordChange(ctx context.Context, tx *sql.Tx, d *fleet.Device) error {
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO device_changes (device_id, changed_at) VALUES (?, ?)`),
		d.ID, unixNanos(d.UpdatedAt)); err != nil {
		return fmt.Errorf("record change: %w", err)
	}
	return nil
}

// DeviceChangesSince returns the devices updated at or after since, each once.
func (s *Store) DeviceChangesSince(ctx context.Context, since time.Time) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT DISTINCT device_id FROM device_changes WHERE changed_at >= ?`), unixNanos(since))
	if err != nil {
		return nil, fmt.Errorf("read device changes: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read device changes: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read device changes: %w", err)
	}
	return ids, nil
}

// PurgeDeviceChanges forgets changes made before before.
func (s *Store) PurgeDeviceChanges(ctx context.Context, before time.Time) error {
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM device_changes WHERE changed_at < ?`), unixNanos(before)); err != nil {
		return fmt.Errorf("purge device changes: %w", err)
	}
	return nil
}
