// Package access decides who may do what through the management API: API tokens (stored
// hashed), the five roles, and the permission matrix. It does not authenticate devices;
// that is fleet's job.
package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/rampart-iot/rampart"
)

// Role is a named set of permissions.
type Role string

// The roles. Admin may do everything; the others are described by the matrix below.
const (
	Viewer   Role = "viewer"
	Operator Role = "operator"
	Releaser Role = "releaser"
	Security Role = "security"
	Admin    Role = "admin"
)

// ParseRole checks s names a role.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case Viewer, Operator, Releaser, Security, Admin:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q (want viewer, operator, releaser, security or admin): %w", s, rampart.ErrInvalid)
}

// Permission is one thing a management caller can do.
type Permission string

// The permissions of this release.
const (
	ReadFleet        Permission = "fleet.read"
	ManageDevices    Permission = "devices.manage" // accept, reject, tag, preauthorize
	RetireDevices    Permission = "devices.retire" // decommission, revoke keys
	ManageGroups     Permission = "groups.manage"
	ManageEnrollment Permission = "enrollment.manage"
	ManageTokens     Permission = "tokens.manage"
	ManageReleases   Permission = "releases.manage" // create, upload, publish, withdraw
	// ManageDeployments covers creating, pausing, resuming, cancelling and rolling back
	// deployments.
	ManageDeployments Permission = "deployments.manage"
)

// matrix lists, per permission, the roles other than admin that hold it.
var matrix = map[Permission][]Role{
	ReadFleet:         {Viewer, Operator, Releaser, Security},
	ManageDevices:     {Operator},
	RetireDevices:     {Operator, Security},
	ManageGroups:      {Operator, Releaser},
	ManageEnrollment:  {Operator},
	ManageTokens:      {},
	ManageReleases:    {Releaser},
	ManageDeployments: {Operator, Releaser},
}

// Allowed reports whether role holds perm.
func Allowed(role Role, perm Permission) bool {
	if role == Admin {
		return true
	}
	for _, r := range matrix[perm] {
		if r == role {
			return true
		}
	}
	return false
}

// Principal is an authenticated management caller.
type Principal struct {
	TokenID string
	Name    string
	Role    Role
}

// Check returns an error wrapping rampart.ErrForbidden unless p holds perm.
func (p Principal) Check(perm Permission) error {
	if !Allowed(p.Role, perm) {
		return fmt.Errorf("role %s may not %s: %w", p.Role, perm, rampart.ErrForbidden)
	}
	return nil
}

// Token is a stored API token. The secret is never stored, only its SHA-256.
type Token struct {
	ID        string
	Name      string
	Role      Role
	Hash      string
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never
	RevokedAt time.Time // zero: active
}

// Store keeps API tokens. A missing token wraps rampart.ErrNotFound.
type Store interface {
	CreateAPIToken(ctx context.Context, t *Token) error
	APITokenByHash(ctx context.Context, hash string) (*Token, error)
	APITokens(ctx context.Context) ([]*Token, error)
	RevokeAPIToken(ctx context.Context, id string, at time.Time) error
	CountAPITokens(ctx context.Context) (int, error)
}

// Service issues and checks API tokens.
type Service struct {
	store Store
	log   *slog.Logger
	now   func() time.Time
	rand  io.Reader
}

// Options configures a Service.
type Options struct {
	Store Store
	Log   *slog.Logger
	Now   func() time.Time
	Rand  io.Reader
}

// NewService returns a Service.
func NewService(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	return &Service{store: o.Store, log: o.Log, now: o.Now, rand: o.Rand}
}

// tokenPrefix makes Rampart tokens recognisable to secret scanners.
const tokenPrefix = "rmp_"

// Secret is a token secret; it logs as REDACTED.
type Secret string

// LogValue keeps secrets out of logs.
func (Secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// HashSecret returns the stored form of a token secret. Secrets carry 256 random bits, so a
// plain SHA-256 is as strong as a slow hash here and keeps each API call cheap.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// CreateToken makes a token and returns its secret, which is shown once and never again.
func (s *Service) CreateToken(ctx context.Context, name string, role Role, ttl time.Duration) (*Token, Secret, error) {
	if _, err := ParseRole(string(role)); err != nil {
		return nil, "", fmt.Errorf("create token: %w", err)
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 128 {
		return nil, "", fmt.Errorf("create token: name must be 1 to 128 bytes: %w", rampart.ErrInvalid)
	}
	if ttl < 0 {
		return nil, "", fmt.Errorf("create token: negative lifetime: %w", rampart.ErrInvalid)
	}
	raw := make([]byte, 32)
	if _, err := io.ReadFull(s.rand, raw); err != nil {
		return nil, "", fmt.Errorf("create token: %w", err)
	}
	idRaw := make([]byte, 8)
	if _, err := io.ReadFull(s.rand, idRaw); err != nil {
		return nil, "", fmt.Errorf("create token: %w", err)
	}
	secret := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	now := s.now().UTC()
	t := &Token{ID: "tok_" + hex.EncodeToString(idRaw), Name: name, Role: role, Hash: HashSecret(secret), CreatedAt: now}
	if ttl > 0 {
		t.ExpiresAt = now.Add(ttl)
	}
	if err := s.store.CreateAPIToken(ctx, t); err != nil {
		return nil, "", fmt.Errorf("create token %s: %w", name, err)
	}
	return t, Secret(secret), nil
}

// Authenticate resolves a presented secret to its principal.
func (s *Service) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if !strings.HasPrefix(secret, tokenPrefix) || len(secret) > 128 {
		return Principal{}, fmt.Errorf("malformed API token: %w", rampart.ErrUnauthorized)
	}
	t, err := s.store.APITokenByHash(ctx, HashSecret(secret))
	if err != nil {
		if errorsIsNotFound(err) {
			return Principal{}, fmt.Errorf("unknown API token: %w", rampart.ErrUnauthorized)
		}
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	now := s.now()
	if !t.RevokedAt.IsZero() {
		return Principal{}, fmt.Errorf("API token %s is revoked: %w", t.ID, rampart.ErrUnauthorized)
	}
	if !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) {
		return Principal{}, fmt.Errorf("API token %s expired: %w", t.ID, rampart.ErrUnauthorized)
	}
	return Principal{TokenID: t.ID, Name: t.Name, Role: t.Role}, nil
}

// Tokens lists every token (without secrets).
func (s *Service) Tokens(ctx context.Context) ([]*Token, error) {
	ts, err := s.store.APITokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return ts, nil
}

// Revoke stops a token from working.
func (s *Service) Revoke(ctx context.Context, id string) error {
	if err := s.store.RevokeAPIToken(ctx, id, s.now().UTC()); err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

// Bootstrap creates the first admin token when the store has none, and returns its secret;
// it returns "" when tokens already exist.
func (s *Service) Bootstrap(ctx context.Context) (Secret, error) {
	n, err := s.store.CountAPITokens(ctx)
	if err != nil {
		return "", fmt.Errorf("bootstrap admin token: %w", err)
	}
	if n > 0 {
		return "", nil
	}
	_, secret, err := s.CreateToken(ctx, "initial-admin", Admin, 0)
	if err != nil {
		return "", fmt.Errorf("bootstrap admin token: %w", err)
	}
	return secret, nil
}

func errorsIsNotFound(err error) bool { return errors.Is(err, rampart.ErrNotFound) }
