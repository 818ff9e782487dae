package fleet

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/filter"
)

// Device returns one device.
func (s *Service) Device(ctx context.Context, id string) (*Device, error) {
	d, err := s.store.Device(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", id, err)
	}
	return d, nil
}

// ListQuery selects a page of devices.
type ListQuery struct {
	Status     string
	DeviceType string
	Tag        string
	// Group restricts to a group's members (static or dynamic).
	Group string
	// Filter is a filter expression (see CompileFilter).
	Filter string
	Cursor string
	Limit  int
}

// MaxPageSize bounds one page of devices.
const MaxPageSize = 1000

// Page is one page of a listing; Next is the cursor of the following page, "" at the end.
type Page struct {
	Devices []*Device
	Next    string
}

// Devices lists devices ordered by ID, filtered, one page at a time.
func (s *Service) Devices(ctx context.Context, q ListQuery) (*Page, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	if q.Limit > MaxPageSize {
		return nil, fmt.Errorf("list devices: limit above %d: %w", MaxPageSize, rampart.ErrInvalid)
	}
	sq := DeviceQuery{DeviceType: q.DeviceType, Tag: q.Tag, After: q.Cursor, Limit: q.Limit + 1}
	if q.Status != "" {
		st, err := ParseStatus(q.Status)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		sq.Status = st
	}
	var exprs []*filter.Expr
	if q.Filter != "" {
		e, err := CompileFilter(q.Filter)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		exprs = append(exprs, e)
	}
	if q.Group != "" {
		g, err := s.store.Group(ctx, q.Group)
		if err != nil {
			return nil, fmt.Errorf("list devices of group %s: %w", q.Group, err)
		}
		if g.Dynamic() {
			e, err := CompileFilter(g.Filter)
			if err != nil {
				return nil, fmt.Errorf("group %s: %w", g.Name, err)
			}
			exprs = append(exprs, e)
		} else {
			sq.Group = g.Name
		}
	}
	if len(exprs) == 0 {
		ds, err := s.store.ListDevices(ctx, sq)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		return paginate(ds, q.Limit), nil
	}
	// Expressions are evaluated here, over store pages, until the page is full.
	out := make([]*Device, 0, q.Limit+1)
	sq.Limit = 500
	for len(out) <= q.Limit {
		ds, err := s.store.ListDevices(ctx, sq)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		for _, d := range ds {
			if matchesAll(exprs, d) {
				out = append(out, d)
			}
		}
		if len(ds) < sq.Limit {
			break
		}
		sq.After = ds[len(ds)-1].ID
	}
	return paginate(out, q.Limit), nil
}

func matchesAll(exprs []*filter.Expr, d *Device) bool {
	for _, e := range exprs {
		if !Matches(e, d) {
			return false
		}
	}
	return true
}

func paginate(ds []*Device, limit int) *Page {
	if len(ds) <= limit {
		return &Page{Devices: ds}
	}
	ds = ds[:limit]
	return &Page{Devices: ds, Next: ds[len(ds)-1].ID}
}

// Packages returns a device's installed packages.
func (s *Service) Packages(ctx context.Context, id string) ([]Package, error) {
	if _, err := s.store.Device(ctx, id); err != nil {
		return nil, fmt.Errorf("packages of %s: %w", id, err)
	}
	ps, err := s.store.Packages(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("packages of %s: %w", id, err)
	}
	return ps, nil
}

// Events returns a device's most recent events.
func (s *Service) Events(ctx context.Context, id string, limit int) ([]Event, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	if _, err := s.store.Device(ctx, id); err != nil {
		return nil, fmt.Errorf("events of %s: %w", id, err)
	}
	es, err := s.store.Events(ctx, id, limit)
	if err != nil {
		return nil, fmt.Errorf("events of %s: %w", id, err)
	}
	return es, nil
}

// transitions lists the statuses an operator may move a device to, from each status.
var transitions = map[Status][]Status{
	StatusPending:        {StatusAccepted, StatusRejected, StatusDecommissioned},
	StatusPreauthorized:  {StatusRejected, StatusDecommissioned},
	StatusAccepted:       {StatusRejected, StatusDecommissioned},
	StatusRejected:       {StatusAccepted, StatusDecommissioned},
	StatusDecommissioned: {},
}

// SetStatus moves a device to accepted, rejected or decommissioned. Leaving accepted stops
// the device's outstanding tokens at once.
func (s *Service) SetStatus(ctx context.Context, id string, to Status) (*Device, error) {
	d, err := s.store.Device(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("set status of %s: %w", id, err)
	}
	if d.Status == to {
		return d, nil
	}
	if !slices.Contains(transitions[d.Status], to) {
		return nil, fmt.Errorf("device %s is %s and cannot become %s: %w", id, d.Status, to, rampart.ErrConflict)
	}
	from := d.Status
	now := s.now().UTC()
	d.Status = to
	if to != StatusAccepted {
		d.AuthGeneration++
	}
	d.UpdatedAt = now
	if err := s.store.UpdateDevice(ctx, d); err != nil {
		return nil, fmt.Errorf("set status of %s: %w", id, err)
	}
	s.cache.forget(id)
	s.record(ctx, id, EventStatusChanged, "info", fmt.Sprintf("status %s -> %s", from, to), now)
	s.log.InfoContext(ctx, "device status changed", "device", id, "from", from, "to", to)
	return d, nil
}

