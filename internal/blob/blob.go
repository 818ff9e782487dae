// Package blob stores artifact bytes (firmware images, deltas) content-addressed by SHA-256.
//
// It defines the Store interface, the Info and Expect types shared by every backend, and
// Verifier, which hashes, counts and bounds an upload while it streams. The backends are
// blob/localfs (a folder, the default) and blob/s3 (an S3-compatible object store); both pass
// the suite in blob/blobtest.
//
// It is not for metadata: which release an artifact belongs to, its name, signatures and
// references live in the release domain and its SQL store. A blob knows only its digest, size
// and modification time, and nothing here decides when a blob is no longer referenced.
package blob

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/rampart-iot/rampart"
)

// Info describes a stored blob.
type Info struct {
	Digest  string // lowercase hex SHA-256 of the content
	Size    int64
	ModTime time.Time // when the blob was stored; http.ServeContent uses it for Last-Modified
}

// Expect is what the uploader claims about content before sending it. Put checks the content
// against it and refuses a mismatch, so a truncated or corrupt upload never becomes a blob.
//
// The zero value expects empty content; use Size: -1 when the size is unknown.
type Expect struct {
	Size    int64  // exact size in bytes; -1 when unknown
	SHA256  string // lowercase hex SHA-256; "" when unknown
	MaxSize int64  // refuse content longer than this; 0 means no limit
}

// Object is an open blob: seekable, so http.ServeContent can answer Range requests, with the
// Info to set ETag (the digest) and Last-Modified. Callers must Close it.
type Object interface {
	io.ReadSeekCloser
	Info() Info
}

// Store keeps blobs by digest. Every method refuses a digest that is not 64 lowercase hex
// characters with rampart.ErrInvalid, so a digest can never name anything else, and returns
// rampart.ErrNotFound for a well-formed digest that is not stored.
//
// Implementations are safe for concurrent use, including concurrent Puts of the same content.
type Store interface {
	// Put streams r into the store, hashing as it writes, and never holds the whole content in
	// memory. When the content differs from want (truncated, corrupt) it fails with
	// rampart.ErrInvalid, past want.MaxSize with rampart.ErrTooLarge, and on a read error or
	// cancelled ctx with that error; in every failure it leaves nothing behind. Storing
	// content that is already stored succeeds and returns the existing blob's Info.
	Put(ctx context.Context, r io.Reader, want Expect) (Info, error)
	// Stat returns the Info of a stored blob.
	Stat(ctx context.Context, digest string) (Info, error)
	// Open opens a stored blob for reading. Conditional requests (If-None-Match,
	// If-Modified-Since) and Range are the caller's, through http.ServeContent.
	Open(ctx context.Context, digest string) (Object, error)
	// Delete removes a stored blob.
	Delete(ctx context.Context, digest string) error
	// Walk calls fn for every stored blob, in no particular order, until fn returns an error,
	// which Walk returns. It lets a garbage collector find blobs no release refers to.
	Walk(ctx context.Context, fn func(Info) error) error
	// PresignGet returns a URL that lets anyone GET the blob (Range included) directly from
	// the backend until ttl has passed, so the bytes need not flow through Rampart. ok is
	// false when the backend cannot do that (a local folder); the caller then serves Open.
	PresignGet(ctx context.Context, digest string, ttl time.Duration) (url string, ok bool, err error)
	// Sweep removes what uploads that never finished (a crash or kill mid-Put) left behind,
	// if it was last written before olderThan, and reports how many leftovers it removed.
	// Server start-up calls it with a cutoff older than any upload still in progress.
	Sweep(ctx context.Context, olderThan time.Time) (removed int, err error)
}

// CheckDigest returns an error wrapping rampart.ErrInvalid unless d is 64 lowercase hex
// characters, the only form a digest takes in paths, object keys and URLs.
func CheckDigest(d string) error {
	if len(d) != 64 {
		return fmt.Errorf("digest %.80q: want 64 lowercase hex characters: %w", d, rampart.ErrInvalid)
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("digest %q: want 64 lowercase hex characters: %w", d, rampart.ErrInvalid)
		}
	}
	return nil
}

// CheckExpect refuses an Expect that no content could satisfy or that is malformed.
func CheckExpect(want Expect) error {
	switch {
	case want.Size < -1:
		return fmt.Errorf("expected size %d: %w", want.Size, rampart.ErrInvalid)
	case want.MaxSize < 0:
		return fmt.Errorf("size limit %d: %w", want.MaxSize, rampart.ErrInvalid)
	case want.MaxSize > 0 && want.Size > want.MaxSize:
		return fmt.Errorf("expected size %d exceeds the limit of %d bytes: %w", want.Size, want.MaxSize, rampart.ErrTooLarge)
	}
	if want.SHA256 != "" {
		if err := CheckDigest(want.SHA256); err != nil {
			return fmt.Errorf("expected sha256: %w", err)
		}
	}
	return nil
}
