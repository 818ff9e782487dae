package fleet

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/rampart-iot/rampart"
)

// Signed is a request body and the Ed25519 signature over exactly those bytes.
type Signed struct {
	Body      []byte
	Signature []byte
}

func (sg Signed) verify(pub ed25519.PublicKey) bool {
	return len(pub) == ed25519.PublicKeySize && len(sg.Signature) == ed25519.SignatureSize &&
		ed25519.Verify(pub, sg.Body, sg.Signature)
}

// EnrollRequest is a device asking to join the fleet. The transport decodes Identity,
// PublicKey, EnrollToken, Attributes and Challenge from Signed.Body, so the signature covers
// all of them.
type EnrollRequest struct {
	Identity    Identity
	PublicKey   ed25519.PublicKey
	EnrollToken string
	Attributes  map[string]string
	Challenge   string
	Signed      Signed
}

// Admission is the outcome of an enrollment or authentication: the device, and a bearer
// token when it is accepted.
type Admission struct {
	Device    *Device
	Token     string
	ExpiresAt time.Time
}

// Enroll admits a device by enrollment token, by pre-authorization, or leaves it pending
// for an operator. Enrolling again with the same identity and key is idempotent.
func (s *Service) Enroll(ctx context.Context, req EnrollRequest) (*Admission, error) {
	if len(req.PublicKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("enroll: public key must be %d bytes of Ed25519: %w", ed25519.PublicKeySize, rampart.ErrInvalid)
	}
	if !req.Signed.verify(req.PublicKey) {
		return nil, fmt.Errorf("enroll: signature does not verify with the presented key: %w", rampart.ErrUnauthorized)
	}
	chExp, err := s.checkChallenge(req.Challenge)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if err := req.Identity.validate(); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if err := validateAttributes(req.Attributes); err != nil {
		return nil, fmt.Errorf("enroll %s: %w", req.Identity.Serial, err)
	}
	id := req.Identity
	now := s.now().UTC()
	fp := KeyFingerprint(req.PublicKey)

	byIdentity, err := s.store.DeviceByIdentity(ctx, id.DeviceType, id.Serial)
	if err != nil && !notFound(err) {
		return nil, fmt.Errorf("enroll %s: %w", id.Serial, err)
	}
	byKey, err := s.store.DeviceByKey(ctx, fp)
	if err != nil && !notFound(err) {
		return nil, fmt.Errorf("enroll %s: %w", id.Serial, err)
	}
	var tok *EnrollToken
	// A device presenting a key Rampart already knows needs no token (it may have been
	// used up by that very device's first enrollment).
	if req.EnrollToken != "" && byKey == nil {
		if tok, err = s.usableEnrollToken(ctx, req.EnrollToken, id, now); err != nil {
			return nil, fmt.Errorf("enroll %s: %w", id.Serial, err)
		}
	}
	// Everything checkable without writing has passed; from here on the challenge is spent,
	// so a replayed request changes nothing.
	if err := s.store.ConsumeNonce(ctx, "challenge:"+req.Challenge, chExp); err != nil {
		if errors.Is(err, rampart.ErrConflict) {
			return nil, fmt.Errorf("enroll %s: challenge already used (replay?): %w", id.Serial, rampart.ErrUnauthorized)
		}
		return nil, fmt.Errorf("enroll %s: %w", id.Serial, err)
	}

	switch {
	case byKey != nil && (byIdentity == nil || byIdentity.ID != byKey.ID):
		s.flagClone(ctx, byKey, fmt.Sprintf("its key was presented by another identity (%s/%s)", id.DeviceType, id.Serial), now)
		return nil, fmt.Errorf("enroll %s: this key belongs to another device: %w", id.Serial, rampart.ErrConflict)
	case byKey != nil:
		return s.reenroll(ctx, byKey, req, now)
	case byIdentity != nil:
		return s.enrollNewKey(ctx, byIdentity, req, tok, now)
	}

	d := &Device{
		Identity: id, PublicKey: req.PublicKey, Status: StatusPending,
		Attributes: req.Attributes, FirstSeen: now, CreatedAt: now, UpdatedAt: now,
	}
	if d.ID, err = s.newID("dev_"); err != nil {
		return nil, fmt.Errorf("enroll %s: %w", id.Serial, err)
	}
	consume := ""
	if tok != nil {
		d.Status = StatusAccepted
		d.Tags = append([]string(nil), tok.Tags...)
		consume = tok.ID
	}
	if err := s.store.CreateDevice(ctx, d, consume, now); err != nil {
		return nil, fmt.Errorf("enroll %s: %w", id.Serial, err)
	}
	s.record(ctx, d.ID, EventEnrolled, "info", "enrolled as "+string(d.Status), now)
	s.log.InfoContext(ctx, "device enrolled", "device", d.ID, "serial", id.Serial, "status", d.Status)
	return s.admission(d), nil
}

