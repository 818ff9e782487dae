package sbom

import (
	"bytes"
	"fmt"

	cyclonedx "github.com/CycloneDX/cyclonedx-go"

	"github.com/rampart-iot/rampart"
)

// parseCycloneDX decodes a CycloneDX JSON document whose format and version were already checked.
func parseCycloneDX(data []byte, lim limits) (*Document, error) {
	var bom cyclonedx.BOM
	if err := cyclonedx.NewBOMDecoder(bytes.NewReader(data), cyclonedx.BOMFileFormatJSON).Decode(&bom); err != nil {
		return nil, fmt.Errorf("decode: %v: %w", err, rampart.ErrInvalid)
	}
	b := &builder{lim: lim}
	doc := &Document{Format: FormatCycloneDX, SpecVersion: bom.SpecVersion.String()}
	if bom.Metadata != nil && bom.Metadata.Component != nil {
		doc.Name = bom.Metadata.Component.Name
		if err := b.checkString(doc.Name); err != nil {
			return nil, fmt.Errorf("metadata.component name: %w", err)
		}
	}
	if bom.Components != nil {
		if err := b.addCycloneDX(*bom.Components, "components"); err != nil {
			return nil, err
		}
	}
	doc.Components = b.comps
	return doc, nil
}

// addCycloneDX adds comps and, after each, its nested components. path locates comps in the
// document for error messages ("components[3].components").
func (b *builder) addCycloneDX(comps []cyclonedx.Component, path string) error {
	for i := range comps {
		c := &comps[i]
		where := fmt.Sprintf("%s[%d]", path, i)
		out := Component{
			Name:    c.Name,
			Version: c.Version,
			PURL:    c.PackageURL,
			Type:    string(c.Type),
		}
		if c.Supplier != nil {
			out.Supplier = c.Supplier.Name
		}
		if c.Licenses != nil {
			for _, l := range *c.Licenses {
				if s := licenseString(l); s != "" {
					out.Licenses = append(out.Licenses, s)
				}
			}
		}
		if c.Hashes != nil {
			for _, h := range *c.Hashes {
				if err := addHash(&out.Hashes, string(h.Algorithm), h.Value); err != nil {
					return fmt.Errorf("%s %q: %w", where, clip(c.Name), err)
				}
			}
		}
		if err := b.add(where, out); err != nil {
			return err
		}
		if c.Components != nil {
			if err := b.addCycloneDX(*c.Components, where+".components"); err != nil {
				return err
			}
		}
	}
	return nil
}

// licenseString picks the most specific text of a license choice: an SPDX identifier, else a
// license name, else an expression.
func licenseString(l cyclonedx.LicenseChoice) string {
	if l.License != nil {
		if l.License.ID != "" {
			return l.License.ID
		}
		return l.License.Name
	}
	return l.Expression
}
