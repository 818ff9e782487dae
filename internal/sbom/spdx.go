package sbom

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/rampart-iot/rampart"
)

// spdxDocument is the part of an SPDX 2.2/2.3 JSON document Parse reads.
type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	Name              string             `json:"name"`
	DocumentDescribes []string           `json:"documentDescribes"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxPackage struct {
	SPDXID                string            `json:"SPDXID"`
	Name                  string            `json:"name"`
	VersionInfo           string            `json:"versionInfo"`
	Supplier              string            `json:"supplier"`
	LicenseConcluded      string            `json:"licenseConcluded"`
	LicenseDeclared       string            `json:"licenseDeclared"`
	PrimaryPackagePurpose string            `json:"primaryPackagePurpose"`
	Checksums             []spdxChecksum    `json:"checksums"`
	ExternalRefs          []spdxExternalRef `json:"externalRefs"`
}

type spdxChecksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

type spdxExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	SPDXElementID      string `json:"spdxElementId"`
	RelationshipType   string `json:"relationshipType"`
	RelatedSPDXElement string `json:"relatedSpdxElement"`
}

// parseSPDX decodes an SPDX JSON document whose version was already checked.
func parseSPDX(data []byte, lim limits) (*Document, error) {
	var sd spdxDocument
	if err := json.Unmarshal(data, &sd); err != nil {
		return nil, fmt.Errorf("decode: %v: %w", err, rampart.ErrInvalid)
	}
	doc := &Document{Format: FormatSPDX, SpecVersion: sd.SPDXVersion, Name: sd.Name}
	subject := sd.subject()
	b := &builder{lim: lim}
	for i, p := range sd.Packages {
		if subject != "" && p.SPDXID == subject {
			// The firmware itself, like CycloneDX's metadata.component: not one of its parts.
			doc.Name = p.Name
			continue
		}
		where := fmt.Sprintf("packages[%d]", i)
		c := Component{
			Name:     p.Name,
			Version:  p.VersionInfo,
			Type:     strings.ToLower(p.PrimaryPackagePurpose),
			Supplier: spdxSupplier(p.Supplier),
		}
		for _, ref := range p.ExternalRefs {
			if ref.ReferenceType == "purl" {
				c.PURL = ref.ReferenceLocator
				break // a package is one package; a second purl would be an alias
			}
		}
		for _, l := range []string{p.LicenseDeclared, p.LicenseConcluded} {
			if l != "" && l != "NOASSERTION" && l != "NONE" && !slices.Contains(c.Licenses, l) {
				c.Licenses = append(c.Licenses, l)
			}
		}
		for _, h := range p.Checksums {
			if err := addHash(&c.Hashes, spdxHashAlgorithm(h.Algorithm), h.ChecksumValue); err != nil {
				return nil, fmt.Errorf("%s %q: %w", where, clip(p.Name), err)
			}
		}
		if err := b.add(where, c); err != nil {
			return nil, err
		}
	}
	if err := b.checkString(doc.Name); err != nil {
		return nil, fmt.Errorf("name: %w", err)
	}
	doc.Components = b.comps
	return doc, nil
}

// subject returns the SPDXID of the one package the document describes, or "" if it describes
// none or several (then every package counts as a component).
func (sd *spdxDocument) subject() string {
	described := map[string]bool{}
	for _, id := range sd.DocumentDescribes {
		described[id] = true
	}
	for _, r := range sd.Relationships {
		switch {
		case r.RelationshipType == "DESCRIBES" && r.SPDXElementID == "SPDXRef-DOCUMENT":
			described[r.RelatedSPDXElement] = true
		case r.RelationshipType == "DESCRIBED_BY" && r.RelatedSPDXElement == "SPDXRef-DOCUMENT":
			described[r.SPDXElementID] = true
		}
	}
	if len(described) != 1 {
		return ""
	}
	for id := range described {
		return id
	}
	return ""
}

// spdxSupplier strips the "Organization:" or "Person:" prefix; NOASSERTION becomes "".
func spdxSupplier(s string) string {
	s = strings.TrimSpace(s)
	if s == "NOASSERTION" {
		return ""
	}
	for _, prefix := range []string{"Organization:", "Person:", "Tool:"} {
		if rest, ok := strings.CutPrefix(s, prefix); ok {
			return strings.TrimSpace(rest)
		}
	}
	return s
}

// spdxHashAlgorithm spells SPDX's checksum algorithms as CycloneDX does, so that hashes compare
// across formats.
func spdxHashAlgorithm(alg string) string {
	switch alg {
	case "SHA1":
		return "SHA-1"
	case "SHA256":
		return "SHA-256"
	case "SHA384":
		return "SHA-384"
	case "SHA512":
		return "SHA-512"
	}
	return alg
}