// RevokeKey refuses a device's current key; the device must enroll again with a new key
// and be admitted again.
func (s *Service) RevokeKey(ctx context.Context, id string) (*Device, error) {
	d, err := s.store.Device(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("revoke key of %s: %w", id, err)
	}
	if d.KeyRevoked {
		return d, nil
	}
	now := s.now().UTC()
	d.KeyRevoked = true
	d.AuthGeneration++
	d.UpdatedAt = now
	if err := s.store.UpdateDevice(ctx, d); err != nil {
		return nil, fmt.Errorf("revoke key of %s: %w", id, err)
	}
	s.cache.forget(id)
	s.record(ctx, id, EventKeyRevoked, "warning", "key revoked by an operator", now)
	s.log.InfoContext(ctx, "device key revoked", "device", id)
	return d, nil
}

// Tag adds and removes tags of a device.
func (s *Service) Tag(ctx context.Context, id string, add, remove []string) (*Device, error) {
	for _, t := range append(slices.Clone(add), remove...) {
		if err := ValidateTag(t); err != nil {
			return nil, fmt.Errorf("tag %s: %w", id, err)
		}
	}
	d, err := s.store.Device(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("tag %s: %w", id, err)
	}
	tags := slices.DeleteFunc(slices.Clone(d.Tags), func(t string) bool { return slices.Contains(remove, t) })
	for _, t := range add {
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	if len(tags) > MaxTags {
		return nil, fmt.Errorf("tag %s: more than %d tags: %w", id, MaxTags, rampart.ErrTooLarge)
	}
	slices.Sort(tags)
	d.Tags = tags
	d.UpdatedAt = s.now().UTC()
	if err := s.store.UpdateDevice(ctx, d); err != nil {
		return nil, fmt.Errorf("tag %s: %w", id, err)
	}
	return d, nil
}

// ParsePublicKey decodes a base64 (standard or URL, padded or not) Ed25519 public key.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("public key is %d bytes, want %d (Ed25519): %w", len(b), ed25519.PublicKeySize, rampart.ErrInvalid)
			}
			return ed25519.PublicKey(b), nil
		}
	}
	return nil, fmt.Errorf("public key is not base64: %w", rampart.ErrInvalid)
}

// Preauthorize registers a device's identity and key before it first connects; its first
// enrollment with exactly that pair is accepted.
func (s *Service) Preauthorize(ctx context.Context, id Identity, pub ed25519.PublicKey, attrs map[string]string, tags []string) (*Device, error) {
	if err := id.validate(); err != nil {
		return nil, fmt.Errorf("preauthorize: %w", err)
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("preauthorize %s: public key must be %d bytes: %w", id.Serial, ed25519.PublicKeySize, rampart.ErrInvalid)
	}
	if err := validateAttributes(attrs); err != nil {
		return nil, fmt.Errorf("preauthorize %s: %w", id.Serial, err)
	}
	for _, t := range tags {
		if err := ValidateTag(t); err != nil {
			return nil, fmt.Errorf("preauthorize %s: %w", id.Serial, err)
		}
	}
	if len(tags) > MaxTags {
		return nil, fmt.Errorf("preauthorize %s: more than %d tags: %w", id.Serial, MaxTags, rampart.ErrTooLarge)
	}
	now := s.now().UTC()
	d := &Device{Identity: id, PublicKey: pub, Status: StatusPreauthorized, Attributes: attrs, Tags: tags, CreatedAt: now, UpdatedAt: now}
	var err error
	if d.ID, err = s.newID("dev_"); err != nil {
		return nil, fmt.Errorf("preauthorize %s: %w", id.Serial, err)
	}
	if err := s.store.CreateDevice(ctx, d, "", now); err != nil {
		return nil, fmt.Errorf("preauthorize %s: %w", id.Serial, err)
	}
	s.log.InfoContext(ctx, "device preauthorized", "device", d.ID, "serial", id.Serial)
	return d, nil
}

// EnrollTokenSpec describes a new enrollment token.
type EnrollTokenSpec struct {
	Description string
	MaxUses     int
	TTL         time.Duration
	DeviceType  string
	Tags        []string
}

