// Package sbom reads the software bill of materials attached to a release and turns it into a
// flat list of components, and compares two such lists.
//
// It accepts CycloneDX JSON (spec 1.2 to 1.6) and SPDX JSON (2.2 and 2.3), and refuses anything
// else, including malformed or oversized documents, with an error wrapping rampart.ErrInvalid or
// rampart.ErrTooLarge. The document's own subject (CycloneDX metadata.component, or the single
// package an SPDX document describes) is the firmware itself and is not one of its components;
// nested CycloneDX components are flattened. Package URLs are validated and put in canonical form,
// so that later stages can match them against advisories by string.
//
// It is not a full SBOM model: dependencies, services, vulnerabilities, files and properties are
// ignored, and it neither stores components nor matches them against advisories (see vuln). It
// does no I/O beyond reading the reader it is given.
package sbom

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	packageurl "github.com/package-url/packageurl-go"

	"github.com/rampart-iot/rampart"
)

// Limits on what Parse accepts. Callers that receive an SBOM over the network can use MaxSize to
// bound the body before it reaches Parse.
const (
	// MaxSize is the largest SBOM Parse reads, in bytes.
	MaxSize = 64 << 20
	// MaxComponents is the most components, nested ones included, a document may hold.
	MaxComponents = 100_000
	// MaxStringLen is the longest name, version, purl, type, supplier, license or hash Parse
	// keeps, in bytes.
	MaxStringLen = 4 << 10
	// MaxDepth is the deepest nesting of JSON objects and arrays Parse accepts.
	MaxDepth = 128
)

// Formats reported in Document.Format.
const (
	FormatCycloneDX = "cyclonedx"
	FormatSPDX      = "spdx"
)

// Document is a parsed SBOM: what it describes and the components it lists.
type Document struct {
	// Format is FormatCycloneDX or FormatSPDX.
	Format string
	// SpecVersion is the version of the format, such as "1.5" or "SPDX-2.3".
	SpecVersion string
	// Name is the name of what the SBOM describes (CycloneDX metadata.component.name, or the SPDX
	// document name); it may be empty.
	Name string
	// Components are in document order, a nested CycloneDX component right after its parent.
	Components []Component
}

// Component is one package, library or other part listed in an SBOM.
type Component struct {
	Name    string
	Version string
	// PURL is the package URL in canonical form, or empty if the SBOM gave none.
	PURL string
	// Type is the CycloneDX component type ("library", "operating-system", …); for SPDX it is the
	// primaryPackagePurpose in lower case. It may be empty.
	Type string
	// Supplier is the supplier's name without SPDX's "Organization:" or "Person:" prefix.
	Supplier string
	// Licenses are SPDX license identifiers, license names or expressions, in document order.
	Licenses []string
	// Hashes maps an algorithm in CycloneDX spelling ("SHA-256") to its value; nil if none.
	Hashes map[string]string
}

// limits are the bounds Parse applies; tests shrink them to exercise them cheaply.
type limits struct {
	size, components, stringLen, depth int
}

var defaultLimits = limits{size: MaxSize, components: MaxComponents, stringLen: MaxStringLen, depth: MaxDepth}

// Parse reads one CycloneDX or SPDX JSON document from r and returns its components.
//
// Errors wrap rampart.ErrTooLarge when the document is over a limit (see MaxSize and the other
// constants) and rampart.ErrInvalid when it is not a supported, well-formed SBOM; other errors
// come from reading r.
func Parse(r io.Reader) (*Document, error) {
	return parse(r, defaultLimits)
}

