package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
)

func newTestToken(id string) *fleet.EnrollToken {
	return &fleet.EnrollToken{
		ID:        id,
		Hash:      "hash-" + id,
		MaxUses:   10,
		ExpiresAt: base.Add(time.Hour),
		CreatedAt: base.Add(-time.Hour),
	}
}

func testTokenConsumption(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	tests := []struct {
		name     string
		edit     func(tok *fleet.EnrollToken)
		use      string // token ID to consume; the token's own when empty
		wantErr  error
		wantUses int
	}{
		{"usable", func(tok *fleet.EnrollToken) { tok.MaxUses, tok.Uses = 2, 1 }, "", nil, 2},
		{"used up", func(tok *fleet.EnrollToken) { tok.MaxUses, tok.Uses = 2, 2 }, "", rampart.ErrConflict, 2},
		{"expires now", func(tok *fleet.EnrollToken) { tok.ExpiresAt = base }, "", rampart.ErrConflict, 0},
		{"expired", func(tok *fleet.EnrollToken) { tok.ExpiresAt = base.Add(-time.Nanosecond) }, "", rampart.ErrConflict, 0},
		{"revoked", func(tok *fleet.EnrollToken) { tok.RevokedAt = base.Add(-time.Minute) }, "", rampart.ErrConflict, 0},
		{"unknown", func(*fleet.EnrollToken) {}, "et-missing", rampart.ErrConflict, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := newTestToken("et-" + tt.name)
			tt.edit(tok)
			if err := s.CreateEnrollToken(ctx, tok); err != nil {
				t.Fatalf("CreateEnrollToken(%s) = %v, want nil", tok.ID, err)
			}
			use := tt.use
			if use == "" {
				use = tok.ID
			}
			d := newTestDevice(100 + i)
			d.Tags = []string{"from-token"}
			checkErr(t, "CreateDevice(token "+tt.name+")", s.CreateDevice(ctx, d, use, base), tt.wantErr)

			_, err := s.Device(ctx, d.ID)
			if tt.wantErr == nil && err != nil {
				t.Errorf("Device(%s) = %v, want nil", d.ID, err)
			}
			if tt.wantErr != nil && !errors.Is(err, rampart.ErrNotFound) {
				t.Errorf("Device(%s) after a refused token = %v, want ErrNotFound", d.ID, err)
			}
			got, err := s.EnrollToken(ctx, tok.ID)
			if err != nil || got.Uses != tt.wantUses {
				t.Errorf("EnrollToken(%s).Uses = %v, %v, want %d", tok.ID, got, err, tt.wantUses)
			}
		})
	}
	tagged, err := s.ListDevices(ctx, fleet.DeviceQuery{Tag: "from-token"})
	if err != nil || len(tagged) != 1 {
		t.Errorf("ListDevices(tag from-token) = %v, %v, want only the usable token's device", deviceIDs(tagged), err)
	}

	t.Run("until used up", func(t *testing.T) {
		tok := newTestToken("et-three")
		tok.MaxUses = 3
		if err := s.CreateEnrollToken(ctx, tok); err != nil {
			t.Fatalf("CreateEnrollToken = %v", err)
		}
		for i := range 4 {
			var want error
			if i == 3 {
				want = rampart.ErrConflict
			}
			checkErr(t, "CreateDevice(use "+string(rune('1'+i))+")", s.CreateDevice(ctx, newTestDevice(200+i), tok.ID, base), want)
		}
	})
}

func testEnrollTokens(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	a := &fleet.EnrollToken{
		ID: "et-a", Description: "factory line 3", Hash: "hash-a", MaxUses: 500, Uses: 12,
		ExpiresAt: base.Add(30 * 24 * time.Hour), DeviceType: "gateway", Tags: []string{"line3", "prod"},
		CreatedAt: base,
	}
	b := &fleet.EnrollToken{ID: "et-b", Hash: "hash-b", MaxUses: 1, ExpiresAt: base.Add(time.Hour), CreatedAt: base.Add(time.Second)}
	for _, tok := range []*fleet.EnrollToken{b, a} {
		if err := s.CreateEnrollToken(ctx, tok); err != nil {
			t.Fatalf("CreateEnrollToken(%s) = %v, want nil", tok.ID, err)
		}
	}
	conflicts := []struct {
		name string
		tok  *fleet.EnrollToken
	}{
		{"same ID", &fleet.EnrollToken{ID: "et-a", Hash: "hash-other"}},
		{"same hash", &fleet.EnrollToken{ID: "et-c", Hash: "hash-a"}},
	}
	for _, tt := range conflicts {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, "CreateEnrollToken("+tt.name+")", s.CreateEnrollToken(ctx, tt.tok), rampart.ErrConflict)
		})
	}

	got, err := s.EnrollToken(ctx, a.ID)
	if err != nil {
		t.Fatalf("EnrollToken(a) = %v, want nil", err)
	}
	if diff := cmp.Diff(a, got); diff != "" {
		t.Errorf("EnrollToken(a) (-want +got):\n%s", diff)
	}
	got, err = s.EnrollTokenByHash(ctx, b.Hash)
	if err != nil {
		t.Fatalf("EnrollTokenByHash(b) = %v, want nil", err)
	}
	if diff := cmp.Diff(b, got); diff != "" {
		t.Errorf("EnrollTokenByHash(b) (-want +got):\n%s", diff)
	}
	list, err := s.EnrollTokens(ctx)
	if err != nil {
		t.Fatalf("EnrollTokens() = %v, want nil", err)
	}
	if diff := cmp.Diff([]*fleet.EnrollToken{a, b}, list); diff != "" {
		t.Errorf("EnrollTokens() oldest first (-want +got):\n%s", diff)
	}

	revoked := base.Add(time.Minute)
	if err := s.RevokeEnrollToken(ctx, a.ID, revoked); err != nil {
		t.Fatalf("RevokeEnrollToken(a) = %v, want nil", err)
	}
	if err := s.RevokeEnrollToken(ctx, a.ID, revoked.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeEnrollToken(a) again = %v, want nil", err)
	}
	got, err = s.EnrollToken(ctx, a.ID)
	if err != nil || !got.RevokedAt.Equal(revoked) || got.Usable(base) {
		t.Errorf("EnrollToken(a) after revoking = %+v, %v, want RevokedAt %v and unusable", got, err, revoked)
	}
}

func testConsumeEnrollToken(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	tok := &fleet.EnrollToken{ID: "et_standalone", Hash: "h-standalone", MaxUses: 1, ExpiresAt: base.Add(time.Hour), CreatedAt: base}
	if err := s.CreateEnrollToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.ConsumeEnrollToken(ctx, tok.ID, base); err != nil {
		t.Fatalf("first use: %v", err)
	}
	checkErr(t, "ConsumeEnrollToken(used up)", s.ConsumeEnrollToken(ctx, tok.ID, base), rampart.ErrConflict)
	checkErr(t, "ConsumeEnrollToken(unknown)", s.ConsumeEnrollToken(ctx, "et_missing", base), rampart.ErrConflict)
	if got, err := s.EnrollToken(ctx, tok.ID); err != nil || got.Uses != 1 {
		t.Errorf("uses after consumption = %+v, %v; want 1", got, err)
	}
}
