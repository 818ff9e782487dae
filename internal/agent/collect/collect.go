// Package collect reads what the device agent reports about its own device: the operating
// system (os-release), kernel release, hostname, network interfaces and the installed packages
// of the dpkg, opkg and apk databases. It reads from a filesystem root, "/" on a device, so tests
// can point it at a directory tree.
//
// It is not an SBOM generator and it decides nothing: it does not compare versions, match
// vulnerabilities, schedule itself or talk to the server. The agent maps a Snapshot onto its
// wire types.
//
// Package URLs name the database's ecosystem, not the distribution, because the databases do not
// record which distribution wrote them:
//
//	dpkg  pkg:deb/debian/NAME@VERSION?arch=ARCH  (also on Ubuntu and Raspberry Pi OS)
//	apk   pkg:apk/alpine/NAME@VERSION?arch=ARCH
//	opkg  pkg:generic/NAME@VERSION?arch=ARCH&distro=openwrt  (also on Yocto)
//
// There is no purl type for opkg, so its packages are generic, and the distro qualifier is a
// fixed label meaning "from an opkg database". A caller that knows better (Snapshot.OSID) may
// rewrite them.
package collect

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Snapshot is what a device knows about itself at one moment.
type Snapshot struct {
	OS          string // os-release PRETTY_NAME, or NAME when that is missing
	OSID        string // os-release ID, such as "debian", "alpine" or "openwrt"
	OSVersionID string // os-release VERSION_ID, such as "12" or "23.05.2"
	Kernel      string // kernel release, as uname -r prints it
	Hostname    string
	Interfaces  []Interface
	Packages    []Package
}

// Interface is one network interface other than loopback.
type Interface struct {
	Name  string
	MAC   string   // hardware address, such as "02:42:ac:11:00:02"; empty for tunnels
	Addrs []string // addresses in CIDR notation, such as "192.168.1.20/24"
}

// Options changes how Collect reads a device. The zero value reads the real device.
type Options struct {
	// Interfaces lists the network interfaces to report. When it is nil, the host's interfaces
	// are listed with net.Interfaces if root is "/", and none are reported for any other root,
	// because the network interfaces of a directory tree cannot be read from it.
	Interfaces func() ([]Interface, error)
}

// Collect reads a Snapshot of the device whose filesystem is at root ("/" on a device) with the
// zero Options.
func Collect(ctx context.Context, root string) (*Snapshot, error) {
	return Options{}.Collect(ctx, root)
}

// Collect reads a Snapshot of the device whose filesystem is at root. Packages come from
// var/lib/dpkg/status, usr/lib/opkg/status, var/lib/opkg/status and lib/apk/db/installed, in
// that order; a database linked under two of those names is read once.
//
// Files that do not exist leave their facts empty; a device need not have every package
// manager. A file that exists but cannot be read or parsed is an error naming the file.
func (o Options) Collect(ctx context.Context, root string) (*Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &Snapshot{}
	osRelease, err := readOSRelease(ctx, root)
	if err != nil {
		return nil, err
	}
	s.OS = osRelease["PRETTY_NAME"]
	if s.OS == "" {
		s.OS = osRelease["NAME"]
	}
	s.OSID = osRelease["ID"]
	s.OSVersionID = osRelease["VERSION_ID"]

	if s.Kernel, err = readFirstLine(root, "proc/sys/kernel/osrelease"); err != nil {
		return nil, err
	}
	if s.Hostname, err = readFirstLine(root, "proc/sys/kernel/hostname"); err != nil {
		return nil, err
	}
	if s.Hostname == "" || s.Hostname == "(none)" { // "(none)" is the kernel's name for unset
		if s.Hostname, err = readFirstLine(root, "etc/hostname"); err != nil {
			return nil, err
		}
	}

	list := o.Interfaces
	if list == nil && root == "/" {
		list = hostInterfaces
	}
	if list != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if s.Interfaces, err = list(); err != nil {
			return nil, fmt.Errorf("list network interfaces: %w", err)
		}
	}

	if s.Packages, err = readPackages(ctx, root); err != nil {
		return nil, err
	}
	return s, nil
}

// readOSRelease reads etc/os-release, or usr/lib/os-release when the first does not exist.
func readOSRelease(ctx context.Context, root string) (map[string]string, error) {
	for _, name := range []string{"etc/os-release", "usr/lib/os-release"} {
		path := filepath.Join(root, name)
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		vars, err := ParseOSRelease(contextReader{ctx, f})
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		return vars, nil
	}
	return nil, nil
}

