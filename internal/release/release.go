// Package release is the catalogue of firmware releases: name, version, compatible device
// types, artifacts (stored content-addressed through a blob.Store), the attached SBOM's
// components, notes, and the draft → published → withdrawn life cycle. Publishing hands the
// release's artifacts to a Signer (the TUF repository) so devices can verify them.
//
// It knows nothing of HTTP or SQL: it reaches storage through Store and blob.Store.
package release

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/blob"
	"github.com/rampart-iot/rampart/internal/sbom"
)

// State is where a release stands.
type State string

// The release states.
const (
	Draft     State = "draft"
	Published State = "published"
	Withdrawn State = "withdrawn"
)

// Role says what an artifact is for.
type Role string

// The artifact roles.
const (
	RoleFull    Role = "full"    // a complete image
	RolePackage Role = "package" // a package to install
	RoleScript  Role = "script"  // a script to run
	RoleDelta   Role = "delta"   // a patch from DeltaFrom to this release's full image
)

// ParseRole checks s names a role.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleFull, RolePackage, RoleScript, RoleDelta:
		return r, nil
	}
	return "", fmt.Errorf("artifact role %q is not full, package, script or delta: %w", s, rampart.ErrInvalid)
}

// Release is one release.
type Release struct {
	ID          string
	Name        string
	Version     string
	DeviceTypes []string
	HWRevisions []string // empty: every revision
	Notes       string
	State       State
	Artifacts   []Artifact
	// SBOMFormat is "cyclonedx" or "spdx" once an SBOM is attached; Components counts them.
	SBOMFormat  string
	Components  int
	CreatedAt   time.Time
	PublishedAt time.Time
	WithdrawnAt time.Time
}

// Artifact is one stored file of a release.
type Artifact struct {
	Name      string
	Role      Role
	DeltaFrom string // the version a delta applies to
	Digest    string // hex SHA-256
	Size      int64
	CreatedAt time.Time
}

// Store keeps releases. A missing release wraps rampart.ErrNotFound; a clash of (name,
// version) or of an artifact name within a release wraps rampart.ErrConflict.
type Store interface {
	CreateRelease(ctx context.Context, r *Release) error
	Release(ctx context.Context, id string) (*Release, error)
	ReleaseByVersion(ctx context.Context, name, version string) (*Release, error)
	Releases(ctx context.Context) ([]*Release, error)
	// UpdateRelease writes state, notes and the time stamps.
	UpdateRelease(ctx context.Context, r *Release) error
	AddArtifact(ctx context.Context, releaseID string, a Artifact) error
	// SetComponents replaces a release's SBOM components.
	SetComponents(ctx context.Context, releaseID, format string, cs []sbom.Component) error
	Components(ctx context.Context, releaseID string) ([]sbom.Component, error)
	// DeviceTypes lists the device types of the fleet's devices.
	DeviceTypes(ctx context.Context) ([]string, error)
}

// Signer makes a published release's artifacts verifiable by devices (the TUF repository).
type Signer interface {
	PublishTargets(ctx context.Context, r *Release) error
}

// Options configures a Service.
type Options struct {
	Store  Store
	Blobs  blob.Store
	Signer Signer // nil: releases are published unsigned (tests only)
	Log    *slog.Logger
	Now    func() time.Time
	// MaxArtifactSize bounds one upload (default 8 GiB).
	MaxArtifactSize int64
}

// Service manages releases.
type Service struct {
	store   Store
	blobs   blob.Store
	signer  Signer
	log     *slog.Logger
	now     func() time.Time
	maxSize int64
}

// NewService returns a Service.
func NewService(o Options) *Service {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxArtifactSize <= 0 {
		o.MaxArtifactSize = 8 << 30
	}
	return &Service{store: o.Store, blobs: o.Blobs, signer: o.Signer, log: o.Log, now: o.Now, maxSize: o.MaxArtifactSize}
}

// Spec describes a new release.
type Spec struct {
	Name        string
	Version     string
	DeviceTypes []string
	HWRevisions []string
	Notes       string
}

func checkName(what, s string, max int) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("%s must be 1 to %d bytes: %w", what, max, rampart.ErrInvalid)
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.+~", r)
		if !ok {
			return fmt.Errorf("%s %q may hold only letters, digits and -_.+~: %w", what, s, rampart.ErrInvalid)
		}
	}
	return nil
}

