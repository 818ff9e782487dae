// Package agent is the device side of Rampart: it keeps the device's key and state in a
// directory, enrolls, authenticates with signed challenges, checks in on an interval with
// jitter and exponential backoff, uploads inventory when it changes, and takes the updates
// the server hands out (download, install with an internal/agent/installer, report each
// state to the deployment), continuing after a power loss at any point.
//
// It imports no server package and no database driver, and cross-compiles for linux/amd64,
// arm64, arm (v7) and mips.
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
	"github.com/rampart-iot/rampart/internal/agent/installer"
	"github.com/rampart-iot/rampart/internal/agent/journal"
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
	// Firmware returns the firmware version to report; when it returns "" (or is nil) the
	// agent reports the version of the last update it installed.
	Firmware func() string
	// Inventory returns the device's inventory; nil reads it with collect from Root.
	Inventory func(ctx context.Context) (*collect.Snapshot, error)
	Root      string

	Interval   time.Duration // until the server suggests one
	MaxBackoff time.Duration
	HTTPClient *http.Client
	Log        *slog.Logger
	Now        func() time.Time

	// Installer applies updates (its health check is part of its own options); nil means
	// the agent installs nothing and ignores the work the server hands out.
	Installer installer.Installer
	// Reboot restarts the device once an installer switched to new software that runs only
	// after a reboot (A/B): the next start's Step then runs the health check and commits or
	// rolls back. nil leaves the reboot to someone else (the update waits for it).
	Reboot func(ctx context.Context) error
	// Defer is asked whether to put off a soft update; true tries again at the next
	// check-in. It is not asked once the update's InstallBy has passed; nil never defers.
	Defer func(w nativeproto.Work) bool
	// DownloadDir holds downloaded images and partial downloads; default <StateDir>/downloads.
	DownloadDir string
}

// Agent is one device's agent.
type Agent struct {
	opts Options
	log  *slog.Logger

	mu    sync.Mutex
	key   ed25519.PrivateKey
	state *State

	// journal is the installer's journal, open only during an update.
	journal *journal.Journal
	// resumeDue asks the next Step to call Installer.Resume first: at start, after an
	// install, after a reboot request and while an outcome waits to be recorded.
	resumeDue bool
	// failpoint, when set (tests only), is called at the named points of the update flow.
	failpoint func(point string)
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
	if o.DownloadDir == "" {
		o.DownloadDir = filepath.Join(o.StateDir, downloadsDir)
	}
	// The first Step continues whatever the installer's journal says is in progress.
	return &Agent{opts: o, log: o.Log, key: key, state: st, resumeDue: o.Installer != nil}, nil
}

// Close releases the files the agent holds open (the journal, during an update).
func (a *Agent) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closeJournal()
	return nil
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

// Step does one cycle: continue an update the installer's journal says is in progress,
// authenticate if needed, deliver update reports still owed, check in, upload inventory if it
// changed, and take the update the server handed out, if any. It returns how long to wait
// before the next cycle.
func (a *Agent) Step(ctx context.Context) (time.Duration, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.opts.Installer != nil {
		// Before anything that needs the network: an update on trial is checked and
		// committed or rolled back even while the server is out of reach.
		rebooting, err := a.resume(ctx)
		switch {
		case rebooting:
			return jitter(a.opts.Interval), err
		case err != nil:
			// Tried again next cycle; the device stays in touch with the server meanwhile.
			a.log.Error("continue update", "err", err)
		}
	}
	if err := a.ensureToken(ctx); err != nil {
		if errors.Is(err, ErrPending) {
			return jitter(a.opts.Interval), err
		}
		return 0, err
	}
	if a.opts.Installer != nil {
		if err := a.deliverOutcome(ctx); err != nil {
			a.log.Warn("report update outcome", "err", err)
		}
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
	req := nativeproto.CheckInRequest{FirmwareVersion: a.firmware(), InventoryHash: hash, Attributes: a.changedAttributes()}
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
	if a.opts.Installer != nil {
		if err := a.takeWork(ctx, res.Work); err != nil {
			return 0, err
		}
	}
	return jitter(interval), nil
}

// firmware is the firmware version to report.
func (a *Agent) firmware() string {
	if v := a.opts.Firmware(); v != "" {
		return v
	}
	return a.state.Installed
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
// artifacts the device was assigned (deployments hand them out with the work); it is given
// the path of each request.
func (a *Agent) Updates(ctx context.Context, grants func(path string) string) (*tufclient.Client, error) {
	a.mu.Lock()
	err := a.ensureToken(ctx)
	a.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("updates: %w", err)
	}
	return a.updates(grants, func() string {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.state.Token
	})
}

// updates builds the TUF client; token returns the bearer token for each request (Step, which
// holds a.mu throughout, reads it without locking).
func (a *Agent) updates(grants func(path string) string, token func() string) (*tufclient.Client, error) {
	base := strings.TrimRight(a.opts.Server, "/")
	return tufclient.New(tufclient.Options{
		MetadataURL: base + nativeproto.PathTUFMetadata,
		TargetsURL:  base + nativeproto.PathTUFTargets,
		StateDir:    filepath.Join(a.opts.StateDir, tufDir),
		DeviceType:  a.opts.Identity.DeviceType,
		HWRevision:  a.opts.Identity.HWRevision,
		HTTPClient: &http.Client{Timeout: 10 * time.Minute, Transport: &deviceTransport{token: token, grants: grants,
			next: a.opts.HTTPClient.Transport}},
		Now: a.opts.Now,
	})
}

// deviceTransport authenticates the TUF client's requests as this device.
type deviceTransport struct {
	token  func() string
	grants func(path string) string
	next   http.RoundTripper
}

func (t *deviceTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token())
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