// reenroll handles a known identity presenting its own key again.
func (s *Service) reenroll(ctx context.Context, d *Device, req EnrollRequest, now time.Time) (*Admission, error) {
	switch {
	case d.Status == StatusDecommissioned:
		return nil, fmt.Errorf("enroll %s: device is decommissioned: %w", d.ID, rampart.ErrForbidden)
	case d.Status == StatusRejected:
		return nil, fmt.Errorf("enroll %s: device was rejected: %w", d.ID, rampart.ErrForbidden)
	case d.KeyRevoked:
		return nil, fmt.Errorf("enroll %s: this key was revoked; enroll with a new key: %w", d.ID, rampart.ErrForbidden)
	case d.Status == StatusPreauthorized:
		d.Status = StatusAccepted
		d.FirstSeen = now
		for k, v := range req.Attributes {
			if d.Attributes == nil {
				d.Attributes = map[string]string{}
			}
			d.Attributes[k] = v
		}
		d.UpdatedAt = now
		if err := s.store.UpdateDevice(ctx, d); err != nil {
			return nil, fmt.Errorf("enroll %s: %w", d.ID, err)
		}
		s.cache.forget(d.ID)
		s.record(ctx, d.ID, EventEnrolled, "info", "pre-authorized device enrolled", now)
		s.log.InfoContext(ctx, "device enrolled", "device", d.ID, "status", d.Status)
	}
	return s.admission(d), nil
}

// enrollNewKey handles a known identity presenting a key Rampart has not seen.
func (s *Service) enrollNewKey(ctx context.Context, d *Device, req EnrollRequest, tok *EnrollToken, now time.Time) (*Admission, error) {
	if d.Status == StatusDecommissioned {
		return nil, fmt.Errorf("enroll %s: device is decommissioned: %w", d.ID, rampart.ErrForbidden)
	}
	if !d.KeyRevoked {
		// The registered key still stands, so a second key for the same identity means a
		// copy of the device (or an impostor).
		s.flagClone(ctx, d, "its identity was presented with a second key "+KeyFingerprint(req.PublicKey)[:16], now)
		return nil, fmt.Errorf("enroll %s: identity is registered with another key: %w", d.ID, rampart.ErrConflict)
	}
	// The old key was revoked by an operator: the device may come back with a new key, but
	// must be admitted again.
	d.PublicKey = req.PublicKey
	d.KeyRevoked = false
	d.AuthGeneration++
	d.Status = StatusPending
	if tok != nil {
		// The token admits the device again, and that costs one of its uses.
		if err := s.store.ConsumeEnrollToken(ctx, tok.ID, now); err != nil {
			return nil, fmt.Errorf("enroll %s with new key: %w", d.ID, err)
		}
		d.Status = StatusAccepted
	}
	d.UpdatedAt = now
	if err := s.store.UpdateDevice(ctx, d); err != nil {
		return nil, fmt.Errorf("enroll %s with new key: %w", d.ID, err)
	}
	s.cache.forget(d.ID)
	s.record(ctx, d.ID, EventEnrolled, "info", "re-enrolled with a new key as "+string(d.Status), now)
	return s.admission(d), nil
}

func (s *Service) admission(d *Device) *Admission {
	a := &Admission{Device: d}
	if d.Status == StatusAccepted && !d.KeyRevoked {
		a.Token, a.ExpiresAt = s.issueToken(d)
	}
	return a
}

