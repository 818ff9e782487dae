package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
)

func testPackages(n int, version string) []fleet.Package {
	out := make([]fleet.Package, n)
	for i := range out {
		name := fmt.Sprintf("pkg%05d", n-i) // not in name order, to check order is kept
		out[i] = fleet.Package{Name: name, Version: version, Arch: "arm64", Source: "dpkg",
			PURL: "pkg:deb/debian/" + name + "@" + version + "?arch=arm64"}
	}
	return out
}

func testSaveInventory(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	d := newTestDevice(1)
	d.Tags = []string{"keep"}
	mustCreateDevice(t, s, d)

	inv := *d
	inv.FirmwareVersion, inv.OS, inv.Kernel, inv.Hostname = "1.2.3", "Debian 12", "6.1", "gw-1"
	inv.Interfaces = []fleet.NetInterface{{Name: "eth0", MAC: "02:00:00:00:00:01", Addrs: []string{"192.0.2.1/24"}}}
	inv.Attributes = map[string]string{"board": "imx8"}
	inv.InventoryHash = "inv-1"
	inv.UpdatedAt = base.Add(time.Minute)

	tests := []struct {
		name string
		pkgs []fleet.Package
	}{
		{"first", testPackages(3, "1.0")},
		{"replaced by fewer", testPackages(2, "2.0")},
		{"more than one batch", testPackages(1234, "3.0")},
		{"emptied", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv.PackageCount = len(tt.pkgs)
			inv.InventoryHash = "inv-" + tt.name
			// Fields outside the inventory must be left alone.
			sent := inv
			sent.Status, sent.Tags = fleet.StatusRejected, []string{"dropped"}
			if err := s.SaveInventory(ctx, &sent, tt.pkgs); err != nil {
				t.Fatalf("SaveInventory(%d packages) = %v, want nil", len(tt.pkgs), err)
			}
			got, err := s.Packages(ctx, d.ID)
			if err != nil {
				t.Fatalf("Packages(%s) = %v, want nil", d.ID, err)
			}
			if diff := cmp.Diff(tt.pkgs, got, cmpEmptyPackages); diff != "" {
				t.Errorf("Packages(%s) after SaveInventory (-want +got):\n%s", d.ID, diff)
			}
			if diff := cmp.Diff(&inv, mustDevice(t, s, d.ID)); diff != "" {
				t.Errorf("Device(%s) after SaveInventory (-want +got):\n%s", d.ID, diff)
			}
		})
	}
}

var cmpEmptyPackages = cmp.Comparer(func(a, b []fleet.Package) bool {
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

// testSaveInventoryAtomic checks a reader never sees half of a package list replacement.
func testSaveInventoryAtomic(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	d := newTestDevice(1)
	mustCreateDevice(t, s, d)
	lists := [][]fleet.Package{testPackages(30, "a"), testPackages(70, "b")}
	if err := s.SaveInventory(ctx, d, lists[0]); err != nil {
		t.Fatalf("SaveInventory = %v", err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := range 40 {
			if err := s.SaveInventory(ctx, d, lists[i%2]); err != nil {
				t.Errorf("SaveInventory(round %d) = %v", i, err)
				return
			}
		}
	})
	wg.Go(func() {
		for reads := 0; ; reads++ {
			select {
			case <-done:
				return
			default:
			}
			got, err := s.Packages(ctx, d.ID)
			if err != nil {
				t.Errorf("Packages = %v", err)
				return
			}
			if !cmp.Equal(got, lists[0]) && !cmp.Equal(got, lists[1]) {
				t.Errorf("Packages(read %d) = %d packages, a mix of two inventories", reads, len(got))
				return
			}
		}
	})
	wg.Wait()
}
