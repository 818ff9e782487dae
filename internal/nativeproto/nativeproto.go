// Package nativeproto is the wire format of Rampart's native device API, version 1: the JSON
// messages, paths and signing rules that the agent and the server's deviceapi/native adapter
// share. It holds no logic beyond encoding rules, and imports nothing from the server.
//
// Authentication: a device proves possession of its Ed25519 key by signing a request body
// that embeds a fresh, single-use server challenge; the signature travels base64 (standard
// encoding) in the SignatureHeader. Enroll and Auth answer with a short-lived bearer token,
// sent as "Authorization: Bearer <token>" on every other call.
package nativeproto

import (
	"encoding/json"
	"time"
)

// Paths of the native device API.
const (
	Prefix        = "/device/v1"
	PathChallenge = Prefix + "/challenge"
	PathEnroll    = Prefix + "/enroll"
	PathAuth      = Prefix + "/auth"
	PathCheckIn   = Prefix + "/checkin"
	PathInventory = Prefix + "/inventory"
	PathEvents    = Prefix + "/events"
	PathRotateKey = Prefix + "/keys/rotate"
	// PathArtifacts + digest + "?grant=..." downloads an artifact the device was granted.
	PathArtifacts = Prefix + "/artifacts/"
	// PathTUFMetadata + file name serves TUF metadata; PathTUFTargets + target file name
	// serves TUF targets (with a download grant, as an artifact).
	PathTUFMetadata = Prefix + "/tuf/metadata/"
	PathTUFTargets  = Prefix + "/tuf/targets/"
	// PathDeployments + deployment ID + "/status" takes a device's status report for one
	// piece of work (POST, StatusReport → StatusAnswer).
	PathDeployments = Prefix + "/deployments/"
)

// GrantHeader carries a download grant when the URL cannot (TUF target fetches).
const GrantHeader = "X-Rampart-Grant"

// Headers carrying Ed25519 signatures over the exact request body.
const (
	SignatureHeader = "X-Rampart-Signature"
	// NewKeySignatureHeader carries the new key's signature on a key rotation.
	NewKeySignatureHeader = "X-Rampart-New-Key-Signature"
)

// Limits on request bodies, in bytes.
const (
	MaxSmallBody     = 64 << 10
	MaxInventoryBody = 8 << 20
)

// Challenge answers POST /challenge.
type Challenge struct {
	Challenge string    `json:"challenge"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Identity is what a device says it is.
type Identity struct {
	Serial     string `json:"serial"`
	MAC        string `json:"mac,omitempty"`
	DeviceType string `json:"device_type"`
	HWRevision string `json:"hw_revision,omitempty"`
}

// EnrollRequest is the signed body of POST /enroll.
type EnrollRequest struct {
	Challenge string   `json:"challenge"`
	Identity  Identity `json:"identity"`
	// PublicKey is the raw 32-byte Ed25519 key, base64 (standard encoding).
	PublicKey       string            `json:"public_key"`
	EnrollmentToken string            `json:"enrollment_token,omitempty"`
	Attributes      map[string]string `json:"attributes,omitempty"`
}

// EnrollResponse answers /enroll: the device's ID and admission status, and a token once
// the device is accepted.
type EnrollResponse struct {
	DeviceID  string    `json:"device_id"`
	Status    string    `json:"status"`
	Token     string    `json:"token,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// TUFRoot is the fleet's current TUF root metadata, sent to an accepted device so it can
	// verify updates; a device provisioned with a root at manufacturing keeps its own.
	TUFRoot json.RawMessage `json:"tuf_root,omitempty"`
}

// AuthRequest is the signed body of POST /auth.
type AuthRequest struct {
	Challenge string `json:"challenge"`
	DeviceID  string `json:"device_id"`
}

// AuthResponse answers /auth and /keys/rotate.
type AuthResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// RotateKeyRequest is the body of POST /keys/rotate, signed by both the current key
// (SignatureHeader) and the new one (NewKeySignatureHeader).
type RotateKeyRequest struct {
	Challenge    string `json:"challenge"`
	NewPublicKey string `json:"new_public_key"`
}

