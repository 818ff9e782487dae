package storetest

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
)

func testStaticGroups(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	for i := 1; i <= 3; i++ {
		mustCreateDevice(t, s, newTestDevice(i))
	}
	lab := &fleet.Group{Name: "lab", Description: "bench devices", CreatedAt: base}
	eu := &fleet.Group{Name: "eu", Filter: `"eu" in tags`, CreatedAt: base}
	for _, g := range []*fleet.Group{lab, eu} {
		if err := s.CreateGroup(ctx, g); err != nil {
			t.Fatalf("CreateGroup(%s) = %v, want nil", g.Name, err)
		}
	}
	checkErr(t, "CreateGroup(lab again)", s.CreateGroup(ctx, &fleet.Group{Name: "lab"}), rampart.ErrConflict)

	got, err := s.Group(ctx, "eu")
	if err != nil {
		t.Fatalf("Group(eu) = %v, want nil", err)
	}
	if diff := cmp.Diff(eu, got); diff != "" {
		t.Errorf("Group(eu) (-want +got):\n%s", diff)
	}
	all, err := s.Groups(ctx)
	if err != nil {
		t.Fatalf("Groups() = %v, want nil", err)
	}
	if diff := cmp.Diff([]*fleet.Group{eu, lab}, all); diff != "" {
		t.Errorf("Groups() by name (-want +got):\n%s", diff)
	}

	members := func(t *testing.T, group string) []string {
		t.Helper()
		ds, err := s.ListDevices(ctx, fleet.DeviceQuery{Group: group})
		if err != nil {
			t.Fatalf("ListDevices(group %s) = %v", group, err)
		}
		return deviceIDs(ds)
	}
	steps := []struct {
		name    string
		do      func() error
		wantErr error
		want    []string // lab's members afterwards
	}{
		{"add with an unknown device writes nothing", func() error {
			return s.AddGroupMembers(ctx, "lab", []string{"dev-0001", "dev-nope"})
		}, rampart.ErrNotFound, nil},
		{"add", func() error { return s.AddGroupMembers(ctx, "lab", []string{"dev-0002", "dev-0001"}) }, nil, []string{"dev-0001", "dev-0002"}},
		{"add members again", func() error {
			return s.AddGroupMembers(ctx, "lab", []string{"dev-0002", "dev-0003", "dev-0003"})
		}, nil, []string{"dev-0001", "dev-0002", "dev-0003"}},
		{"add to a dynamic group", func() error { return s.AddGroupMembers(ctx, "eu", []string{"dev-0001"}) }, rampart.ErrConflict, []string{"dev-0001", "dev-0002", "dev-0003"}},
		{"remove with an unknown device writes nothing", func() error {
			return s.RemoveGroupMembers(ctx, "lab", []string{"dev-0002", "dev-nope"})
		}, rampart.ErrNotFound, []string{"dev-0001", "dev-0002", "dev-0003"}},
		{"remove from a dynamic group", func() error { return s.RemoveGroupMembers(ctx, "eu", []string{"dev-0001"}) }, rampart.ErrConflict, []string{"dev-0001", "dev-0002", "dev-0003"}},
		{"remove", func() error { return s.RemoveGroupMembers(ctx, "lab", []string{"dev-0002"}) }, nil, []string{"dev-0001", "dev-0003"}},
		{"remove a non-member", func() error { return s.RemoveGroupMembers(ctx, "lab", []string{"dev-0002"}) }, nil, []string{"dev-0001", "dev-0003"}},
		{"delete drops members", func() error {
			if err := s.DeleteGroup(ctx, "lab"); err != nil {
				return err
			}
			return s.CreateGroup(ctx, &fleet.Group{Name: "lab", CreatedAt: base})
		}, nil, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			checkErr(t, st.name, st.do(), st.wantErr)
			if got := members(t, "lab"); !cmp.Equal(st.want, got, cmpEmpty) {
				t.Errorf("members of lab = %v, want %v", got, st.want)
			}
		})
	}
	if got := members(t, "eu"); len(got) != 0 {
		t.Errorf("members of dynamic group eu = %v, want none stored", got)
	}
	if err := s.DeleteGroup(ctx, "eu"); err != nil {
		t.Fatalf("DeleteGroup(eu) = %v, want nil", err)
	}
	if _, err := s.Group(ctx, "eu"); !errorsIsNotFound(err) {
		t.Errorf("Group(eu) after DeleteGroup = %v, want ErrNotFound", err)
	}
}
