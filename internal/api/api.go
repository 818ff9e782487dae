// Package api serves the management REST API under /api/v1: token authentication, the role
// check of every route, request decoding and response shapes. Business rules live in the
// domain services it calls (fleet, access, release, deployment); this package only adapts
// HTTP to them.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/access"
	"github.com/rampart-iot/rampart/internal/deployment"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/jsonhttp"
	"github.com/rampart-iot/rampart/internal/release"
)

// Prefix is where the management API lives.
const Prefix = "/api/v1"

// maxBody bounds every management request body.
const maxBody = 1 << 20

// Handler serves the management API.
type Handler struct {
	fleet       *fleet.Service
	access      *access.Service
	releases    *release.Service
	deployments *deployment.Service
	log         *slog.Logger
	now         func() time.Time
}

// New returns a Handler.
func New(f *fleet.Service, a *access.Service, rel *release.Service, deps *deployment.Service, log *slog.Logger) *Handler {
	return &Handler{fleet: f, access: a, releases: rel, deployments: deps, log: log, now: time.Now}
}

// Route is one management endpoint and the permission it needs ("" = any valid token).
type Route struct {
	Method, Path string
	Perm         access.Permission
	fn           func(w http.ResponseWriter, r *http.Request, p access.Principal) error
	// Raw routes take a raw byte stream (artifact uploads) instead of a JSON body.
	Raw bool
}

// Routes lists every management endpoint; tests walk it to prove each one checks roles.
func (h *Handler) Routes() []Route {
	return []Route{
		{"GET", "/whoami", "", h.whoami, false},
		{"GET", "/filter/fields", access.ReadFleet, h.filterFields, false},
		{"GET", "/devices", access.ReadFleet, h.listDevices, false},
		{"POST", "/devices/preauthorize", access.ManageDevices, h.preauthorize, false},
		{"GET", "/devices/{id}", access.ReadFleet, h.getDevice, false},
		{"GET", "/devices/{id}/packages", access.ReadFleet, h.devicePackages, false},
		{"GET", "/devices/{id}/events", access.ReadFleet, h.deviceEvents, false},
		{"POST", "/devices/{id}/accept", access.ManageDevices, h.setStatus(fleet.StatusAccepted), false},
		{"POST", "/devices/{id}/reject", access.ManageDevices, h.setStatus(fleet.StatusRejected), false},
		{"POST", "/devices/{id}/decommission", access.RetireDevices, h.setStatus(fleet.StatusDecommissioned), false},
		{"POST", "/devices/{id}/revoke-key", access.RetireDevices, h.revokeKey, false},
		{"POST", "/devices/{id}/tags", access.ManageDevices, h.tagDevice, false},
		{"GET", "/groups", access.ReadFleet, h.listGroups, false},
		{"POST", "/groups", access.ManageGroups, h.createGroup, false},
		{"GET", "/groups/{name}", access.ReadFleet, h.getGroup, false},
		{"DELETE", "/groups/{name}", access.ManageGroups, h.deleteGroup, false},
		{"POST", "/groups/{name}/members", access.ManageGroups, h.changeMembers, false},
		{"GET", "/groups/{name}/devices", access.ReadFleet, h.groupDevices, false},
		{"GET", "/enroll-tokens", access.ManageEnrollment, h.listEnrollTokens, false},
		{"POST", "/enroll-tokens", access.ManageEnrollment, h.createEnrollToken, false},
		{"DELETE", "/enroll-tokens/{id}", access.ManageEnrollment, h.revokeEnrollToken, false},
		{"GET", "/tokens", access.ManageTokens, h.listTokens, false},
		{"POST", "/tokens", access.ManageTokens, h.createToken, false},
		{"DELETE", "/tokens/{id}", access.ManageTokens, h.revokeToken, false},
		{"GET", "/releases", access.ReadFleet, h.listReleases, false},
		{"POST", "/releases", access.ManageReleases, h.createRelease, false},
		{"GET", "/releases/{id}", access.ReadFleet, h.getRelease, false},
		{Method: "PUT", Path: "/releases/{id}/artifacts/{name}", Perm: access.ManageReleases, fn: h.uploadArtifact, Raw: true},
		{"PUT", "/releases/{id}/sbom", access.ManageReleases, h.attachSBOM, false},
		{"GET", "/releases/{id}/components", access.ReadFleet, h.releaseComponents, false},
		{"POST", "/releases/{id}/delta", access.ManageReleases, h.computeDelta, false},
		{"POST", "/releases/{id}/publish", access.ManageReleases, h.publishRelease, false},
		{"POST", "/releases/{id}/withdraw", access.ManageReleases, h.withdrawRelease, false},
		{"GET", "/deployments", access.ReadFleet, h.listDeployments, false},
		{"POST", "/deployments", access.ManageDeployments, h.createDeployment, false},
		{"GET", "/deployments/{id}", access.ReadFleet, h.getDeployment, false},
		{"GET", "/deployments/{id}/devices", access.ReadFleet, h.deploymentDevices, false},
		{"GET", "/deployments/{id}/events", access.ReadFleet, h.deploymentEvents, false},
		{"POST", "/deployments/{id}/pause", access.ManageDeployments, h.controlDeployment("pause"), false},
		{"POST", "/deployments/{id}/resume", access.ManageDeployments, h.controlDeployment("resume"), false},
		{"POST", "/deployments/{id}/cancel", access.ManageDeployments, h.controlDeployment("cancel"), false},
		{"POST", "/deployments/{id}/rollback", access.ManageDeployments, h.rollbackDeployment, false},
		{"GET", "/metrics/delivery", access.ReadFleet, h.deliveryMetrics, false},
	}
}

