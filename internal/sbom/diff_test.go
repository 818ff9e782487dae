package sbom

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestDiff(t *testing.T) {
	t.Parallel()
	deb := func(name, version, distro string) Component {
		return Component{Name: name, Version: version, Type: "library",
			PURL: fmt.Sprintf("pkg:deb/debian/%s@%s?arch=armhf&distro=%s", name, version, distro)}
	}
	arch := func(c Component, arch string) Component {
		c.PURL = fmt.Sprintf("pkg:deb/debian/%s@%s?arch=%s", c.Name, c.Version, arch)
		return c
	}
	bare := func(name, version, typ string) Component {
		return Component{Name: name, Version: version, Type: typ}
	}
	tests := []struct {
		name     string
		old, new []Component
		want     Changes
	}{
		{name: "both empty"},
		{
			name: "everything added",
			new:  []Component{deb("zlib1g", "1.2.13", "debian-12"), deb("curl", "7.88.1", "debian-12")},
			want: Changes{Added: []Component{deb("curl", "7.88.1", "debian-12"), deb("zlib1g", "1.2.13", "debian-12")}},
		},
		{
			name: "everything removed",
			old:  []Component{bare("busybox", "1.36.1", "library")},
			want: Changes{Removed: []Component{bare("busybox", "1.36.1", "library")}},
		},
		{
			name: "same components in another order",
			old:  []Component{deb("a", "1", "debian-12"), bare("b", "2", "library")},
			new:  []Component{bare("b", "2", "library"), deb("a", "1", "debian-12")},
		},
		{
			name: "version change",
			old:  []Component{deb("openssl", "3.0.11-1", "debian-12"), deb("curl", "7.88.1", "debian-12")},
			new:  []Component{deb("curl", "7.88.1", "debian-12"), deb("openssl", "3.0.13-1", "debian-12")},
			want: Changes{Changed: []Change{{Old: deb("openssl", "3.0.11-1", "debian-12"), New: deb("openssl", "3.0.13-1", "debian-12")}}},
		},
		{
			name: "distro upgrade is a change, not a removal and an addition",
			old:  []Component{deb("openssl", "1.1.1n-0+deb11u4", "debian-11")},
			new:  []Component{deb("openssl", "3.0.11-1", "debian-12")},
			want: Changes{Changed: []Change{{Old: deb("openssl", "1.1.1n-0+deb11u4", "debian-11"), New: deb("openssl", "3.0.11-1", "debian-12")}}},
		},
		{
			name: "without purl, name and type identify",
			old:  []Component{bare("linux", "5.10", "library"), bare("linux", "5.10", "operating-system")},
			new:  []Component{bare("linux", "6.1", "library"), bare("linux", "5.10", "operating-system")},
			want: Changes{Changed: []Change{{Old: bare("linux", "5.10", "library"), New: bare("linux", "6.1", "library")}}},
		},
		{
			name: "gaining a purl is a removal and an addition",
			old:  []Component{bare("zlib", "1.2.13", "library")},
			new:  []Component{{Name: "zlib", Version: "1.2.13", Type: "library", PURL: "pkg:generic/zlib@1.2.13"}},
			want: Changes{
				Added:   []Component{{Name: "zlib", Version: "1.2.13", Type: "library", PURL: "pkg:generic/zlib@1.2.13"}},
				Removed: []Component{bare("zlib", "1.2.13", "library")},
			},
		},
		{
			name: "a package listed per architecture: unchanged copies match, the rest pair up",
			old: []Component{
				arch(deb("libc6", "2.36-9", ""), "amd64"),
				arch(deb("libc6", "2.36-9", ""), "i386"),
			},
			new: []Component{
				arch(deb("libc6", "2.36-9+deb12u4", ""), "amd64"),
				arch(deb("libc6", "2.36-9", ""), "i386"),
				arch(deb("libc6", "2.36-9+deb12u4", ""), "arm64"),
			},
			want: Changes{
				Changed: []Change{{Old: arch(deb("libc6", "2.36-9", ""), "amd64"), New: arch(deb("libc6", "2.36-9+deb12u4", ""), "amd64")}},
				Added:   []Component{arch(deb("libc6", "2.36-9+deb12u4", ""), "arm64")},
			},
		},
		{
			name: "an upgrade and a new architecture at the old version",
			old:  []Component{arch(deb("libc6", "2.36-9", ""), "amd64")},
			new: []Component{
				arch(deb("libc6", "2.36-9+deb12u4", ""), "amd64"),
				arch(deb("libc6", "2.36-9", ""), "i386"),
			},
			want: Changes{
				Changed: []Change{{Old: arch(deb("libc6", "2.36-9", ""), "amd64"), New: arch(deb("libc6", "2.36-9+deb12u4", ""), "amd64")}},
				Added:   []Component{arch(deb("libc6", "2.36-9", ""), "i386")},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Diff(tt.old, tt.new)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Diff(%v, %v) (-want +got):\n%s", tt.old, tt.new, diff)
			}
		})
	}
}

