package client

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/api"
)

// These tests fake the server only to pin down the client's own logic: error decoding, cursor
// following, headers and limits. The end-to-end tests run the client against the real server.

func newTestClient(t testing.TB, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return New(srv.URL+"/", "rmp_test", srv.Client())
}

func TestErrorDecoding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      int
		body        string
		header      string
		wantMsg     string
		wantRequest string
		kind        error
	}{
		{"json body", 404, `{"error":"device dev_x: not found","request_id":"req1"}`, "", "device dev_x: not found (HTTP 404)", "req1", rampart.ErrNotFound},
		{"forbidden", 403, `{"error":"role viewer may not manage-devices: forbidden"}`, "hdr", "role viewer may not manage-devices: forbidden (HTTP 403)", "hdr", rampart.ErrForbidden},
		{"internal", 500, `{"error":"internal error","request_id":"req2"}`, "", "internal error (HTTP 500)", "req2", nil},
		{"proxy html", 502, `<html>bad gateway</html>`, "", "bad gateway (HTTP 502)", "", nil},
		{"empty body", 409, ``, "", "conflict (HTTP 409)", "", rampart.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.header != "" {
					w.Header().Set("X-Request-ID", tt.header)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			_, err := c.Device(t.Context(), "dev_x")
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("Device() error = %v (%T), want *Error", err, err)
			}
			if ae.Error() != tt.wantMsg || ae.StatusCode != tt.status || ae.RequestID != tt.wantRequest {
				t.Errorf("Device() error = %q status %d request %q, want %q status %d request %q",
					ae.Error(), ae.StatusCode, ae.RequestID, tt.wantMsg, tt.status, tt.wantRequest)
			}
			if tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Errorf("errors.Is(%v, %v) = false, want true", err, tt.kind)
			}
		})
	}
}

func TestRequestShape(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Authorization"); got != "Bearer rmp_test" {
			t.Errorf("Authorization = %q, want Bearer rmp_test", got)
		}
		if r.Method != http.MethodPost || r.URL.EscapedPath() != "/api/v1/devices/dev%2Fx/tags" {
			t.Errorf("request = %s %s, want POST /api/v1/devices/dev%%2Fx/tags", r.Method, r.URL.EscapedPath())
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", ct)
		}
		var req api.TagRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			t.Errorf("decode body: %v", err)
		}
		if strings.Join(req.Add, ",") != "a,b" || strings.Join(req.Remove, ",") != "c" {
			t.Errorf("body = %+v, want add a,b remove c", req)
		}
		json.NewEncoder(w).Encode(api.Device{ID: "dev/x", Tags: []string{"a", "b"}})
	})
	d, err := c.Tag(t.Context(), "dev/x", []string{"a", "b"}, []string{"c"})
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != "dev/x" {
		t.Errorf("Tag() = %+v, want device dev/x", d)
	}
}

func TestDeviceQueryParams(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		want := "filter=type+%3D%3D+%22gw%22&group=g&limit=5&status=accepted&tag=prod&type=gw"
		if r.URL.RawQuery != want {
			t.Errorf("query = %q, want %q", r.URL.RawQuery, want)
		}
		io.WriteString(w, `{"devices":[]}`)
	})
	_, err := c.Devices(t.Context(), DeviceQuery{Status: "accepted", Type: "gw", Tag: "prod", Group: "g", Filter: `type == "gw"`, Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAllDevicesFollowsCursors(t *testing.T) {
	t.Parallel()
	pages := map[string]api.DeviceList{
		"":   {Devices: []api.Device{{ID: "d1"}, {ID: "d2"}}, Next: "c1"},
		"c1": {Devices: []api.Device{{ID: "d3"}}, Next: "c2"},
		"c2": {Devices: []api.Device{{ID: "d4"}}},
	}
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("tag") != "prod" || r.URL.Query().Get("limit") != "2" {
			t.Errorf("query = %q lost the filter or the page size", r.URL.RawQuery)
		}
		p, ok := pages[r.URL.Query().Get("cursor")]
		if !ok {
			w.WriteHeader(400)
			return
		}
		json.NewEncoder(w).Encode(p)
	})
	all, err := c.AllDevices(t.Context(), DeviceQuery{Tag: "prod", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range all.Devices {
		ids = append(ids, d.ID)
	}
	if got := strings.Join(ids, ","); got != "d1,d2,d3,d4" || all.Next != "" {
		t.Errorf("AllDevices() = %s next %q, want d1,d2,d3,d4 and no next", got, all.Next)
	}
}

func TestAllDevicesRefusesCursorLoop(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.DeviceList{Devices: []api.Device{{ID: "d1"}}, Next: "same"})
	})
	if _, err := c.AllDevices(t.Context(), DeviceQuery{}); err == nil || !strings.Contains(err.Error(), "repeated cursor") {
		t.Errorf("AllDevices() with a looping server = %v, want a repeated cursor error", err)
	}
}

func TestAllGroupDevicesFollowsCursors(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/groups/edge/devices" {
			t.Errorf("path = %s, want /api/v1/groups/edge/devices", r.URL.Path)
		}
		if r.URL.Query().Get("cursor") == "" {
			json.NewEncoder(w).Encode(api.DeviceList{Devices: []api.Device{{ID: "d1"}}, Next: "c1"})
			return
		}
		json.NewEncoder(w).Encode(api.DeviceList{Devices: []api.Device{{ID: "d2"}}})
	})
	all, err := c.AllGroupDevices(t.Context(), "edge", DeviceQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Devices) != 2 {
		t.Errorf("AllGroupDevices() = %d devices, want 2", len(all.Devices))
	}
}

func TestNoContent(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodDelete || r.URL.Path != "/api/v1/groups/edge" {
			t.Errorf("request = %s %s, want DELETE /api/v1/groups/edge", r.Method, r.URL.Path)
		}
		if r.ContentLength > 0 {
			t.Errorf("DELETE sent a %d byte body", r.ContentLength)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	if err := c.DeleteGroup(t.Context(), "edge"); err != nil {
		t.Errorf("DeleteGroup() = %v, want nil", err)
	}
}

func TestResponseSizeCap(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"devices":[],"x":"`)
		chunk := strings.Repeat("x", 1<<20)
		for range maxResponse>>20 + 1 {
			io.WriteString(w, chunk)
		}
		io.WriteString(w, `"}`)
	})
	_, err := c.Devices(t.Context(), DeviceQuery{})
	if err == nil || !strings.Contains(err.Error(), "larger than 32 MiB") {
		t.Errorf("Devices() with a huge answer = %v, want a size error", err)
	}
}

func TestNetworkErrorSaysWhatFailed(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := New(url, "rmp_test", nil)
	_, err := c.Groups(t.Context())
	if err == nil || !strings.HasPrefix(err.Error(), "list groups: ") {
		t.Errorf("Groups() against a closed server = %v, want an error starting with \"list groups: \"", err)
	}
	var ae *Error
	if errors.As(err, &ae) {
		t.Errorf("Groups() network error is an *Error: %v", err)
	}
}
