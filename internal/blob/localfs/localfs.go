// Package localfs keeps blobs in a local folder, the default blob.Store.
//
// Layout: an upload is written to dir/incoming/<random> and synced, and only once its
// SHA-256 is known and checked is it renamed to dir/sha256/<first two hex digits>/<digest>
// (and the folder synced), so a blob path never holds partial content. A crash mid-upload
// leaves a file in incoming/, which Sweep removes at the next start-up.
//
// It is not for a folder shared by several replicas over a network file system without
// atomic rename, and it cannot hand out pre-signed URLs: the server serves the bytes itself.
package localfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/blob"
)

// copyBufferSize is the one buffer a Put holds, whatever the upload's size.
const copyBufferSize = 256 << 10

// Store is a blob.Store on a local folder.
type Store struct {
	incoming string // uploads being written
	blobs    string // sha256/ab/<digest>
}

var _ blob.Store = (*Store)(nil)

// Open uses dir as a blob folder, creating it and its layout if missing.
func Open(dir string) (*Store, error) {
	s := &Store{incoming: filepath.Join(dir, "incoming"), blobs: filepath.Join(dir, "sha256")}
	for _, d := range []string{s.incoming, s.blobs} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("open blob folder: %w", err)
		}
	}
	return s, nil
}

func (s *Store) path(digest string) string {
	return filepath.Join(s.blobs, digest[:2], digest)
}

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, r io.Reader, want blob.Expect) (info blob.Info, err error) {
	v, err := blob.NewVerifier(r, want)
	if err != nil {
		return blob.Info{}, fmt.Errorf("put blob: %w", err)
	}
	f, err := os.CreateTemp(s.incoming, "put-*")
	if err != nil {
		return blob.Info{}, fmt.Errorf("put blob: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := copyContext(ctx, f, v); err != nil {
		return blob.Info{}, fmt.Errorf("put blob: %w", err)
	}
	digest, size, err := v.Sum()
	if err != nil {
		return blob.Info{}, fmt.Errorf("put blob: %w", err)
	}
	if err := f.Sync(); err != nil {
		return blob.Info{}, fmt.Errorf("put blob %s: %w", digest, err)
	}
	if err := f.Close(); err != nil {
		return blob.Info{}, fmt.Errorf("put blob %s: %w", digest, err)
	}
	if err := s.publish(tmp, digest); err != nil {
		return blob.Info{}, fmt.Errorf("put blob %s: %w", digest, err)
	}
	info, err = s.Stat(ctx, digest)
	if err == nil && info.Size != size {
		err = fmt.Errorf("stored blob %s has %d bytes, wrote %d", digest, info.Size, size)
	}
	return info, err
}

// copyContext copies like io.Copy with one fixed buffer, checking ctx between reads, since a
// reader that never ends would otherwise never notice a cancelled upload.
func copyContext(ctx context.Context, dst io.Writer, src io.Reader) error {
	buf := make([]byte, copyBufferSize)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// publish moves a complete, synced upload to its blob path. Content that is already stored
// is identical by construction, so replacing it (a concurrent Put of the same bytes) is safe.
func (s *Store) publish(tmp, digest string) error {
	dir := filepath.Dir(s.path(digest))
	switch err := os.Mkdir(dir, 0o750); {
	case err == nil:
		if err := syncDir(s.blobs); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrExist):
		return err
	}
	if err := os.Rename(tmp, s.path(digest)); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename or a new entry in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Stat implements blob.Store.
func (s *Store) Stat(_ context.Context, digest string) (blob.Info, error) {
	if err := blob.CheckDigest(digest); err != nil {
		return blob.Info{}, fmt.Errorf("stat blob: %w", err)
	}
	fi, err := os.Stat(s.path(digest))
	if err != nil {
		return blob.Info{}, fmt.Errorf("stat blob %s: %w", digest, notFound(err))
	}
	return blob.Info{Digest: digest, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Open implements blob.Store.
func (s *Store) Open(_ context.Context, digest string) (blob.Object, error) {
	if err := blob.CheckDigest(digest); err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	f, err := os.Open(s.path(digest))
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", digest, notFound(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open blob %s: %w", digest, err)
	}
	return &object{File: f, info: blob.Info{Digest: digest, Size: fi.Size(), ModTime: fi.ModTime()}}, nil
}

type object struct {
	*os.File
	info blob.Info
}

func (o *object) Info() blob.Info { return o.info }

// Delete implements blob.Store.
func (s *Store) Delete(_ context.Context, digest string) error {
	if err := blob.CheckDigest(digest); err != nil {
		return fmt.Errorf("delete blob: %w", err)
	}
	if err := os.Remove(s.path(digest)); err != nil {
		return fmt.Errorf("delete blob %s: %w", digest, notFound(err))
	}
	return nil
}

// Walk implements blob.Store.
func (s *Store) Walk(ctx context.Context, fn func(blob.Info) error) error {
	err := filepath.WalkDir(s.blobs, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || blob.CheckDigest(d.Name()) != nil {
			return nil // fan-out folders, and anything not put there by Put
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while walking
		} else if err != nil {
			return err
		}
		return fn(blob.Info{Digest: d.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
	})
	if err != nil {
		return fmt.Errorf("walk blobs: %w", err)
	}
	return nil
}

// PresignGet implements blob.Store: a local folder has no URL of its own, so ok is false.
func (s *Store) PresignGet(_ context.Context, digest string, _ time.Duration) (string, bool, error) {
	if err := blob.CheckDigest(digest); err != nil {
		return "", false, fmt.Errorf("presign blob: %w", err)
	}
	return "", false, nil
}

// Sweep implements blob.Store: it removes files in incoming/ last written before olderThan.
// An upload in progress keeps writing, so its file stays newer than any sane cutoff.
func (s *Store) Sweep(ctx context.Context, olderThan time.Time) (int, error) {
	entries, err := os.ReadDir(s.incoming)
	if err != nil {
		return 0, fmt.Errorf("sweep incoming blobs: %w", err)
	}
	removed := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return removed, fmt.Errorf("sweep incoming blobs: %w", err)
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // finished (renamed) or failed (removed) meanwhile
		} else if err != nil {
			return removed, fmt.Errorf("sweep incoming blobs: %w", err)
		}
		if !fi.ModTime().Before(olderThan) {
			continue
		}
		err = os.RemoveAll(filepath.Join(s.incoming, e.Name()))
		if err != nil {
			return removed, fmt.Errorf("sweep incoming blobs: %w", err)
		}
		removed++
	}
	return removed, nil
}

func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return rampart.ErrNotFound
	}
	return err
}
