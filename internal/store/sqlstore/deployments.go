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
	"github.com/rampart-iot/rampart/internal/deployment"
	"github.com/rampart-iot/rampart/internal/rollout"
)

var _ deployment.Store = (*Store)(nil)

// memberBatch is how many members go in one INSERT: 13 columns each stays far below both
// engines' limits on bound parameters, and 100,000 members take 200 executions of one
// prepared statement (parsing it each time was most of SQLite's work).
const memberBatch = 500

// Page sizes of the listings when a query gives none, and the most one page may hold.
const (
	defaultDeploymentLimit  = 50
	maxDeploymentLimit      = 1000
	defaultMemberLimit      = 100
	maxMemberLimit          = 10000
	defaultDeploymentEvents = 100
	maxDeploymentEvents     = 1000
)

// successState is rollout.Success written into queries as a literal, so that the engines can
// match them to the partial index deployment_members_success.
const successState = `'` + string(rollout.Success) + `'`

// target is the stored JSON form of deployment.Target; its own tags keep the column format
// independent of Go field names.
type target struct {
	Group   string   `json:"group,omitempty"`
	Filter  string   `json:"filter,omitempty"`
	Devices []string `json:"devices"`
}

// window is the stored JSON form of rollout.Window: weekdays 0 (Sunday) to 6, times of day
// in nanoseconds since midnight.
type window struct {
	Days  []int `json:"days"`
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// deploymentRow is a Deployment's columns that need encoding.
type deploymentRow struct {
	target, plan, windows, limits, minInterval, waveSizes string
}

func encodeDeployment(d *deployment.Deployment) (deploymentRow, error) {
	var (
		r   deploymentRow
		err error
	)
	if r.target, err = toJSON(target(d.Target)); err != nil {
		return r, fmt.Errorf("encode target: %w", err)
	}
	if r.plan, err = encodePlan(d.Plan); err != nil {
		return r, err
	}
	var ws []window
	if d.Constraints.Windows != nil {
		ws = make([]window, len(d.Constraints.Windows))
		for i, w := range d.Constraints.Windows {
			ws[i] = window{Start: int64(w.Start), End: int64(w.End)}
			if w.Days != nil {
				ws[i].Days = make([]int, len(w.Days))
				for j, day := range w.Days {
					ws[i].Days[j] = int(day)
				}
			}
		}
	}
	if r.windows, err = toJSON(ws); err != nil {
		return r, fmt.Errorf("encode windows: %w", err)
	}
	if r.limits, err = toJSON(d.Constraints.Limits); err != nil {
		return r, fmt.Errorf("encode limits: %w", err)
	}
	// time.Duration encodes as its nanoseconds.
	if r.minInterval, err = toJSON(d.Constraints.MinInterval); err != nil {
		return r, fmt.Errorf("encode minimum intervals: %w", err)
	}
	if r.waveSizes, err = toJSON(d.WaveSizes); err != nil {
		return r, fmt.Errorf("encode wave sizes: %w", err)
	}
	return r, nil
}

// encodePlan writes p in the text form rollout.ParsePlan reads, refusing a plan that would
// not read back: a deployment the store cannot load again would be stuck.
func encodePlan(p rollout.Plan) (string, error) {
	if len(p.Waves) == 0 {
		return "", nil
	}
	s := p.String()
	if _, err := rollout.ParsePlan(s); err != nil {
		return "", fmt.Errorf("encode plan: %w", err)
	}
	return s, nil
}

func decodePlan(s string) (rollout.Plan, error) {
	if s == "" {
		return rollout.Plan{}, nil
	}
	return rollout.ParsePlan(s)
}

// deploymentColumns is the select list scanDeployment reads, in its order.
const deploymentColumns = `id, name, release_id, software, version, target, plan, action, max_deferral,
	windows, limits, min_interval, deadline, status, reason, wave, wave_started, bake_until, override, seed,
	total, wave_sizes, rollback_of, rolled_back_by, created_by, created_at, updated_at, halted_at,
	finished_at, reached95_at, published_at, revision`

func scanDeployment(sc scanner) (*deployment.Deployment, error) {
	var (
		d                                                    deployment.Deployment
		r                                                    deploymentRow
		action, status                                       string
		maxDeferral, deadline, waveStarted, bakeUntil        int64
		created, updated, halted, finished, reached95, pubAt int64
	)
	err := sc.Scan(&d.ID, &d.Name, &d.ReleaseID, &d.Software, &d.Version, &r.target, &r.plan, &action, &maxDeferral,
		&r.windows, &r.limits, &r.minInterval, &deadline, &status, &d.Reason, &d.Wave, &waveStarted, &bakeUntil, &d.Override, &d.Seed,
		&d.Total, &r.waveSizes, &d.RollbackOf, &d.RolledBackBy, &d.CreatedBy, &created, &updated, &halted,
		&finished, &reached95, &pubAt, &d.Revision)
	if err != nil {
		return nil, err
	}
	var t target
	if err := fromJSON(r.target, &t); err != nil {
		return nil, fmt.Errorf("deployment %s: decode target: %w", d.ID, err)
	}
	d.Target = deployment.Target(t)
	if d.Plan, err = decodePlan(r.plan); err != nil {
		return nil, fmt.Errorf("deployment %s: decode plan: %w", d.ID, err)
	}
	var ws []window
	if err := fromJSON(r.windows, &ws); err != nil {
		return nil, fmt.Errorf("deployment %s: decode windows: %w", d.ID, err)
	}
	if ws != nil {
		d.Constraints.Windows = make(rollout.Windows, len(ws))
		for i, w := range ws {
			d.Constraints.Windows[i] = rollout.Window{Start: time.Duration(w.Start), End: time.Duration(w.End)}
			if w.Days != nil {
				days := make([]time.Weekday, len(w.Days))
				for j, day := range w.Days {
					days[j] = time.Weekday(day)
				}
				d.Constraints.Windows[i].Days = days
			}
		}
	}
	if err := fromJSON(r.limits, &d.Constraints.Limits); err != nil {
		return nil, fmt.Errorf("deployment %s: decode limits: %w", d.ID, err)
	}
	if err := fromJSON(r.minInterval, &d.Constraints.MinInterval); err != nil {
		return nil, fmt.Errorf("deployment %s: decode minimum intervals: %w", d.ID, err)
	}
	if err := fromJSON(r.waveSizes, &d.WaveSizes); err != nil {
		return nil, fmt.Errorf("deployment %s: decode wave sizes: %w", d.ID, err)
	}
	d.Action, d.Status = rollout.Action(action), deployment.Status(status)
	d.MaxDeferral = time.Duration(maxDeferral)
	d.Deadline, d.WaveStarted, d.BakeUntil = fromUnixNanos(deadline), fromUnixNanos(waveStarted), fromUnixNanos(bakeUntil)
	d.CreatedAt, d.UpdatedAt, d.HaltedAt = fromUnixNanos(created), fromUnixNanos(updated), fromUnixNanos(halted)
	d.FinishedAt, d.Reached95At, d.PublishedAt = fromUnixNanos(finished), fromUnixNanos(reached95), fromUnixNanos(pubAt)
	return &d, nil
}

// active is the stored form of Member.Active for a member in state st.
func active(st rollout.DeviceState) int {
	if st.Terminal() {
		return 0
	}
	return 1
}

// placeholders returns n comma-separated placeholders.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// CreateDeployment inserts d and its members in one transaction. Every member gets d's
// Software. A member whose device is already active in another deployment of that software
// is left out, and so is a second member with the same device; the IDs left out for the
// first reason are returned in device ID order. A deployment ID in use wraps
// rampart.ErrConflict.
func (s *Store) CreateDeployment(ctx context.Context, d *deployment.Deployment, members []deployment.Member) ([]string, error) {
	r, err := encodeDeployment(d)
	if err != nil {
		return nil, fmt.Errorf("create deployment %s: %w", d.ID, err)
	}
	var skipped []string
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO deployments (`+deploymentColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			d.ID, d.Name, d.ReleaseID, d.Software, d.Version, r.target, r.plan, string(d.Action), int64(d.MaxDeferral),
			r.windows, r.limits, r.minInterval, unixNanos(d.Deadline), string(d.Status), d.Reason, d.Wave,
			unixNanos(d.WaveStarted), unixNanos(d.BakeUntil), d.Override, d.Seed, d.Total, r.waveSizes, d.RollbackOf,
			d.RolledBackBy, d.CreatedBy, unixNanos(d.CreatedAt), unixNanos(d.UpdatedAt), unixNanos(d.HaltedAt),
			unixNanos(d.FinishedAt), unixNanos(d.Reached95At), unixNanos(d.PublishedAt), d.Revision)
		if err != nil {
			if s.dialect.IsUniqueViolation(err) {
				return fmt.Errorf("deployment exists: %w", rampart.ErrConflict)
			}
			return err
		}
		skipped, err = s.insertMembers(ctx, tx, d, members)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create deployment %s: %w", d.ID, err)
	}
	return skipped, nil
}

// insertMembers inserts members in batches. ON CONFLICT DO NOTHING skips a member whose
// device holds an active membership for the software (the partial unique index) or is
// already in this deployment (the primary key); only when a batch inserts fewer rows than it
// holds are its devices looked up to tell the first kind from the second.
//
// Members go in by device ID: on PostgreSQL a transaction waits for another's uncommitted
// entries in the unique index, and two creations taking devices in different orders could
// deadlock.
func (s *Store) insertMembers(ctx context.Context, tx *sql.Tx, d *deployment.Deployment, members []deployment.Member) ([]string, error) {
	order := make([]int, len(members))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(members[a].DeviceID, members[b].DeviceID) })
	var (
		skipped []string
		batch   []*deployment.Member
		full    *sql.Stmt // the statement of a whole batch, parsed once
	)
	defer func() {
		if full != nil {
			_ = full.Close()
		}
	}()
	args := make([]any, 0, 13*memberBatch)
	for start := 0; start < len(order); start += memberBatch {
		batch, args = batch[:0], args[:0]
		for _, i := range order[start:min(start+memberBatch, len(order))] {
			m := &members[i]
			st := m.Status
			batch = append(batch, m)
			args = append(args, d.ID, m.DeviceID, d.Software, m.Wave, m.DeviceType, m.Region, m.TimeZone,
				string(st.State), int64(st.Seq), unixNanos(st.Since), st.Log, unixNanos(m.OfferedAt), active(st.State))
		}
		var (
			res sql.Result
			err error
		)
		if len(batch) < memberBatch {
			res, err = tx.ExecContext(ctx, s.insertMembersQuery(len(batch)), args...)
		} else {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, s.insertMembersQuery(memberBatch)); err != nil {
					return nil, fmt.Errorf("prepare member insert: %w", err)
				}
			}
			res, err = full.ExecContext(ctx, args...)
		}
		if err != nil {
			return nil, fmt.Errorf("insert members %d to %d: %w", start, start+len(batch), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("insert members %d to %d: rows affected: %w", start, start+len(batch), err)
		}
		if int(n) == len(batch) {
			continue
		}
		ids := make([]any, 0, 1+len(batch))
		ids = append(ids, d.ID)
		for _, m := range batch {
			ids = append(ids, m.DeviceID)
		}
		in, err := s.memberIDs(ctx, tx, `SELECT device_id FROM deployment_members
			WHERE deployment_id = ? AND device_id IN (`+placeholders(len(batch))+`)`, ids...)
		if err != nil {
			return nil, fmt.Errorf("find members %d to %d left out: %w", start, start+len(batch), err)
		}
		for _, m := range batch {
			if _, ok := in[m.DeviceID]; !ok {
				skipped = append(skipped, m.DeviceID)
				in[m.DeviceID] = struct{}{} // a duplicate of a skipped device is listed once
			}
		}
	}
	return skipped, nil
}

// insertMembersQuery returns the INSERT of n members.
func (s *Store) insertMembersQuery(n int) string {
	var q strings.Builder
	q.WriteString(`INSERT INTO deployment_members (deployment_id, device_id, software, wave, device_type,
		region, time_zone, state, seq, since, log, offered_at, active) VALUES `)
	for i := range n {
		if i > 0 {
			q.WriteString(`, `)
		}
		q.WriteString(`(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	}
	q.WriteString(` ON CONFLICT DO NOTHING`)
	return s.q(q.String())
}

// memberIDs runs a query of device IDs and returns them as a set.
func (s *Store) memberIDs(ctx context.Context, q querier, query string, args ...any) (map[string]struct{}, error) {
	rows, err := q.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]struct{})
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = struct{}{}
	}
	return out, rows.Err()
}