func parse(r io.Reader, lim limits) (*Document, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(lim.size)+1))
	if err != nil {
		return nil, fmt.Errorf("parse sbom: read: %w", err)
	}
	if len(data) > lim.size {
		return nil, fmt.Errorf("parse sbom: larger than %d bytes: %w", lim.size, rampart.ErrTooLarge)
	}
	data = trimBOM(data)
	if err := checkDepth(data, lim.depth); err != nil {
		return nil, fmt.Errorf("parse sbom: %w", err)
	}

	// Sniff the format first so that the error for a document of the wrong kind or version
	// says so, rather than whatever the full decoder trips over.
	var head struct {
		BOMFormat   *string         `json:"bomFormat"`
		SpecVersion json.RawMessage `json:"specVersion"`
		SPDXVersion *string         `json:"spdxVersion"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("parse sbom: not a JSON object: %v: %w", err, rampart.ErrInvalid)
	}
	var doc *Document
	switch {
	case head.BOMFormat != nil && head.SPDXVersion != nil:
		return nil, fmt.Errorf("parse sbom: has both bomFormat and spdxVersion: %w", rampart.ErrInvalid)
	case head.BOMFormat != nil:
		if *head.BOMFormat != "CycloneDX" {
			return nil, fmt.Errorf("parse sbom: bomFormat %q is not \"CycloneDX\": %w", clip(*head.BOMFormat), rampart.ErrInvalid)
		}
		if len(head.SpecVersion) == 0 {
			return nil, fmt.Errorf("parse sbom: CycloneDX document has no specVersion: %w", rampart.ErrInvalid)
		}
		var v string
		if err := json.Unmarshal(head.SpecVersion, &v); err != nil || !supportedCycloneDX(v) {
			return nil, fmt.Errorf("parse sbom: CycloneDX specVersion %s is not supported (want 1.2 to 1.6): %w", clip(string(head.SpecVersion)), rampart.ErrInvalid)
		}
		doc, err = parseCycloneDX(data, lim)
	case head.SPDXVersion != nil:
		v := *head.SPDXVersion
		if v != "SPDX-2.2" && v != "SPDX-2.3" {
			return nil, fmt.Errorf("parse sbom: spdxVersion %q is not supported (want SPDX-2.2 or SPDX-2.3): %w", clip(v), rampart.ErrInvalid)
		}
		doc, err = parseSPDX(data, lim)
	default:
		return nil, fmt.Errorf("parse sbom: neither CycloneDX JSON (bomFormat) nor SPDX JSON (spdxVersion): %w", rampart.ErrInvalid)
	}
	if err != nil {
		return nil, fmt.Errorf("parse sbom: %s: %w", formatName(head.BOMFormat != nil), err)
	}
	return doc, nil
}

func formatName(cyclonedx bool) string {
	if cyclonedx {
		return "CycloneDX"
	}
	return "SPDX"
}

func supportedCycloneDX(v string) bool {
	switch v {
	case "1.2", "1.3", "1.4", "1.5", "1.6":
		return true
	}
	return false
}

// checkDepth refuses JSON nested deeper than max. encoding/json's own limit is 10,000 levels,
// far more than any SBOM needs and enough to make flattening expensive.
func checkDepth(data []byte, max int) error {
	depth, inString, escaped := 0, false, false
	for _, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			if depth > max {
				return fmt.Errorf("JSON nested deeper than %d levels: %w", max, rampart.ErrTooLarge)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// builder collects components, applying the checks and normalisation both formats share.
type builder struct {
	lim   limits
	comps []Component
}

// add validates c (described by where, for error messages) and appends it.
func (b *builder) add(where string, c Component) error {
	if len(b.comps) >= b.lim.components {
		return fmt.Errorf("more than %d components: %w", b.lim.components, rampart.ErrTooLarge)
	}
	if strings.TrimSpace(c.Name) == "" {
		return fmt.Errorf("%s: no name: %w", where, rampart.ErrInvalid)
	}
	where = fmt.Sprintf("%s %q", where, clip(c.Name))
	type field struct{ what, s string }
	fields := []field{{"name", c.Name}, {"version", c.Version}, {"purl", c.PURL}, {"type", c.Type}, {"supplier", c.Supplier}}
	for _, l := range c.Licenses {
		fields = append(fields, field{"license", l})
	}
	for alg, h := range c.Hashes {
		fields = append(fields, field{"hash algorithm", alg}, field{"hash", h})
	}
	for _, f := range fields {
		if err := b.checkString(f.s); err != nil {
			return fmt.Errorf("%s: %s: %w", where, f.what, err)
		}
	}
	if c.PURL != "" {
		canon, err := canonicalPURL(c.PURL)
		if err != nil {
			return fmt.Errorf("%s: purl %q: %v: %w", where, clip(c.PURL), err, rampart.ErrInvalid)
		}
		c.PURL = canon
	}
	b.comps = append(b.comps, c)
	return nil
}

func (b *builder) checkString(s string) error {
	if len(s) > b.lim.stringLen {
		return fmt.Errorf("longer than %d bytes: %w", b.lim.stringLen, rampart.ErrTooLarge)
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		return fmt.Errorf("control character %U at byte %d: %w", []rune(s[i:])[0], i, rampart.ErrInvalid)
	}
	return nil
}

// canonicalPURL parses s and returns its canonical string. It refuses a purl whose canonical form
// does not parse back to itself, because stored purls are compared as strings.
func canonicalPURL(s string) (string, error) {
	p, err := packageurl.FromString(s)
	if err != nil {
		return "", err
	}
	canon := p.ToString()
	again, err := packageurl.FromString(canon)
	if err != nil || again.ToString() != canon {
		return "", errors.New("has no stable canonical form")
	}
	return canon, nil
}

// clip shortens s for an error message, so a hostile document cannot make its errors huge.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// addHash records one hash, refusing two different values for the same algorithm.
func addHash(hashes *map[string]string, alg, value string) error {
	if *hashes == nil {
		*hashes = make(map[string]string)
	}
	if old, ok := (*hashes)[alg]; ok && old != value {
		return fmt.Errorf("two different %s hashes: %w", clip(alg), rampart.ErrInvalid)
	}
	(*hashes)[alg] = value
	return nil
}

// trimBOM drops a UTF-8 byte order mark, which some tools write and encoding/json refuses.
func trimBOM(data []byte) []byte {
	return bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
}
