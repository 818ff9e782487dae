package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/release"
	"github.com/rampart-iot/rampart/internal/sbom"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
)

func testReleases(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	r := &release.Release{ID: "rel_1", Name: "gw-os", Version: "2.0.1", DeviceTypes: []string{"gw-a", "gw-b"},
		HWRevisions: []string{"r2"}, Notes: "fixes", State: release.Draft, CreatedAt: base}
	if err := s.CreateRelease(ctx, r); err != nil {
		t.Fatal(err)
	}
	dup := *r
	dup.ID = "rel_2"
	checkErr(t, "CreateRelease(same name and version)", s.CreateRelease(ctx, &dup), rampart.ErrConflict)

	full := release.Artifact{Name: "gw-os-2.0.1.img", Role: release.RoleFull, Digest: "ab", Size: 10, CreatedAt: base}
	delta := release.Artifact{Name: "from-2.0.0.patch", Role: release.RoleDelta, DeltaFrom: "2.0.0", Digest: "cd", Size: 3, CreatedAt: base.Add(time.Second)}
	for _, a := range []release.Artifact{full, delta} {
		if err := s.AddArtifact(ctx, r.ID, a); err != nil {
			t.Fatal(err)
		}
	}
	checkErr(t, "AddArtifact(same name)", s.AddArtifact(ctx, r.ID, full), rampart.ErrConflict)
	checkErr(t, "AddArtifact(unknown release)", s.AddArtifact(ctx, "rel_missing", full), rampart.ErrNotFound)

	cs := []sbom.Component{
		{Name: "openssl", Version: "3.0.15", PURL: "pkg:deb/debian/openssl@3.0.15", Type: "library", Licenses: []string{"Apache-2.0"}, Hashes: map[string]string{"SHA-256": "00"}},
		{Name: "busybox", Version: "1.36.1"},
	}
	if err := s.SetComponents(ctx, r.ID, "cyclonedx", cs); err != nil {
		t.Fatal(err)
	}
	got, err := s.Release(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *r
	want.Artifacts = []release.Artifact{full, delta}
	want.SBOMFormat, want.Components = "cyclonedx", 2
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("Release round trip (-want +got):\n%s", diff)
	}
	gotCs, err := s.Components(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cs, gotCs); diff != "" {
		t.Errorf("Components (-want +got):\n%s", diff)
	}
	got.State, got.PublishedAt = release.Published, base.Add(time.Hour)
	if err := s.UpdateRelease(ctx, got); err != nil {
		t.Fatal(err)
	}
	if all, err := s.Releases(ctx); err != nil || len(all) != 1 || all[0].State != release.Published || len(all[0].Artifacts) != 2 {
		t.Errorf("Releases = %+v, %v", all, err)
	}
	if byVersion, err := s.ReleaseByVersion(ctx, "gw-os", "2.0.1"); err != nil || byVersion.ID != r.ID || len(byVersion.Artifacts) != 2 {
		t.Errorf("ReleaseByVersion = %+v, %v; want %s with its artifacts", byVersion, err, r.ID)
	}
	_, err = s.ReleaseByVersion(ctx, "gw-os", "9.9")
	checkErr(t, "ReleaseByVersion(missing)", err, rampart.ErrNotFound)
	_, err = s.Release(ctx, "rel_missing")
	checkErr(t, "Release(missing)", err, rampart.ErrNotFound)
	checkErr(t, "UpdateRelease(missing)", s.UpdateRelease(ctx, &release.Release{ID: "rel_missing"}), rampart.ErrNotFound)
	checkErr(t, "SetComponents(missing)", s.SetComponents(ctx, "rel_missing", "spdx", nil), rampart.ErrNotFound)

	mustCreateDevice(t, s, newTestDevice(7))
	if types, err := s.DeviceTypes(ctx); err != nil || len(types) != 1 {
		t.Errorf("DeviceTypes = %v, %v; want the one enrolled type", types, err)
	}
}
