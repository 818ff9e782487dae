// Package agent is the device side of Rampart: it keeps the device's key and state in a
// directory, enrolls, authenticates with signed challenges, checks in on an interval with
// jitter and exponential backoff, and uploads inventory when it changes.
//
// It imports no server package and no database driver, and cross-compiles for linux/amd64,
// arm64, arm (v7) and mips. Installers and the update journal come with the rollout issue.
package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rampart-iot/rampart/internal/agent/collect"
	"github.com/rampart-iot/rampart/internal/agent/tufclient"
	"github.com/rampart-iot/rampart/internal/nativeproto"
)

// Identity is what the device says it is.
type Identity struct {
	Serial     string
	MAC        string
	DeviceType string
	HWRevision string
}

// Options configures an Agent.
type Options struct {
	Server   string
	StateDir string
	Identity Identity
	// EnrollToken admits the device at once; without it the device waits for an operator.
	EnrollToken string
	Attributes  map[string]string
	// Firmware returns the firmware version to report.
	Firmware func() string
	// Inventory returns the device's inventory; nil reads it with collect from Root.
	Inventory func(ctx context.Context) (*collect.Snapshot, error)
	Root      string

	Interval   time.Duration // until the server suggests one
	MaxBackoff time.Duration
	HTTPClient *http.Client
	Log        *slog.Logger
	Now        func() time.Time
}

// Agent is one device's agent.
type Agent struct {
	opts Options
	log  *slog.Logger

	mu    sync.Mutex
	key   ed25519.PrivateKey
	state *State
}

// ErrPending means the device is enrolled but waits for an operator to accept it.
var ErrPending = errors.New("device is waiting for operator approval")

// New loads (or creates) the device key and state.
func New(o Options) (*Agent, error) {
	if o.Server == "" || o.StateDir == "" || o.Identity.DeviceType == "" || o.Identity.Serial == "" {
		return nil, errors.New("agent: server, state directory, device type and serial are required")
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Firmware == nil {
		o.Firmware = func() string { return "" }
	}
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Inventory == nil {
		root := o.Root
		o.Inventory = func(ctx context.Context) (*collect.Snapshot, error) { return collect.Collect(ctx, root) }
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Minute
	}
	key, err := loadOrCreateKey(o.StateDir)
	if err != nil {
		return nil, err
	}
	st, err := loadState(o.StateDir)
	if err != nil {
		return nil, err
	}
	return &Agent{opts: o, log: o.Log, key: key, state: st}, nil
}

// DeviceID is the ID the server gave this device ("" before enrollment).
func (a *Agent) DeviceID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state.DeviceID
}

// PublicKey is the device's current public key, for pre-authorization.
func (a *Agent) PublicKey() ed25519.PublicKey {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.key.Public().(ed25519.PublicKey)
}

