// Package storetest is the one behaviour suite every store engine must pass: it drives
// fleet, access, release, TUF and deployment stores through sqlstore.Store and checks what callers rely on
// (round trips, ErrNotFound and ErrConflict, token consumption, paging, atomicity).
//
// It is imported only by the engine packages' tests; it is not a fake store and holds no
// engine-specific code.
package storetest

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
)

// Run runs the suite. open must return a fresh, empty, migrated store that is closed when
// t ends; Run calls it once per subtest and runs the subtests in parallel.
func Run(t *testing.T, open func(t *testing.T) *sqlstore.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s *sqlstore.Store)
	}{
		{"DeviceRoundTrip", testDeviceRoundTrip},
		{"NotFound", testNotFound},
		{"DeviceAuthState", testDeviceAuthState},
		{"DeviceChanges", testDeviceChanges},
		{"Releases", testReleases},
		{"TUF", testTUF},
		{"DeploymentRoundTrip", testDeploymentRoundTrip},
		{"DeploymentNotFound", testDeploymentNotFound},
		{"UpdateDeployment", testUpdateDeployment},
		{"ListDeployments", testListDeployments},
		{"DeploymentMembership", testDeploymentMembership},
		{"UpdateMember", testUpdateMember},
		{"SetMembersState", testSetMembersState},
		{"DeploymentCounts", testDeploymentCounts},
		{"DeploymentLoad", testDeploymentLoad},
		{"DeploymentSuccess", testDeploymentSuccess},
		{"DeploymentMembers", testMembersQuery},
		{"DeploymentEvents", testDeploymentEvents},
		{"BulkDeployment", testBulkDeployment},
		{"ConcurrentCreateDeployment", testConcurrentCreateDeployment},
		{"DeviceConflicts", testDeviceConflicts},
		{"UpdateDevice", testUpdateDevice},
		{"TokenConsumption", testTokenConsumption},
		{"ConsumeEnrollToken", testConsumeEnrollToken},
		{"EnrollTokens", testEnrollTokens},
		{"APITokens", testAPITokens},
		{"ListDevices", testListDevices},
		{"StaticGroups", testStaticGroups},
		{"SaveInventory", testSaveInventory},
		{"SaveInventoryAtomic", testSaveInventoryAtomic},
		{"TouchDevices", testTouchDevices},
		{"Events", testEvents},
		{"Nonces", testNonces},
		{"Secret", testSecret},
		{"Concurrency", testConcurrency},
		{"Ping", testPing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

// base is a time with nanoseconds, to catch engines that round.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)

// newTestDevice returns a minimal valid device numbered i.
func newTestDevice(i int) *fleet.Device {
	return &fleet.Device{
		ID:        fmt.Sprintf("dev-%04d", i),
		Identity:  fleet.Identity{Serial: fmt.Sprintf("SN%04d", i), DeviceType: "gateway"},
		Status:    fleet.StatusPending,
		CreatedAt: base,
		UpdatedAt: base,
	}
}

// testKey returns a deterministic Ed25519 public key.
func testKey(seed byte) ed25519.PublicKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
}

func mustCreateDevice(t testing.TB, s *sqlstore.Store, d *fleet.Device) {
	t.Helper()
	if err := s.CreateDevice(t.Context(), d, "", base); err != nil {
		t.Fatalf("CreateDevice(%s) = %v, want nil", d.ID, err)
	}
}

func mustDevice(t testing.TB, s *sqlstore.Store, id string) *fleet.Device {
	t.Helper()
	d, err := s.Device(t.Context(), id)
	if err != nil {
		t.Fatalf("Device(%s) = %v, want nil", id, err)
	}
	return d
}

// checkErr fails unless err wraps want (nil: unless err is nil).
func checkErr(t testing.TB, call string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s = %v, want nil", call, err)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s = %v, want %v", call, err, want)
	}
}

// deviceIDs lists devices' IDs in order.
func deviceIDs(ds []*fleet.Device) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func errorsIsNotFound(err error) bool { return errors.Is(err, rampart.ErrNotFound) }

func errorsIsConflict(err error) bool { return errors.Is(err, rampart.ErrConflict) }

func testDeviceAuthState(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	d := newTestDevice(1)
	d.Status, d.AuthGeneration, d.KeyRevoked = fleet.StatusAccepted, 7, true
	d.FirmwareVersion, d.InventoryHash = "2.1.0", "abc"
	mustCreateDevice(t, s, d)
	got, err := s.DeviceAuthState(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := &fleet.AuthState{ID: d.ID, Status: fleet.StatusAccepted, AuthGeneration: 7, KeyRevoked: true, FirmwareVersion: "2.1.0", InventoryHash: "abc"}
	if *got != *want {
		t.Errorf("DeviceAuthState = %+v, want %+v", got, want)
	}
	_, err = s.DeviceAuthState(ctx, "dev_missing")
	checkErr(t, "DeviceAuthState(missing)", err, rampart.ErrNotFound)
}

func testDeviceChanges(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	a, b := newTestDevice(1), newTestDevice(2)
	mustCreateDevice(t, s, a)
	mustCreateDevice(t, s, b)
	if ids, err := s.DeviceChangesSince(ctx, base.Add(-time.Hour)); err != nil || len(ids) != 0 {
		t.Fatalf("changes before any update = %v, %v; want none (creation is not a change)", ids, err)
	}
	a.UpdatedAt = base.Add(time.Minute)
	if err := s.UpdateDevice(ctx, a); err != nil {
		t.Fatal(err)
	}
	a.UpdatedAt = base.Add(2 * time.Minute)
	if err := s.UpdateDevice(ctx, a); err != nil {
		t.Fatal(err)
	}
	b.UpdatedAt = base.Add(3 * time.Minute)
	if err := s.SaveInventory(ctx, b, nil); err != nil {
		t.Fatal(err)
	}
	ids, err := s.DeviceChangesSince(ctx, base.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if want := []string{a.ID, b.ID}; !slices.Equal(ids, want) {
		t.Errorf("DeviceChangesSince = %v, want %v, each once", ids, want)
	}
	if ids, _ := s.DeviceChangesSince(ctx, base.Add(150*time.Second)); !slices.Equal(ids, []string{b.ID}) {
		t.Errorf("DeviceChangesSince(later) = %v, want [%s]", ids, b.ID)
	}
	if err := s.PurgeDeviceChanges(ctx, base.Add(150*time.Second)); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.DeviceChangesSince(ctx, base); !slices.Equal(ids, []string{b.ID}) {
		t.Errorf("after purge = %v, want [%s]", ids, b.ID)
	}
}
