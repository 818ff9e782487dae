package client

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/rampart-iot/rampart/internal/api"
)

// Releases lists releases, newest first.
func (c *Client) Releases(ctx context.Context) (*api.ReleaseList, error) {
	var out api.ReleaseList
	if err := c.call(ctx, "list releases", http.MethodGet, "/releases", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Release returns one release.
func (c *Client) Release(ctx context.Context, id string) (*api.Release, error) {
	var out api.Release
	if err := c.call(ctx, "release "+id, http.MethodGet, "/releases/"+url.PathEscape(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateRelease creates a draft release.
func (c *Client) CreateRelease(ctx context.Context, req api.ReleaseRequest) (*api.Release, error) {
	var out api.Release
	if err := c.call(ctx, "create release "+req.Name+" "+req.Version, http.MethodPost, "/releases", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Upload describes an artifact to upload.
type Upload struct {
	Name      string
	Role      string
	DeltaFrom string
	Size      int64  // bytes the server must receive (-1: unknown)
	SHA256    string // expected digest ("": the server only computes it)
}

// UploadArtifact streams body to a draft release. It has no overall timeout, so multi-GB
// images can take as long as they need; cancel ctx to stop.
func (c *Client) UploadArtifact(ctx context.Context, releaseID string, up Upload, body io.Reader) (*api.Artifact, error) {
	q := url.Values{"role": {up.Role}}
	if up.DeltaFrom != "" {
		q.Set("delta_from", up.DeltaFrom)
	}
	if up.SHA256 != "" {
		q.Set("sha256", up.SHA256)
	}
	if up.Size >= 0 {
		q.Set("size", strconv.FormatInt(up.Size, 10))
	}
	u := c.base + api.Prefix + "/releases/" + url.PathEscape(releaseID) + "/artifacts/" + url.PathEscape(up.Name) + "?" + q.Encode()
	op := "upload " + up.Name
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = up.Size
	req.Header.Set("Content-Type", "application/octet-stream")
	hc := *c.hc
	hc.Timeout = 0
	var out api.Artifact
	if err := c.send(req, op, &hc, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AttachSBOM uploads a CycloneDX or SPDX JSON document for a draft release.
func (c *Client) AttachSBOM(ctx context.Context, releaseID string, doc io.Reader) error {
	u := c.base + api.Prefix + "/releases/" + url.PathEscape(releaseID) + "/sbom"
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, doc)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.send(req, "attach SBOM to "+releaseID, c.hc, nil)
}

// Components lists a release's SBOM components.
func (c *Client) Components(ctx context.Context, releaseID string) (*api.ComponentList, error) {
	var out api.ComponentList
	if err := c.call(ctx, "components of "+releaseID, http.MethodGet, "/releases/"+url.PathEscape(releaseID)+"/components", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Publish publishes a draft release.
func (c *Client) Publish(ctx context.Context, id string) (*api.Release, error) {
	var out api.Release
	if err := c.call(ctx, "publish "+id, http.MethodPost, "/releases/"+url.PathEscape(id)+"/publish", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Withdraw withdraws a published release.
func (c *Client) Withdraw(ctx context.Context, id string) (*api.Release, error) {
	var out api.Release
	if err := c.call(ctx, "withdraw "+id, http.MethodPost, "/releases/"+url.PathEscape(id)+"/withdraw", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ComputeDelta has the server compute a delta artifact from version fromVersion.
func (c *Client) ComputeDelta(ctx context.Context, releaseID, fromVersion string) (*api.Artifact, error) {
	var out api.Artifact
	hc := *c.hc
	hc.Timeout = 0 // large images take a while to diff
	u := c.base + api.Prefix + "/releases/" + url.PathEscape(releaseID) + "/delta"
	body, _ := json.Marshal(api.DeltaRequest{FromVersion: fromVersion})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if err := c.send(req, "compute delta for "+releaseID, &hc, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
