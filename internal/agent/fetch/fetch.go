// Package fetch obtains a release image on the device, verified end to end by TUF: through a
// delta patch from the installed image when the release has one for the installed version,
// else in full. A rebuilt image is checked against the full image's signed length and
// SHA-256, exactly as a full download would be, and only then moved into place.
//
// It does not install anything (installers come with rollouts) and imports no server code.
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
	// Installed is the image the device runs now (the delta's base).
	Installed     io.ReaderAt
	InstalledSize int64
	// Dest is where the verified image goes.
	Dest string
}

// Image fetches req.FullPath into req.Dest and reports whether a delta was used. A delta
// that fails for any reason (missing, corrupt, wrong base) falls back to the full download.
func Image(ctx context.Context, c *tufclient.Client, req Request, log *slog.Logger) (bool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	full, err := c.Target(ctx, req.FullPath)
	if err != nil {
		return false, fmt.Errorf("fetch %s: %w", req.FullPath, err)
	}
	if req.DeltaPath != "" && req.Installed != nil {
		err := viaDelta(ctx, c, req, full)
		if err == nil {
			return true, nil
		}
		log.Warn("delta update failed; downloading the full image", "delta", req.DeltaPath, "err", err)
	}
	if err := c.Download(ctx, req.FullPath, req.Dest); err != nil {
		return false, fmt.Errorf("fetch %s: %w", req.FullPath, err)
	}
	return false, nil
}

func viaDelta(ctx context.Context, c *tufclient.Client, req Request, full tufclient.TargetInfo) error {
	dir := filepath.Dir(req.Dest)
	patchPath := filepath.Join(dir, "."+filepath.Base(req.Dest)+".patch")
	defer os.Remove(patchPath)
	if err := c.Download(ctx, req.DeltaPath, patchPath); err != nil {
		return fmt.Errorf("download delta: %w", err)
	}
	patch, err := os.Open(patchPath)
	if err != nil {
		return err
	}
	defer patch.Close()
	out, err := os.CreateTemp(dir, "."+filepath.Base(req.Dest)+".rebuild*")
	if err != nil {
		return err
	}
	tmp := out.Name()
	defer os.Remove(tmp) // no-op after the rename
	h := sha256.New()
	n := &countWriter{}
	if err := delta.Apply(ctx, req.Installed, req.InstalledSize, patch, io.MultiWriter(out, h, n)); err != nil {
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