func (s *Service) usableEnrollToken(ctx context.Context, secret string, id Identity, now time.Time) (*EnrollToken, error) {
	if len(secret) > 256 {
		return nil, fmt.Errorf("invalid enrollment token: %w", rampart.ErrUnauthorized)
	}
	sum := sha256.Sum256([]byte(secret))
	t, err := s.store.EnrollTokenByHash(ctx, hex.EncodeToString(sum[:]))
	if notFound(err) {
		return nil, fmt.Errorf("invalid enrollment token: %w", rampart.ErrUnauthorized)
	}
	if err != nil {
		return nil, err
	}
	if !t.Usable(now) {
		return nil, fmt.Errorf("enrollment token %s is expired, revoked or used up: %w", t.ID, rampart.ErrUnauthorized)
	}
	if t.DeviceType != "" && t.DeviceType != id.DeviceType {
		return nil, fmt.Errorf("enrollment token %s is for device type %s: %w", t.ID, t.DeviceType, rampart.ErrForbidden)
	}
	return t, nil
}

// flagClone marks d as a possible clone and records why. Failures are logged, not returned:
// the caller is already refusing the request.
func (s *Service) flagClone(ctx context.Context, d *Device, why string, now time.Time) {
	s.log.WarnContext(ctx, "possible cloned device", "device", d.ID, "why", why)
	if !d.CloneSuspect {
		d.CloneSuspect = true
		d.UpdatedAt = now
		if err := s.store.UpdateDevice(ctx, d); err != nil {
			s.log.ErrorContext(ctx, "flag clone", "device", d.ID, "err", err)
		}
		s.cache.forget(d.ID)
	}
	s.record(ctx, d.ID, EventCloneSuspected, "warning", "possible clone: "+why, now)
}

func (s *Service) record(ctx context.Context, deviceID, kind, level, msg string, now time.Time) {
	ev := Event{DeviceID: deviceID, Kind: kind, Level: level, Message: msg, At: now, ReceivedAt: now}
	if err := s.store.AddEvents(ctx, []Event{ev}); err != nil {
		s.log.ErrorContext(ctx, "record device event", "device", deviceID, "kind", kind, "err", err)
	}
}

// AuthRequest asks for a bearer token; DeviceID and Challenge come from Signed.Body.
type AuthRequest struct {
	DeviceID  string
	Challenge string
	Signed    Signed
}

