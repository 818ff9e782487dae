// Package native serves Rampart's own device protocol, version 1 (wire format in
// internal/nativeproto), on top of fleet.Service. It maps messages and errors; it makes no
// admission decisions of its own.
package native

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/deployment"
	"github.com/rampart-iot/rampart/internal/deviceapi"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/jsonhttp"
	"github.com/rampart-iot/rampart/internal/nativeproto"
	"github.com/rampart-iot/rampart/internal/release"
	"github.com/rampart-iot/rampart/internal/rollout"
	"github.com/rampart-iot/rampart/internal/tuf"
)

// Handler serves the native device API.
type Handler struct {
	fleet    *fleet.Service
	releases *release.Service
	grants   *release.Grants
	tuf      *tuf.Repository
	// deployments takes status reports.
	deployments *deployment.Service
	log         *slog.Logger
}

// Options configures a Handler; Releases, Grants and TUF may be nil (no artifact downloads,
// no update metadata).
type Options struct {
	Fleet    *fleet.Service
	Releases *release.Service
	Grants   *release.Grants
	TUF      *tuf.Repository
	// Deployments takes status reports; nil answers them 404.
	Deployments *deployment.Service
	Log         *slog.Logger
}

// New returns a Handler.
func New(o Options) *Handler {
	return &Handler{fleet: o.Fleet, releases: o.Releases, grants: o.Grants, tuf: o.TUF, deployments: o.Deployments, log: o.Log}
}

// Routes registers every route of the native device API on mux.
func (h *Handler) Routes(mux *http.ServeMux) {
	mux.Handle("POST "+nativeproto.PathChallenge, h.serve(h.challenge))
	mux.Handle("POST "+nativeproto.PathEnroll, h.serve(h.enroll))
	mux.Handle("POST "+nativeproto.PathAuth, h.serve(h.auth))
	mux.Handle("POST "+nativeproto.PathCheckIn, h.authed(h.checkIn))
	mux.Handle("PUT "+nativeproto.PathInventory, h.authed(h.inventory))
	mux.Handle("POST "+nativeproto.PathEvents, h.authed(h.events))
	mux.Handle("POST "+nativeproto.PathRotateKey, h.authed(h.rotateKey))
	mux.Handle("GET "+nativeproto.PathArtifacts+"{digest}", h.authed(h.download))
	mux.Handle("GET "+nativeproto.PathTUFMetadata+"{name}", h.authed(h.tufMetadata))
	mux.Handle("GET "+nativeproto.PathTUFTargets+"{path...}", h.authed(h.tufTarget))
	mux.Handle("POST "+nativeproto.PathDeployments+"{id}/status", h.authed(h.status))
	mux.Handle(nativeproto.Prefix+"/", h.serve(func(http.ResponseWriter, *http.Request) error {
		return fmt.Errorf("no such device endpoint (or wrong method): %w", rampart.ErrNotFound)
	}))
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// serve is the one place this transport turns errors into responses.
func (h *Handler) serve(fn handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := fn(w, r)
		if err == nil {
			return
		}
		status, msg := statusOf(err), err.Error()
		if status >= 500 {
			h.log.ErrorContext(r.Context(), "device request failed", "path", r.URL.Path, "device", deviceapi.Device(r.Context()), "err", err)
			msg = "internal error"
		} else {
			h.log.DebugContext(r.Context(), "device request refused", "path", r.URL.Path, "status", status, "err", err)
		}
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rampart-device"`)
		}
		jsonhttp.Write(w, status, nativeproto.Error{Error: msg, RequestID: jsonhttp.RequestID(r.Context())})
	})
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

// authed requires a valid device bearer token and puts the device in the context.
func (h *Handler) authed(fn handlerFunc) http.Handler {
	return h.serve(func(w http.ResponseWriter, r *http.Request) error {
		tok, ok := jsonhttp.BearerToken(r.Header.Get("Authorization"))
		if !ok {
			return errNoToken
		}
		id, err := h.fleet.VerifyToken(r.Context(), tok)
		if err != nil {
			return err
		}
		return fn(w, r.WithContext(deviceapi.WithDevice(r.Context(), id)))
	})
}

