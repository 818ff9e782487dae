package collect

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/package-url/packageurl-go"

	"github.com/rampart-iot/rampart"
)

type parser struct {
	name  string
	parse func(io.Reader) ([]Package, error)
	dir   string // under testdata/
	db    string // Package.Source it sets
	typ   string // purl type it produces
}

var (
	dpkgParser = parser{"ParseDpkgStatus", ParseDpkgStatus, "dpkg", "dpkg", packageurl.TypeDebian}
	opkgParser = parser{"ParseOpkgStatus", ParseOpkgStatus, "opkg", "opkg", packageurl.TypeGeneric}
	apkParser  = parser{"ParseApkInstalled", ParseApkInstalled, "apk", "apk", packageurl.TypeApk}
)

func TestParsePackageDatabases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		parser  parser
		file    string
		want    []Package
		wantErr error  // kind the error must wrap
		errText string // and text it must contain
	}{
		{parser: dpkgParser, file: "debian12.status", want: []Package{
			{Name: "adduser", Version: "3.134", Arch: "all", Source: "dpkg", SourcePackage: "adduser", PURL: "pkg:deb/debian/adduser@3.134?arch=all"},
			{Name: "base-files", Version: "12.4+deb12u11", Arch: "amd64", Source: "dpkg", SourcePackage: "base-files", PURL: "pkg:deb/debian/base-files@12.4%2Bdeb12u11?arch=amd64"},
			{Name: "bash", Version: "5.2.15-2+b8", Arch: "amd64", Source: "dpkg", SourcePackage: "bash", PURL: "pkg:deb/debian/bash@5.2.15-2%2Bb8?arch=amd64"},
			{Name: "bsdutils", Version: "1:2.38.1-5+deb12u3", Arch: "amd64", Source: "dpkg", SourcePackage: "util-linux", PURL: "pkg:deb/debian/bsdutils@1:2.38.1-5%2Bdeb12u3?arch=amd64"},
			{Name: "ca-certificates", Version: "20230311+deb12u1", Arch: "all", Source: "dpkg", SourcePackage: "ca-certificates", PURL: "pkg:deb/debian/ca-certificates@20230311%2Bdeb12u1?arch=all"},
			{Name: "coreutils", Version: "9.1-1", Arch: "amd64", Source: "dpkg", SourcePackage: "coreutils", PURL: "pkg:deb/debian/coreutils@9.1-1?arch=amd64"},
			{Name: "debconf", Version: "1.5.82", Arch: "all", Source: "dpkg", SourcePackage: "debconf", PURL: "pkg:deb/debian/debconf@1.5.82?arch=all"},
			{Name: "gcc-12-base", Version: "12.2.0-14+deb12u1", Arch: "amd64", Source: "dpkg", SourcePackage: "gcc-12", PURL: "pkg:deb/debian/gcc-12-base@12.2.0-14%2Bdeb12u1?arch=amd64"},
			{Name: "libc6", Version: "2.36-9+deb12u14", Arch: "amd64", Source: "dpkg", SourcePackage: "glibc", PURL: "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64"},
			{Name: "libgcc-s1", Version: "12.2.0-14+deb12u1", Arch: "amd64", Source: "dpkg", SourcePackage: "gcc-12", PURL: "pkg:deb/debian/libgcc-s1@12.2.0-14%2Bdeb12u1?arch=amd64"},
			{Name: "libssl3", Version: "3.0.19-1~deb12u2", Arch: "amd64", Source: "dpkg", SourcePackage: "openssl", PURL: "pkg:deb/debian/libssl3@3.0.19-1~deb12u2?arch=amd64"},
			{Name: "openssl", Version: "3.0.19-1~deb12u2", Arch: "amd64", Source: "dpkg", SourcePackage: "openssl", PURL: "pkg:deb/debian/openssl@3.0.19-1~deb12u2?arch=amd64"},
			{Name: "tzdata", Version: "2025b-0+deb12u2", Arch: "all", Source: "dpkg", SourcePackage: "tzdata", PURL: "pkg:deb/debian/tzdata@2025b-0%2Bdeb12u2?arch=all"},
			{Name: "zlib1g", Version: "1:1.2.13.dfsg-1", Arch: "amd64", Source: "dpkg", SourcePackage: "zlib", PURL: "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64"},
		}},
		{parser: dpkgParser, file: "states.status", want: []Package{
			{Name: "held-pkg", Version: "2.0-1", Arch: "arm64", Source: "dpkg", SourcePackage: "held-pkg", PURL: "pkg:deb/debian/held-pkg@2.0-1?arch=arm64"},
			{Name: "libfoo1", Version: "1.2-3+b1", Arch: "armhf", Source: "dpkg", SourcePackage: "foo", PURL: "pkg:deb/debian/libfoo1@1.2-3%2Bb1?arch=armhf"},
		}},
		{parser: dpkgParser, file: "crlf.status", want: []Package{
			{Name: "libbar", Version: "1:0.5-2", Arch: "mips", Source: "dpkg", SourcePackage: "libbar", PURL: "pkg:deb/debian/libbar@1:0.5-2?arch=mips"},
			{Name: "bar-utils", Version: "1:0.5-2", Arch: "mips", Source: "dpkg", SourcePackage: "bar", PURL: "pkg:deb/debian/bar-utils@1:0.5-2?arch=mips"},
		}},
		{parser: dpkgParser, file: "whitespace.status", want: []Package{
			{Name: "weird", Version: "1.0~rc1-1", Arch: "all", Source: "dpkg", SourcePackage: "weird", PURL: "pkg:deb/debian/weird@1.0~rc1-1?arch=all"},
			{Name: "second", Version: "2", Source: "dpkg", SourcePackage: "second", PURL: "pkg:deb/debian/second@2"},
		}},
		{parser: dpkgParser, file: "no-final-newline.status", want: []Package{
			{Name: "last", Version: "3.1", Arch: "amd64", Source: "dpkg", SourcePackage: "last", PURL: "pkg:deb/debian/last@3.1?arch=amd64"},
		}},
		{parser: dpkgParser, file: "truncated.status", wantErr: rampart.ErrInvalid, errText: `line 8: want "Field: value"`},
		{parser: dpkgParser, file: "noversion.status", wantErr: rampart.ErrInvalid, errText: "line 1: package noversion has no version"},
		{parser: dpkgParser, file: "uppercase.status", wantErr: rampart.ErrInvalid, errText: `invalid package name "Upper"`},
		{parser: dpkgParser, file: "duplicate-field.status", wantErr: rampart.ErrInvalid, errText: "line 4: field Version repeated"},
		{parser: dpkgParser, file: "orphan-continuation.status", wantErr: rampart.ErrInvalid, errText: "line 1: continuation line outside a stanza"},
		{parser: dpkgParser, file: "nostatus.status", wantErr: rampart.ErrInvalid, errText: "line 1: stanza has no Status field"},

		{parser: opkgParser, file: "openwrt23.status", want: []Package{
			{Name: "libc", Version: "1.2.4-4", Arch: "mipsel_24kc", Source: "opkg", PURL: "pkg:generic/libc@1.2.4-4?arch=mipsel_24kc&distro=openwrt"},
			{Name: "libgcc1", Version: "12.3.0-4", Arch: "mipsel_24kc", Source: "opkg", PURL: "pkg:generic/libgcc1@12.3.0-4?arch=mipsel_24kc&distro=openwrt"},
			{Name: "busybox", Version: "1.36.1-1", Arch: "mipsel_24kc", Source: "opkg", PURL: "pkg:generic/busybox@1.36.1-1?arch=mipsel_24kc&distro=openwrt"},
			{Name: "base-files", Version: "1539-r23630-842932a63d", Arch: "mipsel_24kc", Source: "opkg", PURL: "pkg:generic/base-files@1539-r23630-842932a63d?arch=mipsel_24kc&distro=openwrt"},
			{Name: "dropbear", Version: "2022.82-6", Arch: "mipsel_24kc", Source: "opkg", PURL: "pkg:generic/dropbear@2022.82-6?arch=mipsel_24kc&distro=openwrt"},
			{Name: "kernel", Version: "5.15.137-1-0d6a8e9b1f2e3c4d5a6b7c8d9e0f1a2b", Arch: "mipsel_24kc", Source: "opkg", PURL: "pkg:generic/kernel@5.15.137-1-0d6a8e9b1f2e3c4d5a6b7c8d9e0f1a2b?arch=mipsel_24kc&distro=openwrt"},
			{Name: "kmod-nf-conntrack", Version: "5.15.137-1", Arch: "mipsel_24kc", Source: "opkg", PURL: "pkg:generic/kmod-nf-conntrack@5.15.137-1?arch=mipsel_24kc&distro=openwrt"},
			{Name: "libopenssl3", Version: "3.0.12-1", Arch: "mipsel_24kc", Source: "opkg", PURL: "pkg:generic/libopenssl3@3.0.12-1?arch=mipsel_24kc&distro=openwrt"},
			{Name: "luci-app-firewall", Version: "git-23.314.29898-92a8d5f", Arch: "all", Source: "opkg", PURL: "pkg:generic/luci-app-firewall@git-23.314.29898-92a8d5f?arch=all&distro=openwrt"},
			{Name: "wpad-basic-mbedtls", Version: "2023-09-08-e5ccbfc6-6", Arch: "mipsel_24kc", Source: "opkg", PURL: "pkg:generic/wpad-basic-mbedtls@2023-09-08-e5ccbfc6-6?arch=mipsel_24kc&distro=openwrt"},
			// Marked for removal but still installed.
			{Name: "uhttpd", Version: "2023-06-25-34a8a74d-2", Arch: "mipsel_24kc", Source: "opkg", PURL: "pkg:generic/uhttpd@2023-06-25-34a8a74d-2?arch=mipsel_24kc&distro=openwrt"},
		}},
		{parser: opkgParser, file: "crlf.status", want: []Package{
			{Name: "dnsmasq", Version: "2.89-4", Arch: "aarch64_cortex-a53", Source: "opkg", PURL: "pkg:generic/dnsmasq@2.89-4?arch=aarch64_cortex-a53&distro=openwrt"},
			{Name: "odhcpd-ipv6only", Version: "2023-10-24-d8118f6e-1", Arch: "aarch64_cortex-a53", Source: "opkg", PURL: "pkg:generic/odhcpd-ipv6only@2023-10-24-d8118f6e-1?arch=aarch64_cortex-a53&distro=openwrt"},
		}},
		{parser: opkgParser, file: "uppercase.status", want: []Package{
			{Name: "kmod-MT7915e", Version: "5.15.137+2023-09-18-1", Arch: "aarch64_cortex-a53", Source: "opkg", PURL: "pkg:generic/kmod-MT7915e@5.15.137%2B2023-09-18-1?arch=aarch64_cortex-a53&distro=openwrt"},
		}},
		{parser: opkgParser, file: "noversion.status", wantErr: rampart.ErrInvalid, errText: "package noversion has no version"},
		{parser: opkgParser, file: "truncated.status", wantErr: rampart.ErrInvalid, errText: "line 6: stanza has no Status field"},

		{parser: apkParser, file: "alpine319.installed", want: []Package{
			{Name: "musl", Version: "1.2.4_git20230717-r4", Arch: "x86_64", Source: "apk", SourcePackage: "musl", PURL: "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64"},
			{Name: "busybox", Version: "1.36.1-r15", Arch: "x86_64", Source: "apk", SourcePackage: "busybox", PURL: "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64"},
			{Name: "alpine-baselayout-data", Version: "3.4.3-r2", Arch: "x86_64", Source: "apk", SourcePackage: "alpine-baselayout", PURL: "pkg:apk/alpine/alpine-baselayout-data@3.4.3-r2?arch=x86_64"},
			{Name: "libcrypto3", Version: "3.1.4-r5", Arch: "x86_64", Source: "apk", SourcePackage: "openssl", PURL: "pkg:apk/alpine/libcrypto3@3.1.4-r5?arch=x86_64"},
			{Name: "libssl3", Version: "3.1.4-r5", Arch: "x86_64", Source: "apk", SourcePackage: "openssl", PURL: "pkg:apk/alpine/libssl3@3.1.4-r5?arch=x86_64"},
			{Name: "ca-certificates-bundle", Version: "20240226-r0", Arch: "x86_64", Source: "apk", SourcePackage: "ca-certificates", PURL: "pkg:apk/alpine/ca-certificates-bundle@20240226-r0?arch=x86_64"},
			{Name: "zlib", Version: "1.3.1-r0", Arch: "x86_64", Source: "apk", SourcePackage: "zlib", PURL: "pkg:apk/alpine/zlib@1.3.1-r0?arch=x86_64"},
		}},
		{parser: apkParser, file: "crlf.installed", want: []Package{
			{Name: "musl", Version: "1.2.4-r2", Arch: "armv7", Source: "apk", SourcePackage: "musl", PURL: "pkg:apk/alpine/musl@1.2.4-r2?arch=armv7"},
			{Name: "busybox", Version: "1.36.1-r15", Arch: "armv7", Source: "apk", SourcePackage: "busybox", PURL: "pkg:apk/alpine/busybox@1.36.1-r15?arch=armv7"},
		}},
		{parser: apkParser, file: "whitespace.installed", want: []Package{
			{Name: "spaced", Version: "1.0-r0", Arch: "mips", Source: "apk", PURL: "pkg:apk/alpine/spaced@1.0-r0?arch=mips"},
			{Name: "next", Version: "2.0-r1", Source: "apk", PURL: "pkg:apk/alpine/next@2.0-r1"},
		}},
		{parser: apkParser, file: "noversion.installed", wantErr: rampart.ErrInvalid, errText: "line 1: package noversion has no version"},
		{parser: apkParser, file: "truncated.installed", wantErr: rampart.ErrInvalid, errText: `line 7: want "X:value"`},
	}
	for _, tt := range tests {
		t.Run(tt.parser.dir+"/"+tt.file, func(t *testing.T) {
			t.Parallel()
			f, err := os.Open(filepath.Join("testdata", tt.parser.dir, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := tt.parser.parse(f)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(fmt.Sprint(err), tt.errText) {
					t.Fatalf("%s(%s) error = %v, want %v containing %q", tt.parser.name, tt.file, err, tt.wantErr, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s(%s) error = %v", tt.parser.name, tt.file, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s(%s) mismatch (-want +got):\n%s", tt.parser.name, tt.file, diff)
			}
		})
	}
}

func TestParsePackageDatabasesLimits(t *testing.T) {
	t.Parallel()
	dpkgStanza := func(i int) string {
		return fmt.Sprintf("Package: p%d\nStatus: install ok installed\nVersion: 1\n\n", i)
	}
	apkRecord := func(i int) string { return fmt.Sprintf("P:p%d\nV:1\n\n", i) }
	repeat := func(n int, f func(int) string) string {
		var b strings.Builder
		for i := range n {
			b.WriteString(f(i))
		}
		return b.String()
	}
	longLine := func(n int) string { return " " + strings.Repeat("x", n-1) + "\n" }
	tests := []struct {
		name    string
		parser  parser
		input   string
		wantN   int
		wantErr string // "" for success
	}{
		{"dpkg at package limit", dpkgParser, repeat(maxPackages, dpkgStanza), maxPackages, ""},
		{"dpkg over package limit", dpkgParser, repeat(maxPackages+1, dpkgStanza), 0, "more than 20000 installed packages"},
		{"opkg over package limit", opkgParser, repeat(maxPackages+1, dpkgStanza), 0, "more than 20000 installed packages"},
		{"apk at package limit", apkParser, repeat(maxPackages, apkRecord), maxPackages, ""},
		{"apk over package limit", apkParser, repeat(maxPackages+1, apkRecord), 0, "more than 20000 installed packages"},
		{"dpkg line at limit", dpkgParser, dpkgStanza(0)[:len(dpkgStanza(0))-1] + "Description: x\n" + longLine(maxLineLen), 1, ""},
		{"dpkg line over limit", dpkgParser, dpkgStanza(0)[:len(dpkgStanza(0))-1] + "Description: x\n" + longLine(maxLineLen+1), 0, "line 5: longer than 65536 bytes"},
		{"dpkg line far over limit", dpkgParser, longLine(10 * maxLineLen), 0, "line 1: longer than 65536 bytes"},
		{"apk line over limit", apkParser, "P:a\nV:1\nT:" + strings.Repeat("x", maxLineLen) + "\n", 0, "line 3: longer than 65536 bytes"},
		{"dpkg version too long", dpkgParser, "Package: a\nStatus: install ok installed\nVersion: " + strings.Repeat("1", maxValueLen+1) + "\n", 0, "invalid version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.parser.parse(strings.NewReader(tt.input))
			if tt.wantErr == "" {
				if err != nil || len(got) != tt.wantN {
					t.Fatalf("%s() = %d packages, %v; want %d packages", tt.parser.name, len(got), err, tt.wantN)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || got != nil {
				t.Fatalf("%s() = %d packages, %v; want error containing %q", tt.parser.name, len(got), err, tt.wantErr)
			}
			if !errors.Is(err, rampart.ErrTooLarge) && !errors.Is(err, rampart.ErrInvalid) {
				t.Errorf("%s() error %v wraps neither ErrTooLarge nor ErrInvalid", tt.parser.name, err)
			}
		})
	}
}

func FuzzParseDpkgStatus(f *testing.F) { fuzzParser(f, dpkgParser) }

func FuzzParseOpkgStatus(f *testing.F) { fuzzParser(f, opkgParser) }

func FuzzParseApkInstalled(f *testing.F) { fuzzParser(f, apkParser) }

// fuzzParser checks that whatever a parser accepts is a package the server can use: named,
// versioned, from the right database, with a package URL that parses back to the same package.
func fuzzParser(f *testing.F, p parser) {
	seeds, err := filepath.Glob(filepath.Join("testdata", p.dir, "*"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata/%s: %v", p.dir, err)
	}
	for _, name := range seeds {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, err := p.parse(bytes.NewReader(data))
		if err != nil {
			if pkgs != nil {
				t.Errorf("%s returned packages with error %v", p.name, err)
			}
			return // refusing input is fine; panicking or hanging is not
		}
		if len(pkgs) > maxPackages {
			t.Fatalf("%s returned %d packages, more than %d", p.name, len(pkgs), maxPackages)
		}
		for _, pkg := range pkgs {
			if pkg.Name == "" || pkg.Version == "" || pkg.Source != p.db {
				t.Fatalf("%s accepted %+v", p.name, pkg)
			}
			u, err := packageurl.FromString(pkg.PURL)
			if err != nil {
				t.Fatalf("%s: purl %q of %+v does not parse: %v", p.name, pkg.PURL, pkg, err)
			}
			if u.Type != p.typ || u.Name != pkg.Name || u.Version != pkg.Version || u.Qualifiers.Map()["arch"] != pkg.Arch {
				t.Fatalf("%s: purl %q parses to %+v, not %+v", p.name, pkg.PURL, u, pkg)
			}
			if u.ToString() != pkg.PURL {
				t.Fatalf("%s: purl %q is not canonical (%q)", p.name, pkg.PURL, u.ToString())
			}
		}
	})
}
