// Package agenttest is a stand-in for the server's native device API, for tests of the agent
// and of the simulator that must not link server code: enrollment that admits every device,
// check-ins that hand out deployments' work, status reports kept by internal/rollout's rules
// (the ones the server applies), and a real TUF repository (internal/tuf, in memory) whose
// targets are served with download grants and HTTP Range support.
//
// It is not the server: it keeps everything in memory, checks no signatures, and has no
// waves, windows or gates. It is for tests only.
package agenttest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/nativeproto"
	"github.com/rampart-iot/rampart/internal/rollout"
	"github.com/rampart-iot/rampart/internal/tuf"
	"github.com/rampart-iot/rampart/internal/tuf/tuftest"
)

// Releaser is the delegated TUF role that signs everything Publish adds, under "releases/"
// (one or two levels deep).
const Releaser = "releases"

// PollInterval is the check-in interval the server suggests.
const PollInterval = 60

// Report is one status report as the server received it.
type Report struct {
	Deployment string
	Device     string
	nativeproto.StatusReport
	// Answer is the state the server answered with.
	Answer string
}

// Server is the fake device API. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL devices use.
	URL string

	t    testing.TB
	srv  *httptest.Server
	repo *tuf.Repository
	now  func() time.Time

	mu          sync.Mutex
	devices     map[string]*device // by token
	byID        map[string]*device
	deployments map[string]*deployment
	order       []string          // deployment IDs, oldest first
	artifacts   map[string][]byte // by target path
	reports     []Report
	served      map[string]int64 // target body bytes sent, by target path
	cutAt       int64
	onReport    func(r Report) // called before a report is applied
	failReports int            // answer the next n status reports with 503
}

type device struct {
	id, token, serial, deviceType string
	firmware                      string
	checkIns                      int
}

type deployment struct {
	work     nativeproto.Work
	devices  map[string]bool // nil: every device
	statuses map[string]rollout.DeviceStatus
}

