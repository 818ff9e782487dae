package release

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/delta"
)

// fullImage returns the one full image of r.
func fullImage(r *Release) (*Artifact, error) {
	var found *Artifact
	for i, a := range r.Artifacts {
		if a.Role != RoleFull {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("release %s has several full images: %w", r.ID, rampart.ErrConflict)
		}
		found = &r.Artifacts[i]
	}
	if found == nil {
		return nil, fmt.Errorf("release %s %s has no full image: %w", r.Name, r.Version, rampart.ErrConflict)
	}
	return found, nil
}

// ComputeDelta makes, for a draft release, a delta artifact from the full image of release
// version fromVersion of the same name to this release's full image, so devices on that
// version download only the difference. It returns the new artifact.
func (s *Service) ComputeDelta(ctx context.Context, id, fromVersion string) (*Artifact, error) {
	if err := checkName("delta base version", fromVersion, 64); err != nil {
		return nil, fmt.Errorf("delta for %s: %w", id, err)
	}
	r, err := s.store.Release(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("delta for %s: %w", id, err)
	}
	if r.State != Draft {
		return nil, fmt.Errorf("delta for %s: release is %s: %w", id, r.State, rampart.ErrConflict)
	}
	to, err := fullImage(r)
	if err != nil {
		return nil, fmt.Errorf("delta for %s: %w", id, err)
	}
	base, err := s.store.ReleaseByVersion(ctx, r.Name, fromVersion)
	if err != nil {
		return nil, fmt.Errorf("delta for %s from %s: %w", id, fromVersion, err)
	}
	from, err := fullImage(base)
	if err != nil {
		return nil, fmt.Errorf("delta for %s: %w", id, err)
	}
	old, cleanup, err := s.readerAt(ctx, from.Digest)
	if err != nil {
		return nil, fmt.Errorf("delta for %s: %w", id, err)
	}
	defer cleanup()
	newObj, err := s.blobs.Open(ctx, to.Digest)
	if err != nil {
		return nil, fmt.Errorf("delta for %s: %w", id, err)
	}
	defer newObj.Close()

	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(delta.Encode(ctx, old, from.Size, newObj, pw, delta.EncodeOptions{}))
	}()
	return s.UploadArtifact(ctx, id, Upload{
		Name: fmt.Sprintf("%s-%s-from-%s.rdelta", r.Name, r.Version, fromVersion), Role: RoleDelta, DeltaFrom: fromVersion, Size: -1,
	}, pr)
}

// readerAt gives random access to a blob: directly when the store's object offers it (a local
// file, an S3 object), else through a temporary copy.
func (s *Service) readerAt(ctx context.Context, digest string) (io.ReaderAt, func(), error) {
	obj, err := s.blobs.Open(ctx, digest)
	if err != nil {
		return nil, nil, err
	}
	if ra, ok := obj.(io.ReaderAt); ok {
		return ra, func() { obj.Close() }, nil
	}
	defer obj.Close()
	f, err := os.CreateTemp("", "rampart-delta-base-*")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { f.Close(); os.Remove(f.Name()) }
	if _, err := io.Copy(f, obj); err != nil {
		cleanup()
		return nil, nil, err
	}
	return f, cleanup, nil
}
