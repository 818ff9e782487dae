package fleet

import (
	"context"
	"time"
)

// Store is the persistence fleet needs. Implementations make no decisions: times, IDs and
// limits come in as arguments. A missing row wraps rampart.ErrNotFound and a unique-key
// clash (identity, key fingerprint, group name, nonce) wraps rampart.ErrConflict.
type Store interface {
	// CreateDevice inserts d. When consumeToken is set, it also takes one use of that
	// enrollment token in the same transaction, failing with ErrConflict when the token is
	// revoked, expired at now, or used up; then nothing is written.
	CreateDevice(ctx context.Context, d *Device, consumeToken string, now time.Time) error
	// ConsumeEnrollToken takes one use of a token on its own (re-admitting a known device),
	// with the same conditions as CreateDevice.
	ConsumeEnrollToken(ctx context.Context, id string, now time.Time) error
	Device(ctx context.Context, id string) (*Device, error)
	// DeviceAuthState reads only what a check-in needs of a device: the hot path's one read.
	DeviceAuthState(ctx context.Context, id string) (*AuthState, error)
	DeviceByIdentity(ctx context.Context, deviceType, serial string) (*Device, error)
	DeviceByKey(ctx context.Context, fingerprint string) (*Device, error)
	// UpdateDevice writes every mutable field of d (not packages).
	UpdateDevice(ctx context.Context, d *Device) error
	// ListDevices returns devices ordered by ID, after q.After, at most q.Limit of them.
	ListDevices(ctx context.Context, q DeviceQuery) ([]*Device, error)
	// DeviceChangesSince lists devices updated (UpdateDevice, SaveInventory) at or after
	// since, by the UpdatedAt the update carried; PurgeDeviceChanges forgets older changes.
	DeviceChangesSince(ctx context.Context, since time.Time) ([]string, error)
	PurgeDeviceChanges(ctx context.Context, before time.Time) error
	// TouchDevices sets last_seen for many devices at once; unknown IDs are ignored.
	TouchDevices(ctx context.Context, seen map[string]time.Time) error
	// SaveInventory writes d's inventory fields and replaces its package list, atomically.
	SaveInventory(ctx context.Context, d *Device, pkgs []Package) error
	Packages(ctx context.Context, deviceID string) ([]Package, error)

	AddEvents(ctx context.Context, events []Event) error
	// Events returns a device's events, newest first.
	Events(ctx context.Context, deviceID string, limit int) ([]Event, error)

	CreateEnrollToken(ctx context.Context, t *EnrollToken) error
	EnrollToken(ctx context.Context, id string) (*EnrollToken, error)
	EnrollTokenByHash(ctx context.Context, hash string) (*EnrollToken, error)
	EnrollTokens(ctx context.Context) ([]*EnrollToken, error)
	RevokeEnrollToken(ctx context.Context, id string, at time.Time) error

	// ConsumeNonce records a single-use value; a second use fails with ErrConflict.
	ConsumeNonce(ctx context.Context, nonce string, expires time.Time) error
	PurgeNonces(ctx context.Context, before time.Time) error

	CreateGroup(ctx context.Context, g *Group) error
	Group(ctx context.Context, name string) (*Group, error)
	Groups(ctx context.Context) ([]*Group, error)
	DeleteGroup(ctx context.Context, name string) error
	// AddGroupMembers and RemoveGroupMembers change a static group; unknown devices fail
	// with ErrNotFound and nothing is written.
	AddGroupMembers(ctx context.Context, group string, deviceIDs []string) error
	RemoveGroupMembers(ctx context.Context, group string, deviceIDs []string) error

	// Secret returns the named server secret, storing candidate first if none exists yet,
	// so every replica sharing the database ends up with the same value.
	Secret(ctx context.Context, name string, candidate []byte) ([]byte, error)
}

// DeviceQuery selects devices with conditions a store can index.
type DeviceQuery struct {
	Status     Status
	DeviceType string
	Tag        string
	// Group restricts to members of a static group.
	Group string
	// After is the last ID of the previous page ("" for the first).
	After string
	Limit int
}

// AuthState is the part of a device its check-ins depend on.
type AuthState struct {
	ID              string
	Status          Status
	AuthGeneration  int64
	KeyRevoked      bool
	FirmwareVersion string
	InventoryHash   string
}
