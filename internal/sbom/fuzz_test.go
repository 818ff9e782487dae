package sbom

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	cyclonedx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/go-cmp/cmp"
	packageurl "github.com/package-url/packageurl-go"

	"github.com/rampart-iot/rampart"
)

func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/*.json", "testdata/invalid/*"} {
		seeds, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range seeds {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := Parse(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, rampart.ErrInvalid) && !errors.Is(err, rampart.ErrTooLarge) {
				t.Fatalf("Parse(%q) = %v; want an error wrapping ErrInvalid or ErrTooLarge", data, err)
			}
			return
		}
		for _, c := range doc.Components {
			checkComponent(t, c)
		}

		// What Parse keeps survives a trip through CycloneDX: encoding the parsed components
		// and parsing them again gives the same components.
		again, err := Parse(bytes.NewReader(mustEncodeCycloneDX(t, doc)))
		if err != nil {
			t.Fatalf("Parse(re-encoded %q) = %v", data, err)
		}
		if diff := cmp.Diff(doc.Components, again.Components); diff != "" {
			t.Fatalf("re-encoding %q changed the components (-first +second):\n%s", data, diff)
		}
		if ch := Diff(doc.Components, again.Components); len(ch.Added)+len(ch.Removed)+len(ch.Changed) != 0 {
			t.Fatalf("Diff(components of %q, themselves) = %+v; want no changes", data, ch)
		}
	})
}

// checkComponent asserts what Parse promises about every component it returns.
func checkComponent(t *testing.T, c Component) {
	t.Helper()
	if strings.TrimSpace(c.Name) == "" {
		t.Errorf("accepted a component with no name: %+v", c)
	}
	if c.PURL != "" {
		p, err := packageurl.FromString(c.PURL)
		if err != nil {
			t.Errorf("accepted component %q with purl %q that does not parse: %v", c.Name, c.PURL, err)
		} else if s := p.ToString(); s != c.PURL {
			t.Errorf("component %q: purl %q is not canonical; round trip gives %q", c.Name, c.PURL, s)
		}
	}
	strs := append([]string{c.Name, c.Version, c.PURL, c.Type, c.Supplier}, c.Licenses...)
	for alg, h := range c.Hashes {
		strs = append(strs, alg, h)
	}
	for _, s := range strs {
		if len(s) > MaxStringLen || strings.ContainsFunc(s, unicode.IsControl) {
			t.Errorf("component %q: accepted string %q (too long or with a control character)", c.Name, s)
		}
	}
}

// mustEncodeCycloneDX writes doc's components as a flat CycloneDX 1.6 document. It marshals the
// BOM directly rather than through cyclonedx-go's encoder, which rewrites component types and
// hash algorithms that the target version does not know.
func mustEncodeCycloneDX(t testing.TB, doc *Document) []byte {
	t.Helper()
	comps := make([]cyclonedx.Component, 0, len(doc.Components))
	for _, c := range doc.Components {
		out := cyclonedx.Component{
			Type:       cyclonedx.ComponentType(c.Type),
			Name:       c.Name,
			Version:    c.Version,
			PackageURL: c.PURL,
		}
		if c.Supplier != "" {
			out.Supplier = &cyclonedx.OrganizationalEntity{Name: c.Supplier}
		}
		if len(c.Licenses) > 0 {
			ls := make(cyclonedx.Licenses, 0, len(c.Licenses))
			for _, l := range c.Licenses {
				ls = append(ls, cyclonedx.LicenseChoice{License: &cyclonedx.License{Name: l}})
			}
			out.Licenses = &ls
		}
		if len(c.Hashes) > 0 {
			var hs []cyclonedx.Hash
			for alg, v := range c.Hashes {
				hs = append(hs, cyclonedx.Hash{Algorithm: cyclonedx.HashAlgorithm(alg), Value: v})
			}
			out.Hashes = &hs
		}
		comps = append(comps, out)
	}
	bom := cyclonedx.BOM{
		BOMFormat:   cyclonedx.BOMFormat,
		SpecVersion: cyclonedx.SpecVersion1_6,
		Version:     1,
		Metadata:    &cyclonedx.Metadata{Component: &cyclonedx.Component{Type: cyclonedx.ComponentTypeFirmware, Name: doc.Name}},
		Components:  &comps,
	}
	data, err := json.Marshal(bom)
	if err != nil {
		t.Fatalf("encode %+v as CycloneDX: %v", doc, err)
	}
	return data
}