// Run checks in until ctx ends. Failures are retried with exponential backoff and jitter,
// so a server outage or restart costs nothing but time.
func (a *Agent) Run(ctx context.Context) error {
	failures := 0
	for {
		next, err := a.Step(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrPending):
			failures = 0
			a.log.Info("waiting for operator approval", "device", a.DeviceID())
		case err != nil:
			failures++
			next = backoff(failures, a.opts.MaxBackoff)
			a.log.Warn("check-in failed", "err", err, "retry_in", next.Round(time.Second))
		default:
			failures = 0
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// backoff is full-jitter exponential backoff from 2s up to max.
func backoff(failures int, max time.Duration) time.Duration {
	d := 2 * time.Second
	for i := 1; i < failures && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}

// jitter spreads check-ins ±10% so a fleet restarted together does not poll in lockstep.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}

// Step does one cycle: authenticate if needed, check in, upload inventory if it changed.
// It returns how long to wait before the next cycle.
func (a *Agent) Step(ctx context.Context) (time.Duration, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.ensureToken(ctx); err != nil {
		if errors.Is(err, ErrPending) {
			return jitter(a.opts.Interval), err
		}
		return 0, err
	}
	snap, err := a.opts.Inventory(ctx)
	if err != nil {
		a.log.Warn("read inventory", "err", err)
		snap = nil
	}
	hash := ""
	if snap != nil {
		hash = snap.Hash()
	}
	req := nativeproto.CheckInRequest{FirmwareVersion: a.opts.Firmware(), InventoryHash: hash, Attributes: a.changedAttributes()}
	var res nativeproto.CheckInResponse
	_, err = a.call(ctx, http.MethodPost, nativeproto.PathCheckIn, req, a.state.Token, &res)
	if statusIs(err, http.StatusUnauthorized) {
		// The token was revoked or the server restarted with new state: authenticate again.
		a.state.Token = ""
		if err := a.ensureToken(ctx); err != nil {
			return 0, err
		}
		_, err = a.call(ctx, http.MethodPost, nativeproto.PathCheckIn, req, a.state.Token, &res)
	}
	if err != nil {
		return 0, fmt.Errorf("check in: %w", err)
	}
	a.state.ReportedAttrs = maps.Clone(a.opts.Attributes)
	if snap != nil && (res.InventoryWanted || hash != a.state.InventoryHash) {
		if err := a.uploadInventory(ctx, snap, hash); err != nil {
			return 0, err
		}
		a.state.InventoryHash = hash
	}
	interval := a.opts.Interval
	if res.PollIntervalSec > 0 {
		interval = time.Duration(res.PollIntervalSec) * time.Second
		a.state.PollIntervalS = res.PollIntervalSec
	}
	if err := saveState(a.opts.StateDir, a.state); err != nil {
		return 0, err
	}
	return jitter(interval), nil
}

func (a *Agent) changedAttributes() map[string]string {
	changed := map[string]string{}
	for k, v := range a.opts.Attributes {
		if a.state.ReportedAttrs[k] != v {
			changed[k] = v
		}
	}
	for k := range a.state.ReportedAttrs {
		if _, ok := a.opts.Attributes[k]; !ok {
			changed[k] = "" // removed
		}
	}
	if len(changed) == 0 {
		return nil
	}
	return changed
}

func (a *Agent) uploadInventory(ctx context.Context, s *collect.Snapshot, hash string) error {
	inv := nativeproto.Inventory{Hash: hash, OS: s.OS, Kernel: s.Kernel, Hostname: s.Hostname}
	for _, ni := range s.Interfaces {
		inv.Interfaces = append(inv.Interfaces, nativeproto.NetInterface{Name: ni.Name, MAC: ni.MAC, Addrs: ni.Addrs})
	}
	for _, p := range s.Packages {
		inv.Packages = append(inv.Packages, nativeproto.Package{Name: p.Name, Version: p.Version, Arch: p.Arch, Source: p.Source, PURL: p.PURL})
	}
	if _, err := a.call(ctx, http.MethodPut, nativeproto.PathInventory, inv, a.state.Token, nil); err != nil {
		return fmt.Errorf("upload inventory: %w", err)
	}
	a.log.Info("inventory uploaded", "packages", len(inv.Packages))
	return nil
}

// ensureToken makes sure the agent holds a usable bearer token, enrolling first if needed.
func (a *Agent) ensureToken(ctx context.Context) error {
	if a.state.Token != "" && a.opts.Now().Add(time.Minute).Before(a.state.TokenExpires) {
		return nil
	}
	if a.state.DeviceID == "" {
		return a.enroll(ctx)
	}
	err := a.authenticate(ctx, a.key)
	switch {
	case statusIs(err, http.StatusNotFound):
		// The server no longer knows this device (its database was replaced): enroll again.
		a.log.Warn("server does not know this device; enrolling again", "device", a.state.DeviceID)
		a.state = &State{}
		return a.enroll(ctx)
	case statusIs(err, http.StatusUnauthorized):
		// A key rotation may have reached the server without its answer reaching us.
		next, nerr := readKey(filepath.Join(a.opts.StateDir, nextKeyFile))
		if nerr != nil {
			return err
		}
		if err2 := a.authenticate(ctx, next); err2 != nil {
			return err
		}
		return a.commitNextKey(next)
	}
	return err
}

func (a *Agent) enroll(ctx context.Context) error {
	ch, err := a.challenge(ctx)
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	id := a.opts.Identity
	req := nativeproto.EnrollRequest{
		Challenge:       ch,
		Identity:        nativeproto.Identity{Serial: id.Serial, MAC: id.MAC, DeviceType: id.DeviceType, HWRevision: id.HWRevision},
		PublicKey:       base64.StdEncoding.EncodeToString(a.key.Public().(ed25519.PublicKey)),
		EnrollmentToken: a.opts.EnrollToken,
		Attributes:      a.opts.Attributes,
	}
	var res nativeproto.EnrollResponse
	if _, err := a.call(ctx, http.MethodPost, nativeproto.PathEnroll, req, "", &res, signer{nativeproto.SignatureHeader, a.key}); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	return a.admitted(res)
}

func (a *Agent) authenticate(ctx context.Context, key ed25519.PrivateKey) error {
	ch, err := a.challenge(ctx)
	if err != nil {
		return fmt.Errorf("authenticate: %w", err)
	}
	var res nativeproto.EnrollResponse
	req := nativeproto.AuthRequest{Challenge: ch, DeviceID: a.state.DeviceID}
	if _, err := a.call(ctx, http.MethodPost, nativeproto.PathAuth, req, "", &res, signer{nativeproto.SignatureHeader, key}); err != nil {
		return fmt.Errorf("authenticate: %w", err)
	}
	return a.admitted(res)
}

func (a *Agent) admitted(res nativeproto.EnrollResponse) error {
	if res.DeviceID != "" {
		a.state.DeviceID = res.DeviceID
	}
	if len(res.TUFRoot) > 0 {
		if err := a.trustRoot(res.TUFRoot); err != nil {
			return err
		}
	}
	a.state.Status = res.Status
	a.state.Token, a.state.TokenExpires = res.Token, res.ExpiresAt
	if err := saveState(a.opts.StateDir, a.state); err != nil {
		return err
	}
	if res.Token == "" {
		return ErrPending
	}
	a.log.Info("authenticated", "device", a.state.DeviceID)
	return nil
}

// RotateKey replaces the device key with a new one. The new key is saved before the
// server learns of it, and becomes the key only once the server confirmed, so a crash at
// any point leaves a key the server accepts.
func (a *Agent) RotateKey(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.ensureToken(ctx); err != nil {
		return fmt.Errorf("rotate key: %w", err)
	}
	next, err := readKey(filepath.Join(a.opts.StateDir, nextKeyFile))
	if err != nil {
		_, next, err = ed25519.GenerateKey(nil)
		if err != nil {
			return fmt.Errorf("rotate key: %w", err)
		}
		if err := writeFileAtomic(filepath.Join(a.opts.StateDir, nextKeyFile), next.Seed(), 0o600); err != nil {
			return fmt.Errorf("rotate key: save new key: %w", err)
		}
	}
	ch, err := a.challenge(ctx)
	if err != nil {
		return fmt.Errorf("rotate key: %w", err)
	}
	req := nativeproto.RotateKeyRequest{Challenge: ch, NewPublicKey: base64.StdEncoding.EncodeToString(next.Public().(ed25519.PublicKey))}
	var res nativeproto.AuthResponse
	if _, err := a.call(ctx, http.MethodPost, nativeproto.PathRotateKey, req, a.state.Token, &res,
		signer{nativeproto.SignatureHeader, a.key}, signer{nativeproto.NewKeySignatureHeader, next}); err != nil {
		return fmt.Errorf("rotate key: %w", err)
	}
	a.state.Token, a.state.TokenExpires = res.Token, res.ExpiresAt
	return a.commitNextKey(next)
}

func (a *Agent) commitNextKey(next ed25519.PrivateKey) error {
	if err := writeFileAtomic(filepath.Join(a.opts.StateDir, keyFile), next.Seed(), 0o600); err != nil {
		return fmt.Errorf("commit new key: %w", err)
	}
	if err := os.Remove(filepath.Join(a.opts.StateDir, nextKeyFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("commit new key: %w", err)
	}
	a.key = next
	a.log.Info("device key rotated", "device", a.state.DeviceID)
	return saveState(a.opts.StateDir, a.state)
}

// Report sends status or event reports to the server.
func (a *Agent) Report(ctx context.Context, events []nativeproto.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.ensureToken(ctx); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if _, err := a.call(ctx, http.MethodPost, nativeproto.PathEvents, nativeproto.EventsRequest{Events: events}, a.state.Token, nil); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// tufDir holds the device's trusted TUF metadata.
const tufDir = "tuf"

// trustRoot keeps the first TUF root the server sends (trust on first use, over the
// authenticated enrollment) unless the device already holds one, for instance provisioned at
// manufacturing. Later roots reach the device only through TUF's own root rotation.
func (a *Agent) trustRoot(root []byte) error {
	dir := filepath.Join(a.opts.StateDir, tufDir)
	path := filepath.Join(dir, tufclient.RootFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tuf state: %w", err)
	}
	if err := writeFileAtomic(path, root, 0o600); err != nil {
		return fmt.Errorf("save tuf root: %w", err)
	}
	return nil
}

// Updates returns a TUF client that verifies this device's updates against the fleet's
// repository, authenticated with the device's token. grants carries download grants for the
// artifacts the device was assigned (deployments hand them out with the work).
func (a *Agent) Updates(ctx context.Context, grants func(path string) string) (*tufclient.Client, error) {
	a.mu.Lock()
	err := a.ensureToken(ctx)
	a.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("updates: %w", err)
	}
	base := strings.TrimRight(a.opts.Server, "/")
	return tufclient.New(tufclient.Options{
		MetadataURL: base + nativeproto.PathTUFMetadata,
		TargetsURL:  base + nativeproto.PathTUFTargets,
		StateDir:    filepath.Join(a.opts.StateDir, tufDir),
		DeviceType:  a.opts.Identity.DeviceType,
		HWRevision:  a.opts.Identity.HWRevision,
		HTTPClient: &http.Client{Timeout: 10 * time.Minute, Transport: &deviceTransport{a: a, grants: grants,
			next: a.opts.HTTPClient.Transport}},
		Now: a.opts.Now,
	})
}

// deviceTransport authenticates the TUF client's requests as this device.
type deviceTransport struct {
	a      *Agent
	grants func(path string) string
	next   http.RoundTripper
}

func (t *deviceTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	t.a.mu.Lock()
	tok := t.a.state.Token
	t.a.mu.Unlock()
	r.Header.Set("Authorization", "Bearer "+tok)
	if t.grants != nil {
		if g := t.grants(r.URL.Path); g != "" {
			r.Header.Set(nativeproto.GrantHeader, g)
		}
	}
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	return next.RoundTrip(r)
}
