package storetest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/store/sqlstore"
)

func testTouchDevices(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	for i := 1; i <= 3; i++ {
		d := newTestDevice(i)
		if i < 3 {
			d.LastSeen = base
		}
		mustCreateDevice(t, s, d)
	}
	if err := s.TouchDevices(ctx, nil); err != nil {
		t.Errorf("TouchDevices(nil) = %v, want nil", err)
	}
	seen := map[string]time.Time{
		"dev-0001": base.Add(time.Minute),
		"dev-0002": base.Add(-time.Minute),
		"dev-0003": base,
		"dev-nope": base,
	}
	if err := s.TouchDevices(ctx, seen); err != nil {
		t.Fatalf("TouchDevices(%d) = %v, want nil", len(seen), err)
	}
	want := map[string]time.Time{"dev-0001": base.Add(time.Minute), "dev-0002": base, "dev-0003": base}
	for id, at := range want {
		if got := mustDevice(t, s, id).LastSeen; !got.Equal(at) {
			t.Errorf("Device(%s).LastSeen = %v, want %v (only forward)", id, got, at)
		}
	}
	if _, err := s.Device(ctx, "dev-nope"); !errorsIsNotFound(err) {
		t.Errorf("Device(dev-nope) after TouchDevices = %v, want ErrNotFound", err)
	}

	t.Run("10000 entries", func(t *testing.T) {
		big := make(map[string]time.Time, 10000)
		for i := range 10000 {
			big[fmt.Sprintf("dev-%04d", i)] = base.Add(time.Hour)
		}
		start := time.Now()
		if err := s.TouchDevices(ctx, big); err != nil {
			t.Fatalf("TouchDevices(10000) = %v, want nil", err)
		}
		t.Logf("TouchDevices(10000) took %v", time.Since(start))
		for id := range want {
			if got := mustDevice(t, s, id).LastSeen; !got.Equal(base.Add(time.Hour)) {
				t.Errorf("Device(%s).LastSeen = %v, want %v", id, got, base.Add(time.Hour))
			}
		}
	})
}

func testEvents(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	a := []fleet.Event{
		{DeviceID: "dev-a", Kind: fleet.EventEnrolled, Level: "info", Message: "enrolled", At: base, ReceivedAt: base},
		{DeviceID: "dev-a", Kind: "install", Level: "error", Message: "apt failed: \"dpkg\" ✗",
			Data: map[string]string{"exit": "100", "pkg": "openssl"}, At: base.Add(-time.Hour), ReceivedAt: base.Add(time.Second)},
		{DeviceID: "dev-a", Kind: fleet.EventCloneSuspected, Level: "warning", Data: map[string]string{}, ReceivedAt: base.Add(2 * time.Second)},
	}
	other := fleet.Event{DeviceID: "dev-b", Kind: "boot", Level: "info", ReceivedAt: base}
	if err := s.AddEvents(ctx, a[:2]); err != nil {
		t.Fatalf("AddEvents = %v", err)
	}
	if err := s.AddEvents(ctx, []fleet.Event{other, a[2]}); err != nil {
		t.Fatalf("AddEvents = %v", err)
	}
	if err := s.AddEvents(ctx, nil); err != nil {
		t.Errorf("AddEvents(nil) = %v, want nil", err)
	}
	newestFirst := []fleet.Event{a[2], a[1], a[0]}
	tests := []struct {
		device string
		limit  int
		want   []fleet.Event
	}{
		{"dev-a", 0, newestFirst},
		{"dev-a", 2, newestFirst[:2]},
		{"dev-a", 10, newestFirst},
		{"dev-b", 0, []fleet.Event{other}},
		{"dev-nope", 0, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s limit %d", tt.device, tt.limit), func(t *testing.T) {
			got, err := s.Events(ctx, tt.device, tt.limit)
			if err != nil {
				t.Fatalf("Events(%s, %d) = %v", tt.device, tt.limit, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Events(%s, %d) (-want +got):\n%s", tt.device, tt.limit, diff)
			}
		})
	}

	t.Run("default limit", func(t *testing.T) {
		var many []fleet.Event
		for i := range 105 {
			many = append(many, fleet.Event{DeviceID: "dev-c", Kind: "tick", Level: "info", Message: fmt.Sprint(i), ReceivedAt: base})
		}
		if err := s.AddEvents(ctx, many); err != nil {
			t.Fatalf("AddEvents(105) = %v", err)
		}
		got, err := s.Events(ctx, "dev-c", 0)
		if err != nil || len(got) != 100 || got[0].Message != "104" || got[99].Message != "5" {
			t.Errorf("Events(dev-c, 0) = %d events, %v, want the newest 100", len(got), err)
		}
	})
}