// Create makes a draft release. Every device type must exist in the fleet, so a typo does
// not create a release no device will ever take.
func (s *Service) Create(ctx context.Context, sp Spec) (*Release, error) {
	if err := checkName("release name", sp.Name, 128); err != nil {
		return nil, fmt.Errorf("create release: %w", err)
	}
	if err := checkName("version", sp.Version, 64); err != nil {
		return nil, fmt.Errorf("create release %s: %w", sp.Name, err)
	}
	if len(sp.DeviceTypes) == 0 || len(sp.DeviceTypes) > 64 {
		return nil, fmt.Errorf("create release %s: name 1 to 64 compatible device types: %w", sp.Name, rampart.ErrInvalid)
	}
	if len(sp.Notes) > 64<<10 {
		return nil, fmt.Errorf("create release %s: notes longer than 64 KiB: %w", sp.Name, rampart.ErrTooLarge)
	}
	known, err := s.store.DeviceTypes(ctx)
	if err != nil {
		return nil, fmt.Errorf("create release %s: %w", sp.Name, err)
	}
	for _, t := range sp.DeviceTypes {
		if !slices.Contains(known, t) {
			return nil, fmt.Errorf("create release %s: no device of type %q is enrolled: %w", sp.Name, t, rampart.ErrInvalid)
		}
	}
	for _, hw := range sp.HWRevisions {
		if err := checkName("hardware revision", hw, 64); err != nil {
			return nil, fmt.Errorf("create release %s: %w", sp.Name, err)
		}
	}
	id := make([]byte, 10)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("create release: %w", err)
	}
	r := &Release{
		ID: "rel_" + hex.EncodeToString(id), Name: sp.Name, Version: sp.Version,
		DeviceTypes: slices.Sorted(slices.Values(sp.DeviceTypes)), HWRevisions: sp.HWRevisions,
		Notes: sp.Notes, State: Draft, CreatedAt: s.now().UTC(),
	}
	if err := s.store.CreateRelease(ctx, r); err != nil {
		return nil, fmt.Errorf("create release %s %s: %w", sp.Name, sp.Version, err)
	}
	s.log.InfoContext(ctx, "release created", "release", r.ID, "name", r.Name, "version", r.Version)
	return r, nil
}

// Release returns one release.
func (s *Service) Release(ctx context.Context, id string) (*Release, error) {
	r, err := s.store.Release(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", id, err)
	}
	return r, nil
}

// ReleaseByVersion returns the release with the given name and version.
func (s *Service) ReleaseByVersion(ctx context.Context, name, version string) (*Release, error) {
	if err := checkName("release name", name, 128); err != nil {
		return nil, err
	}
	if err := checkName("version", version, 64); err != nil {
		return nil, err
	}
	// The store's errors already name the release.
	return s.store.ReleaseByVersion(ctx, name, version)
}

// Releases lists every release.
func (s *Service) Releases(ctx context.Context) ([]*Release, error) {
	rs, err := s.store.Releases(ctx)
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	return rs, nil
}

// Components returns the components of a release's SBOM.
func (s *Service) Components(ctx context.Context, id string) ([]sbom.Component, error) {
	if _, err := s.store.Release(ctx, id); err != nil {
		return nil, fmt.Errorf("components of %s: %w", id, err)
	}
	cs, err := s.store.Components(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("components of %s: %w", id, err)
	}
	return cs, nil
}

// Upload describes one artifact upload.
type Upload struct {
	Name      string
	Role      Role
	DeltaFrom string
	// Size and SHA256, when the uploader states them, are checked against what arrives, so a
	// truncated or corrupted upload is refused and leaves nothing behind.
	Size   int64 // -1 unknown
	SHA256 string
}

