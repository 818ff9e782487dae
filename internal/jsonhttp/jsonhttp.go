// Package jsonhttp is the strict JSON plumbing Rampart's HTTP transports share: bounded,
// typed request decoding that refuses unknown fields and wrong content types, response
// writing, bearer-token parsing and request IDs. It does not map errors to status codes;
// each transport does that in one place of its own.
package jsonhttp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/rampart-iot/rampart"
)

// ReadBody reads at most max bytes of a JSON request body. A body with another content type
// fails with ErrUnsupportedType, an oversized one with rampart.ErrTooLarge.
func ReadBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, fmt.Errorf("content type must be application/json: %w", ErrUnsupportedType)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("request body larger than %d bytes: %w", max, rampart.ErrTooLarge)
		}
		return nil, fmt.Errorf("read request body: %w", rampart.ErrInvalid)
	}
	return body, nil
}

// ErrUnsupportedType marks a request body that is not JSON.
var ErrUnsupportedType = errors.New("unsupported media type")

// Unmarshal decodes exactly one JSON value into v, refusing unknown fields and trailing data.
func Unmarshal(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %s: %w", err, rampart.ErrInvalid)
	}
	if dec.More() {
		return fmt.Errorf("malformed JSON: data after the value: %w", rampart.ErrInvalid)
	}
	return nil
}

// Decode reads and decodes a bounded JSON body into v.
func Decode(w http.ResponseWriter, r *http.Request, max int64, v any) error {
	body, err := ReadBody(w, r, max)
	if err != nil {
		return err
	}
	return Unmarshal(body, v)
}

// Write sends v as JSON with the given status.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client hung up; nothing left to tell it
}

// BearerToken extracts the token of an "Authorization: Bearer <token>" header value.
func BearerToken(header string) (string, bool) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

type requestIDKey struct{}

// WithRequestID gives every request an ID, echoed in the X-Request-ID response header.
func WithRequestID(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [8]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
		id := hex.EncodeToString(b[:])
		w.Header().Set("X-Request-ID", id)
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

// RequestID returns the request's ID, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