func testNonces(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	steps := []struct {
		name    string
		do      func() error
		wantErr error
	}{
		{"first use", func() error { return s.ConsumeNonce(ctx, "n1", base.Add(time.Minute)) }, nil},
		{"second use", func() error { return s.ConsumeNonce(ctx, "n1", base.Add(time.Minute)) }, rampart.ErrConflict},
		{"another nonce", func() error { return s.ConsumeNonce(ctx, "n2", base.Add(10*time.Minute)) }, nil},
		{"purge", func() error { return s.PurgeNonces(ctx, base.Add(5*time.Minute)) }, nil},
		{"purged nonce is forgotten", func() error { return s.ConsumeNonce(ctx, "n1", base.Add(time.Minute)) }, nil},
		{"unexpired nonce is kept", func() error { return s.ConsumeNonce(ctx, "n2", base.Add(10*time.Minute)) }, rampart.ErrConflict},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) { checkErr(t, st.name, st.do(), st.wantErr) })
	}
}

func testSecret(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	first, second := []byte("first-\x00\xff-secret"), []byte("second")
	tests := []struct {
		name, secret string
		candidate    []byte
		want         []byte
	}{
		{"stores the candidate", "hmac", first, first},
		{"keeps the first value", "hmac", second, first},
		{"names are separate", "other", second, second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Secret(ctx, tt.secret, tt.candidate)
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Errorf("Secret(%s, %q) = %q, %v, want %q", tt.secret, tt.candidate, got, err, tt.want)
			}
		})
	}

	t.Run("concurrent replicas agree", func(t *testing.T) {
		results := make([][]byte, 10)
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() {
				v, err := s.Secret(ctx, "race", fmt.Appendf(nil, "candidate-%d", i))
				if err != nil {
					t.Errorf("Secret(race) = %v", err)
				}
				results[i] = v
			})
		}
		wg.Wait()
		for i, v := range results {
			if !bytes.Equal(v, results[0]) {
				t.Errorf("Secret(race) call %d = %q, call 0 = %q, want the same", i, v, results[0])
			}
		}
	})
}

func testConcurrency(t *testing.T, s *sqlstore.Store) {
	ctx := t.Context()
	const workers = 20
	t.Run("creates", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() {
				d := newTestDevice(i)
				d.Tags = []string{"swarm"}
				if err := s.CreateDevice(ctx, d, "", base); err != nil {
					t.Errorf("CreateDevice(%s) concurrently = %v, want nil", d.ID, err)
				}
				if err := s.TouchDevices(ctx, map[string]time.Time{d.ID: base.Add(time.Minute)}); err != nil {
					t.Errorf("TouchDevices(%s) concurrently = %v, want nil", d.ID, err)
				}
			})
		}
		wg.Wait()
		ds, err := s.ListDevices(ctx, fleet.DeviceQuery{Tag: "swarm"})
		if err != nil || len(ds) != workers {
			t.Errorf("ListDevices(tag swarm) = %d devices, %v, want %d", len(ds), err, workers)
		}
	})
	t.Run("token races", func(t *testing.T) {
		tok := newTestToken("et-race")
		tok.MaxUses = 5
		if err := s.CreateEnrollToken(ctx, tok); err != nil {
			t.Fatalf("CreateEnrollToken = %v", err)
		}
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() {
				d := newTestDevice(100 + i)
				d.Identity.DeviceType = "raced"
				errs[i] = s.CreateDevice(ctx, d, tok.ID, base)
			})
		}
		wg.Wait()
		ok := 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errorsIsConflict(err):
				t.Errorf("CreateDevice(%d) with a contested token = %v, want nil or ErrConflict", i, err)
			}
		}
		ds, err := s.ListDevices(ctx, fleet.DeviceQuery{DeviceType: "raced"})
		if ok != tok.MaxUses || err != nil || len(ds) != tok.MaxUses {
			t.Errorf("%d racing enrollments on a %d-use token: %d succeeded, %d devices stored (%v), want %d",
				workers, tok.MaxUses, ok, len(ds), err, tok.MaxUses)
		}
		if got, err := s.EnrollToken(ctx, tok.ID); err != nil || got.Uses != tok.MaxUses {
			t.Errorf("EnrollToken(%s).Uses = %v, %v, want %d", tok.ID, got, err, tok.MaxUses)
		}
	})
}

func testPing(t *testing.T, s *sqlstore.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping() = %v, want nil", err)
	}
}
