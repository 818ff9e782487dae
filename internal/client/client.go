// Package client is the typed Go client of Rampart's management REST API (/api/v1). The
// command line and the end-to-end tests use it; it speaks the JSON shapes of internal/api and
// has one method per management route.
//
// It is not a device client: agents talk to the device API through internal/agent.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/api"
)

// maxResponse bounds every response body the client reads.
const maxResponse = 32 << 20

// defaultTimeout is the whole-request timeout of the http.Client New makes when given none.
const defaultTimeout = 30 * time.Second

// Client calls one Rampart server's management API with one API token. It is safe for
// concurrent use.
type Client struct {
	base  string // scheme://host[:port][/prefix], without a trailing slash
	token string
	hc    *http.Client
}

// New returns a Client for the server at baseURL (for example "http://127.0.0.1:7780") that
// authenticates with token ("rmp_..."). A nil hc means an http.Client with a 30s timeout.
func New(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: defaultTimeout}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: hc}
}

// Error is a 4xx or 5xx answer of the server.
type Error struct {
	StatusCode int
	// Message is the server's explanation ("device dev_x: not found"); for a 5xx it is only
	// "internal error", and RequestID finds the details in the server log.
	Message   string
	RequestID string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.StatusCode)
}

// Unwrap maps the status code back to Rampart's error kinds, so callers can test an answer
// with errors.Is(err, rampart.ErrNotFound).
func (e *Error) Unwrap() error {
	switch e.StatusCode {
	case http.StatusBadRequest:
		return rampart.ErrInvalid
	case http.StatusUnauthorized:
		return rampart.ErrUnauthorized
	case http.StatusForbidden:
		return rampart.ErrForbidden
	case http.StatusNotFound:
		return rampart.ErrNotFound
	case http.StatusConflict:
		return rampart.ErrConflict
	case http.StatusRequestEntityTooLarge:
		return rampart.ErrTooLarge
	}
	return nil
}

// call performs one request. in, if not nil, is sent as the JSON body; out, if not nil,
// receives the JSON answer. op says what was being done, for errors that never reached the
// server or could not be read.
func (c *Client) call(ctx context.Context, op, method, path string, query url.Values, in, out any) error {
	u := c.base + api.Prefix + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: encode request: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, op, c.hc, out)
}

// send performs req and decodes the answer into out.
func (c *Client) send(req *http.Request, op string, hc *http.Client, out any) error {
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("%s: read response: %w", op, err)
	}
	if len(data) > maxResponse {
		return fmt.Errorf("%s: response larger than %d MiB", op, maxResponse>>20)
	}
	if resp.StatusCode >= 400 {
		return decodeError(resp, data)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: decode response: %w", op, err)
	}
	return nil
}