var errNoToken error = fmt.Errorf("missing bearer token: %w", rampart.ErrUnauthorized)

func signature(r *http.Request, header string) ([]byte, error) {
	v := r.Header.Get(header)
	if v == "" {
		return nil, fmt.Errorf("missing %s header: %w", header, rampart.ErrUnauthorized)
	}
	sig, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("%s is not base64: %w", header, rampart.ErrUnauthorized)
	}
	return sig, nil
}

// readSigned reads a bounded JSON body signed by the device's key (SignatureHeader) and
// decodes it into v; the returned fleet.Signed holds the exact bytes the signature covers.
func readSigned(w http.ResponseWriter, r *http.Request, v any) (fleet.Signed, error) {
	body, err := jsonhttp.ReadBody(w, r, nativeproto.MaxSmallBody)
	if err != nil {
		return fleet.Signed{}, err
	}
	sig, err := signature(r, nativeproto.SignatureHeader)
	if err != nil {
		return fleet.Signed{}, err
	}
	if err := jsonhttp.Unmarshal(body, v); err != nil {
		return fleet.Signed{}, err
	}
	return fleet.Signed{Body: body, Signature: sig}, nil
}

func (h *Handler) challenge(w http.ResponseWriter, r *http.Request) error {
	c, exp, err := h.fleet.NewChallenge()
	if err != nil {
		return err
	}
	jsonhttp.Write(w, http.StatusOK, nativeproto.Challenge{Challenge: c, ExpiresAt: exp})
	return nil
}

func (h *Handler) enroll(w http.ResponseWriter, r *http.Request) error {
	var req nativeproto.EnrollRequest
	signed, err := readSigned(w, r, &req)
	if err != nil {
		return err
	}
	pub, err := fleet.ParsePublicKey(req.PublicKey)
	if err != nil {
		return err
	}
	a, err := h.fleet.Enroll(r.Context(), fleet.EnrollRequest{
		Identity:    fleet.Identity{Serial: req.Identity.Serial, MAC: req.Identity.MAC, DeviceType: req.Identity.DeviceType, HWRevision: req.Identity.HWRevision},
		PublicKey:   pub,
		EnrollToken: req.EnrollmentToken,
		Attributes:  req.Attributes,
		Challenge:   req.Challenge,
		Signed:      signed,
	})
	if err != nil {
		return err
	}
	h.writeAdmission(w, r, a)
	return nil
}

func (h *Handler) writeAdmission(w http.ResponseWriter, r *http.Request, a *fleet.Admission) {
	status := http.StatusOK
	if a.Token == "" {
		status = http.StatusAccepted // admitted later, by an operator
	}
	out := nativeproto.EnrollResponse{
		DeviceID: a.Device.ID, Status: string(a.Device.Status), Token: a.Token, ExpiresAt: a.ExpiresAt,
	}
	if a.Token != "" && h.tuf != nil {
		if root, err := h.tuf.Metadata(r.Context(), "root.json"); err == nil {
			out.TUFRoot = root
		}
	}
	jsonhttp.Write(w, status, out)
}

func (h *Handler) auth(w http.ResponseWriter, r *http.Request) error {
	var req nativeproto.AuthRequest
	signed, err := readSigned(w, r, &req)
	if err != nil {
		return err
	}
	a, err := h.fleet.Authenticate(r.Context(), fleet.AuthRequest{DeviceID: req.DeviceID, Challenge: req.Challenge, Signed: signed})
	if err != nil {
		return err
	}
	h.writeAdmission(w, r, a)
	return nil
}

