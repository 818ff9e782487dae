// Package rampart holds the error kinds shared by every layer of Rampart and nothing else.
//
// Domain packages wrap these kinds with %w; each transport maps them to its own status codes
// in exactly one place.
package rampart

import "errors"

var (
	// ErrNotFound means the thing asked for does not exist (or is not visible to the caller).
	ErrNotFound = errors.New("not found")
	// ErrInvalid means the input was malformed or violates a rule; the message says which.
	ErrInvalid = errors.New("invalid input")
	// ErrConflict means the request clashes with the current state (duplicate key, wrong state).
	ErrConflict = errors.New("conflict")
	// ErrUnauthorized means the caller could not be authenticated.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden means the caller is known but not allowed to do this.
	ErrForbidden = errors.New("forbidden")
	// ErrTooLarge means the input exceeds a size or count limit.
	ErrTooLarge = errors.New("too large")
)
