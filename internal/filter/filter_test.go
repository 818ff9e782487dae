package filter_test

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/filter"
)

func newTestSchema(t testing.TB) *filter.Schema {
	t.Helper()
	s, err := filter.NewSchema(
		filter.Var{Name: "type", Type: filter.String},
		filter.Var{Name: "serial", Type: filter.String},
		filter.Var{Name: "firmware", Type: filter.String},
		filter.Var{Name: "tags", Type: filter.StringList},
		filter.Var{Name: "attributes", Type: filter.StringMap},
		filter.Var{Name: "package_count", Type: filter.Int},
		filter.Var{Name: "clone_suspect", Type: filter.Bool},
		filter.Var{Name: "last_seen", Type: filter.Time},
	)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sampleVars() map[string]any {
	return map[string]any{
		"type": "acme-gw", "serial": "SN-42", "firmware": "1.0.0",
		"tags": []string{"prod", "ring-1"}, "attributes": map[string]string{"region": "eu-west", "site": "plant-7"},
		"package_count": 120, "clone_suspect": false, "last_seen": time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC),
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	s := newTestSchema(t)
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{`type == "acme-gw"`, true},
		{`type == "other"`, false},
		{`"prod" in tags && firmware != "2.0.0"`, true},
		{`attributes["region"] == "eu-west"`, true},
		{`has(attributes.site) && attributes.site.startsWith("plant-")`, true},
		{`serial.matches("^SN-[0-9]+$")`, true},
		{`package_count > 100 && !clone_suspect`, true},
		{`last_seen < timestamp("2026-01-01T00:00:00Z")`, true},
		{`tags.exists(t, t.startsWith("ring-"))`, true},
		{`size(tags) == 0`, false},
	} {
		e, err := s.Compile(tc.expr)
		if err != nil {
			t.Errorf("Compile(%q) = %v", tc.expr, err)
			continue
		}
		if got, err := e.Match(sampleVars()); err != nil || got != tc.want {
			t.Errorf("Match(%q) = %v, %v; want %v", tc.expr, got, err, tc.want)
		}
	}
}

func TestCompileRefuses(t *testing.T) {
	t.Parallel()
	s := newTestSchema(t)
	for _, src := range []string{"", "type ==", `type`, `colour == "red"`, `package_count == "x"`, strings.Repeat("a", filter.MaxSourceLen+1)} {
		if _, err := s.Compile(src); !errors.Is(err, rampart.ErrInvalid) {
			t.Errorf("Compile(%.40q) = %v, want ErrInvalid", src, err)
		}
	}
}

func TestMissingKeyIsAnError(t *testing.T) {
	t.Parallel()
	e, err := newTestSchema(t).Compile(`attributes.rack == "r1"`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Match(sampleVars()); !errors.Is(err, filter.ErrEval) {
		t.Errorf("Match with a missing key = %v, want ErrEval", err)
	}
}

func TestCostLimit(t *testing.T) {
	t.Parallel()
	// A quadratic comprehension over a long list must stop at the cost limit, not run on.
	s, err := filter.NewSchema(filter.Var{Name: "tags", Type: filter.StringList})
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Compile(`tags.all(a, tags.all(b, tags.all(c, a + b + c != "")))`)
	if err != nil {
		t.Fatal(err)
	}
	long := make([]string, 2000)
	for i := range long {
		long[i] = "x"
	}
	if _, err := e.Match(map[string]any{"tags": long}); !errors.Is(err, filter.ErrEval) {
		t.Errorf("expensive expression = %v, want the cost limit to stop it", err)
	}
}

func FuzzCompile(f *testing.F) {
	file, err := os.Open("testdata/exprs.txt")
	if err != nil {
		f.Fatal(err)
	}
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		f.Add(sc.Text())
	}
	file.Close()
	s := newTestSchema(f)
	f.Fuzz(func(t *testing.T, src string) {
		e, err := s.Compile(src)
		if err != nil {
			if !errors.Is(err, rampart.ErrInvalid) {
				t.Errorf("Compile(%q) error %v does not wrap ErrInvalid", src, err)
			}
			return
		}
		// A compiled expression always yields a boolean or a clean evaluation error.
		if _, err := e.Match(sampleVars()); err != nil && !errors.Is(err, filter.ErrEval) {
			t.Errorf("Match(%q) = %v, want nil or ErrEval", src, err)
		}
		if e.String() != src {
			t.Errorf("String() = %q, want %q", e.String(), src)
		}
	})
}
