package fleet

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/rampart-iot/rampart"
)

// CheckIn is what a device reports when it polls.
type CheckIn struct {
	FirmwareVersion string
	// Attributes holds only changed attributes; an empty value deletes the key.
	Attributes    map[string]string
	InventoryHash string
}

// CheckInResult is the answer: pending work (none when idle), whether the server wants a
// fresh inventory, and when to come back.
type CheckInResult struct {
	Work            []Work
	InventoryWanted bool
	PollInterval    time.Duration
}

// CheckIn records that an authenticated device is alive and tells it what to do. An idle
// check-in with nothing changed reads and writes nothing in the store: last-seen times are
// buffered and flushed in batches by Run.
func (s *Service) CheckIn(ctx context.Context, deviceID string, in CheckIn) (*CheckInResult, error) {
	if err := checkText("firmware version", in.FirmwareVersion, MaxVersionLen); err != nil {
		return nil, fmt.Errorf("check-in %s: %w", deviceID, err)
	}
	if err := validateAttributes(in.Attributes); err != nil {
		return nil, fmt.Errorf("check-in %s: %w", deviceID, err)
	}
	if len(in.InventoryHash) > 128 {
		return nil, fmt.Errorf("check-in %s: inventory hash too long: %w", deviceID, rampart.ErrInvalid)
	}
	now := s.now()
	c, ok := s.cache.get(deviceID, now)
	if !ok {
		a, err := s.store.DeviceAuthState(ctx, deviceID)
		if err != nil {
			return nil, fmt.Errorf("check-in %s: %w", deviceID, err)
		}
		c = s.cache.putState(a, now)
	}
	if c.firmware != in.FirmwareVersion || len(in.Attributes) > 0 {
		d, err := s.store.Device(ctx, deviceID)
		if err != nil {
			return nil, fmt.Errorf("check-in %s: %w", deviceID, err)
		}
		if d.FirmwareVersion != in.FirmwareVersion || len(in.Attributes) > 0 {
			if d.FirmwareVersion != in.FirmwareVersion && in.FirmwareVersion != "" {
				s.log.InfoContext(ctx, "device firmware changed", "device", deviceID, "from", d.FirmwareVersion, "to", in.FirmwareVersion)
				d.FirmwareVersion = in.FirmwareVersion
			}
			if err := mergeAttributes(d, in.Attributes); err != nil {
				return nil, fmt.Errorf("check-in %s: %w", deviceID, err)
			}
			d.LastSeen = now.UTC()
			d.UpdatedAt = now.UTC()
			// A version change matters (rollouts and exposure depend on it), so it is
			// acknowledged only once stored.
			if err := s.store.UpdateDevice(ctx, d); err != nil {
				return nil, fmt.Errorf("check-in %s: %w", deviceID, err)
			}
		}
		s.cache.put(d, now)
		c, _ = s.cache.get(deviceID, now)
	}
	s.markSeen(deviceID, now.UTC())
	res := &CheckInResult{
		PollInterval:    s.pollInterval,
		InventoryWanted: in.InventoryHash != "" && in.InventoryHash != c.invHash,
	}
	if s.work != nil {
		w, err := s.work.PendingWork(ctx, deviceID)
		if err != nil {
			return nil, fmt.Errorf("check-in %s: pending work: %w", deviceID, err)
		}
		res.Work = w
	}
	return res, nil
}

func mergeAttributes(d *Device, changed map[string]string) error {
	if len(changed) == 0 {
		return nil
	}
	merged := maps.Clone(d.Attributes)
	if merged == nil {
		merged = map[string]string{}
	}
	for k, v := range changed {
		if v == "" {
			delete(merged, k)
		} else {
			merged[k] = v
		}
	}
	if err := validateAttributes(merged); err != nil {
		return err
	}
	d.Attributes = merged
	return nil
}

// Inventory is a device's full self-description, replacing the previous one.
type Inventory struct {
	Hash       string
	OS         string
	Kernel     string
	Hostname   string
	Interfaces []NetInterface
	Packages   []Package
	Attributes map[string]string
}