// Deployment returns one deployment.
func (s *Store) Deployment(ctx context.Context, id string) (*deployment.Deployment, error) {
	d, err := scanDeployment(s.db.QueryRowContext(ctx, s.q(`SELECT `+deploymentColumns+` FROM deployments WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("deployment %s: %w", id, rampart.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read deployment %s: %w", id, err)
	}
	return d, nil
}

// Deployments lists deployments newest first (by creation time, then ID), at most q.Limit
// (default 50, at most 1000). A Before that names no deployment yields an empty page.
func (s *Store) Deployments(ctx context.Context, q deployment.Query) ([]*deployment.Deployment, error) {
	var (
		query strings.Builder
		args  []any
	)
	query.WriteString(`SELECT ` + deploymentColumns + ` FROM deployments WHERE 1 = 1`)
	if q.Before != "" {
		query.WriteString(` AND (created_at, id) < (SELECT created_at, id FROM deployments WHERE id = ?)`)
		args = append(args, q.Before)
	}
	if len(q.Statuses) > 0 {
		query.WriteString(` AND status IN (` + placeholders(len(q.Statuses)) + `)`)
		for _, st := range q.Statuses {
			args = append(args, string(st))
		}
	}
	if q.Software != "" {
		query.WriteString(` AND software = ?`)
		args = append(args, q.Software)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultDeploymentLimit
	}
	query.WriteString(` ORDER BY created_at DESC, id DESC LIMIT ?`)
	args = append(args, min(limit, maxDeploymentLimit))

	rows, err := s.db.QueryContext(ctx, s.q(query.String()), args...)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	defer rows.Close()
	var out []*deployment.Deployment
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, fmt.Errorf("list deployments: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return out, nil
}

// UpdateDeployment writes d if d.Revision is the stored revision, increments d.Revision, and
// adds events (to d when their DeploymentID is empty) in the same transaction. It writes every
// field but those that say what is deployed and by whom: ID, ReleaseID, Software, Version,
// Target, Seed, RollbackOf, CreatedBy, CreatedAt and PublishedAt stay as created. A stale
// revision wraps rampart.ErrConflict, a missing deployment rampart.ErrNotFound.
func (s *Store) UpdateDeployment(ctx context.Context, d *deployment.Deployment, events ...deployment.Event) error {
	r, err := encodeDeployment(d)
	if err != nil {
		return fmt.Errorf("update deployment %s: %w", d.ID, err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE deployments SET name = ?, plan = ?, action = ?, max_deferral = ?,
			windows = ?, limits = ?, min_interval = ?, deadline = ?, status = ?, reason = ?, wave = ?, wave_started = ?,
			bake_until = ?, override = ?, total = ?, wave_sizes = ?, rolled_back_by = ?, updated_at = ?, halted_at = ?, finished_at = ?,
			reached95_at = ?, revision = revision + 1
			WHERE id = ? AND revision = ?`),
			d.Name, r.plan, string(d.Action), int64(d.MaxDeferral),
			r.windows, r.limits, r.minInterval, unixNanos(d.Deadline), string(d.Status), d.Reason, d.Wave, unixNanos(d.WaveStarted),
			unixNanos(d.BakeUntil), d.Override, d.Total, r.waveSizes, d.RolledBackBy, unixNanos(d.UpdatedAt), unixNanos(d.HaltedAt), unixNanos(d.FinishedAt),
			unixNanos(d.Reached95At), d.ID, d.Revision)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("rows affected: %w", err)
		}
		if n == 0 {
			var stored int64
			err := tx.QueryRowContext(ctx, s.q(`SELECT revision FROM deployments WHERE id = ?`), d.ID).Scan(&stored)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return rampart.ErrNotFound
			case err != nil:
				return fmt.Errorf("read revision: %w", err)
			}
			return fmt.Errorf("revision %d, stored %d: %w", d.Revision, stored, rampart.ErrConflict)
		}
		for _, e := range events {
			if e.DeploymentID == "" {
				e.DeploymentID = d.ID
			}
			if err := s.addDeploymentEvent(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update deployment %s: %w", d.ID, err)
	}
	d.Revision++
	return nil
}

