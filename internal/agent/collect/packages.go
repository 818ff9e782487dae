package collect

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/package-url/packageurl-go"

	"github.com/rampart-iot/rampart"
)

// Limits on what a parser accepts. A device's database is outside input to the server, and the
// agent itself runs on small devices, so neither may let it grow without bound.
const (
	maxLineLen  = 64 << 10 // bytes in one line
	maxPackages = 20_000   // installed packages in one database
	// maxValueLen bounds every value a parser keeps (name, version, arch, source package), so
	// maxPackages packages stay within a few megabytes whatever the input.
	maxValueLen = 256
)

// Package is one installed package, as a package database records it.
type Package struct {
	Name    string // binary package name
	Version string // as the database spells it, epoch included: "1:2.38.1-5+deb12u3"
	Arch    string // as the database spells it: "amd64", "all", "mipsel_24kc", "x86_64"; may be empty
	// Source is the database the package came from: "dpkg", "opkg" or "apk".
	Source string
	// SourcePackage is the source package the binary package was built from: dpkg's Source field
	// (without its version; the package's own name when the field is absent, as dpkg defines) or
	// apk's origin. Empty when the database does not record it, as opkg does not.
	SourcePackage string
	// PURL is the package URL; the package comment lists the conventions.
	PURL string
}