// readFirstLine returns the first line of the file at name under root, without surrounding
// space, or "" if the file does not exist.
func readFirstLine(root, name string) (string, error) {
	path := filepath.Join(root, name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	// Kernel releases and hostnames are at most 64 bytes; read a little more, never a whole file.
	line, err := bufio.NewReaderSize(io.LimitReader(f, 4096), 4096).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return strings.TrimSpace(line), nil
}

// readPackages reads every package database under root that exists, in a fixed order.
func readPackages(ctx context.Context, root string) ([]Package, error) {
	dbs := []struct {
		name  string
		parse func(io.Reader) ([]Package, error)
	}{
		{"var/lib/dpkg/status", ParseDpkgStatus},
		{"usr/lib/opkg/status", ParseOpkgStatus},
		{"var/lib/opkg/status", ParseOpkgStatus},
		{"lib/apk/db/installed", ParseApkInstalled},
	}
	var (
		pkgs []Package
		read []os.FileInfo // so a database linked under two names is read once
	)
	for _, db := range dbs {
		path := filepath.Join(root, db.name)
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		got, err := parseFile(ctx, f, db.parse, &read)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read packages from %s: %w", path, err)
		}
		pkgs = append(pkgs, got...)
	}
	return pkgs, nil
}

func parseFile(ctx context.Context, f *os.File, parse func(io.Reader) ([]Package, error), read *[]os.FileInfo) ([]Package, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if slices.ContainsFunc(*read, func(other os.FileInfo) bool { return os.SameFile(fi, other) }) {
		return nil, nil
	}
	*read = append(*read, fi)
	return parse(contextReader{ctx, f})
}

// hostInterfaces lists this host's network interfaces other than loopback.
func hostInterfaces() ([]Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []Interface
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		i := Interface{Name: ifc.Name, MAC: ifc.HardwareAddr.String()}
		for _, a := range addrs {
			i.Addrs = append(i.Addrs, a.String()) // *net.IPNet prints as CIDR
		}
		out = append(out, i)
	}
	return out, nil
}

// contextReader stops a parse when its context is done.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (cr contextReader) Read(p []byte) (int, error) {
	if err := cr.ctx.Err(); err != nil {
		return 0, err
	}
	return cr.r.Read(p)
}

// Hash returns the hex SHA-256 of a canonical encoding of s: packages, interfaces and each
// interface's addresses are sorted first, so the same facts give the same hash whatever order
// they were read in. The agent compares hashes to skip uploading an unchanged inventory.
func (s *Snapshot) Hash() string {
	h := sha256.New()
	w := hashWriter{h: h}
	w.str("rampart collect.Snapshot v1")
	w.str(s.OS)
	w.str(s.OSID)
	w.str(s.OSVersionID)
	w.str(s.Kernel)
	w.str(s.Hostname)

	ifs := make([]Interface, len(s.Interfaces))
	for i, ifc := range s.Interfaces {
		ifc.Addrs = slices.Sorted(slices.Values(ifc.Addrs))
		ifs[i] = ifc
	}
	slices.SortFunc(ifs, compareInterfaces)
	w.len(len(ifs))
	for _, ifc := range ifs {
		w.str(ifc.Name)
		w.str(ifc.MAC)
		w.len(len(ifc.Addrs))
		for _, a := range ifc.Addrs {
			w.str(a)
		}
	}

	pkgs := slices.Clone(s.Packages)
	slices.SortFunc(pkgs, comparePackages)
	w.len(len(pkgs))
	for _, p := range pkgs {
		w.str(p.Source)
		w.str(p.Name)
		w.str(p.Arch)
		w.str(p.Version)
		w.str(p.SourcePackage)
		w.str(p.PURL)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func compareInterfaces(a, b Interface) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	if c := strings.Compare(a.MAC, b.MAC); c != 0 {
		return c
	}
	return slices.Compare(a.Addrs, b.Addrs)
}

func comparePackages(a, b Package) int {
	for _, pair := range [...][2]string{
		{a.Source, b.Source},
		{a.Name, b.Name},
		{a.Arch, b.Arch},
		{a.Version, b.Version},
		{a.SourcePackage, b.SourcePackage},
		{a.PURL, b.PURL},
	} {
		if c := strings.Compare(pair[0], pair[1]); c != 0 {
			return c
		}
	}
	return 0
}

// hashWriter writes length-prefixed values, so that no two different snapshots encode the same.
type hashWriter struct {
	h   hash.Hash
	buf [8]byte
}

func (w *hashWriter) len(n int) {
	binary.BigEndian.PutUint64(w.buf[:], uint64(n))
	w.h.Write(w.buf[:])
}

func (w *hashWriter) str(s string) {
	w.len(len(s))
	io.WriteString(w.h, s)
}
