package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
)

func testListDevices(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	const n = 250
	statuses := []fleet.Status{fleet.StatusPending, fleet.StatusAccepted, fleet.StatusRejected}
	types := []string{"gateway", "sensor"}
	if err := s.CreateGroup(ctx, &fleet.Group{Name: "canary", CreatedAt: base}); err != nil {
		t.Fatalf("CreateGroup(canary) = %v", err)
	}
	type row struct {
		id, typ, group string
		status         fleet.Status
		tags           []string
	}
	var all []row
	var members []string
	// Created in reverse, so ID order is not insertion order.
	for i := n - 1; i >= 0; i-- {
		d := newTestDevice(i)
		d.Status = statuses[i%3]
		d.Identity.DeviceType = types[i%2]
		if i%5 == 0 {
			d.Tags = append(d.Tags, "prod")
		}
		if i%7 == 0 {
			d.Tags = append(d.Tags, "eu")
		}
		mustCreateDevice(t, s, d)
		r := row{id: d.ID, typ: d.Identity.DeviceType, status: d.Status, tags: d.Tags}
		if i%4 == 0 {
			members = append(members, d.ID)
			r.group = "canary"
		}
		all = append(all, r)
	}
	if err := s.AddGroupMembers(ctx, "canary", members); err != nil {
		t.Fatalf("AddGroupMembers(canary, %d devices) = %v", len(members), err)
	}
	slices.SortFunc(all, func(a, b row) int { return strings.Compare(a.id, b.id) })

	tests := []struct {
		name string
		q    fleet.DeviceQuery
		keep func(r row) bool
	}{
		{"all", fleet.DeviceQuery{}, func(row) bool { return true }},
		{"status", fleet.DeviceQuery{Status: fleet.StatusAccepted}, func(r row) bool { return r.status == fleet.StatusAccepted }},
		{"type", fleet.DeviceQuery{DeviceType: "sensor"}, func(r row) bool { return r.typ == "sensor" }},
		{"tag", fleet.DeviceQuery{Tag: "prod"}, func(r row) bool { return slices.Contains(r.tags, "prod") }},
		{"group", fleet.DeviceQuery{Group: "canary"}, func(r row) bool { return r.group == "canary" }},
		{"every filter", fleet.DeviceQuery{Status: fleet.StatusAccepted, DeviceType: "gateway", Tag: "eu", Group: "canary"},
			func(r row) bool {
				return r.status == fleet.StatusAccepted && r.typ == "gateway" && slices.Contains(r.tags, "eu") && r.group == "canary"
			}},
		{"no match", fleet.DeviceQuery{Tag: "nope"}, func(row) bool { return false }},
		{"unknown group", fleet.DeviceQuery{Group: "nope"}, func(row) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []string
			for _, r := range all {
				if tt.keep(r) {
					want = append(want, r.id)
				}
			}
			for _, limit := range []int{7, 100, 1000} {
				t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
					var got []string
					q := tt.q
					q.Limit = limit
					for page := 0; ; page++ {
						ds, err := s.ListDevices(ctx, q)
						if err != nil {
							t.Fatalf("ListDevices(%+v) = %v", q, err)
						}
						if len(ds) > limit {
							t.Fatalf("ListDevices(%+v) returned %d devices, want at most %d", q, len(ds), limit)
						}
						if len(ds) == 0 {
							break
						}
						got = append(got, deviceIDs(ds)...)
						q.After = ds[len(ds)-1].ID
						if page > n {
							t.Fatalf("ListDevices(%+v) never ran out of pages", q)
						}
					}
					if !cmp.Equal(want, got, cmpEmpty) {
						t.Errorf("ListDevices(%+v) pages = %d devices %v, want %d devices %v", tt.q, len(got), got, len(want), want)
					}
				})
			}
			q := tt.q
			ds, err := s.ListDevices(ctx, q)
			if err != nil || len(ds) != min(100, len(want)) {
				t.Errorf("ListDevices(%+v without limit) = %d devices, %v, want %d", q, len(ds), err, min(100, len(want)))
			}
		})
	}
}
