package release

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/blob"
)

// A download grant lets one device fetch one artifact until it expires. Whoever assigns
// work to a device (deployments) issues it; the device API checks it against the device
// that presents it, so a leaked URL is useless to any other device.
//
//	grant = "g1." b64(expiry[8] | len(device)[2] | device | digest) "." b64(hmac)

const grantPrefix = "g1."

var grantB64 = base64.RawURLEncoding

// Grants issues and checks download grants.
type Grants struct {
	secret []byte
	now    func() time.Time
}

// NewGrants returns Grants keyed by secret (shared by every replica).
func NewGrants(secret []byte, now func() time.Time) *Grants {
	if now == nil {
		now = time.Now
	}
	return &Grants{secret: secret, now: now}
}

func (g *Grants) mac(payload []byte) []byte {
	h := hmac.New(sha256.New, g.secret)
	h.Write([]byte("download-grant\x00"))
	h.Write(payload)
	return h.Sum(nil)
}

// Issue returns a grant for deviceID to download the blob digest for ttl.
func (g *Grants) Issue(deviceID, digest string, ttl time.Duration) string {
	payload := make([]byte, 10, 10+len(deviceID)+len(digest))
	binary.BigEndian.PutUint64(payload, uint64(g.now().Add(ttl).UnixNano()))
	binary.BigEndian.PutUint16(payload[8:], uint16(len(deviceID)))
	payload = append(append(payload, deviceID...), digest...)
	return grantPrefix + grantB64.EncodeToString(payload) + "." + grantB64.EncodeToString(g.mac(payload))
}

// Check verifies grant lets deviceID download digest now.
func (g *Grants) Check(grant, deviceID, digest string) error {
	refuse := fmt.Errorf("no valid download grant for this device and artifact: %w", rampart.ErrForbidden)
	body, sig, ok := strings.Cut(strings.TrimPrefix(grant, grantPrefix), ".")
	if !ok || !strings.HasPrefix(grant, grantPrefix) || len(grant) > 1024 {
		return refuse
	}
	payload, err := grantB64.DecodeString(body)
	if err != nil || len(payload) < 10 {
		return refuse
	}
	mac, err := grantB64.DecodeString(sig)
	if err != nil || !hmac.Equal(mac, g.mac(payload)) {
		return refuse
	}
	n := int(binary.BigEndian.Uint16(payload[8:]))
	if len(payload) < 10+n {
		return refuse
	}
	if string(payload[10:10+n]) != deviceID || string(payload[10+n:]) != digest {
		return refuse
	}
	if !g.now().Before(time.Unix(0, int64(binary.BigEndian.Uint64(payload)))) {
		return fmt.Errorf("download grant expired: %w", rampart.ErrForbidden)
	}
	return nil
}

// Download is what a device gets for a granted artifact: the object to serve, or a URL
// to redirect to when the blob store can hand out pre-signed URLs.
type Download struct {
	Object   blob.Object
	Redirect string
}

// OpenForDevice checks deviceID's grant for digest and opens the artifact.
func (s *Service) OpenForDevice(ctx context.Context, g *Grants, deviceID, digest, grant string) (*Download, error) {
	if err := blob.CheckDigest(digest); err != nil {
		return nil, fmt.Errorf("download: %w", err)
	}
	if err := g.Check(grant, deviceID, digest); err != nil {
		return nil, fmt.Errorf("download %s by %s: %w", digest, deviceID, err)
	}
	if url, ok, err := s.blobs.PresignGet(ctx, digest, 15*time.Minute); err != nil {
		return nil, fmt.Errorf("download %s: %w", digest, err)
	} else if ok {
		return &Download{Redirect: url}, nil
	}
	obj, err := s.blobs.Open(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", digest, err)
	}
	return &Download{Object: obj}, nil
}