// NewServer starts a fake server on 127.0.0.1 with an initialised TUF repository; it stops
// when the test ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t: t, now: time.Now,
		devices: map[string]*device{}, byID: map[string]*device{}, deployments: map[string]*deployment{},
		artifacts: map[string][]byte{}, served: map[string]int64{},
	}
	s.repo = tuf.New(tuf.Options{Store: tuftest.NewStore(), Now: s.now})
	ctx := t.Context()
	if err := s.repo.Init(ctx, tuf.InitOptions{}); err != nil {
		t.Fatalf("agenttest: tuf init: %v", err)
	}
	if err := s.repo.Delegate(ctx, Releaser, []string{"releases/*", "releases/*/*"}); err != nil {
		t.Fatalf("agenttest: tuf delegate: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+nativeproto.PathChallenge, s.challenge)
	mux.HandleFunc("POST "+nativeproto.PathEnroll, s.enroll)
	mux.HandleFunc("POST "+nativeproto.PathAuth, s.auth)
	mux.HandleFunc("POST "+nativeproto.PathCheckIn, s.authed(s.checkIn))
	mux.HandleFunc("PUT "+nativeproto.PathInventory, s.authed(func(w http.ResponseWriter, r *http.Request, d *device) {
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST "+nativeproto.PathDeployments+"{id}/status", s.authed(s.status))
	mux.HandleFunc("GET "+nativeproto.PathTUFMetadata+"{name}", s.authed(s.metadata))
	mux.HandleFunc("GET "+nativeproto.PathTUFTargets+"{path...}", s.authed(s.target))
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Publish adds image as the TUF target releases/<name> for the device types (signed with
// version) and returns it as a work artifact with a download grant.
func (s *Server) Publish(name string, image []byte, version string, deviceTypes ...string) nativeproto.WorkArtifact {
	s.t.Helper()
	sum := sha256.Sum256(image)
	digest := hex.EncodeToString(sum[:])
	p := "releases/" + name
	err := s.repo.AddTargets(s.t.Context(), Releaser, []tuf.Target{{
		Path: p, Length: int64(len(image)), SHA256: digest,
		Custom: map[string]any{tuf.CustomDeviceTypes: deviceTypes, tuf.CustomVersion: version, tuf.CustomRelease: "rel-" + version},
	}})
	if err != nil {
		s.t.Fatalf("agenttest: publish %s: %v", p, err)
	}
	s.mu.Lock()
	s.artifacts[p] = bytes.Clone(image)
	s.mu.Unlock()
	return nativeproto.WorkArtifact{Path: p, Role: Releaser, SHA256: digest, Size: int64(len(image)), Grant: grantFor(digest)}
}

func grantFor(digest string) string { return "grant-" + digest[:16] }

// Deploy offers w to devices (every device if none are named) until each reaches a final
// state. w.ID names the deployment.
func (s *Server) Deploy(w nativeproto.Work, devices ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := &deployment{work: w, statuses: map[string]rollout.DeviceStatus{}}
	if len(devices) > 0 {
		d.devices = map[string]bool{}
		for _, id := range devices {
			d.devices[id] = true
		}
	}
	if _, ok := s.deployments[w.ID]; !ok {
		s.order = append(s.order, w.ID)
	}
	s.deployments[w.ID] = d
}

// Cancel cancels a deployment: devices that have not started installing end cancelled.
func (s *Server) Cancel(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.deployments[id]
	for dev, st := range d.statuses {
		d.statuses[dev], _ = rollout.Cancel(st, s.now())
	}
	for _, dev := range s.byID {
		if _, ok := d.statuses[dev.id]; !ok && d.targets(dev.id) {
			d.statuses[dev.id], _ = rollout.Cancel(rollout.NewDeviceStatus(s.now()), s.now())
		}
	}
}

// Status is the state the server holds for a device in a deployment.
func (s *Server) Status(deployment, deviceID string) rollout.DeviceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked(s.deployments[deployment], deviceID)
}

// Reports returns the status reports received from a device ("" for every device), in order.
func (s *Server) Reports(deviceID string) []Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Report
	for _, r := range s.reports {
		if deviceID == "" || r.Device == deviceID {
			out = append(out, r)
		}
	}
	return out
}

// Firmware is the firmware version a device reported at its last check-in.
func (s *Server) Firmware(deviceID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.byID[deviceID]; d != nil {
		return d.firmware
	}
	return ""
}

// Devices returns the IDs of the enrolled devices by serial.
func (s *Server) Devices() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for _, d := range s.byID {
		out[d.serial] = d.id
	}
	return out
}

// Served is how many bytes of the target at path were sent, over all requests.
func (s *Server) Served(path string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served[path]
}

// CutNextDownload drops the connection of the next target download after n bytes of body.
func (s *Server) CutNextDownload(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cutAt = n
}

// OnReport sets a hook that sees each status report before the server applies it (to cancel
// a deployment at a chosen moment, say).
func (s *Server) OnReport(f func(r Report)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onReport = f
}

// FailReports answers the next n status reports with 503 without applying them.
func (s *Server) FailReports(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failReports = n
}

func (d *deployment) targets(deviceID string) bool { return d.devices == nil || d.devices[deviceID] }

func (s *Server) statusLocked(d *deployment, deviceID string) rollout.DeviceStatus {
	if d == nil {
		return rollout.DeviceStatus{}
	}
	if st, ok := d.statuses[deviceID]; ok {
		return st
	}
	return rollout.NewDeviceStatus(s.now())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, nativeproto.Error{Error: msg})
}

func decode(r *http.Request, v any) error {
	return json.NewDecoder(io.LimitReader(r.Body, nativeproto.MaxSmallBody)).Decode(v)
}

func (s *Server) challenge(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, nativeproto.Challenge{Challenge: "c1." + rand.Text(), ExpiresAt: s.now().Add(time.Minute)})
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	var req nativeproto.EnrollRequest
	if err := decode(r, &req); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	d := &device{id: fmt.Sprintf("dev_%d", len(s.byID)+1), serial: req.Identity.Serial, deviceType: req.Identity.DeviceType}
	d.token = "tok-" + d.id + "-" + rand.Text()
	s.byID[d.id] = d
	s.devices[d.token] = d
	s.mu.Unlock()
	root, err := s.repo.Metadata(r.Context(), "1.root.json")
	if err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, nativeproto.EnrollResponse{DeviceID: d.id, Status: "accepted", Token: d.token,
		ExpiresAt: s.now().Add(time.Hour), TUFRoot: root})
}

func (s *Server) auth(w http.ResponseWriter, r *http.Request) {
	var req nativeproto.AuthRequest
	if err := decode(r, &req); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	d := s.byID[req.DeviceID]
	if d != nil {
		delete(s.devices, d.token)
		d.token = "tok-" + d.id + "-" + rand.Text()
		s.devices[d.token] = d
	}
	s.mu.Unlock()
	if d == nil {
		fail(w, http.StatusNotFound, "unknown device")
		return
	}
	writeJSON(w, http.StatusOK, nativeproto.EnrollResponse{DeviceID: d.id, Status: "accepted", Token: d.token, ExpiresAt: s.now().Add(time.Hour)})
}