// TestDiffReleases diffs two real (excerpted) router images two years apart.
func TestDiffReleases(t *testing.T) {
	t.Parallel()
	old := mustParseFile(t, filepath.Join("testdata", "deb10-router-2019-09-01.excerpt.cdx.json"))
	new := mustParseFile(t, filepath.Join("testdata", "deb10-router-2021-09-01.excerpt.cdx.json"))
	got := summarize(Diff(old.Components, new.Components))
	want := []string{
		"+ libsystemd0 241-7~deb10u8",
		"+ libudev1 241-7~deb10u8",
		"+ systemd 241-7~deb10u8",
		"- debian 10",
		"- libssl1.1 1.1.1d-0",
		"~ bluez 5.50-1.2 -> 5.50-1.2~deb10u2",
		"~ curl 7.64.0-4 -> 7.64.0-4+deb10u2",
		"~ dnsmasq-base 2.80-1 -> 2.80-1+deb10u1",
		"~ hostapd 2:2.7+git20190128+0c1e29f-6 -> 2:2.7+git20190128+0c1e29f-6+deb10u3",
		"~ libcurl4 7.64.0-4 -> 7.64.0-4+deb10u2",
		"~ libexpat1 2.2.6-2 -> 2.2.6-2+deb10u1",
		"~ libgssapi-krb5-2 1.17-3 -> 1.17-3+deb10u2",
		"~ libkrb5-3 1.17-3 -> 1.17-3+deb10u2",
		"~ mosquitto 1.5.7-1 -> 1.5.7-1+deb10u1",
		"~ nginx-core 1.14.2-2+deb10u1 -> 1.14.2-2+deb10u4",
		"~ openssl 1.1.1d-0 -> 1.1.1d-0+deb10u7",
		"~ sudo 1.8.27-1 -> 1.8.27-1+deb10u3",
		"~ wpasupplicant 2:2.7+git20190128+0c1e29f-6 -> 2:2.7+git20190128+0c1e29f-6+deb10u3",
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Diff(router 2019, router 2021) (-want +got):\n%s", diff)
	}
}

func summarize(ch Changes) []string {
	var s []string
	for _, c := range ch.Added {
		s = append(s, "+ "+c.Name+" "+c.Version)
	}
	for _, c := range ch.Removed {
		s = append(s, "- "+c.Name+" "+c.Version)
	}
	for _, c := range ch.Changed {
		s = append(s, "~ "+c.Old.Name+" "+c.Old.Version+" -> "+c.New.Version)
	}
	return s
}

// TestDiffProperties checks, on the real excerpts, that Diff ignores input order, that a
// document does not differ from itself, and that swapping the arguments mirrors the result.
func TestDiffProperties(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	parsed := map[string][]Component{}
	for _, f := range files {
		parsed[f] = mustParseFile(t, f).Components
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, a := range files {
		for _, b := range files {
			old, new := parsed[a], parsed[b]
			got := Diff(old, new)

			shuffled := func(cs []Component) []Component {
				cs = slices.Clone(cs)
				rng.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
				return cs
			}
			if diff := cmp.Diff(got, Diff(shuffled(old), shuffled(new))); diff != "" {
				t.Errorf("Diff(%s, %s) depends on input order:\n%s", a, b, diff)
			}

			back := Diff(new, old)
			mirrored := Changes{Added: back.Removed, Removed: back.Added}
			for _, c := range back.Changed {
				mirrored.Changed = append(mirrored.Changed, Change{Old: c.New, New: c.Old})
			}
			slices.SortStableFunc(mirrored.Changed, func(x, y Change) int { return compareComponents(x.Old, y.Old) })
			slices.SortStableFunc(got.Changed, func(x, y Change) int { return compareComponents(x.Old, y.Old) })
			if diff := cmp.Diff(got, mirrored, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Diff(%s, %s) is not the mirror of Diff(%s, %s):\n%s", a, b, b, a, diff)
			}
			if a == b {
				if n := len(got.Added) + len(got.Removed) + len(got.Changed); n != 0 {
					t.Errorf("Diff(%s, itself) has %d changes; want none", a, n)
				}
			}
		}
	}
}