func (h *Handler) rotateKey(w http.ResponseWriter, r *http.Request) error {
	var req nativeproto.RotateKeyRequest
	signed, err := readSigned(w, r, &req)
	if err != nil {
		return err
	}
	newSig, err := signature(r, nativeproto.NewKeySignatureHeader)
	if err != nil {
		return err
	}
	pub, err := fleet.ParsePublicKey(req.NewPublicKey)
	if err != nil {
		return err
	}
	a, err := h.fleet.RotateKey(r.Context(), deviceapi.Device(r.Context()), fleet.RotateKeyRequest{
		NewKey: pub, Challenge: req.Challenge, Signed: signed, NewSignature: newSig,
	})
	if err != nil {
		return err
	}
	jsonhttp.Write(w, http.StatusOK, nativeproto.AuthResponse{Token: a.Token, ExpiresAt: a.ExpiresAt})
	return nil
}

func (h *Handler) checkIn(w http.ResponseWriter, r *http.Request) error {
	var req nativeproto.CheckInRequest
	if err := jsonhttp.Decode(w, r, nativeproto.MaxSmallBody, &req); err != nil {
		return err
	}
	res, err := h.fleet.CheckIn(r.Context(), deviceapi.Device(r.Context()), fleet.CheckIn{
		FirmwareVersion: req.FirmwareVersion, Attributes: req.Attributes, InventoryHash: req.InventoryHash,
	})
	if err != nil {
		return err
	}
	out := nativeproto.CheckInResponse{
		Action: "none", PollIntervalSec: int(res.PollInterval / time.Second),
		InventoryWanted: res.InventoryWanted, Work: make([]nativeproto.Work, 0, len(res.Work)),
	}
	for _, wk := range res.Work {
		out.Work = append(out.Work, wireWork(wk))
	}
	if len(out.Work) > 0 {
		out.Action = "work"
	}
	jsonhttp.Write(w, http.StatusOK, out)
	return nil
}

