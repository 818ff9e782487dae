package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/access"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
)

func testDeviceRoundTrip(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	tests := []struct {
		name string
		d    *fleet.Device
	}{
		{"every field", &fleet.Device{
			ID:              "dev-full",
			Identity:        fleet.Identity{Serial: "SN-1", MAC: "02:00:00:00:00:01", DeviceType: "gateway", HWRevision: "rev-b"},
			Status:          fleet.StatusAccepted,
			PublicKey:       testKey(1),
			KeyRevoked:      true,
			AuthGeneration:  7,
			CloneSuspect:    true,
			FirmwareVersion: "2.4.1",
			OS:              "Debian GNU/Linux 12 (bookworm)",
			Kernel:          "6.1.0-18-arm64",
			Hostname:        "gw-1",
			Interfaces: []fleet.NetInterface{
				{Name: "eth0", MAC: "02:00:00:00:00:01", Addrs: []string{"192.0.2.10/24", "2001:db8::10/64"}},
				{Name: "lo", Addrs: []string{"127.0.0.1/8"}},
			},
			Attributes:    map[string]string{"region": "eu", "rack": "r12", "quote": `"x" ünïcode`},
			Tags:          []string{"prod", "eu", "a:b=c"},
			InventoryHash: "sha256:abc",
			PackageCount:  412,
			FirstSeen:     base.Add(-48 * time.Hour).In(time.FixedZone("CET", 3600)),
			LastSeen:      base.Add(time.Second),
			CreatedAt:     base.Add(-72 * time.Hour),
			UpdatedAt:     base,
		}},
		{"zero values", &fleet.Device{
			ID:       "dev-zero",
			Identity: fleet.Identity{Serial: "SN-2", DeviceType: "gateway"},
			Status:   fleet.StatusPreauthorized,
		}},
		{"empty lists", &fleet.Device{
			ID:         "dev-empty",
			Identity:   fleet.Identity{Serial: "SN-3", DeviceType: "sensor"},
			Status:     fleet.StatusPending,
			PublicKey:  testKey(3),
			Interfaces: []fleet.NetInterface{{Name: "wlan0"}},
			Attributes: map[string]string{},
			Tags:       []string{},
			CreatedAt:  base,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreateDevice(ctx, tt.d, "", base); err != nil {
				t.Fatalf("CreateDevice(%s) = %v, want nil", tt.d.ID, err)
			}
			got, err := s.Device(ctx, tt.d.ID)
			if err != nil {
				t.Fatalf("Device(%s) = %v, want nil", tt.d.ID, err)
			}
			if diff := cmp.Diff(tt.d, got); diff != "" {
				t.Errorf("Device(%s) differs from what was created (-want +got):\n%s", tt.d.ID, diff)
			}
			got, err = s.DeviceByIdentity(ctx, tt.d.Identity.DeviceType, tt.d.Identity.Serial)
			if err != nil {
				t.Fatalf("DeviceByIdentity(%s, %s) = %v, want nil", tt.d.Identity.DeviceType, tt.d.Identity.Serial, err)
			}
			if diff := cmp.Diff(tt.d, got); diff != "" {
				t.Errorf("DeviceByIdentity(%s) differs (-want +got):\n%s", tt.d.ID, diff)
			}
			if tt.d.PublicKey == nil {
				return
			}
			fp := fleet.KeyFingerprint(tt.d.PublicKey)
			got, err = s.DeviceByKey(ctx, fp)
			if err != nil {
				t.Fatalf("DeviceByKey(%s) = %v, want nil", fp, err)
			}
			if diff := cmp.Diff(tt.d, got); diff != "" {
				t.Errorf("DeviceByKey(%s) differs (-want +got):\n%s", tt.d.ID, diff)
			}
		})
	}
}

