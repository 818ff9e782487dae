package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/rampart-iot/rampart/internal/nativeproto"
)

// ServerError is a non-2xx answer from the server.
type ServerError struct {
	StatusCode int
	Message    string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("server answered %d: %s", e.StatusCode, e.Message)
}

func statusIs(err error, code int) bool {
	var se *ServerError
	return errors.As(err, &se) && se.StatusCode == code
}

// call sends one JSON request to the native device API and decodes the answer into out
// (nil to discard). sign lists the keys whose signatures go into which headers.
func (a *Agent) call(ctx context.Context, method, path string, body any, token string, out any, sign ...signer) (int, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return 0, fmt.Errorf("encode %s: %w", path, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(a.opts.Server, "/")+path, bytes.NewReader(payload))
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "rampart-agent")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, s := range sign {
		req.Header.Set(s.header, base64.StdEncoding.EncodeToString(ed25519.Sign(s.key, payload)))
	}
	resp, err := a.opts.HTTPClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e nativeproto.Error
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, &ServerError{StatusCode: resp.StatusCode, Message: msg})
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

type signer struct {
	header string
	key    ed25519.PrivateKey
}

func (a *Agent) challenge(ctx context.Context) (string, error) {
	var c nativeproto.Challenge
	if _, err := a.call(ctx, http.MethodPost, nativeproto.PathChallenge, struct{}{}, "", &c); err != nil {
		return "", err
	}
	return c.Challenge, nil
}
