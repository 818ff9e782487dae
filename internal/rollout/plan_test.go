package rollout

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/rampart-iot/rampart"
)

func TestParsePlan(t *testing.T) {
	t.Parallel()
	got, err := ParsePlan("10 name=canary success=100% fail=1 bake=1h jitter=1h; 5% bake=2h jitter=1h name=5%; 25% name=25% bake=4h jitter=2h; 100% name=all bake=0s")
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultPlan(); got.String() != want.String() {
		t.Errorf("ParsePlan = %s, want %s", got, want)
	}
	if err := DefaultPlan().Validate(); err != nil {
		t.Errorf("DefaultPlan().Validate() = %v", err)
	}
	defaults, err := ParsePlan("100%")
	if err != nil {
		t.Fatal(err)
	}
	want := Wave{Name: "wave1", Size: Percent(100), SuccessThreshold: Percent(95), FailureThreshold: Percent(5), Bake: time.Hour}
	if defaults.Waves[0].Name != want.Name || defaults.Waves[0] != want {
		t.Errorf(`ParsePlan("100%%") = %+v, want %+v`, defaults.Waves[0], want)
	}
}

func TestParsePlanInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, wantMsg string }{
		{"", "empty"},
		{"50%", "want 100%"},
		{"10; 5", "not larger"},
		{"5%; 10; 100%", "count 10 after a percentage"},
		{"25%; 5%; 100%", "not larger"},
		{"0; 100%", "more than 0"},
		{"101%", "above 100"},
		{"100% fail=0", "more than 0"},
		{"100% success=120%", "above 100"},
		{"100% bake=-1h", "between 0"},
		{"100% bake=soon", "want a Go duration"},
		{"100% colour=red", "unknown setting"},
		{"100% name=a name=b", "each key once"},
		{"10 name=x; 100% name=x", "used twice"},
		{"100% name=\x00", "printable"},
		{strings.Repeat("1;", MaxWaves) + "100%", "more than"},
		{strings.Repeat(" ", 5000), "bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 30)], func(t *testing.T) {
			t.Parallel()
			_, err := ParsePlan(tt.in)
			if !errors.Is(err, rampart.ErrInvalid) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("ParsePlan(%q) error = %v, want ErrInvalid saying %q", tt.in, err, tt.wantMsg)
			}
		})
	}
}

func TestSizes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		total int
		want  []int
	}{
		{0, []int{0, 0, 0, 0}},
		{7, []int{7, 0, 0, 0}},
		{100, []int{10, 0, 15, 75}},
		{1000, []int{10, 40, 200, 750}},
		{1001, []int{10, 41, 200, 750}},
	}
	for _, tt := range tests {
		if got := DefaultPlan().Sizes(tt.total); !slices.Equal(got, tt.want) {
			t.Errorf("DefaultPlan().Sizes(%d) = %v, want %v", tt.total, got, tt.want)
		}
	}
}

func genPlan(t *rapid.T) Plan {
	n := rapid.IntRange(1, 6).Draw(t, "waves")
	var p Plan
	count, pct := 0, 0
	for i := range n {
		var size Amount
		switch {
		case i == n-1:
			size = Percent(100)
		case pct == 0 && rapid.Bool().Draw(t, "count"):
			count += rapid.IntRange(1, 50).Draw(t, "countStep")
			size = Count(count)
		case pct < 99:
			pct = rapid.IntRange(pct+1, 99).Draw(t, "pct")
			size = Percent(pct)
		default:
			continue
		}
		p.Waves = append(p.Waves, Wave{
			Name:             fmt.Sprintf("w%d", i),
			Size:             size,
			SuccessThreshold: Percent(rapid.IntRange(1, 100).Draw(t, "success")),
			FailureThreshold: Count(rapid.IntRange(1, 100).Draw(t, "failure")),
			Bake:             time.Duration(rapid.IntRange(0, 1000).Draw(t, "bake")) * time.Minute,
			BakeJitter:       time.Duration(rapid.IntRange(0, 1000).Draw(t, "jitter")) * time.Second,
		})
	}
	return p
}

func TestPlanProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		p := genPlan(t)
		if err := p.Validate(); err != nil {
			t.Fatalf("Validate(%s) = %v", p, err)
		}
		back, err := ParsePlan(p.String())
		if err != nil || back.String() != p.String() {
			t.Fatalf("ParsePlan(%s) = %s, %v: no round trip", p, back, err)
		}

		n := rapid.IntRange(0, 3000).Draw(t, "devices")
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("dev-%04d", i)
		}
		seed := rapid.Int64().Draw(t, "seed")
		waves := AssignWaves(ids, p, seed)
		sizes := p.Sizes(n)
		seen := map[string]bool{}
		covered := 0
		for i, w := range waves {
			if len(w) != sizes[i] {
				t.Fatalf("wave %d has %d devices, Sizes says %d", i, len(w), sizes[i])
			}
			covered += len(w)
			if i < len(p.Waves)-1 && covered < min(p.Waves[i].Size.Of(n), n) {
				t.Fatalf("waves up to %d cover %d of %d devices, size %s", i, covered, n, p.Waves[i].Size)
			}
			for _, id := range w {
				if seen[id] {
					t.Fatalf("device %s in two waves", id)
				}
				seen[id] = true
			}
		}
		if len(waves) != len(p.Waves) || len(seen) != n {
			t.Fatalf("%d waves hold %d of %d devices", len(waves), len(seen), n)
		}

		shuffled := slices.Clone(ids)
		slices.Reverse(shuffled)
		shuffled = append(shuffled, ids[:min(3, n)]...) // duplicates count once
		if again := AssignWaves(shuffled, p, seed); !slices.EqualFunc(again, waves, slices.Equal) {
			t.Fatalf("AssignWaves is not deterministic for seed %d", seed)
		}
	})
}

func TestAssignWavesRandomizesCanary(t *testing.T) {
	t.Parallel()
	ids := make([]string, 200)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%03d", i)
	}
	canaries := map[string]bool{}
	for seed := range int64(20) {
		for _, id := range AssignWaves(ids, DefaultPlan(), seed)[0] {
			canaries[id] = true
		}
	}
	// 20 draws of 10 out of 200 cover about 130 devices; a fixed choice would cover 10.
	if len(canaries) < 80 {
		t.Errorf("20 seeds picked only %d distinct canaries out of 200", len(canaries))
	}
}

func TestBakeUntil(t *testing.T) {
	t.Parallel()
	w := Wave{Bake: time.Hour, BakeJitter: 30 * time.Minute}
	tests := []struct {
		name string
		rnd  func(int64) int64
		want time.Time
	}{
		{"lowest", func(int64) int64 { return 0 }, t0.Add(time.Hour)},
		{"highest", func(n int64) int64 { return n - 1 }, t0.Add(90 * time.Minute)},
		{"out of range", func(n int64) int64 { return n * 2 }, t0.Add(90 * time.Minute)},
		{"negative", func(int64) int64 { return -5 }, t0.Add(time.Hour)},
	}
	for _, tt := range tests {
		if got := BakeUntil(w, t0, tt.rnd); !got.Equal(tt.want) {
			t.Errorf("BakeUntil(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
	called := false
	if got := BakeUntil(Wave{Bake: time.Hour}, t0, func(int64) int64 { called = true; return 0 }); !got.Equal(t0.Add(time.Hour)) || called {
		t.Errorf("BakeUntil without jitter = %v (rnd called %v), want %v", got, called, t0.Add(time.Hour))
	}
}
