package api

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/access"
	"github.com/rampart-iot/rampart/internal/jsonhttp"
	"github.com/rampart-iot/rampart/internal/release"
)

// ReleaseRequest creates a release.
type ReleaseRequest struct {
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	DeviceTypes []string `json:"device_types"`
	HWRevisions []string `json:"hw_revisions,omitempty"`
	Notes       string   `json:"notes,omitempty"`
}

// Release describes a release.
type Release struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Version     string     `json:"version"`
	DeviceTypes []string   `json:"device_types"`
	HWRevisions []string   `json:"hw_revisions,omitempty"`
	Notes       string     `json:"notes,omitempty"`
	State       string     `json:"state"`
	Artifacts   []Artifact `json:"artifacts"`
	SBOMFormat  string     `json:"sbom_format,omitempty"`
	Components  int        `json:"components"`
	CreatedAt   time.Time  `json:"created_at"`
	PublishedAt *time.Time `json:"published_at,omitempty"`
	WithdrawnAt *time.Time `json:"withdrawn_at,omitempty"`
}

// Artifact is a stored file of a release.
type Artifact struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	DeltaFrom string    `json:"delta_from,omitempty"`
	SHA256    string    `json:"sha256"`
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
}

// ReleaseList lists releases.
type ReleaseList struct {
	Releases []Release `json:"releases"`
}

// Component is a component of a release's SBOM.
type Component struct {
	Name     string            `json:"name"`
	Version  string            `json:"version,omitempty"`
	PURL     string            `json:"purl,omitempty"`
	Type     string            `json:"type,omitempty"`
	Supplier string            `json:"supplier,omitempty"`
	Licenses []string          `json:"licenses,omitempty"`
	Hashes   map[string]string `json:"hashes,omitempty"`
}

// ComponentList is a release's SBOM components.
type ComponentList struct {
	Format     string      `json:"format,omitempty"`
	Components []Component `json:"components"`
}

func releaseOut(r *release.Release) Release {
	out := Release{
		ID: r.ID, Name: r.Name, Version: r.Version, DeviceTypes: r.DeviceTypes, HWRevisions: r.HWRevisions,
		Notes: r.Notes, State: string(r.State), SBOMFormat: r.SBOMFormat, Components: r.Components,
		CreatedAt: r.CreatedAt.UTC(), PublishedAt: timePtr(r.PublishedAt), WithdrawnAt: timePtr(r.WithdrawnAt),
		Artifacts: make([]Artifact, 0, len(r.Artifacts)),
	}
	for _, a := range r.Artifacts {
		out.Artifacts = append(out.Artifacts, artifactOut(a))
	}
	return out
}

func artifactOut(a release.Artifact) Artifact {
	return Artifact{Name: a.Name, Role: string(a.Role), DeltaFrom: a.DeltaFrom, SHA256: a.Digest, Size: a.Size, CreatedAt: a.CreatedAt.UTC()}
}

func (h *Handler) listReleases(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	rs, err := h.releases.Releases(r.Context())
	if err != nil {
		return err
	}
	out := ReleaseList{Releases: make([]Release, 0, len(rs))}
	for _, rel := range rs {
		out.Releases = append(out.Releases, releaseOut(rel))
	}
	jsonhttp.Write(w, http.StatusOK, out)
	return nil
}

func (h *Handler) createRelease(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	var req ReleaseRequest
	if err := jsonhttp.Decode(w, r, maxBody, &req); err != nil {
		return err
	}
	rel, err := h.releases.Create(r.Context(), release.Spec{Name: req.Name, Version: req.Version, DeviceTypes: req.DeviceTypes, HWRevisions: req.HWRevisions, Notes: req.Notes})
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "release.create", rel.ID)
	jsonhttp.Write(w, http.StatusCreated, releaseOut(rel))
	return nil
}

func (h *Handler) getRelease(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	rel, err := h.releases.Release(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	jsonhttp.Write(w, http.StatusOK, releaseOut(rel))
	return nil
}

// uploadArtifact streams the request body into the blob store: nothing is buffered, and
// Content-Length (and the optional sha256 query parameter) are checked against what arrives.
func (h *Handler) uploadArtifact(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	// A multi-GB image over a slow link takes longer than the server's read timeout, which
	// is there for ordinary requests; this one may take as long as the body keeps coming.
	_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	q := r.URL.Query()
	role, err := release.ParseRole(q.Get("role"))
	if err != nil {
		return err
	}
	size := r.ContentLength // -1 when chunked
	if v := q.Get("size"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("size must be a non-negative integer: %w", rampart.ErrInvalid)
		}
		size = n
	}
	a, err := h.releases.UploadArtifact(r.Context(), r.PathValue("id"), release.Upload{
		Name: r.PathValue("name"), Role: role, DeltaFrom: q.Get("delta_from"), Size: size, SHA256: q.Get("sha256"),
	}, r.Body)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "release.upload", r.PathValue("id")+"/"+a.Name)
	jsonhttp.Write(w, http.StatusCreated, artifactOut(*a))
	return nil
}

// maxSBOM bounds an SBOM upload.
const maxSBOM = 64 << 20

func (h *Handler) attachSBOM(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	body, err := jsonhttp.ReadBody(w, r, maxSBOM)
	if err != nil {
		return err
	}
	doc, err := h.releases.AttachSBOM(r.Context(), r.PathValue("id"), bytesReader(body))
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "release.sbom", r.PathValue("id"))
	jsonhttp.Write(w, http.StatusOK, map[string]any{"format": doc.Format, "spec_version": doc.SpecVersion, "components": len(doc.Components)})
	return nil
}

func (h *Handler) releaseComponents(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	rel, err := h.releases.Release(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	cs, err := h.releases.Components(r.Context(), rel.ID)
	if err != nil {
		return err
	}
	out := ComponentList{Format: rel.SBOMFormat, Components: make([]Component, 0, len(cs))}
	for _, c := range cs {
		out.Components = append(out.Components, Component{Name: c.Name, Version: c.Version, PURL: c.PURL, Type: c.Type, Supplier: c.Supplier, Licenses: c.Licenses, Hashes: c.Hashes})
	}
	jsonhttp.Write(w, http.StatusOK, out)
	return nil
}

func (h *Handler) publishRelease(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	rel, err := h.releases.Publish(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "release.publish", rel.ID)
	jsonhttp.Write(w, http.StatusOK, releaseOut(rel))
	return nil
}

func (h *Handler) withdrawRelease(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	rel, err := h.releases.Withdraw(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "release.withdraw", rel.ID)
	jsonhttp.Write(w, http.StatusOK, releaseOut(rel))
	return nil
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// DeltaRequest asks the server to compute a delta artifact.
type DeltaRequest struct {
	FromVersion string `json:"from_version"`
}

func (h *Handler) computeDelta(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	var req DeltaRequest
	if err := jsonhttp.Decode(w, r, maxBody, &req); err != nil {
		return err
	}
	a, err := h.releases.ComputeDelta(r.Context(), r.PathValue("id"), req.FromVersion)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "release.delta", r.PathValue("id")+"/"+a.Name)
	jsonhttp.Write(w, http.StatusCreated, artifactOut(*a))
	return nil
}
