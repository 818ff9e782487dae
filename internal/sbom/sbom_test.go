package sbom

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-iot/rampart"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/ from the current output")

// TestParseTestdata parses every file under testdata/: valid ones must match their golden
// output, invalid ones must fail with the expected kind and message.
func TestParseTestdata(t *testing.T) {
	t.Parallel()
	valid := []string{
		"alpine3.10-sensor.excerpt.cdx.json",
		"deb10-router-2019-09-01.excerpt.cdx.json",
		"deb10-router-2021-09-01.excerpt.cdx.json",
		"deb11-camera-2023-03-01.excerpt.cdx.json",
		"yocto-kirkstone-hmi.excerpt.cdx.json",
		"nested-licenses.cdx.json",
		"gateway.spdx.json",
		"minimal-2.2.spdx.json",
	}
	invalid := []struct {
		file    string
		kind    error
		message string
	}{
		{"array.json", rampart.ErrInvalid, "not a JSON object"},
		{"bad-purl.cdx.json", rampart.ErrInvalid, `components[0] "openssl": purl "openssl@3.0.2"`},
		{"bad-purl.spdx.json", rampart.ErrInvalid, `packages[0] "curl": purl "pkg:/curl@8.0"`},
		{"blank-name.spdx.json", rampart.ErrInvalid, "packages[0]: no name"},
		{"bomformat-case.cdx.json", rampart.ErrInvalid, `bomFormat "cyclonedx" is not "CycloneDX"`},
		{"both-formats.json", rampart.ErrInvalid, "both bomFormat and spdxVersion"},
		{"components-object.cdx.json", rampart.ErrInvalid, "CycloneDX: decode"},
		{"conflicting-hashes.cdx.json", rampart.ErrInvalid, `components[0] "x": two different SHA-256 hashes`},
		{"control-char.cdx.json", rampart.ErrInvalid, "control character U+0000"},
		{"cyclonedx-1.1.cdx.json", rampart.ErrInvalid, `specVersion "1.1" is not supported`},
		{"cyclonedx-1.7.cdx.json", rampart.ErrInvalid, `specVersion "1.7" is not supported`},
		{"deep-nesting.cdx.json", rampart.ErrTooLarge, "nested deeper than 128 levels"},
		{"long-name.cdx.json", rampart.ErrTooLarge, "name: longer than 4096 bytes"},
		{"no-name.cdx.json", rampart.ErrInvalid, "components[1]: no name"},
		{"not-json.txt", rampart.ErrInvalid, "not a JSON object"},
		{"spdx-3.0.spdx.json", rampart.ErrInvalid, `spdxVersion "SPDX-3.0" is not supported`},
		{"specversion-number.cdx.json", rampart.ErrInvalid, "specVersion 1.5 is not supported"},
		{"trailing-data.cdx.json", rampart.ErrInvalid, "not a JSON object"},
		{"truncated.cdx.json", rampart.ErrInvalid, "not a JSON object"},
		{"no-spec-version.cdx.json", rampart.ErrInvalid, "CycloneDX document has no specVersion"},
		{"unknown-format.json", rampart.ErrInvalid, "neither CycloneDX JSON (bomFormat) nor SPDX JSON (spdxVersion)"},
	}

	covered := map[string]bool{}
	for _, name := range valid {
		covered[name] = true
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			doc := mustParseFile(t, filepath.Join("testdata", name))
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false) // keep purls' & readable
			enc.SetIndent("", "  ")
			if err := enc.Encode(doc); err != nil {
				t.Fatal(err)
			}
			got := buf.Bytes()
			golden := filepath.Join("testdata", "golden", strings.TrimSuffix(name, ".json")+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("Parse(%s) differs from %s (-want +got):\n%s", name, golden, diff)
			}
		})
	}
	for _, tt := range invalid {
		name := filepath.Join("invalid", tt.file)
		covered[name] = true
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			doc, err := Parse(bytes.NewReader(data))
			if !errors.Is(err, tt.kind) || !strings.Contains(fmtErr(err), tt.message) {
				t.Fatalf("Parse(%s) = %v, %v; want error wrapping %v containing %q", name, doc, err, tt.kind, tt.message)
			}
		})
	}

	// A file added to testdata/ without an expectation here would be checked only by the fuzzer.
	files, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	more, err := filepath.Glob("testdata/invalid/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range append(files, more...) {
		if name, _ := filepath.Rel("testdata", f); !covered[name] {
			t.Errorf("testdata file %s has no expectation in TestParseTestdata", name)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestParseDetails spells out, for the hand-written examples, what the golden files record, so a
// regression is readable without a diff of JSON.
func TestParseDetails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want *Document
	}{
		{
			file: "nested-licenses.cdx.json",
			want: &Document{
				Format: "cyclonedx", SpecVersion: "1.4", Name: "acme-thermostat",
				Components: []Component{
					{
						Name: "thermostatd", Version: "4.2.0", Type: "application", Supplier: "Acme Devices",
						Licenses: []string{"Acme Proprietary"},
						Hashes: map[string]string{
							"SHA-256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
							"SHA-1":   "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
						},
					},
					{
						Name: "github.com/eclipse/paho.mqtt.golang", Version: "v1.4.3", Type: "library",
						PURL:     "pkg:golang/github.com/eclipse/paho.mqtt.golang@v1.4.3",
						Licenses: []string{"EPL-2.0"},
					},
					{Name: "golang.org/x/net", Version: "v0.8.0", Type: "library", PURL: "pkg:golang/golang.org/x/net@v0.8.0"},
					{
						Name: "libssl3", Version: "3.0.11-1~deb12u2", Type: "library",
						// Type lowercased, qualifiers sorted.
						PURL:     "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=arm64&distro=debian-12&upstream=openssl",
						Licenses: []string{"Apache-2.0 OR OpenSSL"},
					},
					{Name: "debian", Version: "12.4", Type: "operating-system"},
				},
			},
		},
		{
			file: "gateway.spdx.json",
			want: &Document{
				Format: "spdx", SpecVersion: "SPDX-2.3", Name: "acme-gateway", // the described package
				Components: []Component{
					{
						Name: "openssl", Version: "3.0.11-1~deb12u2", Type: "application", Supplier: "Debian OpenSSL Team",
						PURL:     "pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=arm64&distro=debian-12",
						Licenses: []string{"Apache-2.0"},
						Hashes:   map[string]string{"SHA-256": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"},
					},
					{
						Name: "libcurl4", Version: "7.88.1-10+deb12u5", Type: "library", Supplier: "Alessandro Ghedini (ghedo@debian.org)",
						PURL:     "pkg:deb/debian/libcurl4@7.88.1-10%2Bdeb12u5?arch=arm64&distro=debian-12&upstream=curl",
						Licenses: []string{"curl"},
					},
					{
						Name: "github.com/eclipse/paho.mqtt.golang", Version: "v1.4.3",
						PURL:     "pkg:golang/github.com/eclipse/paho.mqtt.golang@v1.4.3",
						Licenses: []string{"EPL-2.0 OR BSD-3-Clause", "EPL-2.0"},
						Hashes:   map[string]string{"SHA-1": "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", "MD5": "098f6bcd4621d373cade4e832627b4f6"},
					},
					{Name: "busybox", Version: "1.36.1", Supplier: "Acme Devices", Licenses: []string{"GPL-2.0-only"}},
				},
			},
		},
		{
			// Describes two packages, so neither is the subject and both are components.
			file: "minimal-2.2.spdx.json",
			want: &Document{
				Format: "spdx", SpecVersion: "SPDX-2.2", Name: "sensor-rootfs",
				Components: []Component{
					{Name: "zlib", Version: "1.2.13", PURL: "pkg:generic/zlib@1.2.13"},
					{Name: "dropbear", Version: "2022.83"},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			got := mustParseFile(t, filepath.Join("testdata", tt.file))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%s) (-want +got):\n%s", tt.file, diff)
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	t.Parallel()
	small := limits{size: 1 << 10, components: 3, stringLen: 16, depth: 8}
	cdx := func(components string) string {
		return `{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [` + components + `]}`
	}
	tests := []struct {
		name    string
		in      string
		kind    error
		message string
	}{
		{"at size limit", cdx(`{"type": "library", "name": "a"}`) + strings.Repeat(" ", 1<<10-len(cdx(`{"type": "library", "name": "a"}`))), nil, ""},
		{"over size limit", cdx("") + strings.Repeat(" ", 1<<10), rampart.ErrTooLarge, "larger than 1024 bytes"},
		{"at component limit", cdx(`{"name": "a"}, {"name": "b", "components": [{"name": "c"}]}`), nil, ""},
		{"nested component over limit", cdx(`{"name": "a"}, {"name": "b", "components": [{"name": "c"}, {"name": "d"}]}`), rampart.ErrTooLarge, "more than 3 components"},
		{"SPDX over component limit", `{"spdxVersion": "SPDX-2.3", "packages": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}]}`, rampart.ErrTooLarge, "more than 3 components"},
		{"string at limit", cdx(`{"name": "a", "version": "0123456789abcdef"}`), nil, ""},
		{"version over limit", cdx(`{"name": "a", "version": "0123456789abcdefg"}`), rampart.ErrTooLarge, `components[0] "a": version: longer than 16 bytes`},
		{"license over limit", cdx(`{"name": "a", "licenses": [{"expression": "MIT OR Apache-2.0"}]}`), rampart.ErrTooLarge, "license: longer than 16 bytes"},
		{"document name over limit", `{"spdxVersion": "SPDX-2.3", "name": "0123456789abcdefg"}`, rampart.ErrTooLarge, "name: longer than 16 bytes"},
		{"depth at limit", cdx(`{"name": "a", "components": [{"name": "b", "components": [{"name": "c"}]}]}`), nil, ""},
		{"depth over limit", cdx(`{"name": "a", "components": [{"name": "b", "components": [{"name": "c", "components": [{"name": "d"}]}]}]}`), rampart.ErrTooLarge, "nested deeper than 8 levels"},
		{"brackets inside strings do not count", cdx(`{"name": "[[[[[\"{{{{"}`), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc, err := parse(strings.NewReader(tt.in), small)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("parse(%q) = %v; want success", tt.in, err)
				}
				return
			}
			if !errors.Is(err, tt.kind) || !strings.Contains(fmtErr(err), tt.message) {
				t.Fatalf("parse(%q) = %v, %v; want error wrapping %v containing %q", tt.in, doc, err, tt.kind, tt.message)
			}
		})
	}
}

func TestParseVersions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		version string // empty: refused with ErrInvalid
	}{
		{`{"bomFormat": "CycloneDX", "specVersion": "1.2"}`, "1.2"},
		{`{"bomFormat": "CycloneDX", "specVersion": "1.3"}`, "1.3"},
		{`{"bomFormat": "CycloneDX", "specVersion": "1.6"}`, "1.6"},
		{`{"bomFormat": "CycloneDX", "specVersion": "1.0"}`, ""},
		{`{"bomFormat": "CycloneDX", "specVersion": "2.0"}`, ""},
		{`{"bomFormat": "CycloneDX"}`, ""},
		{`{"bomFormat": "CycloneDX", "specVersion": null}`, ""},
		{`{"spdxVersion": "SPDX-2.2"}`, "SPDX-2.2"},
		{`{"spdxVersion": "SPDX-2.3"}`, "SPDX-2.3"},
		{`{"spdxVersion": "SPDX-2.1"}`, ""},
		{`{"spdxVersion": "2.3"}`, ""},
		{`{}`, ""},
		{`null`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		doc, err := Parse(strings.NewReader(tt.in))
		switch {
		case tt.version == "" && !errors.Is(err, rampart.ErrInvalid):
			t.Errorf("Parse(%s) = %v, %v; want ErrInvalid", tt.in, doc, err)
		case tt.version != "" && (err != nil || doc.SpecVersion != tt.version || len(doc.Components) != 0):
			t.Errorf("Parse(%s) = %+v, %v; want an empty document of version %s", tt.in, doc, err, tt.version)
		}
	}
}