// CreateEnrollToken makes an enrollment token and returns its secret, shown only once.
func (s *Service) CreateEnrollToken(ctx context.Context, spec EnrollTokenSpec) (*EnrollToken, string, error) {
	if spec.MaxUses <= 0 || spec.MaxUses > 1_000_000 {
		return nil, "", fmt.Errorf("enrollment token: max uses must be 1 to 1000000: %w", rampart.ErrInvalid)
	}
	if spec.TTL <= 0 || spec.TTL > 366*24*time.Hour {
		return nil, "", fmt.Errorf("enrollment token: lifetime must be positive and at most a year: %w", rampart.ErrInvalid)
	}
	if err := checkText("description", spec.Description, 256); err != nil {
		return nil, "", fmt.Errorf("enrollment token: %w", err)
	}
	if err := checkText("device type", spec.DeviceType, MaxIdentityLen); err != nil {
		return nil, "", fmt.Errorf("enrollment token: %w", err)
	}
	if len(spec.Tags) > MaxTags {
		return nil, "", fmt.Errorf("enrollment token: more than %d tags: %w", MaxTags, rampart.ErrTooLarge)
	}
	for _, t := range spec.Tags {
		if err := ValidateTag(t); err != nil {
			return nil, "", fmt.Errorf("enrollment token: %w", err)
		}
	}
	raw := make([]byte, 24)
	if _, err := io.ReadFull(s.rand, raw); err != nil {
		return nil, "", fmt.Errorf("enrollment token: %w", err)
	}
	secret := "rmpe_" + base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(secret))
	now := s.now().UTC()
	t := &EnrollToken{
		Description: spec.Description, Hash: hex.EncodeToString(sum[:]), MaxUses: spec.MaxUses,
		ExpiresAt: now.Add(spec.TTL), DeviceType: spec.DeviceType, Tags: spec.Tags, CreatedAt: now,
	}
	var err error
	if t.ID, err = s.newID("et_"); err != nil {
		return nil, "", fmt.Errorf("enrollment token: %w", err)
	}
	if err := s.store.CreateEnrollToken(ctx, t); err != nil {
		return nil, "", fmt.Errorf("enrollment token: %w", err)
	}
	return t, secret, nil
}

// EnrollTokens lists enrollment tokens (never their secrets).
func (s *Service) EnrollTokens(ctx context.Context) ([]*EnrollToken, error) {
	ts, err := s.store.EnrollTokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("list enrollment tokens: %w", err)
	}
	return ts, nil
}

// RevokeEnrollToken stops an enrollment token from admitting more devices.
func (s *Service) RevokeEnrollToken(ctx context.Context, id string) error {
	if err := s.store.RevokeEnrollToken(ctx, id, s.now().UTC()); err != nil {
		return fmt.Errorf("revoke enrollment token %s: %w", id, err)
	}
	return nil
}

// CreateGroup makes a static group (no filter) or a dynamic one.
func (s *Service) CreateGroup(ctx context.Context, g Group) (*Group, error) {
	if err := ValidateTag(g.Name); err != nil {
		return nil, fmt.Errorf("create group: name: %w", err)
	}
	if err := checkText("description", g.Description, 256); err != nil {
		return nil, fmt.Errorf("create group %s: %w", g.Name, err)
	}
	if g.Filter != "" {
		if _, err := CompileFilter(g.Filter); err != nil {
			return nil, fmt.Errorf("create group %s: %w", g.Name, err)
		}
	}
	g.CreatedAt = s.now().UTC()
	if err := s.store.CreateGroup(ctx, &g); err != nil {
		return nil, fmt.Errorf("create group %s: %w", g.Name, err)
	}
	return &g, nil
}

// Group returns one group.
func (s *Service) Group(ctx context.Context, name string) (*Group, error) {
	g, err := s.store.Group(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", name, err)
	}
	return g, nil
}

// Groups lists all groups.
func (s *Service) Groups(ctx context.Context) ([]*Group, error) {
	gs, err := s.store.Groups(ctx)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	return gs, nil
}

// DeleteGroup removes a group (not its devices).
func (s *Service) DeleteGroup(ctx context.Context, name string) error {
	if err := s.store.DeleteGroup(ctx, name); err != nil {
		return fmt.Errorf("delete group %s: %w", name, err)
	}
	return nil
}

// MaxMembersPerCall bounds one membership change.
const MaxMembersPerCall = 1000

// ChangeMembers adds and removes members of a static group.
func (s *Service) ChangeMembers(ctx context.Context, name string, add, remove []string) error {
	if len(add)+len(remove) > MaxMembersPerCall {
		return fmt.Errorf("group %s: more than %d members in one change: %w", name, MaxMembersPerCall, rampart.ErrTooLarge)
	}
	g, err := s.store.Group(ctx, name)
	if err != nil {
		return fmt.Errorf("group %s: %w", name, err)
	}
	if g.Dynamic() {
		return fmt.Errorf("group %s is dynamic; change its filter instead: %w", name, rampart.ErrConflict)
	}
	if len(add) > 0 {
		if err := s.store.AddGroupMembers(ctx, name, add); err != nil {
			return fmt.Errorf("group %s: add members: %w", name, err)
		}
	}
	if len(remove) > 0 {
		if err := s.store.RemoveGroupMembers(ctx, name, remove); err != nil {
			return fmt.Errorf("group %s: remove members: %w", name, err)
		}
	}
	return nil
}