func testNotFound(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	mustCreateDevice(t, s, newTestDevice(1))
	missing := newTestDevice(99)
	tests := []struct {
		name string
		call func() error
	}{
		{"Device", func() error { _, err := s.Device(ctx, "dev-nope"); return err }},
		{"DeviceByIdentity", func() error { _, err := s.DeviceByIdentity(ctx, "gateway", "SN-nope"); return err }},
		{"DeviceByIdentity wrong type", func() error { _, err := s.DeviceByIdentity(ctx, "sensor", "SN0001"); return err }},
		{"DeviceByKey", func() error { _, err := s.DeviceByKey(ctx, fleet.KeyFingerprint(testKey(42))); return err }},
		{"DeviceByKey empty", func() error { _, err := s.DeviceByKey(ctx, ""); return err }},
		{"UpdateDevice", func() error { return s.UpdateDevice(ctx, missing) }},
		{"SaveInventory", func() error { return s.SaveInventory(ctx, missing, []fleet.Package{{Name: "x"}}) }},
		{"EnrollToken", func() error { _, err := s.EnrollToken(ctx, "et-nope"); return err }},
		{"EnrollTokenByHash", func() error { _, err := s.EnrollTokenByHash(ctx, "beef"); return err }},
		{"RevokeEnrollToken", func() error { return s.RevokeEnrollToken(ctx, "et-nope", base) }},
		{"Group", func() error { _, err := s.Group(ctx, "nope"); return err }},
		{"DeleteGroup", func() error { return s.DeleteGroup(ctx, "nope") }},
		{"AddGroupMembers unknown group", func() error { return s.AddGroupMembers(ctx, "nope", []string{"dev-0001"}) }},
		{"RemoveGroupMembers unknown group", func() error { return s.RemoveGroupMembers(ctx, "nope", []string{"dev-0001"}) }},
		{"APITokenByHash", func() error { _, err := s.APITokenByHash(ctx, "beef"); return err }},
		{"RevokeAPIToken", func() error { return s.RevokeAPIToken(ctx, "tok-nope", base) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, tt.name, tt.call(), rampart.ErrNotFound)
		})
	}
	if _, err := s.Device(ctx, missing.ID); !errors.Is(err, rampart.ErrNotFound) {
		t.Errorf("Device(%s) after failed writes = %v, want ErrNotFound", missing.ID, err)
	}
	if pkgs, err := s.Packages(ctx, missing.ID); err != nil || len(pkgs) != 0 {
		t.Errorf("Packages(%s) = %v, %v, want none, nil", missing.ID, pkgs, err)
	}
}

func testDeviceConflicts(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	a := newTestDevice(1)
	a.PublicKey = testKey(1)
	mustCreateDevice(t, s, a)
	b := newTestDevice(2)
	b.PublicKey = testKey(2)
	mustCreateDevice(t, s, b)

	t.Run("create", func(t *testing.T) {
		tests := []struct {
			name string
			edit func(d *fleet.Device)
		}{
			{"same ID", func(d *fleet.Device) { d.ID = a.ID }},
			{"same identity", func(d *fleet.Device) { d.Identity = a.Identity }},
			{"same key", func(d *fleet.Device) { d.PublicKey = testKey(1) }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				d := newTestDevice(10)
				d.PublicKey = testKey(10)
				d.Tags = []string{"clash"}
				tt.edit(d)
				checkErr(t, "CreateDevice("+tt.name+")", s.CreateDevice(ctx, d, "", base), rampart.ErrConflict)
				if d.ID != a.ID {
					if _, err := s.Device(ctx, d.ID); !errors.Is(err, rampart.ErrNotFound) {
						t.Errorf("Device(%s) after conflict = %v, want ErrNotFound", d.ID, err)
					}
				}
				if got, err := s.ListDevices(ctx, fleet.DeviceQuery{Tag: "clash"}); err != nil || len(got) != 0 {
					t.Errorf("ListDevices(tag clash) = %v, %v, want none: the tag index kept a failed create", deviceIDs(got), err)
				}
			})
		}
	})

	t.Run("keyless devices do not clash", func(t *testing.T) {
		for i := 20; i < 23; i++ {
			mustCreateDevice(t, s, newTestDevice(i))
		}
	})

	t.Run("update", func(t *testing.T) {
		tests := []struct {
			name string
			edit func(d *fleet.Device)
		}{
			{"to another device's identity", func(d *fleet.Device) { d.Identity = a.Identity }},
			{"to another device's key", func(d *fleet.Device) { d.PublicKey = testKey(1) }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				d := mustDevice(t, s, b.ID)
				tt.edit(d)
				d.Hostname = "changed"
				checkErr(t, "UpdateDevice("+tt.name+")", s.UpdateDevice(ctx, d), rampart.ErrConflict)
				if diff := cmp.Diff(b, mustDevice(t, s, b.ID)); diff != "" {
					t.Errorf("Device(%s) changed by a failed update (-want +got):\n%s", b.ID, diff)
				}
			})
		}
	})
}

