package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/rampart-iot/rampart"
)

// WorkSource tells a checking-in device what it should do; deployments implement it.
// A nil WorkSource means there is never anything to do.
type WorkSource interface {
	PendingWork(ctx context.Context, deviceID string) ([]Work, error)
}

// Work is one piece of pending work for a device: an update to take.
type Work struct {
	ID      string // the deployment
	Kind    string // "update"
	Release string
	Version string
	// Action is forced, soft or download-only; a soft update may wait until InstallBy.
	Action    string
	InstallBy time.Time
	// Artifact is what to install; Deltas are patches to it from earlier versions.
	Artifact *WorkArtifact
	Deltas   []WorkArtifact
}

// WorkArtifact is one TUF target of a piece of work, with the device's download grant.
type WorkArtifact struct {
	Path      string
	Role      string
	SHA256    string
	Size      int64
	DeltaFrom string
	Grant     string
}

// Options configures a Service.
type Options struct {
	Store Store
	Log   *slog.Logger
	Now   func() time.Time
	Rand  io.Reader
	// Secret keys the HMAC of device tokens and challenges; every replica must share it.
	Secret []byte
	Work   WorkSource

	TokenTTL     time.Duration // device bearer token lifetime (default 1h)
	ChallengeTTL time.Duration // how long a challenge may be answered (default 5m)
	PollInterval time.Duration // suggested check-in interval (default 5m)
	// AuthCacheTTL bounds how long a replica keeps its cached copy of a device's admission
	// state (default 5m); idle devices drop out of memory after it. Changes made through
	// this replica take effect at once, changes made through another replica when Run next
	// polls the store's change feed (every ChangePoll, default 1s), and at the latest after
	// AuthCacheTTL should the feed miss one (clocks skewed by more than changeOverlap).
	AuthCacheTTL time.Duration
	ChangePoll   time.Duration
	// MaxPending caps devices waiting for approval, so unauthenticated enrollments cannot
	// fill the store (default 10,000).
	MaxPending int
}

// Service is the fleet registry's business logic.
type Service struct {
	store  Store
	log    *slog.Logger
	now    func() time.Time
	rand   io.Reader
	secret []byte
	work   WorkSource

	tokenTTL, challengeTTL, pollInterval, changePoll time.Duration
	maxPending                                       int

	cache *authCache

	seenMu sync.Mutex
	seen   map[string]time.Time
}

// NewService returns a Service; Options.Store and Options.Secret are required.
func NewService(o Options) (*Service, error) {
	if o.Store == nil {
		return nil, errors.New("fleet: no store")
	}
	if len(o.Secret) < 32 {
		return nil, errors.New("fleet: secret must be at least 32 bytes")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.TokenTTL, time.Hour)
	def(&o.ChallengeTTL, 5*time.Minute)
	def(&o.PollInterval, 5*time.Minute)
	def(&o.AuthCacheTTL, 5*time.Minute)
	def(&o.ChangePoll, time.Second)
	if o.MaxPending <= 0 {
		o.MaxPending = 10000
	}
	return &Service{
		store: o.Store, log: o.Log, now: o.Now, rand: o.Rand, secret: o.Secret, work: o.Work,
		tokenTTL: o.TokenTTL, challengeTTL: o.ChallengeTTL, pollInterval: o.PollInterval, changePoll: o.ChangePoll,
		maxPending: o.MaxPending,
		cache:      newAuthCache(o.AuthCacheTTL),
		seen:       make(map[string]time.Time),
	}, nil
}

// PollInterval is the check-in interval suggested to devices.
// SetWorkSource sets where check-ins find pending work. Call it before serving devices; the
// composition root needs it because the work source (deployments) itself depends on the fleet.
func (s *Service) SetWorkSource(w WorkSource) { s.work = w }

func (s *Service) PollInterval() time.Duration { return s.pollInterval }

func (s *Service) newID(prefix string) (string, error) {
	b := make([]byte, 10)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return "", fmt.Errorf("new id: %w", err)
	}
	return prefix + hex.EncodeToString(b), nil
}