func (inv *Inventory) validate() error {
	for name, v := range map[string]string{"hash": inv.Hash, "os": inv.OS, "kernel": inv.Kernel, "hostname": inv.Hostname} {
		if err := checkText(name, v, MaxAttrValueLen); err != nil {
			return err
		}
	}
	if len(inv.Interfaces) > MaxInterfaces {
		return fmt.Errorf("more than %d interfaces: %w", MaxInterfaces, rampart.ErrTooLarge)
	}
	for _, ni := range inv.Interfaces {
		if ni.Name == "" {
			return fmt.Errorf("interface without a name: %w", rampart.ErrInvalid)
		}
		if len(ni.Addrs) > MaxAddrsPerIface {
			return fmt.Errorf("interface %s has more than %d addresses: %w", ni.Name, MaxAddrsPerIface, rampart.ErrTooLarge)
		}
		for _, v := range append([]string{ni.Name, ni.MAC}, ni.Addrs...) {
			if err := checkText("interface field", v, MaxIdentityLen); err != nil {
				return err
			}
		}
	}
	if len(inv.Packages) > MaxPackages {
		return fmt.Errorf("more than %d packages: %w", MaxPackages, rampart.ErrTooLarge)
	}
	for i, p := range inv.Packages {
		if p.Name == "" || p.Version == "" {
			return fmt.Errorf("package %d has no name or version: %w", i, rampart.ErrInvalid)
		}
		switch p.Source {
		case "dpkg", "opkg", "apk":
		default:
			return fmt.Errorf("package %s: source %q is not dpkg, opkg or apk: %w", p.Name, p.Source, rampart.ErrInvalid)
		}
		for _, v := range []string{p.Name, p.Version, p.Arch, p.PURL} {
			if err := checkText("package field", v, MaxPackageField); err != nil {
				return fmt.Errorf("package %d: %w", i, err)
			}
		}
	}
	return validateAttributes(inv.Attributes)
}

// UploadInventory stores a device's inventory and package list.
func (s *Service) UploadInventory(ctx context.Context, deviceID string, inv Inventory) error {
	if err := inv.validate(); err != nil {
		return fmt.Errorf("inventory of %s: %w", deviceID, err)
	}
	d, err := s.store.Device(ctx, deviceID)
	if err != nil {
		return fmt.Errorf("inventory of %s: %w", deviceID, err)
	}
	now := s.now().UTC()
	d.InventoryHash = inv.Hash
	d.OS, d.Kernel, d.Hostname = inv.OS, inv.Kernel, inv.Hostname
	d.Interfaces = inv.Interfaces
	d.PackageCount = len(inv.Packages)
	if err := mergeAttributes(d, inv.Attributes); err != nil {
		return fmt.Errorf("inventory of %s: %w", deviceID, err)
	}
	d.LastSeen, d.UpdatedAt = now, now
	if err := s.store.SaveInventory(ctx, d, inv.Packages); err != nil {
		return fmt.Errorf("inventory of %s: %w", deviceID, err)
	}
	s.cache.forget(deviceID)
	s.log.DebugContext(ctx, "inventory stored", "device", deviceID, "packages", len(inv.Packages))
	return nil
}

// ReportEvents stores status and event reports from a device.
func (s *Service) ReportEvents(ctx context.Context, deviceID string, events []Event) error {
	if len(events) == 0 {
		return fmt.Errorf("events of %s: no events: %w", deviceID, rampart.ErrInvalid)
	}
	if len(events) > MaxEventsPerCall {
		return fmt.Errorf("events of %s: more than %d in one report: %w", deviceID, MaxEventsPerCall, rampart.ErrTooLarge)
	}
	now := s.now().UTC()
	out := make([]Event, len(events))
	for i, e := range events {
		if e.Kind == "" {
			return fmt.Errorf("events of %s: event %d has no kind: %w", deviceID, i, rampart.ErrInvalid)
		}
		if err := checkText("event kind", e.Kind, 64); err != nil {
			return fmt.Errorf("events of %s: %w", deviceID, err)
		}
		switch e.Level {
		case "":
			e.Level = "info"
		case "info", "warning", "error":
		default:
			return fmt.Errorf("events of %s: level %q is not info, warning or error: %w", deviceID, e.Level, rampart.ErrInvalid)
		}
		if len(e.Message) > MaxEventMessage {
			return fmt.Errorf("events of %s: message longer than %d bytes: %w", deviceID, MaxEventMessage, rampart.ErrTooLarge)
		}
		if err := validateAttributes(e.Data); err != nil {
			return fmt.Errorf("events of %s: data: %w", deviceID, err)
		}
		e.DeviceID = deviceID
		e.ReceivedAt = now
		if e.At.IsZero() {
			e.At = now
		}
		out[i] = e
	}
	if err := s.store.AddEvents(ctx, out); err != nil {
		return fmt.Errorf("events of %s: %w", deviceID, err)
	}
	return nil
}
