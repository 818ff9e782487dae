package fleet

import "time"

// Event is something a device reported, or something fleet noticed about it.
type Event struct {
	DeviceID string
	Kind     string
	// Level is info, warning or error.
	Level   string
	Message string
	Data    map[string]string
	// At is when it happened by the device's clock (may be skewed); ReceivedAt is the server's.
	At         time.Time
	ReceivedAt time.Time
}

// Event kinds fleet itself records.
const (
	EventCloneSuspected = "clone_suspected"
	EventKeyRotated     = "key_rotated"
	EventKeyRevoked     = "key_revoked"
	EventStatusChanged  = "status_changed"
	EventEnrolled       = "enrolled"
)

// EnrollToken admits devices without operator approval while it is valid.
type EnrollToken struct {
	ID          string
	Description string
	// Hash is the hex SHA-256 of the secret; the secret itself is shown once and never stored.
	Hash      string
	MaxUses   int
	Uses      int
	ExpiresAt time.Time
	// DeviceType, when set, limits the token to devices of that type.
	DeviceType string
	// Tags are given to every device admitted with the token.
	Tags      []string
	CreatedAt time.Time
	RevokedAt time.Time // zero while not revoked
}

// Usable reports whether the token may admit one more device at now.
func (t *EnrollToken) Usable(now time.Time) bool {
	return t.RevokedAt.IsZero() && now.Before(t.ExpiresAt) && t.Uses < t.MaxUses
}

// Group is a named set of devices: static (explicit members) or dynamic (a filter expression).
type Group struct {
	Name        string
	Description string
	// Filter is empty for a static group.
	Filter    string
	CreatedAt time.Time
}

// Dynamic reports whether membership is computed from the filter.
func (g *Group) Dynamic() bool { return g.Filter != "" }