// Run flushes last-seen times and purges used challenges until ctx ends, then flushes once
// more so a clean shutdown loses nothing.
func (s *Service) Run(ctx context.Context, flushEvery time.Duration) {
	if flushEvery <= 0 {
		flushEvery = 2 * time.Second
	}
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	changes := time.NewTicker(s.changePoll)
	defer changes.Stop()
	purge := 0
	for {
		select {
		case <-changes.C:
			if err := s.PollChanges(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("poll device changes", "err", err)
			}
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if err := s.FlushSeen(fctx); err != nil {
				s.log.Error("flush last-seen at shutdown", "err", err)
			}
			cancel()
			return
		case <-t.C:
			if err := s.FlushSeen(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("flush last-seen", "err", err)
			}
			s.cache.sweep(s.now())
			if purge++; purge%30 == 0 {
				if err := s.store.PurgeNonces(ctx, s.now().Add(-time.Minute)); err != nil && ctx.Err() == nil {
					s.log.Warn("purge used challenges", "err", err)
				}
				if err := s.store.PurgeDeviceChanges(ctx, s.now().Add(-time.Hour)); err != nil && ctx.Err() == nil {
					s.log.Warn("purge device changes", "err", err)
				}
			}
		}
	}
}

// changeOverlap is how far back each poll of the change feed looks: changes are stamped
// with the writing replica's clock, so this covers clock skew between replicas.
const changeOverlap = 30 * time.Second

// PollChanges drops cached state of devices that changed recently, wherever the change was
// made.
func (s *Service) PollChanges(ctx context.Context) error {
	ids, err := s.store.DeviceChangesSince(ctx, s.now().Add(-changeOverlap))
	if err != nil {
		return err
	}
	for _, id := range ids {
		s.cache.forget(id)
	}
	return nil
}

// FlushSeen writes the buffered last-seen times to the store.
func (s *Service) FlushSeen(ctx context.Context) error {
	s.seenMu.Lock()
	batch := s.seen
	s.seen = make(map[string]time.Time, len(batch))
	s.seenMu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if err := s.store.TouchDevices(ctx, batch); err != nil {
		// Put the batch back so the next flush retries it; newer times win.
		s.seenMu.Lock()
		for id, t := range batch {
			if cur, ok := s.seen[id]; !ok || t.After(cur) {
				s.seen[id] = t
			}
		}
		s.seenMu.Unlock()
		return fmt.Errorf("flush last-seen of %d devices: %w", len(batch), err)
	}
	return nil
}

func (s *Service) markSeen(id string, at time.Time) {
	s.seenMu.Lock()
	s.seen[id] = at
	s.seenMu.Unlock()
}

// authCache remembers what check-ins need of a device so an idle check-in reads nothing
// from the store.
type authCache struct {
	ttl time.Duration
	mu  sync.RWMutex
	m   map[string]cachedDevice
}

type cachedDevice struct {
	status     Status
	generation int64
	revoked    bool
	firmware   string
	invHash    string
	loadedAt   time.Time
}

func newAuthCache(ttl time.Duration) *authCache {
	return &authCache{ttl: ttl, m: make(map[string]cachedDevice)}
}

func (c *authCache) get(id string, now time.Time) (cachedDevice, bool) {
	c.mu.RLock()
	e, ok := c.m[id]
	c.mu.RUnlock()
	if !ok || now.Sub(e.loadedAt) > c.ttl {
		return cachedDevice{}, false
	}
	return e, true
}

func (c *authCache) put(d *Device, now time.Time) {
	c.putState(&AuthState{ID: d.ID, Status: d.Status, AuthGeneration: d.AuthGeneration, KeyRevoked: d.KeyRevoked,
		FirmwareVersion: d.FirmwareVersion, InventoryHash: d.InventoryHash}, now)
}

func (c *authCache) putState(a *AuthState, now time.Time) cachedDevice {
	e := cachedDevice{
		status: a.Status, generation: a.AuthGeneration, revoked: a.KeyRevoked,
		firmware: a.FirmwareVersion, invHash: a.InventoryHash, loadedAt: now,
	}
	c.mu.Lock()
	c.m[a.ID] = e
	c.mu.Unlock()
	return e
}

func (c *authCache) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// sweep drops expired entries so idle devices cost no memory.
func (c *authCache) sweep(now time.Time) {
	c.mu.Lock()
	for id, e := range c.m {
		if now.Sub(e.loadedAt) > c.ttl {
			delete(c.m, id)
		}
	}
	c.mu.Unlock()
}

// notFound reports whether err wraps rampart.ErrNotFound.
func notFound(err error) bool { return errors.Is(err, rampart.ErrNotFound) }
