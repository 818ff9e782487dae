package sbom

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	packageurl "github.com/package-url/packageurl-go"
)

// Changes is what differs between the components of two SBOMs. Each list is sorted by package
// identity, then version, so that equal inputs give equal output whatever their order.
type Changes struct {
	Added   []Component
	Removed []Component
	Changed []Change
}

// Change is one package present in both SBOMs at different versions.
type Change struct {
	Old, New Component
}

// Diff compares the components of an old and a new SBOM.
//
// Two components are the same package when their purls agree without version, qualifiers and
// subpath (so a Debian package that moves to a new distro release is a change, not a removal and
// an addition), or, for components without a purl, when name and type agree.
//
// A package can be listed more than once, such as once per architecture. Copies are then matched
// in this order: same qualifiers and version (unchanged), same qualifiers (changed), same version
// (unchanged), and finally any remaining copies, in sorted order (changed). What is left over is
// added or removed.
func Diff(old, new []Component) Changes {
	oldBy, newBy := groupByIdentity(old), groupByIdentity(new)
	ids := slices.Collect(maps.Keys(oldBy))
	for id := range newBy {
		if _, ok := oldBy[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)

	// Visiting identities in order, each group already sorted, yields sorted lists.
	var ch Changes
	for _, id := range ids {
		olds, news := oldBy[id], newBy[id]
		olds, news, _ = pair(olds, news, func(c Component) string { return variant(c) + "\x00" + c.Version })
		olds, news, moved := pair(olds, news, variant)
		olds, news, _ = pair(olds, news, func(c Component) string { return c.Version })
		olds, news, rest := pair(olds, news, func(Component) string { return "" })
		changed := append(moved, rest...)
		slices.SortFunc(changed, func(a, b Change) int {
			return cmp.Or(compareComponents(a.Old, b.Old), compareComponents(a.New, b.New))
		})
		ch.Changed = append(ch.Changed, changed...)
		ch.Removed = append(ch.Removed, olds...)
		ch.Added = append(ch.Added, news...)
	}
	return ch
}

// identity is the key under which two components are the same package.
func identity(c Component) string {
	if p, ok := parsedPURL(c); ok {
		p.Version, p.Qualifiers, p.Subpath = "", nil, ""
		return "purl\x00" + p.ToString()
	}
	return "name\x00" + c.Type + "\x00" + c.Name
}

// variant tells apart copies of one package: its purl without the version.
func variant(c Component) string {
	if p, ok := parsedPURL(c); ok {
		p.Version = ""
		return p.ToString()
	}
	return ""
}

func parsedPURL(c Component) (packageurl.PackageURL, bool) {
	if c.PURL == "" {
		return packageurl.PackageURL{}, false
	}
	p, err := packageurl.FromString(c.PURL)
	return p, err == nil
}

// groupByIdentity groups components by identity, each group sorted.
func groupByIdentity(cs []Component) map[string][]Component {
	m := make(map[string][]Component)
	for _, c := range cs {
		id := identity(c)
		m[id] = append(m[id], c)
	}
	for _, g := range m {
		slices.SortFunc(g, compareComponents)
	}
	return m
}

// pair matches components of olds and news with equal keys, first to first, and returns the
// unmatched ones (in their original order) and the matched pairs whose versions differ.
func pair(olds, news []Component, key func(Component) string) (restOld, restNew []Component, changed []Change) {
	if len(olds) == 0 || len(news) == 0 {
		return olds, news, nil
	}
	waiting := make(map[string][]int) // key → indexes into news not yet matched
	for j, c := range news {
		k := key(c)
		waiting[k] = append(waiting[k], j)
	}
	matched := make([]bool, len(news))
	for _, o := range olds {
		k := key(o)
		q := waiting[k]
		if len(q) == 0 {
			restOld = append(restOld, o)
			continue
		}
		waiting[k] = q[1:]
		matched[q[0]] = true
		if n := news[q[0]]; n.Version != o.Version {
			changed = append(changed, Change{Old: o, New: n})
		}
	}
	for j, n := range news {
		if !matched[j] {
			restNew = append(restNew, n)
		}
	}
	return restOld, restNew, changed
}

// compareComponents orders components of one identity by version, then by every other field,
// so that sorting is deterministic.
func compareComponents(a, b Component) int {
	if c := cmp.Or(
		strings.Compare(a.Version, b.Version),
		strings.Compare(a.PURL, b.PURL),
		strings.Compare(a.Name, b.Name),
		strings.Compare(a.Type, b.Type),
		strings.Compare(a.Supplier, b.Supplier),
		slices.Compare(a.Licenses, b.Licenses),
	); c != 0 {
		return c
	}
	return compareHashes(a.Hashes, b.Hashes)
}

func compareHashes(a, b map[string]string) int {
	flat := func(m map[string]string) []string {
		var s []string
		for k, v := range m {
			s = append(s, k+"\x00"+v)
		}
		slices.Sort(s)
		return s
	}
	return slices.Compare(flat(a), flat(b))
}