func (h *Handler) inventory(w http.ResponseWriter, r *http.Request) error {
	var req nativeproto.Inventory
	if err := jsonhttp.Decode(w, r, nativeproto.MaxInventoryBody, &req); err != nil {
		return err
	}
	inv := fleet.Inventory{
		Hash: req.Hash, OS: req.OS, Kernel: req.Kernel, Hostname: req.Hostname,
		Attributes: maps.Clone(req.Attributes),
		Interfaces: make([]fleet.NetInterface, 0, len(req.Interfaces)),
		Packages:   make([]fleet.Package, 0, len(req.Packages)),
	}
	for _, ni := range req.Interfaces {
		inv.Interfaces = append(inv.Interfaces, fleet.NetInterface{Name: ni.Name, MAC: ni.MAC, Addrs: ni.Addrs})
	}
	for _, p := range req.Packages {
		inv.Packages = append(inv.Packages, fleet.Package{Name: p.Name, Version: p.Version, Arch: p.Arch, Source: p.Source, PURL: p.PURL})
	}
	if err := h.fleet.UploadInventory(r.Context(), deviceapi.Device(r.Context()), inv); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) events(w http.ResponseWriter, r *http.Request) error {
	var req nativeproto.EventsRequest
	if err := jsonhttp.Decode(w, r, nativeproto.MaxSmallBody, &req); err != nil {
		return err
	}
	if len(req.Events) > fleet.MaxEventsPerCall {
		return fmt.Errorf("too many events in one report: %w", rampart.ErrTooLarge)
	}
	evs := make([]fleet.Event, 0, len(req.Events))
	for _, e := range req.Events {
		evs = append(evs, fleet.Event{Kind: e.Kind, Level: e.Level, Message: e.Message, Data: e.Data, At: e.At})
	}
	if err := h.fleet.ReportEvents(r.Context(), deviceapi.Device(r.Context()), evs); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// download serves a granted artifact with Range and conditional requests (http.ServeContent),
// so an interrupted download resumes; with a blob store that pre-signs URLs it redirects there.
func (h *Handler) download(w http.ResponseWriter, r *http.Request) error {
	return h.serveArtifact(w, r, r.PathValue("digest"))
}

// grantOf is the download grant of a request: the grant query parameter, or the
// X-Rampart-Grant header (for clients such as go-tuf's that build URLs themselves).
func grantOf(r *http.Request) string {
	if g := r.URL.Query().Get("grant"); g != "" {
		return g
	}
	return r.Header.Get(nativeproto.GrantHeader)
}

func (h *Handler) serveArtifact(w http.ResponseWriter, r *http.Request, digest string) error {
	if h.releases == nil {
		return fmt.Errorf("artifact downloads are not enabled: %w", rampart.ErrNotFound)
	}
	dl, err := h.releases.OpenForDevice(r.Context(), h.grants, deviceapi.Device(r.Context()), digest, grantOf(r))
	if err != nil {
		return err
	}
	if dl.Redirect != "" {
		http.Redirect(w, r, dl.Redirect, http.StatusFound)
		return nil
	}
	defer dl.Object.Close()
	// A large image to a slow device outlasts the server's write timeout; let it run.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	info := dl.Object.Info()
	w.Header().Set("ETag", `"`+info.Digest+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "private, max-age=0")
	http.ServeContent(w, r, "", info.ModTime, dl.Object)
	return nil
}

// tufMetadata serves the fleet's TUF metadata by file name ("root.json", "3.root.json",
// "timestamp.json", "7.snapshot.json", ...).
func (h *Handler) tufMetadata(w http.ResponseWriter, r *http.Request) error {
	if h.tuf == nil {
		return fmt.Errorf("no update metadata here: %w", rampart.ErrNotFound)
	}
	data, err := h.tuf.Metadata(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(data)
	return nil
}

// tufTarget serves a TUF target by its consistent-snapshot name, "dir/<sha256>.<base>": the
// hash names the blob, and the device needs a grant for it like any download.
func (h *Handler) tufTarget(w http.ResponseWriter, r *http.Request) error {
	p := r.PathValue("path")
	base := p[strings.LastIndex(p, "/")+1:]
	digest, _, ok := strings.Cut(base, ".")
	if !ok {
		return fmt.Errorf("target name must be <sha256>.<name>: %w", rampart.ErrNotFound)
	}
	return h.serveArtifact(w, r, digest)
}

func wireWork(wk fleet.Work) nativeproto.Work {
	w := nativeproto.Work{ID: wk.ID, Kind: wk.Kind, Release: wk.Release, Version: wk.Version, Action: wk.Action, InstallBy: wk.InstallBy}
	if wk.Artifact != nil {
		a := wireArtifact(*wk.Artifact)
		w.Artifact = &a
	}
	for _, d := range wk.Deltas {
		w.Deltas = append(w.Deltas, wireArtifact(d))
	}
	return w
}

func wireArtifact(a fleet.WorkArtifact) nativeproto.WorkArtifact {
	return nativeproto.WorkArtifact{Path: a.Path, Role: a.Role, SHA256: a.SHA256, Size: a.Size, DeltaFrom: a.DeltaFrom, Grant: a.Grant}
}

// status takes a device's status report for one deployment it was given. The deployment ID
// is in the path, the device only in its token, so a device can report only for itself.
func (h *Handler) status(w http.ResponseWriter, r *http.Request) error {
	if h.deployments == nil {
		return fmt.Errorf("no deployments here: %w", rampart.ErrNotFound)
	}
	var req nativeproto.StatusReport
	if err := jsonhttp.Decode(w, r, nativeproto.MaxSmallBody, &req); err != nil {
		return err
	}
	st, err := rollout.ParseDeviceState(req.State)
	if err != nil {
		return err
	}
	cur, err := h.deployments.Report(r.Context(), deviceapi.Device(r.Context()), r.PathValue("id"), rollout.Report{State: st, Seq: req.Seq, Log: req.Log})
	if err != nil {
		return err
	}
	jsonhttp.Write(w, http.StatusOK, nativeproto.StatusAnswer{State: string(cur.State)})
	return nil
}