func testUpdateDevice(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	d := newTestDevice(1)
	d.PublicKey = testKey(1)
	d.Tags = []string{"old", "both"}
	mustCreateDevice(t, s, d)
	oldFP := fleet.KeyFingerprint(d.PublicKey)

	up := *d
	up.Identity = fleet.Identity{Serial: "SN-NEW", MAC: "02:00:00:00:00:09", DeviceType: "gateway-v2", HWRevision: "c"}
	up.Status = fleet.StatusAccepted
	up.PublicKey = testKey(2)
	up.KeyRevoked = true
	up.AuthGeneration = 3
	up.CloneSuspect = true
	up.FirmwareVersion, up.OS, up.Kernel, up.Hostname = "3.0", "Yocto", "6.6", "gw"
	up.Interfaces = []fleet.NetInterface{{Name: "eth1", Addrs: []string{}}}
	up.Attributes = map[string]string{"k": "v"}
	up.Tags = []string{"both", "new"}
	up.InventoryHash, up.PackageCount = "h2", 9
	up.FirstSeen, up.LastSeen, up.UpdatedAt = base.Add(time.Minute), base.Add(time.Hour), base.Add(2*time.Hour)
	if err := s.UpdateDevice(ctx, &up); err != nil {
		t.Fatalf("UpdateDevice(%s) = %v, want nil", up.ID, err)
	}
	if diff := cmp.Diff(&up, mustDevice(t, s, d.ID)); diff != "" {
		t.Errorf("Device(%s) after UpdateDevice (-want +got):\n%s", d.ID, diff)
	}

	if _, err := s.DeviceByKey(ctx, oldFP); !errors.Is(err, rampart.ErrNotFound) {
		t.Errorf("DeviceByKey(old key) after rotation = %v, want ErrNotFound", err)
	}
	if got, err := s.DeviceByKey(ctx, fleet.KeyFingerprint(up.PublicKey)); err != nil || got.ID != d.ID {
		t.Errorf("DeviceByKey(new key) = %v, %v, want %s", got, err, d.ID)
	}
	if _, err := s.DeviceByIdentity(ctx, "gateway", d.Identity.Serial); !errors.Is(err, rampart.ErrNotFound) {
		t.Errorf("DeviceByIdentity(old identity) = %v, want ErrNotFound", err)
	}
	// The old key is free again, for another device.
	other := newTestDevice(2)
	other.PublicKey = testKey(1)
	mustCreateDevice(t, s, other)

	for tag, want := range map[string][]string{"old": nil, "both": {d.ID}, "new": {d.ID}} {
		got, err := s.ListDevices(ctx, fleet.DeviceQuery{Tag: tag})
		if err != nil || !cmp.Equal(deviceIDs(got), want, cmpEmpty) {
			t.Errorf("ListDevices(tag %s) = %v, %v, want %v", tag, deviceIDs(got), err, want)
		}
	}

	// Removing the key frees its fingerprint.
	up.PublicKey = nil
	if err := s.UpdateDevice(ctx, &up); err != nil {
		t.Fatalf("UpdateDevice(%s without key) = %v, want nil", up.ID, err)
	}
	if _, err := s.DeviceByKey(ctx, fleet.KeyFingerprint(testKey(2))); !errors.Is(err, rampart.ErrNotFound) {
		t.Errorf("DeviceByKey(removed key) = %v, want ErrNotFound", err)
	}
}

// cmpEmpty treats nil and empty slices alike, for ID lists.
var cmpEmpty = cmp.Comparer(func(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
})

func testAPITokens(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	if n, err := s.CountAPITokens(ctx); err != nil || n != 0 {
		t.Fatalf("CountAPITokens() on an empty store = %d, %v, want 0, nil", n, err)
	}
	a := &access.Token{ID: "tok_a", Name: "ci", Role: access.Releaser, Hash: access.HashSecret("rmp_a"), CreatedAt: base, ExpiresAt: base.Add(24 * time.Hour)}
	b := &access.Token{ID: "tok_b", Name: "admin", Role: access.Admin, Hash: access.HashSecret("rmp_b"), CreatedAt: base.Add(time.Second)}
	for _, tok := range []*access.Token{b, a} {
		if err := s.CreateAPIToken(ctx, tok); err != nil {
			t.Fatalf("CreateAPIToken(%s) = %v, want nil", tok.ID, err)
		}
	}
	tests := []struct {
		name string
		tok  *access.Token
	}{
		{"same ID", &access.Token{ID: "tok_a", Name: "x", Role: access.Viewer, Hash: "other", CreatedAt: base}},
		{"same hash", &access.Token{ID: "tok_c", Name: "x", Role: access.Viewer, Hash: a.Hash, CreatedAt: base}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, "CreateAPIToken("+tt.name+")", s.CreateAPIToken(ctx, tt.tok), rampart.ErrConflict)
		})
	}

	got, err := s.APITokenByHash(ctx, a.Hash)
	if err != nil {
		t.Fatalf("APITokenByHash(a) = %v, want nil", err)
	}
	if diff := cmp.Diff(a, got); diff != "" {
		t.Errorf("APITokenByHash(a) (-want +got):\n%s", diff)
	}
	list, err := s.APITokens(ctx)
	if err != nil {
		t.Fatalf("APITokens() = %v, want nil", err)
	}
	if diff := cmp.Diff([]*access.Token{a, b}, list); diff != "" {
		t.Errorf("APITokens() oldest first (-want +got):\n%s", diff)
	}

	if err := s.RevokeAPIToken(ctx, a.ID, base.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeAPIToken(a) = %v, want nil", err)
	}
	if err := s.RevokeAPIToken(ctx, a.ID, base.Add(2*time.Hour)); err != nil {
		t.Fatalf("RevokeAPIToken(a) again = %v, want nil", err)
	}
	got, err = s.APITokenByHash(ctx, a.Hash)
	if err != nil || !got.RevokedAt.Equal(base.Add(time.Hour)) {
		t.Errorf("APITokenByHash(a).RevokedAt = %v, %v, want the first revocation %v", got, err, base.Add(time.Hour))
	}
	if n, err := s.CountAPITokens(ctx); err != nil || n != 2 {
		t.Errorf("CountAPITokens() = %d, %v, want 2 (revoked tokens count)", n, err)
	}
}