// UploadArtifact streams an artifact into the blob store and attaches it to a draft.
func (s *Service) UploadArtifact(ctx context.Context, id string, up Upload, body io.Reader) (*Artifact, error) {
	if err := checkName("artifact name", up.Name, 200); err != nil {
		return nil, fmt.Errorf("upload to %s: %w", id, err)
	}
	if up.Role == RoleDelta {
		if err := checkName("delta base version", up.DeltaFrom, 64); err != nil {
			return nil, fmt.Errorf("upload to %s: %w", id, err)
		}
	} else if up.DeltaFrom != "" {
		return nil, fmt.Errorf("upload to %s: only a delta artifact has a base version: %w", id, rampart.ErrInvalid)
	}
	r, err := s.store.Release(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("upload to %s: %w", id, err)
	}
	if r.State != Draft {
		return nil, fmt.Errorf("upload to %s: release is %s; only drafts take artifacts: %w", id, r.State, rampart.ErrConflict)
	}
	for _, a := range r.Artifacts {
		if a.Name == up.Name {
			return nil, fmt.Errorf("upload to %s: artifact %s exists: %w", id, up.Name, rampart.ErrConflict)
		}
	}
	info, err := s.blobs.Put(ctx, body, blob.Expect{Size: up.Size, SHA256: up.SHA256, MaxSize: s.maxSize})
	if err != nil {
		return nil, fmt.Errorf("upload %s to %s: %w", up.Name, id, err)
	}
	a := Artifact{Name: up.Name, Role: up.Role, DeltaFrom: up.DeltaFrom, Digest: info.Digest, Size: info.Size, CreatedAt: s.now().UTC()}
	if err := s.store.AddArtifact(ctx, id, a); err != nil {
		// The blob may be shared with another release (content-addressed), so it stays;
		// blobs no release references are for a garbage collector to remove.
		return nil, fmt.Errorf("upload %s to %s: %w", up.Name, id, err)
	}
	s.log.InfoContext(ctx, "artifact stored", "release", id, "artifact", a.Name, "sha256", a.Digest, "size", a.Size)
	return &a, nil
}

// AttachSBOM parses a CycloneDX or SPDX JSON document and stores its components.
func (s *Service) AttachSBOM(ctx context.Context, id string, body io.Reader) (*sbom.Document, error) {
	r, err := s.store.Release(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("attach SBOM to %s: %w", id, err)
	}
	if r.State != Draft {
		return nil, fmt.Errorf("attach SBOM to %s: release is %s: %w", id, r.State, rampart.ErrConflict)
	}
	doc, err := sbom.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("attach SBOM to %s: %w", id, err)
	}
	if err := s.store.SetComponents(ctx, id, doc.Format, doc.Components); err != nil {
		return nil, fmt.Errorf("attach SBOM to %s: %w", id, err)
	}
	return doc, nil
}

// Publish makes a draft available: its artifacts are signed into the TUF repository.
func (s *Service) Publish(ctx context.Context, id string) (*Release, error) {
	r, err := s.store.Release(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", id, err)
	}
	if r.State != Draft {
		return nil, fmt.Errorf("publish %s: release is %s: %w", id, r.State, rampart.ErrConflict)
	}
	if !slices.ContainsFunc(r.Artifacts, func(a Artifact) bool { return a.Role != RoleDelta }) {
		return nil, fmt.Errorf("publish %s: the release has no artifact to install: %w", id, rampart.ErrConflict)
	}
	if s.signer != nil {
		if err := s.signer.PublishTargets(ctx, r); err != nil {
			return nil, fmt.Errorf("publish %s: sign targets: %w", id, err)
		}
	}
	r.State, r.PublishedAt = Published, s.now().UTC()
	if err := s.store.UpdateRelease(ctx, r); err != nil {
		return nil, fmt.Errorf("publish %s: %w", id, err)
	}
	s.log.InfoContext(ctx, "release published", "release", id)
	return r, nil
}

// Withdraw stops a published release from being offered.
func (s *Service) Withdraw(ctx context.Context, id string) (*Release, error) {
	r, err := s.store.Release(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("withdraw %s: %w", id, err)
	}
	if r.State == Withdrawn {
		return r, nil
	}
	if r.State != Published {
		return nil, fmt.Errorf("withdraw %s: release is %s; only published releases can be withdrawn: %w", id, r.State, rampart.ErrConflict)
	}
	r.State, r.WithdrawnAt = Withdrawn, s.now().UTC()
	if err := s.store.UpdateRelease(ctx, r); err != nil {
		return nil, fmt.Errorf("withdraw %s: %w", id, err)
	}
	return r, nil
}