// ParseDpkgStatus parses a Debian dpkg status database (/var/lib/dpkg/status) and returns the
// packages whose Status says they are installed.
//
// It refuses a line longer than 64 KiB, more than 20,000 installed packages, a malformed line,
// and an installed package without a valid name or version (at most 256 bytes each). The error
// wraps rampart.ErrTooLarge or rampart.ErrInvalid and gives the line number.
func ParseDpkgStatus(r io.Reader) ([]Package, error) {
	pkgs, err := parseControlDB(r, "dpkg", false, func(name, version, arch string) string {
		return buildPURL(packageurl.TypeDebian, "debian", name, version, packageurl.Qualifiers{
			{Key: "arch", Value: arch},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("parse dpkg status: %w", err)
	}
	return pkgs, nil
}

// ParseOpkgStatus parses an opkg status database (/usr/lib/opkg/status on OpenWrt, also used by
// Yocto builds) and returns the packages whose Status says they are installed. Its limits and
// errors are those of ParseDpkgStatus, except that names may contain upper-case letters.
func ParseOpkgStatus(r io.Reader) ([]Package, error) {
	pkgs, err := parseControlDB(r, "opkg", true, func(name, version, arch string) string {
		return buildPURL(packageurl.TypeGeneric, "", name, version, packageurl.Qualifiers{
			{Key: "arch", Value: arch},
			{Key: "distro", Value: "openwrt"},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("parse opkg status: %w", err)
	}
	return pkgs, nil
}

// ParseApkInstalled parses an Alpine apk database (/lib/apk/db/installed), whose records are
// blank-line separated "X:value" lines; every record is an installed package. Its limits and
// errors are those of ParseDpkgStatus.
func ParseApkInstalled(r io.Reader) ([]Package, error) {
	pkgs, err := parseApk(r)
	if err != nil {
		return nil, fmt.Errorf("parse apk database: %w", err)
	}
	return pkgs, nil
}

func buildPURL(typ, namespace, name, version string, q packageurl.Qualifiers) string {
	kept := q[:0]
	for _, qq := range q {
		if qq.Value != "" {
			kept = append(kept, qq)
		}
	}
	return packageurl.NewPackageURL(typ, namespace, name, version, kept, "").ToString()
}

// parseControlDB parses a dpkg-style status file: RFC 822-like stanzas separated by blank lines,
// where a line starting with a space or tab continues the previous field. Only the fields a
// Package needs are kept; continuation lines are skipped, since none of those fields spans lines.
func parseControlDB(r io.Reader, db string, upperNames bool, purl func(name, version, arch string) string) ([]Package, error) {
	var (
		pkgs   []Package
		fields = map[string]string{}
		start  int // line the current stanza started on; 0 between stanzas
	)
	finish := func() error {
		if start == 0 {
			return nil
		}
		defer func() { clear(fields); start = 0 }()
		status, ok := fields["status"]
		if !ok {
			return lineError(start, "stanza has no Status field")
		}
		if !strings.HasSuffix(status, " installed") {
			return nil
		}
		p, err := newPackage(db, upperNames, fields["package"], fields["version"], fields["architecture"], sourceName(fields["source"]))
		if err != nil {
			return fmt.Errorf("line %d: %w", start, err)
		}
		if p.SourcePackage == "" && db == "dpkg" {
			p.SourcePackage = p.Name
		}
		if len(pkgs) == maxPackages {
			return fmt.Errorf("more than %d installed packages: %w", maxPackages, rampart.ErrTooLarge)
		}
		p.PURL = purl(p.Name, p.Version, p.Arch)
		pkgs = append(pkgs, p)
		return nil
	}

	ls := newLineScanner(r)
	for ls.scan() {
		line := ls.line()
		if isBlank(line) {
			if err := finish(); err != nil {
				return nil, err
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if start == 0 {
				return nil, lineError(ls.n, "continuation line outside a stanza")
			}
			continue
		}
		key, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !validFieldName(key) {
			return nil, lineError(ls.n, `want "Field: value"`)
		}
		if start == 0 {
			start = ls.n
		}
		k := fieldKey(key)
		if k == "" {
			continue
		}
		if _, dup := fields[k]; dup {
			return nil, lineError(ls.n, fmt.Sprintf("field %s repeated in one stanza", key))
		}
		fields[k] = string(bytes.Trim(value, " \t"))
	}
	if err := ls.err(); err != nil {
		return nil, err
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return pkgs, nil
}

// fieldKey returns the lower-case name of a field parseControlDB keeps, or "" for any other
// field. Field names are case-insensitive.
func fieldKey(key []byte) string {
	for _, k := range [...]string{"package", "status", "version", "architecture", "source"} {
		if len(key) == len(k) && strings.EqualFold(string(key), k) {
			return k
		}
	}
	return ""
}

// validFieldName reports whether name is a deb822 field name: printable ASCII without spaces or
// colons, not starting with '#' or '-'.
func validFieldName(name []byte) bool {
	if len(name) == 0 || name[0] == '#' || name[0] == '-' {
		return false
	}
	for _, c := range name {
		if c <= ' ' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}

// sourceName strips the " (version)" suffix from a dpkg Source field.
func sourceName(source string) string {
	name, _, _ := strings.Cut(source, " ")
	return name
}

func parseApk(r io.Reader) ([]Package, error) {
	var (
		pkgs  []Package
		start int
		rec   = map[byte]string{}
	)
	finish := func() error {
		if start == 0 {
			return nil
		}
		defer func() { clear(rec); start = 0 }()
		p, err := newPackage("apk", false, rec['P'], rec['V'], rec['A'], rec['o'])
		if err != nil {
			return fmt.Errorf("line %d: %w", start, err)
		}
		if len(pkgs) == maxPackages {
			return fmt.Errorf("more than %d installed packages: %w", maxPackages, rampart.ErrTooLarge)
		}
		p.PURL = buildPURL(packageurl.TypeApk, "alpine", p.Name, p.Version, packageurl.Qualifiers{
			{Key: "arch", Value: p.Arch},
		})
		pkgs = append(pkgs, p)
		return nil
	}

	ls := newLineScanner(r)
	for ls.scan() {
		line := ls.line()
		if isBlank(line) {
			if err := finish(); err != nil {
				return nil, err
			}
			continue
		}
		if len(line) < 2 || line[1] != ':' || line[0] <= ' ' || line[0] > '~' {
			return nil, lineError(ls.n, `want "X:value"`)
		}
		if start == 0 {
			start = ls.n
		}
		switch k := line[0]; k {
		case 'P', 'V', 'A', 'o':
			if _, dup := rec[k]; dup {
				return nil, lineError(ls.n, fmt.Sprintf("field %c repeated in one record", k))
			}
			rec[k] = string(bytes.Trim(line[2:], " \t"))
		}
	}
	if err := ls.err(); err != nil {
		return nil, err
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return pkgs, nil
}

// newPackage checks the values a database recorded for one installed package. Names and
// versions end up in package URLs, SQL and the dashboard, so only the characters the package
// managers themselves allow get through.
func newPackage(db string, upperNames bool, name, version, arch, source string) (Package, error) {
	if name == "" {
		return Package{}, fmt.Errorf("installed package has no name: %w", rampart.ErrInvalid)
	}
	if !validName(name, upperNames) {
		return Package{}, fmt.Errorf("invalid package name %q: %w", clip(name), rampart.ErrInvalid)
	}
	if version == "" {
		return Package{}, fmt.Errorf("package %s has no version: %w", name, rampart.ErrInvalid)
	}
	if !validVersion(version) {
		return Package{}, fmt.Errorf("package %s: invalid version %q: %w", name, clip(version), rampart.ErrInvalid)
	}
	if arch != "" && !validName(arch, true) {
		return Package{}, fmt.Errorf("package %s: invalid architecture %q: %w", name, clip(arch), rampart.ErrInvalid)
	}
	if source != "" && !validName(source, upperNames) {
		return Package{}, fmt.Errorf("package %s: invalid source package %q: %w", name, clip(source), rampart.ErrInvalid)
	}
	return Package{Name: name, Version: version, Arch: arch, Source: db, SourcePackage: source}, nil
}

// validName reports whether s is a package (or architecture) name: an ASCII letter or digit,
// then letters, digits and "+-._". Debian and Alpine allow only lower-case letters, and their
// package URL types fold case, so upper-case letters are refused for them.
func validName(s string, upper bool) bool {
	if len(s) > maxValueLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c >= 'A' && c <= 'Z':
			if !upper {
				return false
			}
		case i > 0 && (c == '+' || c == '-' || c == '.' || c == '_'):
		default:
			return false
		}
	}
	return s != ""
}

// validVersion reports whether s is a plausible version: printable ASCII without spaces. The
// package managers' own version syntaxes are stricter, but this parser does not compare versions.
func validVersion(s string) bool {
	if s == "" || len(s) > maxValueLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// clip shortens a refused value for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func isBlank(line []byte) bool {
	return len(bytes.Trim(line, " \t")) == 0
}

func lineError(n int, msg string) error {
	return fmt.Errorf("line %d: %s: %w", n, msg, rampart.ErrInvalid)
}

// lineScanner reads lines of at most maxLineLen bytes, without their "\n" or "\r\n", counting
// them from 1 for error messages.
type lineScanner struct {
	sc      *bufio.Scanner
	n       int
	tooLong bool
}

func newLineScanner(r io.Reader) *lineScanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLineLen+2)
	return &lineScanner{sc: sc}
}

func (ls *lineScanner) scan() bool {
	ok := ls.sc.Scan()
	if ok || errors.Is(ls.sc.Err(), bufio.ErrTooLong) {
		ls.n++
	}
	if ok && len(ls.sc.Bytes()) > maxLineLen {
		ls.tooLong = true
		return false
	}
	return ok
}

// line returns the current line; it is valid until the next scan.
func (ls *lineScanner) line() []byte { return ls.sc.Bytes() }

func (ls *lineScanner) err() error {
	if ls.tooLong || errors.Is(ls.sc.Err(), bufio.ErrTooLong) {
		return fmt.Errorf("line %d: longer than %d bytes: %w", ls.n, maxLineLen, rampart.ErrTooLarge)
	}
	return ls.sc.Err()
}