// deploymentExists tells an empty answer about a deployment from a missing deployment.
func (s *Store) deploymentExists(ctx context.Context, id string) error {
	var one int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT 1 FROM deployments WHERE id = ?`), id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("deployment %s: %w", id, rampart.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("find deployment %s: %w", id, err)
	}
	return nil
}

// memberColumns is the select list scanMember reads, in its order.
const memberColumns = `deployment_id, device_id, software, wave, device_type, region, time_zone,
	state, seq, since, log, offered_at`

func scanMember(sc scanner) (deployment.Member, error) {
	var (
		m                 deployment.Member
		state             string
		seq, since, offer int64
	)
	if err := sc.Scan(&m.DeploymentID, &m.DeviceID, &m.Software, &m.Wave, &m.DeviceType, &m.Region, &m.TimeZone,
		&state, &seq, &since, &m.Status.Log, &offer); err != nil {
		return m, err
	}
	m.Status.State, m.Status.Seq, m.Status.Since = rollout.DeviceState(state), uint64(seq), fromUnixNanos(since)
	m.OfferedAt = fromUnixNanos(offer)
	return m, nil
}

func (s *Store) queryMembers(ctx context.Context, query string, args ...any) ([]deployment.Member, error) {
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []deployment.Member
	for rows.Next() {
		m, err := scanMember(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// ActiveMembers returns a device's active memberships, ordered by software; an unknown
// device has none.
func (s *Store) ActiveMembers(ctx context.Context, deviceID string) ([]deployment.Member, error) {
	out, err := s.queryMembers(ctx, `SELECT `+memberColumns+` FROM deployment_members
		WHERE device_id = ? AND active = 1 ORDER BY software, deployment_id`, deviceID)
	if err != nil {
		return nil, fmt.Errorf("active deployments of %s: %w", deviceID, err)
	}
	return out, nil
}

// Member returns one device's membership in one deployment.
func (s *Store) Member(ctx context.Context, deploymentID, deviceID string) (*deployment.Member, error) {
	m, err := scanMember(s.db.QueryRowContext(ctx, s.q(`SELECT `+memberColumns+` FROM deployment_members
		WHERE deployment_id = ? AND device_id = ?`), deploymentID, deviceID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("device %s in deployment %s: %w", deviceID, deploymentID, rampart.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read device %s in deployment %s: %w", deviceID, deploymentID, err)
	}
	return &m, nil
}

// Members returns members of one deployment ordered by device ID, after q.After, at most
// q.Limit (default 100, at most 10000). A missing deployment wraps rampart.ErrNotFound.
func (s *Store) Members(ctx context.Context, q deployment.MemberQuery) ([]deployment.Member, error) {
	var query strings.Builder
	query.WriteString(`SELECT ` + memberColumns + ` FROM deployment_members WHERE deployment_id = ? AND device_id > ?`)
	args := []any{q.DeploymentID, q.After}
	if q.Wave >= 0 {
		query.WriteString(` AND wave = ?`)
		args = append(args, q.Wave)
	}
	if len(q.States) > 0 {
		query.WriteString(` AND state IN (` + placeholders(len(q.States)) + `)`)
		for _, st := range q.States {
			args = append(args, string(st))
		}
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultMemberLimit
	}
	query.WriteString(` ORDER BY device_id LIMIT ?`)
	args = append(args, min(limit, maxMemberLimit))
	out, err := s.queryMembers(ctx, query.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("members of deployment %s: %w", q.DeploymentID, err)
	}
	if len(out) == 0 {
		if err := s.deploymentExists(ctx, q.DeploymentID); err != nil {
			return nil, fmt.Errorf("members: %w", err)
		}
	}
	return out, nil
}

// UpdateMember writes m's status and OfferedAt if the stored state and seq are prev's, and
// reports whether it did. A missing member wraps rampart.ErrNotFound; making a member active
// again while its device is active in another deployment of the software wraps
// rampart.ErrConflict.
func (s *Store) UpdateMember(ctx context.Context, m *deployment.Member, prev rollout.DeviceStatus) (bool, error) {
	st := m.Status
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE deployment_members SET state = ?, seq = ?, since = ?, log = ?,
		offered_at = ?, active = ? WHERE deployment_id = ? AND device_id = ? AND state = ? AND seq = ?`),
		string(st.State), int64(st.Seq), unixNanos(st.Since), st.Log, unixNanos(m.OfferedAt), active(st.State),
		m.DeploymentID, m.DeviceID, string(prev.State), int64(prev.Seq))
	if err != nil {
		if s.dialect.IsUniqueViolation(err) {
			return false, fmt.Errorf("update device %s in deployment %s: device active in another deployment of %s: %w",
				m.DeviceID, m.DeploymentID, m.Software, rampart.ErrConflict)
		}
		return false, fmt.Errorf("update device %s in deployment %s: %w", m.DeviceID, m.DeploymentID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("update device %s in deployment %s: rows affected: %w", m.DeviceID, m.DeploymentID, err)
	}
	if n > 0 {
		return true, nil
	}
	if _, err := s.Member(ctx, m.DeploymentID, m.DeviceID); err != nil {
		return false, fmt.Errorf("update: %w", err)
	}
	return false, nil
}

