package collect

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-iot/rampart"
)

func TestParseOSRelease(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want map[string]string
	}{
		{"debian12", map[string]string{
			"PRETTY_NAME":      "Debian GNU/Linux 12 (bookworm)",
			"NAME":             "Debian GNU/Linux",
			"VERSION_ID":       "12",
			"VERSION":          "12 (bookworm)",
			"VERSION_CODENAME": "bookworm",
			"ID":               "debian",
			"HOME_URL":         "https://www.debian.org/",
			"SUPPORT_URL":      "https://www.debian.org/support",
			"BUG_REPORT_URL":   "https://bugs.debian.org/",
		}},
		{"quoting", map[string]string{
			"PLAIN":           "value",
			"DOUBLE":          "with \"escaped\" quotes, a \\ backslash, $HOME and `cmd`",
			"SINGLE":          `no \escapes "here"`,
			"MIXED":           "abc d",
			"OTHER_BACKSLASH": `keeps \n and \t`,
			"EMPTY":           "",
			"EMPTY_QUOTED":    "",
			"DUP":             "second",
		}},
		{"crlf", map[string]string{
			"ID":          "yocto",
			"VERSION_ID":  "4.0.15",
			"PRETTY_NAME": "Poky (Yocto Project Reference Distro) 4.0.15 (kirkstone)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata", "osrelease", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseOSRelease(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("ParseOSRelease(%s) error = %v", tt.file, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseOSRelease(%s) mismatch (-want +got):\n%s", tt.file, diff)
			}
		})
	}
}

func TestParseOSReleaseLimits(t *testing.T) {
	t.Parallel()
	var many strings.Builder
	for i := range maxOSReleaseKeys + 1 {
		fmt.Fprintf(&many, "K%d=v\n", i)
	}
	tests := []struct {
		name  string
		input string
	}{
		{"too many variables", many.String()},
		{"line too long", "PRETTY_NAME=" + strings.Repeat("x", maxLineLen) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseOSRelease(strings.NewReader(tt.input))
			if !errors.Is(err, rampart.ErrTooLarge) || got != nil {
				t.Errorf("ParseOSRelease() = %d variables, %v; want ErrTooLarge", len(got), err)
			}
		})
	}
}

// formatOSRelease writes vars as an os-release file, double-quoting every value.
func formatOSRelease(vars map[string]string) []byte {
	var b bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		v := vars[k]
		for _, c := range []string{`\`, `"`, "$", "`"} {
			v = strings.ReplaceAll(v, c, `\`+c)
		}
		fmt.Fprintf(&b, "%s=\"%s\"\n", k, v)
	}
	return b.Bytes()
}

func FuzzParseOSRelease(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "osrelease", "*"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata/osrelease: %v", err)
	}
	for _, name := range seeds {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		vars, err := ParseOSRelease(bytes.NewReader(data))
		if err != nil {
			return
		}
		for k, v := range vars {
			if !validVarName([]byte(k)) || strings.ContainsAny(v, "\n") {
				t.Fatalf("ParseOSRelease accepted %q=%q", k, v)
			}
		}
		// What was parsed, written back quoted, parses to the same variables.
		again, err := ParseOSRelease(bytes.NewReader(formatOSRelease(vars)))
		if errors.Is(err, rampart.ErrTooLarge) {
			return // escaping lengthened a line past the limit
		}
		if err != nil {
			t.Fatalf("ParseOSRelease(formatOSRelease(%q)) error = %v", vars, err)
		}
		if diff := cmp.Diff(vars, again); diff != "" {
			t.Fatalf("round trip mismatch (-first +second):\n%s", diff)
		}
	})
}
