package fleet

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rampart-iot/rampart"
)

// Device tokens and challenges are stateless: an HMAC under the fleet secret proves the
// server issued them, so verifying one costs a hash, not a store read.
//
//	challenge = "c1." b64(expiry[8] | random[16]) "." b64(hmac[:32])
//	token     = "d1." b64(expiry[8] | generation[8] | deviceID) "." b64(hmac[:32])

const (
	challengePrefix = "c1."
	tokenPrefix     = "d1."
	maxTokenLen     = 512
)

var b64 = base64.RawURLEncoding

func (s *Service) mac(purpose string, payload []byte) []byte {
	h := hmac.New(sha256.New, s.secret)
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write(payload)
	return h.Sum(nil)
}

// NewChallenge returns a fresh single-use challenge for a device to sign.
func (s *Service) NewChallenge() (string, time.Time, error) {
	exp := s.now().Add(s.challengeTTL).UTC()
	payload := make([]byte, 24)
	binary.BigEndian.PutUint64(payload, uint64(exp.UnixNano()))
	if _, err := io.ReadFull(s.rand, payload[8:]); err != nil {
		return "", time.Time{}, fmt.Errorf("new challenge: %w", err)
	}
	return challengePrefix + b64.EncodeToString(payload) + "." + b64.EncodeToString(s.mac("challenge", payload)), exp, nil
}

// checkChallenge verifies a challenge is ours and unexpired, and returns its expiry.
func (s *Service) checkChallenge(c string) (time.Time, error) {
	payload, err := s.open(c, challengePrefix, "challenge")
	if err != nil || len(payload) != 24 {
		return time.Time{}, fmt.Errorf("challenge is not one this server issued: %w", rampart.ErrUnauthorized)
	}
	exp := time.Unix(0, int64(binary.BigEndian.Uint64(payload)))
	if !s.now().Before(exp) {
		return time.Time{}, fmt.Errorf("challenge expired, ask for a new one: %w", rampart.ErrUnauthorized)
	}
	return exp, nil
}

func (s *Service) open(v, prefix, purpose string) ([]byte, error) {
	if len(v) > maxTokenLen || !strings.HasPrefix(v, prefix) {
		return nil, rampart.ErrUnauthorized
	}
	body, sig, ok := strings.Cut(v[len(prefix):], ".")
	if !ok {
		return nil, rampart.ErrUnauthorized
	}
	payload, err := b64.DecodeString(body)
	if err != nil {
		return nil, rampart.ErrUnauthorized
	}
	got, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(purpose, payload)) {
		return nil, rampart.ErrUnauthorized
	}
	return payload, nil
}

// issueToken makes a bearer token for d valid until the returned time.
func (s *Service) issueToken(d *Device) (string, time.Time) {
	exp := s.now().Add(s.tokenTTL).UTC()
	payload := make([]byte, 16, 16+len(d.ID))
	binary.BigEndian.PutUint64(payload, uint64(exp.UnixNano()))
	binary.BigEndian.PutUint64(payload[8:], uint64(d.AuthGeneration))
	payload = append(payload, d.ID...)
	return tokenPrefix + b64.EncodeToString(payload) + "." + b64.EncodeToString(s.mac("device-token", payload)), exp
}

// parseToken checks a token's MAC and expiry and returns its device ID and generation.
func (s *Service) parseToken(tok string) (string, int64, error) {
	payload, err := s.open(tok, tokenPrefix, "device-token")
	if err != nil || len(payload) <= 16 {
		return "", 0, fmt.Errorf("invalid device token: %w", rampart.ErrUnauthorized)
	}
	exp := time.Unix(0, int64(binary.BigEndian.Uint64(payload)))
	if !s.now().Before(exp) {
		return "", 0, fmt.Errorf("device token expired: %w", rampart.ErrUnauthorized)
	}
	return string(payload[16:]), int64(binary.BigEndian.Uint64(payload[8:])), nil
}
