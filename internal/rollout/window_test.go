package rollout

import (
	"errors"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin without relying on the host's zoneinfo

	"github.com/rampart-iot/rampart"
)

func mustLoadLocation(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestWindowsOpen(t *testing.T) {
	t.Parallel()
	berlin := mustLoadLocation(t, "Europe/Berlin")
	nightly := Windows{{Start: 22 * time.Hour, End: 6 * time.Hour}}
	weekend := Windows{{Days: []time.Weekday{time.Saturday, time.Sunday}, Start: 9 * time.Hour, End: 24 * time.Hour}}
	springGap := Windows{{Start: 2 * time.Hour, End: 4 * time.Hour}}
	autumn := Windows{{Start: time.Hour, End: 4 * time.Hour}}
	tests := []struct {
		name string
		ws   Windows
		at   string // UTC
		want bool
	}{
		{"no windows", nil, "2026-05-06T12:00:00Z", true},
		{"nightly before", nightly, "2026-05-06T19:59:00Z", false}, // 21:59 CEST
		{"nightly start", nightly, "2026-05-06T20:00:00Z", true},
		{"nightly after midnight", nightly, "2026-05-07T03:59:00Z", true}, // 05:59 CEST
		{"nightly end", nightly, "2026-05-07T04:00:00Z", false},
		// The night of 28/29 March 2026 is one hour short: 22:00 CET to 06:00 CEST.
		{"spring night end", nightly, "2026-03-29T03:59:00Z", true},
		{"spring night closed", nightly, "2026-03-29T04:00:00Z", false},
		// 02:00 does not exist on 29 March; the window opens at 03:00 CEST (01:00 UTC).
		{"spring gap before", springGap, "2026-03-29T00:59:00Z", false},
		{"spring gap open", springGap, "2026-03-29T01:00:00Z", true},
		{"spring gap closes 04:00 CEST", springGap, "2026-03-29T02:00:00Z", false},
		// 25 October 2026 has 03:00 CEST -> 02:00 CET: 01:00 CEST to 04:00 CET is four hours.
		{"autumn open", autumn, "2026-10-24T23:00:00Z", true},
		{"autumn repeated hour", autumn, "2026-10-25T01:30:00Z", true},
		{"autumn last minute", autumn, "2026-10-25T02:59:00Z", true},
		{"autumn closed", autumn, "2026-10-25T03:00:00Z", false},
		{"weekday", weekend, "2026-05-08T12:00:00Z", false}, // Friday
		{"saturday", weekend, "2026-05-09T12:00:00Z", true},
		{"sunday to midnight", weekend, "2026-05-10T21:59:00Z", true},
		{"monday", weekend, "2026-05-10T22:00:00Z", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.ws.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := tt.ws.Open(utc(tt.at), berlin); got != tt.want {
				t.Errorf("Open(%s) = %v, want %v", tt.at, got, tt.want)
			}
		})
	}
}

func TestWindowsNextOpen(t *testing.T) {
	t.Parallel()
	berlin := mustLoadLocation(t, "Europe/Berlin")
	morning := Windows{{Start: 9 * time.Hour, End: 10 * time.Hour}}
	mondayNight := Windows{{Days: []time.Weekday{time.Monday}, Start: 23 * time.Hour, End: time.Hour}}
	tests := []struct {
		name   string
		ws     Windows
		at     string
		wantAt string
	}{
		{"open now", morning, "2026-03-27T08:30:00Z", "2026-03-27T08:30:00Z"},
		{"later today", morning, "2026-03-27T06:00:00Z", "2026-03-27T08:00:00Z"},
		{"tomorrow in CET", morning, "2026-03-27T10:00:00Z", "2026-03-28T08:00:00Z"},
		{"after the switch in CEST", morning, "2026-03-28T10:00:00Z", "2026-03-29T07:00:00Z"},
		{"back to CET", morning, "2026-10-24T10:00:00Z", "2026-10-25T08:00:00Z"},
		{"next week", mondayNight, "2026-05-05T00:00:00Z", "2026-05-11T21:00:00Z"},
		{"crossing midnight open", mondayNight, "2026-05-04T22:30:00Z", "2026-05-04T22:30:00Z"},
		{"two windows pick the earlier", append(mondayNight, morning...), "2026-05-04T10:00:00Z", "2026-05-04T21:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.ws.NextOpen(utc(tt.at), berlin); !got.Equal(utc(tt.wantAt)) {
				t.Errorf("NextOpen(%s) = %s, want %s", tt.at, got.UTC().Format(time.RFC3339), tt.wantAt)
			}
		})
	}
}

func TestWindowsValidate(t *testing.T) {
	t.Parallel()
	tests := []Windows{
		{{Start: 2 * time.Hour, End: 2 * time.Hour}},
		{{Start: 24 * time.Hour, End: time.Hour}},
		{{Start: time.Hour, End: 25 * time.Hour}},
		{{Start: -time.Minute, End: time.Hour}},
		{{Start: time.Hour, End: 2*time.Hour + time.Second}},
		{{Days: []time.Weekday{7}, Start: time.Hour, End: 2 * time.Hour}},
		make(Windows, MaxWindows+1),
	}
	for _, ws := range tests {
		if err := ws.Validate(); !errors.Is(err, rampart.ErrInvalid) {
			t.Errorf("Validate(%v) = %v, want ErrInvalid", ws, err)
		}
	}
}