// SetMembersState moves every member of a deployment in one of the states from to state to
// (Since now, Log cleared, Seq kept) and returns how many moved. A missing deployment wraps
// rampart.ErrNotFound.
func (s *Store) SetMembersState(ctx context.Context, deploymentID string, from []rollout.DeviceState, to rollout.DeviceState, now time.Time) (int, error) {
	if len(from) == 0 {
		if err := s.deploymentExists(ctx, deploymentID); err != nil {
			return 0, fmt.Errorf("set members to %s: %w", to, err)
		}
		return 0, nil
	}
	args := []any{string(to), unixNanos(now), active(to), deploymentID}
	for _, st := range from {
		args = append(args, string(st))
	}
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE deployment_members SET state = ?, since = ?, log = '', active = ?
		WHERE deployment_id = ? AND state IN (`+placeholders(len(from))+`)`), args...)
	if err != nil {
		if s.dialect.IsUniqueViolation(err) {
			return 0, fmt.Errorf("set members of deployment %s to %s: a device is active in another deployment: %w",
				deploymentID, to, rampart.ErrConflict)
		}
		return 0, fmt.Errorf("set members of deployment %s to %s: %w", deploymentID, to, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("set members of deployment %s to %s: rows affected: %w", deploymentID, to, err)
	}
	if n == 0 {
		if err := s.deploymentExists(ctx, deploymentID); err != nil {
			return 0, fmt.Errorf("set members to %s: %w", to, err)
		}
	}
	return int(n), nil
}

// Counts returns how many members of a deployment are in each wave and state, ordered by
// wave and state. A missing deployment wraps rampart.ErrNotFound.
func (s *Store) Counts(ctx context.Context, deploymentID string) ([]deployment.StateCount, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT wave, state, COUNT(*) FROM deployment_members
		WHERE deployment_id = ? GROUP BY wave, state ORDER BY wave, state`), deploymentID)
	if err != nil {
		return nil, fmt.Errorf("count members of deployment %s: %w", deploymentID, err)
	}
	defer rows.Close()
	var out []deployment.StateCount
	for rows.Next() {
		var (
			c     deployment.StateCount
			state string
		)
		if err := rows.Scan(&c.Wave, &state, &c.N); err != nil {
			return nil, fmt.Errorf("count members of deployment %s: %w", deploymentID, err)
		}
		c.State = rollout.DeviceState(state)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count members of deployment %s: %w", deploymentID, err)
	}
	if len(out) == 0 {
		if err := s.deploymentExists(ctx, deploymentID); err != nil {
			return nil, fmt.Errorf("count members: %w", err)
		}
	}
	return out, nil
}

