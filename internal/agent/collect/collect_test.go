package collect

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rampart-iot/rampart"
)

// newTestRoot builds a device filesystem under a temporary directory. A file whose content
// starts with "->" becomes a symbolic link to the rest; "@name" copies testdata/name.
func newTestRoot(t testing.TB, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(content, "->"):
			if err := os.Symlink(content[2:], path); err != nil {
				t.Fatal(err)
			}
			continue
		case strings.HasPrefix(content, "@"):
			data, err := os.ReadFile(filepath.Join("testdata", content[1:]))
			if err != nil {
				t.Fatal(err)
			}
			content = string(data)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func mustParse(t testing.TB, parse func(io.Reader) ([]Package, error), name string) []Package {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pkgs, err := parse(f)
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func TestCollect(t *testing.T) {
	t.Parallel()
	eth0 := []Interface{{Name: "eth0", MAC: "02:42:ac:11:00:02", Addrs: []string{"172.17.0.2/16", "fe80::42:acff:fe11:2/64"}}}
	listEth0 := func() ([]Interface, error) { return eth0, nil }
	dpkg := mustParse(t, ParseDpkgStatus, "dpkg/debian12.status")
	opkg := mustParse(t, ParseOpkgStatus, "opkg/openwrt23.status")
	apk := mustParse(t, ParseApkInstalled, "apk/alpine319.installed")

	tests := []struct {
		name  string
		files map[string]string
		opts  Options
		want  *Snapshot
	}{
		{
			name: "debian",
			files: map[string]string{
				"usr/lib/os-release":        "@osrelease/debian12",
				"etc/os-release":            "->../usr/lib/os-release",
				"proc/sys/kernel/osrelease": "6.1.0-18-arm64\n",
				"proc/sys/kernel/hostname":  "gw-0042\n",
				"etc/hostname":              "stale-name\n",
				"var/lib/dpkg/status":       "@dpkg/debian12.status",
			},
			opts: Options{Interfaces: listEth0},
			want: &Snapshot{
				OS: "Debian GNU/Linux 12 (bookworm)", OSID: "debian", OSVersionID: "12",
				Kernel: "6.1.0-18-arm64", Hostname: "gw-0042", Interfaces: eth0, Packages: dpkg,
			},
		},
		{
			name: "openwrt with the opkg database linked under both names",
			files: map[string]string{
				"usr/lib/os-release":        "@osrelease/openwrt23",
				"proc/sys/kernel/osrelease": "5.15.137",
				"etc/hostname":              "\n", // hostname comes from proc when there is one
				"proc/sys/kernel/hostname":  "OpenWrt",
				"usr/lib/opkg/status":       "@opkg/openwrt23.status",
				"var/lib/opkg":              "->../../usr/lib/opkg",
			},
			want: &Snapshot{
				OS: "OpenWrt 23.05.2", OSID: "openwrt", OSVersionID: "23.05.2",
				Kernel: "5.15.137", Hostname: "OpenWrt", Packages: opkg,
			},
		},
		{
			name: "every database, hostname from etc",
			files: map[string]string{
				"etc/os-release":           "NAME=Custom\nID=custom\n",
				"etc/hostname":             "  sensor-7  \nignored\n",
				"proc/sys/kernel/hostname": "(none)\n",
				"var/lib/dpkg/status":      "@dpkg/debian12.status",
				"var/lib/opkg/status":      "@opkg/openwrt23.status",
				"lib/apk/db/installed":     "@apk/alpine319.installed",
			},
			want: &Snapshot{
				OS: "Custom", OSID: "custom", Hostname: "sensor-7",
				Packages: append(append(append([]Package(nil), dpkg...), opkg...), apk...),
			},
		},
		{
			name: "empty root",
			want: &Snapshot{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := newTestRoot(t, tt.files)
			got, err := tt.opts.Collect(t.Context(), root)
			if err != nil {
				t.Fatalf("Collect(%s) error = %v", tt.name, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Collect(%s) mismatch (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

func TestCollectErrors(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		files   map[string]string
		opts    Options
		wantIs  error
		wantMsg string
	}{
		{
			name:    "bad dpkg database",
			files:   map[string]string{"var/lib/dpkg/status": "@dpkg/noversion.status"},
			wantIs:  rampart.ErrInvalid,
			wantMsg: filepath.Join("var", "lib", "dpkg", "status") + ": parse dpkg status: line 1: package noversion has no version",
		},
		{
			name:    "bad apk database after a good dpkg one",
			files:   map[string]string{"var/lib/dpkg/status": "@dpkg/debian12.status", "lib/apk/db/installed": "@apk/truncated.installed"},
			wantIs:  rampart.ErrInvalid,
			wantMsg: filepath.Join("lib", "apk", "db", "installed") + ": parse apk database",
		},
		{
			name:    "database is a directory",
			files:   map[string]string{"usr/lib/opkg/status/x": ""},
			wantMsg: filepath.Join("usr", "lib", "opkg", "status") + ": parse opkg status",
		},
		{
			name:    "interface listing fails",
			opts:    Options{Interfaces: func() ([]Interface, error) { return nil, errors.New("netlink down") }},
			wantMsg: "list network interfaces: netlink down",
		},
		{
			name:   "canceled",
			ctx:    canceled,
			files:  map[string]string{"var/lib/dpkg/status": "@dpkg/debian12.status"},
			wantIs: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := tt.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			root := newTestRoot(t, tt.files)
			got, err := tt.opts.Collect(ctx, root)
			if err == nil || got != nil ||
				(tt.wantIs != nil && !errors.Is(err, tt.wantIs)) ||
				!strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Collect(%s) = %+v, %v; want error wrapping %v containing %q", tt.name, got, err, tt.wantIs, tt.wantMsg)
			}
		})
	}
}

// TestCollectHost reads the machine the tests run on, the way the agent reads a device.
func TestCollectHost(t *testing.T) {
	t.Parallel()
	s, err := Collect(t.Context(), "/")
	if err != nil {
		t.Fatalf("Collect(/) error = %v", err)
	}
	if s.Kernel == "" {
		t.Errorf("Collect(/).Kernel is empty")
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifs {
		for _, got := range s.Interfaces {
			if got.Name == ifc.Name && ifc.Flags&net.FlagLoopback != 0 {
				t.Errorf("Collect(/) reported loopback interface %s", ifc.Name)
			}
		}
	}
	for _, ifc := range s.Interfaces {
		for _, a := range ifc.Addrs {
			if _, _, err := net.ParseCIDR(a); err != nil {
				t.Errorf("Collect(/) interface %s address %q is not CIDR: %v", ifc.Name, a, err)
			}
		}
	}
}

func TestSnapshotHash(t *testing.T) {
	t.Parallel()
	newSnapshot := func() *Snapshot {
		return &Snapshot{
			OS: "Debian GNU/Linux 12 (bookworm)", OSID: "debian", OSVersionID: "12",
			Kernel: "6.1.0-18-arm64", Hostname: "gw-0042",
			Interfaces: []Interface{
				{Name: "wlan0", MAC: "02:00:00:00:00:02", Addrs: []string{"10.0.0.2/24", "fe80::2/64"}},
				{Name: "eth0", MAC: "02:00:00:00:00:01", Addrs: []string{"192.168.1.20/24", "fe80::1/64"}},
			},
			Packages: []Package{
				{Name: "zlib1g", Version: "1:1.2.13.dfsg-1", Arch: "arm64", Source: "dpkg", SourcePackage: "zlib", PURL: "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=arm64"},
				{Name: "libc6", Version: "2.36-9", Arch: "arm64", Source: "dpkg", SourcePackage: "glibc", PURL: "pkg:deb/debian/libc6@2.36-9?arch=arm64"},
				{Name: "libc6", Version: "2.36-9", Arch: "armhf", Source: "dpkg", SourcePackage: "glibc", PURL: "pkg:deb/debian/libc6@2.36-9?arch=armhf"},
				{Name: "busybox", Version: "1.36.1-1", Arch: "arm64", Source: "opkg", PURL: "pkg:generic/busybox@1.36.1-1?arch=arm64&distro=openwrt"},
			},
		}
	}
	base := newSnapshot().Hash()
	if len(base) != 64 || strings.Trim(base, "0123456789abcdef") != "" {
		t.Fatalf("Hash() = %q, want 64 hex digits", base)
	}

	t.Run("read order does not matter", func(t *testing.T) {
		t.Parallel()
		reordered := func() *Snapshot {
			s := newSnapshot()
			p, i := s.Packages, s.Interfaces
			s.Packages = []Package{p[3], p[2], p[0], p[1]}
			s.Interfaces = []Interface{i[1], i[0]}
			s.Interfaces[0].Addrs = []string{"fe80::1/64", "192.168.1.20/24"}
			return s
		}
		s := reordered()
		if got := s.Hash(); got != base {
			t.Errorf("Hash() of reordered snapshot = %s, want %s", got, base)
		}
		if diff := cmp.Diff(reordered(), s); diff != "" {
			t.Errorf("Hash() reordered the snapshot (-before +after):\n%s", diff)
		}
	})

	changes := map[string]func(s *Snapshot){
		"os":                func(s *Snapshot) { s.OS = "Debian GNU/Linux 13 (trixie)" },
		"os id":             func(s *Snapshot) { s.OSID = "raspbian" },
		"os version":        func(s *Snapshot) { s.OSVersionID = "13" },
		"kernel":            func(s *Snapshot) { s.Kernel = "6.1.0-19-arm64" },
		"hostname":          func(s *Snapshot) { s.Hostname = "gw-0043" },
		"field boundary":    func(s *Snapshot) { s.OSVersionID, s.Kernel = "126.1.0-18-arm64", "" },
		"interface removed": func(s *Snapshot) { s.Interfaces = s.Interfaces[:1] },
		"interface renamed": func(s *Snapshot) { s.Interfaces[0].Name = "wlan1" },
		"mac":               func(s *Snapshot) { s.Interfaces[0].MAC = "02:00:00:00:00:03" },
		"address":           func(s *Snapshot) { s.Interfaces[1].Addrs[0] = "192.168.1.21/24" },
		"address moved": func(s *Snapshot) {
			s.Interfaces[0].Addrs, s.Interfaces[1].Addrs = s.Interfaces[1].Addrs, s.Interfaces[0].Addrs
		},
		"package removed":    func(s *Snapshot) { s.Packages = s.Packages[1:] },
		"package duplicated": func(s *Snapshot) { s.Packages = append(s.Packages, s.Packages[0]) },
		"version":            func(s *Snapshot) { s.Packages[1].Version = "2.36-9+deb12u4" },
		"arch":               func(s *Snapshot) { s.Packages[0].Arch = "armhf" },
		"database":           func(s *Snapshot) { s.Packages[3].Source = "apk" },
		"source package":     func(s *Snapshot) { s.Packages[3].SourcePackage = "busybox" },
		"purl":               func(s *Snapshot) { s.Packages[3].PURL = "pkg:generic/busybox@1.36.1-1?arch=arm64" },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newSnapshot()
			change(s)
			if got := s.Hash(); got == base {
				t.Errorf("Hash() after changing the %s = %s, the same as before", name, got)
			}
		})
	}
}
