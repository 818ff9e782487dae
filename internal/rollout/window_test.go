package rollout

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
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

func TestParseWindow(t *testing.T) {
	t.Parallel()
	weekdays := []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}
	tests := []struct {
		in       string
		want     Window
		wantText string
	}{
		{"02:00-04:00", Window{Start: 2 * time.Hour, End: 4 * time.Hour}, "02:00-04:00"},
		{"Mon-Fri 02:00-04:00", Window{Days: weekdays, Start: 2 * time.Hour, End: 4 * time.Hour}, "Mon-Fri 02:00-04:00"},
		{"  sat,SUNDAY   22:00-6:00 ", Window{Days: []time.Weekday{time.Sunday, time.Saturday}, Start: 22 * time.Hour, End: 6 * time.Hour}, "Sat,Sun 22:00-06:00"},
		{"Fri-Mon 23:30-00:00", Window{Days: []time.Weekday{time.Sunday, time.Monday, time.Friday, time.Saturday}, Start: 23*time.Hour + 30*time.Minute, End: 24 * time.Hour}, "Mon,Fri-Sun 23:30-24:00"},
		{"Mon,Wed-Fri,Wed 09:15-17:45", Window{Days: []time.Weekday{time.Monday, time.Wednesday, time.Thursday, time.Friday}, Start: 9*time.Hour + 15*time.Minute, End: 17*time.Hour + 45*time.Minute}, "Mon,Wed-Fri 09:15-17:45"},
		{"Mon-Sun 00:00-24:00", Window{Start: 0, End: 24 * time.Hour}, "00:00-24:00"},
		{"Tue-Tue 01:00-02:00", Window{Days: []time.Weekday{time.Tuesday}, Start: time.Hour, End: 2 * time.Hour}, "Tue 01:00-02:00"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseWindow(tt.in)
			if err != nil {
				t.Fatalf("ParseWindow(%q) = %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseWindow(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.wantText {
				t.Errorf("ParseWindow(%q).String() = %q, want %q", tt.in, s, tt.wantText)
			}
		})
	}
}

func TestParseWindowRefuses(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"", "Mon-Fri", "Mon-Fri 02:00", "Mon-Fri 02:00-02:00", "Mon Fri 02:00-04:00", "Mo 02:00-04:00",
		"Mon- 02:00-04:00", "Mon,,Tue 02:00-04:00", "24:00-02:00", "02:00-24:01", "02:60-03:00", "2-4",
		"002:00-04:00", "+2:00-04:00", "02:00-04:00:00", "-02:00-04:00", "０2:00-04:00",
		strings.Repeat("Mon,", 2000) + " 02:00-04:00",
	} {
		if w, err := ParseWindow(in); !errors.Is(err, rampart.ErrInvalid) {
			t.Errorf("ParseWindow(%.40q) = %+v, %v, want ErrInvalid", in, w, err)
		}
	}
}

func TestParseWindows(t *testing.T) {
	t.Parallel()
	ws, err := ParseWindows("Mon-Fri 02:00-04:00; Sat,Sun 10:00-18:00")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ws.String(), "Mon-Fri 02:00-04:00; Sat,Sun 10:00-18:00"; got != want {
		t.Errorf("ParseWindows().String() = %q, want %q", got, want)
	}
	// Tuesday 03:00 in Berlin is open; Saturday 03:00 is not.
	berlin := mustLoadLocation(t, "Europe/Berlin")
	if !ws.Open(utc("2026-05-05T01:00:00Z"), berlin) || ws.Open(utc("2026-05-09T01:00:00Z"), berlin) {
		t.Error("parsed windows open at the wrong times")
	}
	if ws, err := ParseWindows("  "); err != nil || ws != nil {
		t.Errorf("ParseWindows(blank) = %v, %v, want no windows", ws, err)
	}
	for _, in := range []string{"02:00-04:00;", "02:00-04:00;;03:00-05:00", strings.Repeat("02:00-04:00;", MaxWindows) + "02:00-04:00", strings.Repeat(" ", maxWindowText+1)} {
		if _, err := ParseWindows(in); !errors.Is(err, rampart.ErrInvalid) {
			t.Errorf("ParseWindows(%.40q) = %v, want ErrInvalid", in, err)
		}
	}
}

// FuzzParseWindows checks that whatever ParseWindows accepts is valid and survives a round
// trip through String unchanged.
func FuzzParseWindows(f *testing.F) {
	seeds, err := os.ReadFile("testdata/windows.txt")
	if err != nil {
		f.Fatal(err)
	}
	for line := range strings.Lines(string(seeds)) {
		f.Add(strings.TrimSuffix(line, "\n"))
	}
	f.Fuzz(func(t *testing.T, s string) {
		ws, err := ParseWindows(s)
		if err != nil {
			if !errors.Is(err, rampart.ErrInvalid) {
				t.Fatalf("ParseWindows(%q) error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		if err := ws.Validate(); err != nil {
			t.Fatalf("ParseWindows(%q) accepted invalid windows: %v", s, err)
		}
		text := ws.String()
		again, err := ParseWindows(text)
		if err != nil {
			t.Fatalf("ParseWindows(%q) = %+v, whose String %q does not parse: %v", s, ws, text, err)
		}
		if !reflect.DeepEqual(again, ws) {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v", s, ws, text, again)
		}
		for _, w := range ws {
			if len(w.Days) == 7 || !slices.IsSorted(w.Days) {
				t.Fatalf("ParseWindows(%q) days %v: want sorted, and none for every day", s, w.Days)
			}
		}
	})
}