// Register mounts every route on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	for _, rt := range h.Routes() {
		mux.Handle(rt.Method+" "+Prefix+rt.Path, h.serve(rt))
	}
	mux.Handle(Prefix+"/", h.serve(Route{fn: func(http.ResponseWriter, *http.Request, access.Principal) error {
		return errNoRoute
	}}))
}

var errNoRoute error = fmt.Errorf("no such endpoint: %w", rampart.ErrNotFound)

// serve authenticates the caller, checks the route's permission, and is the one place this
// transport turns errors into responses.
func (h *Handler) serve(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h.call(w, r, rt)
		if err == nil {
			return
		}
		status, msg := statusOf(err), err.Error()
		if status >= 500 {
			h.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			msg = "internal error"
		}
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rampart"`)
		}
		jsonhttp.Write(w, status, Error{Error: msg, RequestID: jsonhttp.RequestID(r.Context())})
	})
}

func (h *Handler) call(w http.ResponseWriter, r *http.Request, rt Route) error {
	tok, ok := jsonhttp.BearerToken(r.Header.Get("Authorization"))
	if !ok {
		return fmt.Errorf("missing API token (Authorization: Bearer rmp_...): %w", rampart.ErrUnauthorized)
	}
	p, err := h.access.Authenticate(r.Context(), tok)
	if err != nil {
		return err
	}
	if rt.Perm != "" {
		if err := p.Check(rt.Perm); err != nil {
			return err
		}
	}
	if !rt.Raw && r.Method != http.MethodGet && r.Method != http.MethodDelete && r.ContentLength != 0 {
		// Form posts are refused outright so a browser can never drive the API cross-site.
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			return fmt.Errorf("content type must be application/json: %w", jsonhttp.ErrUnsupportedType)
		}
	}
	return rt.fn(w, r, p)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, rampart.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, jsonhttp.ErrUnsupportedType):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, rampart.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, rampart.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, rampart.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, rampart.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, rampart.ErrConflict):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func (h *Handler) audit(ctx context.Context, p access.Principal, action, target string) {
	// TODO(#6): write to the hash-chained audit log once it exists.
	h.log.InfoContext(ctx, "admin action", "action", action, "target", target, "token", p.TokenID, "role", p.Role)
}

func (h *Handler) whoami(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	jsonhttp.Write(w, http.StatusOK, Whoami{TokenID: p.TokenID, Name: p.Name, Role: string(p.Role)})
	return nil
}

func (h *Handler) filterFields(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	out := []FilterField{}
	for _, v := range fleet.DeviceFilterVars() {
		out = append(out, FilterField{Name: v.Name, Doc: v.Doc})
	}
	jsonhttp.Write(w, http.StatusOK, out)
	return nil
}

func limitParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("limit must be a positive integer: %w", rampart.ErrInvalid)
	}
	return n, nil
}

