package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rampart-iot/rampart"
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
	if err := repo.Init(ctx, tuf.InitOptions{RootThreshold: 1}); err != nil && !errors.Is(err, rampart.ErrConflict) {
		return fmt.Errorf("tuf init: %w", err)
	}
	if err := repo.Delegate(ctx, releasesRole, releasePaths); err != nil && !errors.Is(err, rampart.ErrConflict) {
		return fmt.Errorf("tuf delegate %s: %w", releasesRole, err)
	}
	log.Warn("created the fleet's TUF repository with an ONLINE root key; use an offline root for production (rampart tuf init)")
	return nil
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