// decodeError turns an error answer into an *Error, also when a proxy in between answered
// with something other than Rampart's JSON error body.
func decodeError(resp *http.Response, data []byte) *Error {
	e := &Error{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Request-ID")}
	var body api.Error
	if json.Unmarshal(data, &body) == nil && body.Error != "" {
		e.Message = body.Error
		if body.RequestID != "" {
			e.RequestID = body.RequestID
		}
		return e
	}
	e.Message = strings.ToLower(http.StatusText(resp.StatusCode))
	if e.Message == "" {
		e.Message = "unexpected answer"
	}
	return e
}

// Whoami describes the token the client authenticates with.
func (c *Client) Whoami(ctx context.Context) (*api.Whoami, error) {
	var out api.Whoami
	if err := c.call(ctx, "whoami", http.MethodGet, "/whoami", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// FilterFields lists the variables device filter expressions may use.
func (c *Client) FilterFields(ctx context.Context) ([]api.FilterField, error) {
	var out []api.FilterField
	if err := c.call(ctx, "list filter fields", http.MethodGet, "/filter/fields", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// DeviceQuery selects devices. Empty fields do not restrict; Filter is a device filter
// expression such as `type == "gw" && "prod" in tags`. Cursor is the Next of a previous page,
// and Limit 0 means the server's default page size.
type DeviceQuery struct {
	Status, Type, Tag, Group, Filter string
	Cursor                           string
	Limit                            int
}

func (q DeviceQuery) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("status", q.Status)
	set("type", q.Type)
	set("tag", q.Tag)
	set("group", q.Group)
	set("filter", q.Filter)
	set("cursor", q.Cursor)
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Devices returns one page of the devices q selects.
func (c *Client) Devices(ctx context.Context, q DeviceQuery) (*api.DeviceList, error) {
	var out api.DeviceList
	if err := c.call(ctx, "list devices", http.MethodGet, "/devices", q.values(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllDevices returns every device q selects, following the cursors from q.Cursor on; q.Limit
// is the page size. The answer's Next is empty.
func (c *Client) AllDevices(ctx context.Context, q DeviceQuery) (*api.DeviceList, error) {
	return collect(ctx, q, c.Devices)
}

// collect follows next cursors until the last page. A server that hands back a cursor it
// already gave is refused rather than followed forever.
func collect(ctx context.Context, q DeviceQuery, page func(context.Context, DeviceQuery) (*api.DeviceList, error)) (*api.DeviceList, error) {
	all := &api.DeviceList{Devices: []api.Device{}}
	seen := map[string]bool{}
	for {
		p, err := page(ctx, q)
		if err != nil {
			return nil, err
		}
		all.Devices = append(all.Devices, p.Devices...)
		if p.Next == "" {
			return all, nil
		}
		if seen[p.Next] {
			return nil, fmt.Errorf("list devices: server repeated cursor %q", p.Next)
		}
		seen[p.Next] = true
		q.Cursor = p.Next
	}
}

// Device returns one device.
func (c *Client) Device(ctx context.Context, id string) (*api.Device, error) {
	return c.device(ctx, "get device "+id, http.MethodGet, "/devices/"+url.PathEscape(id), nil)
}

func (c *Client) device(ctx context.Context, op, method, path string, in any) (*api.Device, error) {
	var out api.Device
	if err := c.call(ctx, op, method, path, nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DevicePackages lists the packages a device last reported.
func (c *Client) DevicePackages(ctx context.Context, id string) (*api.PackageList, error) {
	var out api.PackageList
	if err := c.call(ctx, "list packages of "+id, http.MethodGet, "/devices/"+url.PathEscape(id)+"/packages", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeviceEvents lists a device's recent events, newest first; limit 0 means the server's
// default.
func (c *Client) DeviceEvents(ctx context.Context, id string, limit int) (*api.EventList, error) {
	var q url.Values
	if limit > 0 {
		q = url.Values{"limit": {strconv.Itoa(limit)}}
	}
	var out api.EventList
	if err := c.call(ctx, "list events of "+id, http.MethodGet, "/devices/"+url.PathEscape(id)+"/events", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Accept admits a pending (or rejected) device and returns it.
func (c *Client) Accept(ctx context.Context, id string) (*api.Device, error) {
	return c.device(ctx, "accept "+id, http.MethodPost, "/devices/"+url.PathEscape(id)+"/accept", nil)
}

// Reject refuses a device and returns it.
func (c *Client) Reject(ctx context.Context, id string) (*api.Device, error) {
	return c.device(ctx, "reject "+id, http.MethodPost, "/devices/"+url.PathEscape(id)+"/reject", nil)
}

// Decommission retires a device for good and returns it.
func (c *Client) Decommission(ctx context.Context, id string) (*api.Device, error) {
	return c.device(ctx, "decommission "+id, http.MethodPost, "/devices/"+url.PathEscape(id)+"/decommission", nil)
}

// RevokeKey refuses a device's current key and returns the device.
func (c *Client) RevokeKey(ctx context.Context, id string) (*api.Device, error) {
	return c.device(ctx, "revoke key of "+id, http.MethodPost, "/devices/"+url.PathEscape(id)+"/revoke-key", nil)
}

// Tag adds and removes a device's tags and returns the device.
func (c *Client) Tag(ctx context.Context, id string, add, remove []string) (*api.Device, error) {
	return c.device(ctx, "tag "+id, http.MethodPost, "/devices/"+url.PathEscape(id)+"/tags", api.TagRequest{Add: add, Remove: remove})
}

// Preauthorize registers a device identity and key before the device first connects.
func (c *Client) Preauthorize(ctx context.Context, req api.PreauthorizeRequest) (*api.Device, error) {
	return c.device(ctx, "preauthorize "+req.Serial, http.MethodPost, "/devices/preauthorize", req)
}

// Groups lists the device groups.
func (c *Client) Groups(ctx context.Context) (*api.GroupList, error) {
	var out api.GroupList
	if err := c.call(ctx, "list groups", http.MethodGet, "/groups", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateGroup creates a group: dynamic when g.Filter is set, static otherwise. Name,
// Description and Filter are sent; the other fields are the server's to fill in.
func (c *Client) CreateGroup(ctx context.Context, g api.Group) (*api.Group, error) {
	in := api.Group{Name: g.Name, Description: g.Description, Filter: g.Filter}
	var out api.Group
	if err := c.call(ctx, "create group "+g.Name, http.MethodPost, "/groups", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Group returns one group.
func (c *Client) Group(ctx context.Context, name string) (*api.Group, error) {
	var out api.Group
	if err := c.call(ctx, "get group "+name, http.MethodGet, "/groups/"+url.PathEscape(name), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteGroup deletes a group; its devices stay.
func (c *Client) DeleteGroup(ctx context.Context, name string) error {
	return c.call(ctx, "delete group "+name, http.MethodDelete, "/groups/"+url.PathEscape(name), nil, nil, nil)
}

// ChangeMembers adds devices to and removes devices from a static group.
func (c *Client) ChangeMembers(ctx context.Context, name string, add, remove []string) error {
	return c.call(ctx, "change members of "+name, http.MethodPost, "/groups/"+url.PathEscape(name)+"/members", nil, api.MembersRequest{Add: add, Remove: remove}, nil)
}

// GroupDevices returns one page of a group's devices; only q.Cursor and q.Limit apply.
func (c *Client) GroupDevices(ctx context.Context, name string, q DeviceQuery) (*api.DeviceList, error) {
	v := DeviceQuery{Cursor: q.Cursor, Limit: q.Limit}.values()
	var out api.DeviceList
	if err := c.call(ctx, "list devices of group "+name, http.MethodGet, "/groups/"+url.PathEscape(name)+"/devices", v, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllGroupDevices returns every device of a group, following the cursors; q.Limit is the
// page size.
func (c *Client) AllGroupDevices(ctx context.Context, name string, q DeviceQuery) (*api.DeviceList, error) {
	return collect(ctx, q, func(ctx context.Context, q DeviceQuery) (*api.DeviceList, error) {
		return c.GroupDevices(ctx, name, q)
	})
}

// EnrollTokens lists the enrollment tokens, without their secrets.
func (c *Client) EnrollTokens(ctx context.Context) (*api.EnrollTokenList, error) {
	var out api.EnrollTokenList
	if err := c.call(ctx, "list enrollment tokens", http.MethodGet, "/enroll-tokens", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateEnrollToken creates an enrollment token. The answer's Secret is the only copy of it.
func (c *Client) CreateEnrollToken(ctx context.Context, req api.EnrollTokenRequest) (*api.EnrollToken, error) {
	var out api.EnrollToken
	if err := c.call(ctx, "create enrollment token", http.MethodPost, "/enroll-tokens", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RevokeEnrollToken stops an enrollment token from admitting further devices.
func (c *Client) RevokeEnrollToken(ctx context.Context, id string) error {
	return c.call(ctx, "revoke enrollment token "+id, http.MethodDelete, "/enroll-tokens/"+url.PathEscape(id), nil, nil, nil)
}

// Tokens lists the API tokens, without their secrets.
func (c *Client) Tokens(ctx context.Context) (*api.TokenList, error) {
	var out api.TokenList
	if err := c.call(ctx, "list API tokens", http.MethodGet, "/tokens", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateToken creates an API token. The answer's Secret is the only copy of it.
func (c *Client) CreateToken(ctx context.Context, req api.TokenRequest) (*api.Token, error) {
	var out api.Token
	if err := c.call(ctx, "create API token "+req.Name, http.MethodPost, "/tokens", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RevokeToken revokes an API token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.call(ctx, "revoke API token "+id, http.MethodDelete, "/tokens/"+url.PathEscape(id), nil, nil, nil)
}
