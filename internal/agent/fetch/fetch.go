// Package fetch obtains a release image on the device, verified end to end by TUF: through a
// delta patch from the installed image when the release has one for the installed version,
// else in full. A rebuilt image is checked against the full image's signed length and
// SHA-256, exactly as a full download would be, and only then moved into place.
//
// It does not install anything (internal/agent/installer does) and imports no server code.
package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/rampart-iot/rampart/internal/agent/tufclient"
	"github.com/rampart-iot/rampart/internal/delta"
)

// Request names what to fetch.
type Request struct {
	// FullPath is the TUF target path of the full image.
	FullPath string
	// DeltaPath, when set, is the TUF target path of a delta from the installed image.
	DeltaPath string
	// Installed is the image the device runs now (the delta's base). InstalledSize is its
	// size; -1 means unknown (a partition larger than the image in it): the patch then names
	// the size, and its base SHA-256 check still decides whether it applies.
	Installed     io.ReaderAt
	InstalledSize int64
	// Dest is where the verified image goes.
	Dest string
	// SHA256, when set, is the digest the image must have: the signed target of FullPath
	// with another digest is refused (tufclient.ErrMismatch) before anything is downloaded.
	SHA256 string
}

// Image fetches req.FullPath into req.Dest and reports whether a delta was used. A delta
// that fails for any reason (missing, corrupt, wrong base) falls back to the full download,
// which continues a partial download left by an earlier attempt. A file already at req.Dest
// that matches the signed length and SHA-256 is kept as it is (a staged download).
func Image(ctx context.Context, c *tufclient.Client, req Request, log *slog.Logger) (bool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	full, err := c.Target(ctx, req.FullPath)
	if err != nil {
		return false, fmt.Errorf("fetch %s: %w", req.FullPath, err)
	}
	if req.SHA256 != "" && req.SHA256 != full.SHA256 {
		return false, fmt.Errorf("fetch %s: signed sha256 %s, want %s: %w", req.FullPath, full.SHA256, req.SHA256, tufclient.ErrMismatch)
	}
	if Matches(ctx, req.Dest, full.Length, full.SHA256) {
		log.Debug("image already downloaded", "path", req.FullPath)
		return false, nil
	}
	if req.DeltaPath != "" && req.Installed != nil {
		err := viaDelta(ctx, c, req, full)
		if err == nil {
			return true, nil
		}
		log.Warn("delta update failed; downloading the full image", "delta", req.DeltaPath, "err", err)
	}
	if err := c.Fetch(ctx, full, req.Dest); err != nil {
		return false, fmt.Errorf("fetch %s: %w", req.FullPath, err)
	}
	return false, nil
}

// Matches reports whether the file at path has the given length and hex SHA-256.
func Matches(ctx context.Context, path string, length int64, sha256Hex string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() != length || sha256Hex == "" {
		return false
	}
	h := sha256.New()
	if _, err := io.Copy(h, &ctxReader{ctx: ctx, r: f}); err != nil {
		return false
	}
	return hex.EncodeToString(h.Sum(nil)) == sha256Hex
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func viaDelta(ctx context.Context, c *tufclient.Client, req Request, full tufclient.TargetInfo) error {
	dir := filepath.Dir(req.Dest)
	patchPath := filepath.Join(dir, "."+filepath.Base(req.Dest)+".patch")
	defer os.Remove(patchPath)
	info, err := c.Target(ctx, req.DeltaPath)
	if err != nil {
		return fmt.Errorf("delta: %w", err)
	}
	if err := c.Fetch(ctx, info, patchPath); err != nil {
		return fmt.Errorf("download delta: %w", err)
	}
	patch, err := os.Open(patchPath)
	if err != nil {
		return err
	}
	defer patch.Close()
	baseSize := req.InstalledSize
	if baseSize < 0 {
		var hb [128]byte
		n, _ := io.ReadFull(patch, hb[:])
		h, err := delta.ParseHeader(hb[:n])
		if err != nil {
			return err
		}
		baseSize = h.OldSize
		if _, err := patch.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	out, err := os.CreateTemp(dir, "."+filepath.Base(req.Dest)+".rebuild*")
	if err != nil {
		return err
	}
	tmp := out.Name()
	defer os.Remove(tmp) // no-op after the rename
	h := sha256.New()
	n := &countWriter{}
	if err := delta.Apply(ctx, req.Installed, baseSize, patch, io.MultiWriter(out, h, n)); err != nil {
		out.Close()
		return fmt.Errorf("apply delta: %w", err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	// The rebuilt image must be exactly the signed full image.
	if n.n != full.Length || hex.EncodeToString(h.Sum(nil)) != full.SHA256 {
		return fmt.Errorf("rebuilt image (%d bytes) does not match the signed full image (%d bytes, sha256 %s): %w",
			n.n, full.Length, full.SHA256, tufclient.ErrMismatch)
	}
	return os.Rename(tmp, req.Dest)
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}