// Load counts the active, offered members of deployments in the given statuses, per
// "type:<device type>" and, for devices with a region, "region:<region>" key, ordered by key.
// No statuses count nothing.
func (s *Store) Load(ctx context.Context, statuses []deployment.Status) ([]deployment.Load, error) {
	if len(statuses) == 0 {
		return nil, nil
	}
	args := make([]any, len(statuses))
	for i, st := range statuses {
		args[i] = string(st)
	}
	// The conditions on m match the partial index deployment_members_updating word for word.
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT m.device_type, m.region, COUNT(*)
		FROM deployments d JOIN deployment_members m ON m.deployment_id = d.id
		WHERE d.status IN (`+placeholders(len(statuses))+`) AND m.active = 1 AND m.offered_at <> 0
		GROUP BY m.device_type, m.region`), args...)
	if err != nil {
		return nil, fmt.Errorf("count updating devices: %w", err)
	}
	defer rows.Close()
	counts := make(map[string]int)
	for rows.Next() {
		var (
			typ, region string
			n           int
		)
		if err := rows.Scan(&typ, &region, &n); err != nil {
			return nil, fmt.Errorf("count updating devices: %w", err)
		}
		counts[rollout.LimitKey("type", typ)] += n
		if region != "" {
			counts[rollout.LimitKey("region", region)] += n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count updating devices: %w", err)
	}
	out := make([]deployment.Load, 0, len(counts))
	for k, n := range counts {
		out = append(out, deployment.Load{Key: k, N: n})
	}
	slices.SortFunc(out, func(a, b deployment.Load) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// LastSuccess is when the device last reached success in any deployment (zero if never).
func (s *Store) LastSuccess(ctx context.Context, deviceID string) (time.Time, error) {
	var at sql.NullInt64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT MAX(since) FROM deployment_members
		WHERE device_id = ? AND state = `+successState), deviceID).Scan(&at)
	if err != nil {
		return time.Time{}, fmt.Errorf("last success of %s: %w", deviceID, err)
	}
	return fromUnixNanos(at.Int64), nil
}

