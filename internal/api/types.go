package api

import (
	"encoding/base64"
	"time"

	"github.com/rampart-iot/rampart/internal/access"
	"github.com/rampart-iot/rampart/internal/fleet"
)

// The JSON shapes of the management API. The typed client (internal/client) uses them too.

// Device is a device record.
type Device struct {
	ID              string            `json:"id"`
	Serial          string            `json:"serial"`
	MAC             string            `json:"mac,omitempty"`
	DeviceType      string            `json:"device_type"`
	HWRevision      string            `json:"hw_revision,omitempty"`
	Status          string            `json:"status"`
	PublicKey       string            `json:"public_key,omitempty"`
	KeyFingerprint  string            `json:"key_fingerprint,omitempty"`
	KeyRevoked      bool              `json:"key_revoked"`
	CloneSuspect    bool              `json:"clone_suspect"`
	FirmwareVersion string            `json:"firmware_version,omitempty"`
	OS              string            `json:"os,omitempty"`
	Kernel          string            `json:"kernel,omitempty"`
	Hostname        string            `json:"hostname,omitempty"`
	Interfaces      []NetInterface    `json:"interfaces,omitempty"`
	Attributes      map[string]string `json:"attributes,omitempty"`
	Tags            []string          `json:"tags"`
	PackageCount    int               `json:"package_count"`
	FirstSeen       *time.Time        `json:"first_seen,omitempty"`
	LastSeen        *time.Time        `json:"last_seen,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	UpdatedAt       time.Time         `json:"updated_at"`
}

// NetInterface is a network interface of a device.
type NetInterface struct {
	Name  string   `json:"name"`
	MAC   string   `json:"mac,omitempty"`
	Addrs []string `json:"addrs,omitempty"`
}

// DeviceList is one page of devices.
type DeviceList struct {
	Devices []Device `json:"devices"`
	Next    string   `json:"next_cursor,omitempty"`
}

// Package is an installed package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch,omitempty"`
	Source  string `json:"source"`
	PURL    string `json:"purl,omitempty"`
}

// PackageList is a device's packages.
type PackageList struct {
	Packages []Package `json:"packages"`
}

// Event is a device event.
type Event struct {
	Kind       string            `json:"kind"`
	Level      string            `json:"level"`
	Message    string            `json:"message,omitempty"`
	Data       map[string]string `json:"data,omitempty"`
	At         time.Time         `json:"at"`
	ReceivedAt time.Time         `json:"received_at"`
}

// EventList is a device's recent events, newest first.
type EventList struct {
	Events []Event `json:"events"`
}

// TagRequest changes a device's tags.
type TagRequest struct {
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// PreauthorizeRequest registers a device before it connects.
type PreauthorizeRequest struct {
	Serial     string            `json:"serial"`
	MAC        string            `json:"mac,omitempty"`
	DeviceType string            `json:"device_type"`
	HWRevision string            `json:"hw_revision,omitempty"`
	PublicKey  string            `json:"public_key"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Tags       []string          `json:"tags,omitempty"`
}

// Group is a device group.
type Group struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Filter      string    `json:"filter,omitempty"`
	Dynamic     bool      `json:"dynamic"`
	CreatedAt   time.Time `json:"created_at,omitzero"`
}

// GroupList lists groups.
type GroupList struct {
	Groups []Group `json:"groups"`
}

// MembersRequest changes a static group's members.
type MembersRequest struct {
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// EnrollTokenRequest creates an enrollment token. TTL is a Go duration ("24h").
type EnrollTokenRequest struct {
	Description string   `json:"description,omitempty"`
	MaxUses     int      `json:"max_uses"`
	TTL         string   `json:"ttl"`
	DeviceType  string   `json:"device_type,omitempty"`
	Tags        []string `json:"tags,omitempty"`
}

// EnrollToken describes an enrollment token; Secret is set only in the creation answer.
type EnrollToken struct {
	ID          string     `json:"id"`
	Description string     `json:"description,omitempty"`
	MaxUses     int        `json:"max_uses"`
	Uses        int        `json:"uses"`
	ExpiresAt   time.Time  `json:"expires_at"`
	DeviceType  string     `json:"device_type,omitempty"`
	Tags        []string   `json:"tags,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	Secret      string     `json:"secret,omitempty"`
}

// EnrollTokenList lists enrollment tokens.
type EnrollTokenList struct {
	Tokens []EnrollToken `json:"tokens"`
}

// TokenRequest creates an API token. TTL is a Go duration; empty means no expiry.
type TokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
	TTL  string `json:"ttl,omitempty"`
}

// Token describes an API token; Secret is set only in the creation answer.
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Secret    string     `json:"secret,omitempty"`
}

// TokenList lists API tokens.
type TokenList struct {
	Tokens []Token `json:"tokens"`
}

// Whoami describes the caller.
type Whoami struct {
	TokenID string `json:"token_id"`
	Name    string `json:"name"`
	Role    string `json:"role"`
}

// FilterField documents one variable of device filter expressions.
type FilterField struct {
	Name string `json:"name"`
	Doc  string `json:"doc"`
}

// Error is the body of every 4xx and 5xx answer.
type Error struct {
	Error     string `json:"error"`
	RequestID string `json:"request_id,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func deviceOut(d *fleet.Device) Device {
	out := Device{
		ID: d.ID, Serial: d.Identity.Serial, MAC: d.Identity.MAC, DeviceType: d.Identity.DeviceType,
		HWRevision: d.Identity.HWRevision, Status: string(d.Status), KeyRevoked: d.KeyRevoked,
		CloneSuspect: d.CloneSuspect, FirmwareVersion: d.FirmwareVersion, OS: d.OS, Kernel: d.Kernel,
		Hostname: d.Hostname, Attributes: d.Attributes, Tags: d.Tags, PackageCount: d.PackageCount,
		FirstSeen: timePtr(d.FirstSeen), LastSeen: timePtr(d.LastSeen), CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC(),
	}
	if len(d.PublicKey) > 0 {
		out.PublicKey = base64.StdEncoding.EncodeToString(d.PublicKey)
		out.KeyFingerprint = fleet.KeyFingerprint(d.PublicKey)
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	for _, ni := range d.Interfaces {
		out.Interfaces = append(out.Interfaces, NetInterface{Name: ni.Name, MAC: ni.MAC, Addrs: ni.Addrs})
	}
	return out
}

func groupOut(g *fleet.Group) Group {
	return Group{Name: g.Name, Description: g.Description, Filter: g.Filter, Dynamic: g.Dynamic(), CreatedAt: g.CreatedAt.UTC()}
}

func enrollTokenOut(t *fleet.EnrollToken) EnrollToken {
	return EnrollToken{
		ID: t.ID, Description: t.Description, MaxUses: t.MaxUses, Uses: t.Uses, ExpiresAt: t.ExpiresAt.UTC(),
		DeviceType: t.DeviceType, Tags: t.Tags, CreatedAt: t.CreatedAt.UTC(), RevokedAt: timePtr(t.RevokedAt),
	}
}

func tokenOut(t *access.Token) Token {
	return Token{ID: t.ID, Name: t.Name, Role: string(t.Role), CreatedAt: t.CreatedAt.UTC(), ExpiresAt: timePtr(t.ExpiresAt), RevokedAt: timePtr(t.RevokedAt)}
}