func (h *Handler) listDevices(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	q := r.URL.Query()
	limit, err := limitParam(r)
	if err != nil {
		return err
	}
	page, err := h.fleet.Devices(r.Context(), fleet.ListQuery{
		Status: q.Get("status"), DeviceType: q.Get("type"), Tag: q.Get("tag"), Group: q.Get("group"),
		Filter: q.Get("filter"), Cursor: q.Get("cursor"), Limit: limit,
	})
	if err != nil {
		return err
	}
	writePage(w, page)
	return nil
}

func writePage(w http.ResponseWriter, page *fleet.Page) {
	out := DeviceList{Devices: make([]Device, 0, len(page.Devices)), Next: page.Next}
	for _, d := range page.Devices {
		out.Devices = append(out.Devices, deviceOut(d))
	}
	jsonhttp.Write(w, http.StatusOK, out)
}

func (h *Handler) getDevice(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	d, err := h.fleet.Device(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	jsonhttp.Write(w, http.StatusOK, deviceOut(d))
	return nil
}

func (h *Handler) devicePackages(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	ps, err := h.fleet.Packages(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	out := PackageList{Packages: make([]Package, 0, len(ps))}
	for _, p := range ps {
		out.Packages = append(out.Packages, Package{Name: p.Name, Version: p.Version, Arch: p.Arch, Source: p.Source, PURL: p.PURL})
	}
	jsonhttp.Write(w, http.StatusOK, out)
	return nil
}

func (h *Handler) deviceEvents(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	limit, err := limitParam(r)
	if err != nil {
		return err
	}
	es, err := h.fleet.Events(r.Context(), r.PathValue("id"), limit)
	if err != nil {
		return err
	}
	out := EventList{Events: make([]Event, 0, len(es))}
	for _, e := range es {
		out.Events = append(out.Events, Event{Kind: e.Kind, Level: e.Level, Message: e.Message, Data: e.Data, At: e.At.UTC(), ReceivedAt: e.ReceivedAt.UTC()})
	}
	jsonhttp.Write(w, http.StatusOK, out)
	return nil
}

func (h *Handler) setStatus(to fleet.Status) func(http.ResponseWriter, *http.Request, access.Principal) error {
	return func(w http.ResponseWriter, r *http.Request, p access.Principal) error {
		d, err := h.fleet.SetStatus(r.Context(), r.PathValue("id"), to)
		if err != nil {
			return err
		}
		h.audit(r.Context(), p, "device."+string(to), d.ID)
		jsonhttp.Write(w, http.StatusOK, deviceOut(d))
		return nil
	}
}

func (h *Handler) revokeKey(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	d, err := h.fleet.RevokeKey(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "device.revoke-key", d.ID)
	jsonhttp.Write(w, http.StatusOK, deviceOut(d))
	return nil
}

func (h *Handler) tagDevice(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	var req TagRequest
	if err := jsonhttp.Decode(w, r, maxBody, &req); err != nil {
		return err
	}
	d, err := h.fleet.Tag(r.Context(), r.PathValue("id"), req.Add, req.Remove)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "device.tag", d.ID)
	jsonhttp.Write(w, http.StatusOK, deviceOut(d))
	return nil
}

func (h *Handler) preauthorize(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	var req PreauthorizeRequest
	if err := jsonhttp.Decode(w, r, maxBody, &req); err != nil {
		return err
	}
	pub, err := fleet.ParsePublicKey(req.PublicKey)
	if err != nil {
		return err
	}
	d, err := h.fleet.Preauthorize(r.Context(), fleet.Identity{Serial: req.Serial, MAC: req.MAC, DeviceType: req.DeviceType, HWRevision: req.HWRevision}, pub, req.Attributes, req.Tags)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "device.preauthorize", d.ID)
	jsonhttp.Write(w, http.StatusCreated, deviceOut(d))
	return nil
}

func (h *Handler) listGroups(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	gs, err := h.fleet.Groups(r.Context())
	if err != nil {
		return err
	}
	out := GroupList{Groups: make([]Group, 0, len(gs))}
	for _, g := range gs {
		out.Groups = append(out.Groups, groupOut(g))
	}
	jsonhttp.Write(w, http.StatusOK, out)
	return nil
}

