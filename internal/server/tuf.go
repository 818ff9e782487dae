package server

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/config"
	"github.com/rampart-iot/rampart/internal/release"
	"github.com/rampart-iot/rampart/internal/tuf"
)

// releasesRole is the delegated TUF role that signs release artifacts, with its own key.
const releasesRole = "releases"

// releasePaths is what the releases role is trusted for: releases/<name>_<version>/<artifact>.
var releasePaths = []string{"releases/*/*"}

// TargetPath is the TUF target path of a release artifact.
func TargetPath(r *release.Release, a release.Artifact) string {
	return "releases/" + r.Name + "_" + r.Version + "/" + a.Name
}

// openTUF makes sure the fleet's TUF repository exists. A new server creates it with an
// online root so the embedded quickstart works; production fleets create it with an offline
// root first (`rampart tuf init`).
func openTUF(ctx context.Context, repo *tuf.Repository, log *slog.Logger) error {
	if _, err := repo.Metadata(ctx, "root.json"); err == nil {
		return nil
	} else if !errors.Is(err, rampart.ErrNotFound) {
		return fmt.Errorf("tuf: %w", err)
	}
	if _, err := repo.UnsignedRoot(ctx); err == nil {
		log.Warn("the fleet's TUF root waits for offline signatures; releases cannot be published until `rampart tuf import-root`")
		return nil
	}
	if err := repo.Init(ctx, tuf.InitOptions{RootThreshold: 1}); err != nil && !errors.Is(err, rampart.ErrConflict) {
		return fmt.Errorf("tuf init: %w", err)
	}
	if err := delegateReleases(ctx, repo); err != nil {
		return err
	}
	log.Warn("created the fleet's TUF repository with an ONLINE root key; use an offline root for production (rampart tuf init before the first start)")
	return nil
}

func delegateReleases(ctx context.Context, repo *tuf.Repository) error {
	if err := repo.Delegate(ctx, releasesRole, releasePaths); err != nil && !errors.Is(err, rampart.ErrConflict) {
		return fmt.Errorf("tuf delegate %s: %w", releasesRole, err)
	}
	return nil
}

// TUFAdmin is the fleet's TUF repository opened directly on the configured store, for the
// `rampart tuf` commands run on the server host.
type TUFAdmin struct {
	Repo  *tuf.Repository
	close func() error
}

// OpenTUFAdmin opens the repository of the store cfg names.
func OpenTUFAdmin(ctx context.Context, cfg config.Server, log *slog.Logger) (*TUFAdmin, error) {
	st, err := OpenStore(ctx, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return &TUFAdmin{Repo: tuf.New(tuf.Options{Store: st.TUF(), Log: log}), close: st.Close}, nil
}

// Close closes the store.
func (a *TUFAdmin) Close() error { return a.close() }

// InitOffline prepares root version 1 for the given offline root keys and returns it, to be
// signed by threshold of them away from the server.
func (a *TUFAdmin) InitOffline(ctx context.Context, keys []ed25519.PublicKey, threshold int) ([]byte, error) {
	if err := a.Repo.Init(ctx, tuf.InitOptions{RootKeys: keys, RootThreshold: threshold}); err != nil {
		return nil, err
	}
	return a.Repo.UnsignedRoot(ctx)
}

// ImportRoot installs a signed root and, the first time, the releases role.
func (a *TUFAdmin) ImportRoot(ctx context.Context, signed []byte) error {
	if err := a.Repo.ImportRoot(ctx, signed); err != nil {
		return err
	}
	return delegateReleases(ctx, a.Repo)
}

// releaseSigner publishes a release's artifacts as TUF targets signed by the releases role.
type releaseSigner struct{ repo *tuf.Repository }

func (s releaseSigner) PublishTargets(ctx context.Context, r *release.Release) error {
	targets := make([]tuf.Target, 0, len(r.Artifacts))
	for _, a := range r.Artifacts {
		custom := map[string]any{
			tuf.CustomDeviceTypes: r.DeviceTypes,
			tuf.CustomVersion:     r.Version,
			tuf.CustomRelease:     r.ID,
			"role":                string(a.Role),
		}
		if len(r.HWRevisions) > 0 {
			custom[tuf.CustomHWRevisions] = r.HWRevisions
		}
		if a.DeltaFrom != "" {
			custom["delta_from"] = a.DeltaFrom
		}
		targets = append(targets, tuf.Target{Path: TargetPath(r, a), Length: a.Size, SHA256: a.Digest, Custom: custom})
	}
	return s.repo.AddTargets(ctx, releasesRole, targets)
}

// refreshTUF re-signs timestamp and snapshot before they expire, until ctx ends.
func refreshTUF(ctx context.Context, repo *tuf.Repository, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := repo.Refresh(ctx); err != nil && ctx.Err() == nil {
				log.Error("tuf refresh", "err", err)
			}
		}
	}
}
