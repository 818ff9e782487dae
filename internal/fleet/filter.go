package fleet

import (
	"fmt"
	"sync"

	"github.com/rampart-iot/rampart/internal/filter"
)

// DeviceVars are the variables a device filter expression can use. The list is the
// language's reference for devices; docs/filter.md repeats it with examples.
var deviceVars = []filter.Var{
	{Name: "id", Type: filter.String, Doc: "Rampart's device ID"},
	{Name: "serial", Type: filter.String, Doc: "serial number from the identity"},
	{Name: "mac", Type: filter.String, Doc: "MAC address from the identity"},
	{Name: "type", Type: filter.String, Doc: "device type"},
	{Name: "hw_rev", Type: filter.String, Doc: "hardware revision"},
	{Name: "status", Type: filter.String, Doc: "pending, preauthorized, accepted, rejected or decommissioned"},
	{Name: "firmware", Type: filter.String, Doc: "firmware version last reported"},
	{Name: "os", Type: filter.String, Doc: "operating system (PRETTY_NAME of os-release)"},
	{Name: "kernel", Type: filter.String, Doc: "kernel release"},
	{Name: "hostname", Type: filter.String, Doc: "host name"},
	{Name: "tags", Type: filter.StringList, Doc: "tags, e.g. \"prod\" in tags"},
	{Name: "attributes", Type: filter.StringMap, Doc: "custom attributes, e.g. attributes[\"region\"] == \"eu\""},
	{Name: "clone_suspect", Type: filter.Bool, Doc: "true when the device looks cloned"},
	{Name: "package_count", Type: filter.Int, Doc: "number of installed packages"},
	{Name: "first_seen", Type: filter.Time, Doc: "first enrollment or check-in"},
	{Name: "last_seen", Type: filter.Time, Doc: "last check-in"},
}

var deviceSchema = sync.OnceValues(func() (*filter.Schema, error) {
	return filter.NewSchema(deviceVars...)
})

// DeviceFilterVars lists the variables of device filter expressions.
func DeviceFilterVars() []filter.Var { return deviceVars }

// CompileFilter type-checks a device filter expression.
func CompileFilter(src string) (*filter.Expr, error) {
	s, err := deviceSchema()
	if err != nil {
		return nil, fmt.Errorf("device filter schema: %w", err)
	}
	return s.Compile(src)
}

// filterVars exposes d to a filter expression.
func filterVars(d *Device) map[string]any {
	attrs := d.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	tags := d.Tags
	if tags == nil {
		tags = []string{}
	}
	return map[string]any{
		"id":            d.ID,
		"serial":        d.Identity.Serial,
		"mac":           d.Identity.MAC,
		"type":          d.Identity.DeviceType,
		"hw_rev":        d.Identity.HWRevision,
		"status":        string(d.Status),
		"firmware":      d.FirmwareVersion,
		"os":            d.OS,
		"kernel":        d.Kernel,
		"hostname":      d.Hostname,
		"tags":          tags,
		"attributes":    attrs,
		"clone_suspect": d.CloneSuspect,
		"package_count": int64(d.PackageCount),
		"first_seen":    d.FirstSeen,
		"last_seen":     d.LastSeen,
	}
}

// Matches reports whether d satisfies e; an evaluation error (such as a missing attribute
// key) counts as no match.
func Matches(e *filter.Expr, d *Device) bool {
	ok, err := e.Match(filterVars(d))
	return err == nil && ok
}