// Authenticate checks a device's signed challenge and issues a short-lived bearer token.
// A pending device gets an Admission without a token.
func (s *Service) Authenticate(ctx context.Context, req AuthRequest) (*Admission, error) {
	chExp, err := s.checkChallenge(req.Challenge)
	if err != nil {
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	if req.DeviceID == "" || len(req.DeviceID) > MaxIdentityLen {
		return nil, fmt.Errorf("authenticate: device ID missing or too long: %w", rampart.ErrInvalid)
	}
	d, err := s.store.Device(ctx, req.DeviceID)
	if err != nil {
		return nil, fmt.Errorf("authenticate %s: %w", req.DeviceID, err)
	}
	if !req.Signed.verify(d.PublicKey) {
		return nil, fmt.Errorf("authenticate %s: signature does not verify with the device's key: %w", d.ID, rampart.ErrUnauthorized)
	}
	if err := s.store.ConsumeNonce(ctx, "challenge:"+req.Challenge, chExp); err != nil {
		if errors.Is(err, rampart.ErrConflict) {
			return nil, fmt.Errorf("authenticate %s: challenge already used (replay?): %w", d.ID, rampart.ErrUnauthorized)
		}
		return nil, fmt.Errorf("authenticate %s: %w", d.ID, err)
	}
	if err := refusal(d); err != nil {
		return nil, fmt.Errorf("authenticate %s: %w", d.ID, err)
	}
	s.cache.put(d, s.now())
	return s.admission(d), nil
}

// refusal says why d may not authenticate at all, or nil (pending devices may ask again).
func refusal(d *Device) error {
	switch {
	case d.Status == StatusDecommissioned:
		return fmt.Errorf("device is decommissioned: %w", rampart.ErrForbidden)
	case d.Status == StatusRejected:
		return fmt.Errorf("device was rejected: %w", rampart.ErrForbidden)
	case d.KeyRevoked:
		return fmt.Errorf("device key was revoked: %w", rampart.ErrForbidden)
	}
	return nil
}

// RotateKeyRequest replaces a device's key; Signed.Signature is by the current key and
// NewSignature, over the same body, by the new one.
type RotateKeyRequest struct {
	NewKey       ed25519.PublicKey
	Challenge    string
	Signed       Signed
	NewSignature []byte
}

// RotateKey swaps an authenticated device's key for a new one it proves it holds. Tokens
// issued before stop working; the returned Admission carries a new one.
func (s *Service) RotateKey(ctx context.Context, deviceID string, req RotateKeyRequest) (*Admission, error) {
	if len(req.NewKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("rotate key of %s: new key must be %d bytes of Ed25519: %w", deviceID, ed25519.PublicKeySize, rampart.ErrInvalid)
	}
	chExp, err := s.checkChallenge(req.Challenge)
	if err != nil {
		return nil, fmt.Errorf("rotate key of %s: %w", deviceID, err)
	}
	d, err := s.store.Device(ctx, deviceID)
	if err != nil {
		return nil, fmt.Errorf("rotate key of %s: %w", deviceID, err)
	}
	if err := refusal(d); err != nil {
		return nil, fmt.Errorf("rotate key of %s: %w", deviceID, err)
	}
	if !req.Signed.verify(d.PublicKey) {
		return nil, fmt.Errorf("rotate key of %s: signature by the current key does not verify: %w", deviceID, rampart.ErrUnauthorized)
	}
	if !(Signed{Body: req.Signed.Body, Signature: req.NewSignature}).verify(req.NewKey) {
		return nil, fmt.Errorf("rotate key of %s: signature by the new key does not verify: %w", deviceID, rampart.ErrUnauthorized)
	}
	now := s.now().UTC()
	other, err := s.store.DeviceByKey(ctx, KeyFingerprint(req.NewKey))
	switch {
	case err == nil && other.ID != d.ID:
		s.flagClone(ctx, other, "its key was offered as a new key by "+d.ID, now)
		return nil, fmt.Errorf("rotate key of %s: the new key belongs to another device: %w", deviceID, rampart.ErrConflict)
	case err == nil:
		return nil, fmt.Errorf("rotate key of %s: the new key is the current key: %w", deviceID, rampart.ErrInvalid)
	case !notFound(err):
		return nil, fmt.Errorf("rotate key of %s: %w", deviceID, err)
	}
	if err := s.store.ConsumeNonce(ctx, "challenge:"+req.Challenge, chExp); err != nil {
		if errors.Is(err, rampart.ErrConflict) {
			return nil, fmt.Errorf("rotate key of %s: challenge already used (replay?): %w", deviceID, rampart.ErrUnauthorized)
		}
		return nil, fmt.Errorf("rotate key of %s: %w", deviceID, err)
	}
	d.PublicKey = req.NewKey
	d.AuthGeneration++
	d.UpdatedAt = now
	if err := s.store.UpdateDevice(ctx, d); err != nil {
		return nil, fmt.Errorf("rotate key of %s: %w", deviceID, err)
	}
	s.cache.forget(d.ID)
	s.record(ctx, d.ID, EventKeyRotated, "info", "device rotated its key to "+KeyFingerprint(req.NewKey)[:16], now)
	s.log.InfoContext(ctx, "device key rotated", "device", d.ID)
	return s.admission(d), nil
}

// VerifyToken resolves a bearer token to the device it was issued to, refusing tokens of
// devices whose admission changed since.
func (s *Service) VerifyToken(ctx context.Context, tok string) (string, error) {
	id, gen, err := s.parseToken(tok)
	if err != nil {
		return "", err
	}
	now := s.now()
	c, ok := s.cache.get(id, now)
	if !ok {
		a, err := s.store.DeviceAuthState(ctx, id)
		if notFound(err) {
			return "", fmt.Errorf("device token for unknown device: %w", rampart.ErrUnauthorized)
		}
		if err != nil {
			return "", fmt.Errorf("verify device token: %w", err)
		}
		c = s.cache.putState(a, now)
	}
	if c.status != StatusAccepted || c.revoked || c.generation != gen {
		return "", fmt.Errorf("device token no longer valid, authenticate again: %w", rampart.ErrUnauthorized)
	}
	return id, nil
}
