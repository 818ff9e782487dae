package fleet_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/store/sqlite"
)

// countingStore is the real SQLite store, counting the calls a check-in makes.
type countingStore struct {
	fleet.Store
	reads, writes atomic.Int64
}

func (c *countingStore) Device(ctx context.Context, id string) (*fleet.Device, error) {
	c.reads.Add(1)
	return c.Store.Device(ctx, id)
}

func (c *countingStore) DeviceAuthState(ctx context.Context, id string) (*fleet.AuthState, error) {
	c.reads.Add(1)
	return c.Store.DeviceAuthState(ctx, id)
}

func (c *countingStore) UpdateDevice(ctx context.Context, d *fleet.Device) error {
	c.writes.Add(1)
	return c.Store.UpdateDevice(ctx, d)
}

func (c *countingStore) TouchDevices(ctx context.Context, seen map[string]time.Time) error {
	c.writes.Add(1)
	return c.Store.TouchDevices(ctx, seen)
}

type testClock struct{ t atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *testClock) advance(d time.Duration) { c.t.Add(int64(d)) }

func newTestFleet(t testing.TB) (*fleet.Service, *countingStore, *testClock) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "fleet.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cs := &countingStore{Store: st}
	clock := &testClock{}
	clock.t.Store(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC).UnixNano())
	f, err := fleet.NewService(fleet.Options{Store: cs, Secret: bytes.Repeat([]byte{1}, 32), Now: clock.now, AuthCacheTTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return f, cs, clock
}

// mustAcceptedDevice enrolls an accepted device and returns its ID and bearer token.
func mustAcceptedDevice(t testing.TB, f *fleet.Service, serial string) (string, string) {
	t.Helper()
	ctx := t.Context()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := f.Preauthorize(ctx, fleet.Identity{Serial: serial, DeviceType: "t"}, pub, nil, nil); err != nil {
		t.Fatal(err)
	}
	ch, _, err := f.NewChallenge()
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(ch + "|" + serial)
	a, err := f.Enroll(ctx, fleet.EnrollRequest{Identity: fleet.Identity{Serial: serial, DeviceType: "t"}, PublicKey: pub, Challenge: ch,
		Signed: fleet.Signed{Body: body, Signature: ed25519.Sign(priv, body)}})
	if err != nil || a.Token == "" {
		t.Fatalf("enroll: %v %+v", err, a)
	}
	return a.Device.ID, a.Token
}

func TestIdleCheckInTouchesNoStore(t *testing.T) {
	// Not parallel: AllocsPerRun refuses to run alongside other tests.
	f, cs, clock := newTestFleet(t)
	ctx := t.Context()
	id, tok := mustAcceptedDevice(t, f, "IDLE-1")
	if _, err := f.CheckIn(ctx, id, fleet.CheckIn{FirmwareVersion: "1.0"}); err != nil {
		t.Fatal(err)
	}
	reads, writes := cs.reads.Load(), cs.writes.Load()
	for range 100 {
		clock.advance(10 * time.Millisecond)
		if _, err := f.VerifyToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if _, err := f.CheckIn(ctx, id, fleet.CheckIn{FirmwareVersion: "1.0"}); err != nil {
			t.Fatal(err)
		}
	}
	if r, w := cs.reads.Load()-reads, cs.writes.Load()-writes; r != 0 || w != 0 {
		t.Errorf("100 idle check-ins made %d store reads and %d writes, want none", r, w)
	}
	// The buffered last-seen time reaches the store on flush.
	if err := f.FlushSeen(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := f.Device(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !d.LastSeen.Equal(clock.now().UTC()) {
		t.Errorf("last seen after flush = %v, want %v", d.LastSeen, clock.now().UTC())
	}
	// A firmware change is written before the check-in returns.
	if _, err := f.CheckIn(ctx, id, fleet.CheckIn{FirmwareVersion: "1.1"}); err != nil {
		t.Fatal(err)
	}
	if d, _ := f.Device(ctx, id); d.FirmwareVersion != "1.1" {
		t.Errorf("firmware after change = %q, want 1.1", d.FirmwareVersion)
	}
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := f.CheckIn(ctx, id, fleet.CheckIn{FirmwareVersion: "1.1"}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 5 {
		t.Errorf("idle CheckIn allocates %.0f times, want at most 5", allocs)
	}
}

func TestCacheExpiryAndRevocation(t *testing.T) {
	t.Parallel()
	f, cs, clock := newTestFleet(t)
	ctx := t.Context()
	id, tok := mustAcceptedDevice(t, f, "CACHE-1")
	if _, err := f.VerifyToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	reads := cs.reads.Load()
	clock.advance(11 * time.Second)
	if _, err := f.VerifyToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if cs.reads.Load() == reads {
		t.Error("admission state was not re-read after the cache TTL")
	}
	if _, err := f.SetStatus(ctx, id, fleet.StatusRejected); err != nil {
		t.Fatal(err)
	}
	if _, err := f.VerifyToken(ctx, tok); err == nil {
		t.Error("token still valid right after the device was rejected")
	}
	// Token expiry.
	id2, tok2 := mustAcceptedDevice(t, f, "CACHE-2")
	clock.advance(2 * time.Hour)
	if _, err := f.VerifyToken(ctx, tok2); err == nil {
		t.Errorf("token of %s valid after its lifetime", id2)
	}
}

func BenchmarkIdleCheckIn(b *testing.B) {
	f, _, _ := newTestFleet(b)
	ctx := b.Context()
	id, tok := mustAcceptedDevice(b, f, "BENCH-1")
	for b.Loop() {
		if _, err := f.VerifyToken(ctx, tok); err != nil {
			b.Fatal(err)
		}
		if _, err := f.CheckIn(ctx, id, fleet.CheckIn{FirmwareVersion: "1.0"}); err != nil {
			b.Fatal(err)
		}
	}
}
