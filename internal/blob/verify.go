package blob

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/rampart-iot/rampart"
)

// A Verifier is the reader a backend stores from: it passes the upload through while hashing
// and counting it, and fails the read as soon as the content runs past want.Size or
// want.MaxSize, so a backend never stores more than it must before giving up. Backends call
// Sum after the last read to learn the digest and check the rest.
type Verifier struct {
	r    io.Reader
	want Expect
	h    hash.Hash
	n    int64
	err  error // first error handed out, so a backend that swallows it still fails
}

// NewVerifier checks want (see CheckExpect) and returns a Verifier reading from r.
func NewVerifier(r io.Reader, want Expect) (*Verifier, error) {
	if err := CheckExpect(want); err != nil {
		return nil, err
	}
	return &Verifier{r: r, want: want, h: sha256.New()}, nil
}

// Read implements io.Reader.
func (v *Verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	switch {
	case v.want.MaxSize > 0 && v.n > v.want.MaxSize:
		return 0, v.fail(fmt.Errorf("content exceeds the limit of %d bytes: %w", v.want.MaxSize, rampart.ErrTooLarge))
	case v.want.Size >= 0 && v.n > v.want.Size:
		return 0, v.fail(fmt.Errorf("content is longer than the expected %d bytes: %w", v.want.Size, rampart.ErrInvalid))
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return n, v.fail(fmt.Errorf("read upload: %w", err))
	}
	return n, err
}

func (v *Verifier) fail(err error) error {
	v.err = err
	return err
}

// Err returns the first error Read returned other than io.EOF, or nil. A backend whose
// client library hides the reader's error behind its own prefers this one.
func (v *Verifier) Err() error { return v.err }

// Sum returns the digest and size of what was read, or an error wrapping rampart.ErrInvalid
// when it differs from the expected size or SHA-256 (a truncated or corrupt upload).
func (v *Verifier) Sum() (digest string, size int64, err error) {
	if v.err != nil {
		return "", 0, v.err
	}
	digest = hex.EncodeToString(v.h.Sum(nil))
	if v.want.Size >= 0 && v.n != v.want.Size {
		return "", 0, fmt.Errorf("content is %d bytes, expected %d (truncated?): %w", v.n, v.want.Size, rampart.ErrInvalid)
	}
	if v.want.SHA256 != "" && digest != v.want.SHA256 {
		return "", 0, fmt.Errorf("content has sha256 %s, expected %s (corrupt?): %w", digest, v.want.SHA256, rampart.ErrInvalid)
	}
	return digest, v.n, nil
}
