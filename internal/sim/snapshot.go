package sim

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/rampart-iot/rampart/internal/agent/collect"
)

// debianPackage is one package a virtual device may have installed, with the versions
// the fleet spreads over (older first).
type debianPackage struct {
	name, source string
	versions     []string
	share        float64 // fraction of devices that have it; 1 for every device
}

// catalog is a small, plausible Debian 12 system. Versions are real bookworm versions, so
// vulnerability matching against OSV data finds something to say about the older ones.
var catalog = []debianPackage{
	{"base-files", "", []string{"12.4+deb12u5", "12.4+deb12u7", "12.4+deb12u9"}, 1},
	{"libc6", "glibc", []string{"2.36-9+deb12u4", "2.36-9+deb12u7", "2.36-9+deb12u9"}, 1},
	{"libssl3", "openssl", []string{"3.0.11-1~deb12u2", "3.0.13-1~deb12u1", "3.0.15-1~deb12u1"}, 1},
	{"openssl", "", []string{"3.0.11-1~deb12u2", "3.0.13-1~deb12u1", "3.0.15-1~deb12u1"}, 0.8},
	{"zlib1g", "zlib", []string{"1:1.2.13.dfsg-1"}, 1},
	{"busybox", "", []string{"1:1.35.0-4+b3"}, 1},
	{"openssh-server", "openssh", []string{"1:9.2p1-2+deb12u2", "1:9.2p1-2+deb12u3", "1:9.2p1-2+deb12u5"}, 0.7},
	{"libcurl4", "curl", []string{"7.88.1-10+deb12u5", "7.88.1-10+deb12u8", "7.88.1-10+deb12u12"}, 0.9},
	{"systemd", "", []string{"252.22-1~deb12u1", "252.30-1~deb12u2", "252.36-1~deb12u1"}, 1},
	{"ca-certificates", "", []string{"20230311"}, 1},
	{"tzdata", "", []string{"2024a-0+deb12u1", "2025b-0+deb12u1"}, 1},
	{"libexpat1", "expat", []string{"2.5.0-1", "2.5.0-1+deb12u1"}, 0.9},
	{"mosquitto", "", []string{"2.0.11-1.2+deb12u1"}, 0.3},
	{"nginx-light", "nginx", []string{"1.22.1-9", "1.22.1-9+deb12u1"}, 0.2},
}

var arches = []string{"arm64", "armhf", "amd64"}

// Snapshot is the synthetic inventory of virtual device i: a Debian 12 system of a dozen
// dpkg packages whose presence and versions vary from device to device. It depends only on
// seed and i. The packages go through collect's real dpkg parser, so they carry the same
// purls a real device would report.
func Snapshot(seed int64, i int) *collect.Snapshot {
	rng := rand.New(rand.NewPCG(uint64(seed)^0x5eed, uint64(i)))
	arch := arches[rng.IntN(len(arches))]
	var db strings.Builder
	for _, p := range catalog {
		if p.share < 1 && rng.Float64() >= p.share {
			continue
		}
		// Most devices run the newest version; the rest lag behind.
		v := p.versions[len(p.versions)-1]
		if len(p.versions) > 1 && rng.IntN(3) == 0 {
			v = p.versions[rng.IntN(len(p.versions)-1)]
		}
		a := arch
		if p.name == "ca-certificates" || p.name == "tzdata" {
			a = "all"
		}
		fmt.Fprintf(&db, "Package: %s\nStatus: install ok installed\nArchitecture: %s\nVersion: %s\n", p.name, a, v)
		if p.source != "" {
			fmt.Fprintf(&db, "Source: %s\n", p.source)
		}
		db.WriteString("\n")
	}
	pkgs, err := collect.ParseDpkgStatus(strings.NewReader(db.String()))
	if err != nil {
		panic("sim: the synthetic dpkg database does not parse: " + err.Error()) // a bug in catalog
	}
	return &collect.Snapshot{
		OS:          "Debian GNU/Linux 12 (bookworm)",
		OSID:        "debian",
		OSVersionID: "12",
		Kernel:      fmt.Sprintf("6.1.0-%d-%s", 18+rng.IntN(10), arch),
		Hostname:    fmt.Sprintf("sim-%07d", i),
		Interfaces: []collect.Interface{{
			Name: "eth0", MAC: macOf(seed, i),
			Addrs: []string{fmt.Sprintf("10.%d.%d.%d/8", byte(i>>16), byte(i>>8), byte(i))},
		}},
		Packages: pkgs,
	}
}

// macOf is the MAC address of virtual device i.
func macOf(seed int64, i int) string {
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", byte(seed), byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
}