func (h *Handler) createGroup(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	var req Group
	if err := jsonhttp.Decode(w, r, maxBody, &req); err != nil {
		return err
	}
	g, err := h.fleet.CreateGroup(r.Context(), fleet.Group{Name: req.Name, Description: req.Description, Filter: req.Filter})
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "group.create", g.Name)
	jsonhttp.Write(w, http.StatusCreated, groupOut(g))
	return nil
}

func (h *Handler) getGroup(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	g, err := h.fleet.Group(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	jsonhttp.Write(w, http.StatusOK, groupOut(g))
	return nil
}

func (h *Handler) deleteGroup(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	if err := h.fleet.DeleteGroup(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	h.audit(r.Context(), p, "group.delete", r.PathValue("name"))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) changeMembers(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	var req MembersRequest
	if err := jsonhttp.Decode(w, r, maxBody, &req); err != nil {
		return err
	}
	if err := h.fleet.ChangeMembers(r.Context(), r.PathValue("name"), req.Add, req.Remove); err != nil {
		return err
	}
	h.audit(r.Context(), p, "group.members", r.PathValue("name"))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) groupDevices(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	limit, err := limitParam(r)
	if err != nil {
		return err
	}
	page, err := h.fleet.Devices(r.Context(), fleet.ListQuery{Group: r.PathValue("name"), Cursor: r.URL.Query().Get("cursor"), Limit: limit})
	if err != nil {
		return err
	}
	writePage(w, page)
	return nil
}

func parseTTL(s string, required bool) (time.Duration, error) {
	if s == "" && !required {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("ttl must be a positive duration such as 24h or 90m: %w", rampart.ErrInvalid)
	}
	return d, nil
}

func (h *Handler) listEnrollTokens(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	ts, err := h.fleet.EnrollTokens(r.Context())
	if err != nil {
		return err
	}
	out := EnrollTokenList{Tokens: make([]EnrollToken, 0, len(ts))}
	for _, t := range ts {
		out.Tokens = append(out.Tokens, enrollTokenOut(t))
	}
	jsonhttp.Write(w, http.StatusOK, out)
	return nil
}

func (h *Handler) createEnrollToken(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	var req EnrollTokenRequest
	if err := jsonhttp.Decode(w, r, maxBody, &req); err != nil {
		return err
	}
	ttl, err := parseTTL(req.TTL, true)
	if err != nil {
		return err
	}
	t, secret, err := h.fleet.CreateEnrollToken(r.Context(), fleet.EnrollTokenSpec{
		Description: req.Description, MaxUses: req.MaxUses, TTL: ttl, DeviceType: req.DeviceType, Tags: req.Tags,
	})
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "enroll-token.create", t.ID)
	out := enrollTokenOut(t)
	out.Secret = secret
	jsonhttp.Write(w, http.StatusCreated, out)
	return nil
}

func (h *Handler) revokeEnrollToken(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	if err := h.fleet.RevokeEnrollToken(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	h.audit(r.Context(), p, "enroll-token.revoke", r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) listTokens(w http.ResponseWriter, r *http.Request, _ access.Principal) error {
	ts, err := h.access.Tokens(r.Context())
	if err != nil {
		return err
	}
	out := TokenList{Tokens: make([]Token, 0, len(ts))}
	for _, t := range ts {
		out.Tokens = append(out.Tokens, tokenOut(t))
	}
	jsonhttp.Write(w, http.StatusOK, out)
	return nil
}

func (h *Handler) createToken(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	var req TokenRequest
	if err := jsonhttp.Decode(w, r, maxBody, &req); err != nil {
		return err
	}
	role, err := access.ParseRole(req.Role)
	if err != nil {
		return err
	}
	ttl, err := parseTTL(req.TTL, false)
	if err != nil {
		return err
	}
	t, secret, err := h.access.CreateToken(r.Context(), req.Name, role, ttl)
	if err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.create", t.ID)
	out := tokenOut(t)
	out.Secret = string(secret)
	jsonhttp.Write(w, http.StatusCreated, out)
	return nil
}

func (h *Handler) revokeToken(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	if err := h.access.Revoke(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	h.audit(r.Context(), p, "token.revoke", r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
	return nil
}
