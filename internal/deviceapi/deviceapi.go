// Package deviceapi holds what every device-facing protocol shares: the request context that
// carries the authenticated device. The
// protocols themselves live in subpackages (native/, later hawkbit/ and mender/) and adapt
// their wire shapes to the same fleet services. It holds no protocol and no routes.
package deviceapi

import "context"

type deviceKey struct{}

// WithDevice returns ctx carrying the authenticated device's ID.
func WithDevice(ctx context.Context, deviceID string) context.Context {
	return context.WithValue(ctx, deviceKey{}, deviceID)
}

// Device returns the authenticated device's ID, or "" when the request is unauthenticated.
// Handlers take the device only from here, never from the path or body, so one device can
// never name another.
func Device(ctx context.Context) string {
	id, _ := ctx.Value(deviceKey{}).(string)
	return id
}