func (s *Server) authed(h func(w http.ResponseWriter, r *http.Request, d *device)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		d := s.devices[tok]
		s.mu.Unlock()
		if d == nil {
			fail(w, http.StatusUnauthorized, "bad token")
			return
		}
		h(w, r, d)
	}
}

func (s *Server) checkIn(w http.ResponseWriter, r *http.Request, d *device) {
	var req nativeproto.CheckInRequest
	if err := decode(r, &req); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	d.firmware = req.FirmwareVersion
	d.checkIns++
	res := nativeproto.CheckInResponse{Action: "none", PollIntervalSec: PollInterval, Work: []nativeproto.Work{}}
	for _, id := range s.order {
		dep := s.deployments[id]
		if dep.targets(d.id) && !s.statusLocked(dep, d.id).State.Terminal() {
			res.Work = append(res.Work, dep.work)
		}
	}
	s.mu.Unlock()
	if len(res.Work) > 0 {
		res.Action = "work"
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, d *device) {
	var req nativeproto.StatusReport
	if err := decode(r, &req); err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	id := r.PathValue("id")
	s.mu.Lock()
	hook := s.onReport
	if s.failReports > 0 {
		s.failReports--
		s.mu.Unlock()
		fail(w, http.StatusServiceUnavailable, "internal error")
		return
	}
	dep := s.deployments[id]
	s.mu.Unlock()
	if dep == nil || !dep.targets(d.id) {
		fail(w, http.StatusNotFound, "device is not in this deployment")
		return
	}
	rep := Report{Deployment: id, Device: d.id, StatusReport: req}
	if hook != nil {
		hook(rep)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next, _, err := rollout.Apply(s.statusLocked(dep, d.id), rollout.Report{State: rollout.DeviceState(req.State), Seq: req.Seq, Log: req.Log}, s.now())
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	dep.statuses[d.id] = next
	rep.Answer = string(next.State)
	s.reports = append(s.reports, rep)
	writeJSON(w, http.StatusOK, nativeproto.StatusAnswer{State: string(next.State)})
}

func (s *Server) metadata(w http.ResponseWriter, r *http.Request, _ *device) {
	data, err := s.repo.Metadata(r.Context(), r.PathValue("name"))
	if err != nil {
		fail(w, http.StatusNotFound, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

// target serves "dir/<sha256>.<base>" to a device that sends the grant for it.
func (s *Server) target(w http.ResponseWriter, r *http.Request, _ *device) {
	dir, base := path.Split(r.PathValue("path"))
	digest, name, ok := strings.Cut(base, ".")
	p := dir + name
	s.mu.Lock()
	data, known := s.artifacts[p]
	cut := s.cutAt
	s.mu.Unlock()
	if !ok || !known {
		fail(w, http.StatusNotFound, "no such target")
		return
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != digest {
		fail(w, http.StatusNotFound, "no such target")
		return
	}
	if r.Header.Get(nativeproto.GrantHeader) != grantFor(digest) {
		fail(w, http.StatusForbidden, "no grant for this artifact")
		return
	}
	if cut > 0 {
		s.mu.Lock()
		s.cutAt = 0
		s.mu.Unlock()
	}
	w.Header().Set("ETag", `"`+digest+`"`)
	http.ServeContent(&countingWriter{ResponseWriter: w, s: s, path: p, cut: cut}, r, "", time.Time{}, bytes.NewReader(data))
}

// countingWriter counts body bytes and, with cut set, drops the connection after that many.
type countingWriter struct {
	http.ResponseWriter
	s       *Server
	path    string
	cut     int64
	written int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	abort := false
	if c.cut > 0 && c.written+int64(len(p)) >= c.cut {
		p, abort = p[:c.cut-c.written], true
	}
	n, err := c.ResponseWriter.Write(p)
	c.written += int64(n)
	c.s.mu.Lock()
	c.s.served[c.path] += int64(n)
	c.s.mu.Unlock()
	if abort {
		c.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	return n, err
}

// States returns the state of every device in a deployment, by device ID.
func (s *Server) States(deployment string) map[string]rollout.DeviceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]rollout.DeviceState{}
	dep := s.deployments[deployment]
	if dep == nil {
		return out
	}
	for id := range s.byID {
		if dep.targets(id) {
			out[id] = s.statusLocked(dep, id).State
		}
	}
	return out
}
