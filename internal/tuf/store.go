package tuf

import (
	"context"
	"crypto/ed25519"
)

// Top-level role names, as they appear in metadata file names.
const (
	RoleRoot      = "root"
	RoleTargets   = "targets"
	RoleSnapshot  = "snapshot"
	RoleTimestamp = "timestamp"
)

// pendingRoot is the store role under which a root awaiting offline signatures is kept. Its
// name cannot be a delegated role name (see validRoleName), so Metadata never serves it.
const pendingRoot = "_pending-root"

// Store persists the repository: signed metadata documents and the private keys of the online
// roles. It makes no decisions; the Repository validates everything before calling it.
//
// Implementations return errors wrapping rampart.ErrNotFound for a missing document, version or
// key set. Writes of one Repository call arrive in dependency order (delegated targets,
// targets, snapshot, timestamp last), so a client that reads timestamp first never sees a
// snapshot the store does not hold yet.
type Store interface {
	// PutMetadata stores the raw JSON of version of role and makes it the current version.
	PutMetadata(ctx context.Context, role string, version int64, data []byte) error
	// Metadata returns the raw JSON of version of role.
	Metadata(ctx context.Context, role string, version int64) ([]byte, error)
	// CurrentVersion returns the newest version stored for role.
	CurrentVersion(ctx context.Context, role string) (int64, error)
	// PutKeys replaces the private keys held for role; an empty list forgets them.
	PutKeys(ctx context.Context, role string, keys []ed25519.PrivateKey) error
	// Keys returns the private keys held for role.
	Keys(ctx context.Context, role string) ([]ed25519.PrivateKey, error)
}