// MemberTimes lists every member of a deployment with its device type, state and when it
// entered that state, ordered by device ID. A missing deployment wraps rampart.ErrNotFound.
func (s *Store) MemberTimes(ctx context.Context, deploymentID string) ([]deployment.TypedTime, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT device_type, state, since FROM deployment_members
		WHERE deployment_id = ? ORDER BY device_id`), deploymentID)
	if err != nil {
		return nil, fmt.Errorf("member times of deployment %s: %w", deploymentID, err)
	}
	defer rows.Close()
	var out []deployment.TypedTime
	for rows.Next() {
		var (
			t     deployment.TypedTime
			state string
			at    int64
		)
		if err := rows.Scan(&t.DeviceType, &state, &at); err != nil {
			return nil, fmt.Errorf("member times of deployment %s: %w", deploymentID, err)
		}
		t.State, t.At = rollout.DeviceState(state), fromUnixNanos(at)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("member times of deployment %s: %w", deploymentID, err)
	}
	if len(out) == 0 {
		if err := s.deploymentExists(ctx, deploymentID); err != nil {
			return nil, fmt.Errorf("member times: %w", err)
		}
	}
	return out, nil
}

// AddDeploymentEvent appends an event to a deployment. A missing deployment wraps
// rampart.ErrNotFound.
func (s *Store) AddDeploymentEvent(ctx context.Context, e deployment.Event) error {
	if err := s.addDeploymentEvent(ctx, s.db, e); err != nil {
		return fmt.Errorf("deployment %s: %w", e.DeploymentID, err)
	}
	return nil
}

func (s *Store) addDeploymentEvent(ctx context.Context, q querier, e deployment.Event) error {
	res, err := q.ExecContext(ctx, s.q(`INSERT INTO deployment_events (deployment_id, at, kind, message)
		SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM deployments WHERE id = ?)`),
		e.DeploymentID, unixNanos(e.At), e.Kind, e.Message, e.DeploymentID)
	if err != nil {
		return fmt.Errorf("add %s event: %w", e.Kind, err)
	}
	if err := mustAffect(res, rampart.ErrNotFound); err != nil {
		return fmt.Errorf("add %s event to %s: %w", e.Kind, e.DeploymentID, err)
	}
	return nil
}

// DeploymentEvents returns a deployment's events, newest first, at most limit (default 100,
// at most 1000). A missing deployment wraps rampart.ErrNotFound.
func (s *Store) DeploymentEvents(ctx context.Context, deploymentID string, limit int) ([]deployment.Event, error) {
	if limit <= 0 {
		limit = defaultDeploymentEvents
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT deployment_id, at, kind, message FROM deployment_events
		WHERE deployment_id = ? ORDER BY id DESC LIMIT ?`), deploymentID, min(limit, maxDeploymentEvents))
	if err != nil {
		return nil, fmt.Errorf("events of deployment %s: %w", deploymentID, err)
	}
	defer rows.Close()
	var out []deployment.Event
	for rows.Next() {
		var (
			e  deployment.Event
			at int64
		)
		if err := rows.Scan(&e.DeploymentID, &at, &e.Kind, &e.Message); err != nil {
			return nil, fmt.Errorf("events of deployment %s: %w", deploymentID, err)
		}
		e.At = fromUnixNanos(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events of deployment %s: %w", deploymentID, err)
	}
	if len(out) == 0 {
		if err := s.deploymentExists(ctx, deploymentID); err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
	}
	return out, nil
}
