// Package fleet is the device registry: identity and admission, enrollment tokens, keys and
// their rotation and revocation, clone detection, check-ins, inventory and groups.
//
// It knows nothing of HTTP, SQL or any wire protocol: transports call Service, and Service
// reaches storage only through the Store interface it declares.
package fleet

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/rampart-iot/rampart"
)

// Status is where a device stands in admission.
type Status string

// The admission states of a device.
const (
	// StatusPreauthorized: an operator registered the identity and key; the first enrollment
	// with exactly that pair is accepted without further approval.
	StatusPreauthorized Status = "preauthorized"
	StatusPending       Status = "pending"
	StatusAccepted      Status = "accepted"
	StatusRejected      Status = "rejected"
	// StatusDecommissioned is final: the device is refused everywhere, forever.
	StatusDecommissioned Status = "decommissioned"
)

// ParseStatus checks s names a status.
func ParseStatus(s string) (Status, error) {
	switch st := Status(s); st {
	case StatusPreauthorized, StatusPending, StatusAccepted, StatusRejected, StatusDecommissioned:
		return st, nil
	}
	return "", fmt.Errorf("unknown device status %q: %w", s, rampart.ErrInvalid)
}

// Identity is what a device says it is. DeviceType and Serial together are unique in a fleet.
type Identity struct {
	Serial     string
	MAC        string
	DeviceType string
	HWRevision string
}

// Device is one device record with its latest inventory summary.
type Device struct {
	ID       string
	Identity Identity
	Status   Status

	// PublicKey is the device's current Ed25519 public key; KeyRevoked marks it refused.
	PublicKey  ed25519.PublicKey
	KeyRevoked bool
	// AuthGeneration increases whenever outstanding device tokens must stop working
	// (key rotation or revocation, rejection, decommissioning).
	AuthGeneration int64
	// CloneSuspect is set when the device's key or identity was seen in a way only a copy
	// of the device would produce.
	CloneSuspect bool

	FirmwareVersion string
	OS              string
	Kernel          string
	Hostname        string
	Interfaces      []NetInterface
	Attributes      map[string]string
	Tags            []string
	// InventoryHash is the agent's digest of the last inventory it uploaded.
	InventoryHash string
	PackageCount  int

	FirstSeen time.Time // zero until the first enrollment or check-in
	LastSeen  time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}

// NetInterface is one network interface the device reported.
type NetInterface struct {
	Name  string
	MAC   string
	Addrs []string
}

// Package is one installed software component, as an SBOM component with a package URL.
type Package struct {
	Name    string
	Version string
	Arch    string
	// Source is the package database it came from: dpkg, opkg or apk.
	Source string
	PURL   string
}

// KeyFingerprint is the hex SHA-256 of a public key, used to find a key across devices.
func KeyFingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// Limits bound every device-supplied field.
const (
	MaxIdentityLen   = 128
	MaxAttributes    = 64
	MaxAttrKeyLen    = 64
	MaxAttrValueLen  = 1024
	MaxTags          = 32
	MaxTagLen        = 64
	MaxInterfaces    = 64
	MaxAddrsPerIface = 32
	MaxPackages      = 20000
	MaxPackageField  = 256
	MaxVersionLen    = 128
	MaxEventsPerCall = 100
	MaxEventMessage  = 4096
)

func (id Identity) validate() error {
	if id.Serial == "" {
		return fmt.Errorf("identity: serial is required: %w", rampart.ErrInvalid)
	}
	if id.DeviceType == "" {
		return fmt.Errorf("identity: device type is required: %w", rampart.ErrInvalid)
	}
	for name, v := range map[string]string{"serial": id.Serial, "mac": id.MAC, "device type": id.DeviceType, "hardware revision": id.HWRevision} {
		if err := checkText(name, v, MaxIdentityLen); err != nil {
			return fmt.Errorf("identity: %w", err)
		}
	}
	return nil
}

func checkText(name, v string, max int) error {
	if len(v) > max {
		return fmt.Errorf("%s is longer than %d bytes: %w", name, max, rampart.ErrInvalid)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return fmt.Errorf("%s contains a control or invalid character: %w", name, rampart.ErrInvalid)
		}
	}
	return nil
}

func validateAttributes(attrs map[string]string) error {
	if len(attrs) > MaxAttributes {
		return fmt.Errorf("more than %d attributes: %w", MaxAttributes, rampart.ErrTooLarge)
	}
	for k, v := range attrs {
		if k == "" {
			return fmt.Errorf("empty attribute name: %w", rampart.ErrInvalid)
		}
		if err := checkText("attribute name", k, MaxAttrKeyLen); err != nil {
			return err
		}
		if err := checkText("attribute "+k, v, MaxAttrValueLen); err != nil {
			return err
		}
	}
	return nil
}

// ValidateTag checks one tag: 1-64 bytes of letters, digits and -_.:/=.
func ValidateTag(tag string) error {
	if tag == "" || len(tag) > MaxTagLen {
		return fmt.Errorf("tag %q must be 1 to %d bytes: %w", tag, MaxTagLen, rampart.ErrInvalid)
	}
	for _, r := range tag {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == ':' || r == '/' || r == '='
		if !ok {
			return fmt.Errorf("tag %q may hold only letters, digits and -_.:/=: %w", tag, rampart.ErrInvalid)
		}
	}
	return nil
}