// TestParseMaxSize checks the real limit; TestParseLimits covers the boundary with small ones.
func TestParseMaxSize(t *testing.T) {
	t.Parallel()
	head := `{"spdxVersion": "SPDX-2.3", "name": "big"}`
	in := io.MultiReader(strings.NewReader(head), io.LimitReader(spaces{}, MaxSize-int64(len(head))+1))
	if _, err := Parse(in); !errors.Is(err, rampart.ErrTooLarge) {
		t.Fatalf("Parse(document of MaxSize+1 bytes) = %v; want ErrTooLarge", err)
	}
}

// spaces reads as endless JSON whitespace.
type spaces struct{}

func (spaces) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = ' '
	for n := 1; n < len(p); n *= 2 {
		copy(p[n:], p[:n])
	}
	return len(p), nil
}

func TestParseReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk on fire")
	_, err := Parse(io.MultiReader(strings.NewReader(`{"spdxVersion"`), errReader{boom}))
	if !errors.Is(err, boom) || errors.Is(err, rampart.ErrInvalid) {
		t.Fatalf("Parse(failing reader) = %v; want the read error, not ErrInvalid", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestParseByteOrderMark(t *testing.T) {
	t.Parallel()
	in := "\xef\xbb\xbf" + `{"spdxVersion": "SPDX-2.3", "packages": [{"name": "zlib"}]}`
	doc, err := Parse(strings.NewReader(in))
	if err != nil || len(doc.Components) != 1 {
		t.Fatalf("Parse(SPDX with a byte order mark) = %v, %v; want one component", doc, err)
	}
}

func mustParseFile(t testing.TB, name string) *Document {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := Parse(f)
	if err != nil {
		t.Fatalf("Parse(%s) = %v", name, err)
	}
	return doc
}
