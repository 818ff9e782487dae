package rollout

import (
	"errors"
	"testing"
	"time"

	"github.com/rampart-iot/rampart"
)

func TestDueAfter(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	tests := []struct {
		name string
		last time.Time
		now  time.Time
		want bool
	}{
		{"never updated", time.Time{}, t0, true},
		{"too soon", t0, t0.Add(day - time.Second), false},
		{"exactly due", t0, t0.Add(day), true},
		{"clock skew", t0.Add(time.Hour), t0, false},
	}
	for _, tt := range tests {
		if got := DueAfter(tt.last, day, tt.now); got != tt.want {
			t.Errorf("DueAfter(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCanStart(t *testing.T) {
	t.Parallel()
	gw, eu := LimitKey("type", "gw"), LimitKey("region", "eu")
	active := map[string]int{gw: 5, eu: 2}
	tests := []struct {
		name   string
		limits map[string]int
		keys   []string
		want   bool
	}{
		{"no limits", nil, []string{gw, eu}, true},
		{"type full", map[string]int{gw: 5}, []string{gw, eu}, false},
		{"type has room", map[string]int{gw: 6, eu: 3}, []string{gw, eu}, true},
		{"region full", map[string]int{gw: 6, eu: 2}, []string{gw, eu}, false},
		{"limit on another key", map[string]int{"region:us": 0}, []string{gw, eu}, true},
		{"paused region", map[string]int{"region:us": 0}, []string{"region:us"}, false},
	}
	for _, tt := range tests {
		if got := CanStart(active, tt.limits, tt.keys); got != tt.want {
			t.Errorf("CanStart(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestActions(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"forced", "soft", "download-only"} {
		if a, err := ParseAction(s); err != nil || string(a) != s {
			t.Errorf("ParseAction(%q) = %q, %v", s, a, err)
		}
	}
	if _, err := ParseAction("later"); !errors.Is(err, rampart.ErrInvalid) {
		t.Errorf("ParseAction(later) = %v, want ErrInvalid", err)
	}
	if DownloadOnly.Installs() || !Soft.Installs() {
		t.Error("Installs: download-only must not install, soft must")
	}
	week := 7 * 24 * time.Hour
	if err := ValidateDeferral(Soft, week); err != nil {
		t.Errorf("ValidateDeferral(soft, week) = %v", err)
	}
	for _, bad := range []struct {
		a Action
		d time.Duration
	}{{Soft, 0}, {Soft, MaxDeferral + 1}, {Forced, time.Hour}} {
		if err := ValidateDeferral(bad.a, bad.d); !errors.Is(err, rampart.ErrInvalid) {
			t.Errorf("ValidateDeferral(%s, %s) = %v, want ErrInvalid", bad.a, bad.d, err)
		}
	}
	if !MayDefer(Soft, week, t0, t0.Add(week-time.Second)) || MayDefer(Soft, week, t0, t0.Add(week)) || MayDefer(Forced, week, t0, t0) {
		t.Error("MayDefer: soft may defer until offered+max, forced never")
	}
}