// CheckInRequest is the body of POST /checkin.
type CheckInRequest struct {
	FirmwareVersion string `json:"firmware_version"`
	// Attributes carries only attributes that changed since the last check-in; a key with an
	// empty value removes the attribute.
	Attributes map[string]string `json:"attributes,omitempty"`
	// InventoryHash is the digest of the inventory the agent holds; the server asks for an
	// upload when it differs from the last one stored.
	InventoryHash string `json:"inventory_hash,omitempty"`
}

// CheckInResponse answers /checkin. Action is "none" when there is nothing to do.
type CheckInResponse struct {
	Action          string `json:"action"`
	PollIntervalSec int    `json:"poll_interval_s"`
	InventoryWanted bool   `json:"inventory_wanted,omitempty"`
	Work            []Work `json:"work"`
}

// Work kinds.
const (
	// WorkUpdate asks the device to fetch and install (or only download) a release.
	WorkUpdate = "update"
)

// Work is one piece of pending work: an update the device should take.
type Work struct {
	// ID is the deployment's ID; status reports go to PathDeployments + ID + "/status".
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Release and Version name the release to install.
	Release string `json:"release,omitempty"`
	Version string `json:"version,omitempty"`
	// Action is "forced", "soft" (the device may defer until InstallBy) or "download-only"
	// (stage the artifact and report success once it is downloaded).
	Action    string    `json:"action,omitempty"`
	InstallBy time.Time `json:"install_by,omitzero"`
	// Artifact is the TUF target to install; Deltas are patches to it the device may use.
	Artifact *WorkArtifact  `json:"artifact,omitempty"`
	Deltas   []WorkArtifact `json:"deltas,omitempty"`
}

// WorkArtifact is one TUF target of a piece of work with the device's download grant for it.
type WorkArtifact struct {
	// Path is the TUF target path; the device checks it against signed metadata.
	Path   string `json:"path"`
	Role   string `json:"role"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// DeltaFrom is the version a delta applies to.
	DeltaFrom string `json:"delta_from,omitempty"`
	// Grant is sent with the download (GrantHeader or ?grant=).
	Grant string `json:"grant"`
}

// StatusReport is the body of POST PathDeployments + ID + "/status".
type StatusReport struct {
	// State is one of downloading, downloaded, installing, rebooting, verifying, success,
	// failure, rolled-back.
	State string `json:"state"`
	// Seq never decreases across the reports a device sends for the deployment (the agent
	// sends the state's position in the order above, so a re-sent report repeats it).
	Seq uint64 `json:"seq"`
	// Log is an excerpt of the device's log; kept with failure and rolled-back.
	Log string `json:"log,omitempty"`
}

// StatusAnswer answers a status report with the state the server holds for the device. A
// device that has not started installing stops when it reads "cancelled" or "timed-out".
type StatusAnswer struct {
	State string `json:"state"`
}

// Inventory is the body of PUT /inventory.
type Inventory struct {
	Hash       string            `json:"hash"`
	OS         string            `json:"os,omitempty"`
	Kernel     string            `json:"kernel,omitempty"`
	Hostname   string            `json:"hostname,omitempty"`
	Interfaces []NetInterface    `json:"interfaces,omitempty"`
	Packages   []Package         `json:"packages,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// NetInterface is one network interface.
type NetInterface struct {
	Name  string   `json:"name"`
	MAC   string   `json:"mac,omitempty"`
	Addrs []string `json:"addrs,omitempty"`
}

// Package is one installed package, as an SBOM component.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch,omitempty"`
	Source  string `json:"source"`
	PURL    string `json:"purl,omitempty"`
}

// EventsRequest is the body of POST /events.
type EventsRequest struct {
	Events []Event `json:"events"`
}

// Event is one status or event report.
type Event struct {
	Kind    string            `json:"kind"`
	Level   string            `json:"level,omitempty"`
	Message string            `json:"message,omitempty"`
	Data    map[string]string `json:"data,omitempty"`
	At      time.Time         `json:"at,omitzero"`
}

// Error is the body of every 4xx and 5xx answer.
type Error struct {
	Error     string `json:"error"`
	RequestID string `json:"request_id,omitempty"`
}
