package server_test

import (
	"strings"
	"testing"

	"github.com/rampart-iot/rampart/internal/api"
)

// allowedRoles is written out by hand, independent of access's matrix, so a change to the
// matrix has to change this table too. Admin may do everything and is not listed.
var allowedRoles = map[string][]string{
	"GET /whoami":                         {"viewer", "operator", "releaser", "security"},
	"GET /filter/fields":                  {"viewer", "operator", "releaser", "security"},
	"GET /devices":                        {"viewer", "operator", "releaser", "security"},
	"POST /devices/preauthorize":          {"operator"},
	"GET /devices/{id}":                   {"viewer", "operator", "releaser", "security"},
	"GET /devices/{id}/packages":          {"viewer", "operator", "releaser", "security"},
	"GET /devices/{id}/events":            {"viewer", "operator", "releaser", "security"},
	"POST /devices/{id}/accept":           {"operator"},
	"POST /devices/{id}/reject":           {"operator"},
	"POST /devices/{id}/decommission":     {"operator", "security"},
	"POST /devices/{id}/revoke-key":       {"operator", "security"},
	"POST /devices/{id}/tags":             {"operator"},
	"GET /groups":                         {"viewer", "operator", "releaser", "security"},
	"POST /groups":                        {"operator", "releaser"},
	"GET /groups/{name}":                  {"viewer", "operator", "releaser", "security"},
	"DELETE /groups/{name}":               {"operator", "releaser"},
	"POST /groups/{name}/members":         {"operator", "releaser"},
	"GET /groups/{name}/devices":          {"viewer", "operator", "releaser", "security"},
	"GET /enroll-tokens":                  {"operator"},
	"POST /enroll-tokens":                 {"operator"},
	"DELETE /enroll-tokens/{id}":          {"operator"},
	"GET /tokens":                         {},
	"POST /tokens":                        {},
	"DELETE /tokens/{id}":                 {},
	"GET /releases":                       {"viewer", "operator", "releaser", "security"},
	"POST /releases":                      {"releaser"},
	"GET /releases/{id}":                  {"viewer", "operator", "releaser", "security"},
	"PUT /releases/{id}/artifacts/{name}": {"releaser"},
	"PUT /releases/{id}/sbom":             {"releaser"},
	"GET /releases/{id}/components":       {"viewer", "operator", "releaser", "security"},
	"POST /releases/{id}/delta":           {"releaser"},
	"POST /releases/{id}/publish":         {"releaser"},
	"POST /releases/{id}/withdraw":        {"releaser"},
	"GET /deployments":                    {"viewer", "operator", "releaser", "security"},
	"POST /deployments":                   {"operator", "releaser"},
	"GET /deployments/{id}":               {"viewer", "operator", "releaser", "security"},
	"GET /deployments/{id}/devices":       {"viewer", "operator", "releaser", "security"},
	"GET /deployments/{id}/events":        {"viewer", "operator", "releaser", "security"},
	"POST /deployments/{id}/pause":        {"operator", "releaser"},
	"POST /deployments/{id}/resume":       {"operator", "releaser"},
	"POST /deployments/{id}/cancel":       {"operator", "releaser"},
	"POST /deployments/{id}/rollback":     {"operator", "releaser"},
	"GET /metrics/delivery":               {"viewer", "operator", "releaser", "security"},
}

func TestEveryEndpointChecksRoles(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	tokens := map[string]string{"admin": ts.admin}
	for _, role := range []string{"viewer", "operator", "releaser", "security"} {
		var tok api.Token
		if code := ts.mgmt(t, "POST", "/tokens", api.TokenRequest{Name: role + "-test", Role: role}, &tok); code != 201 {
			t.Fatalf("create %s token = %d", role, code)
		}
		tokens[role] = tok.Secret
	}
	var revoked api.Token
	ts.mgmt(t, "POST", "/tokens", api.TokenRequest{Name: "revoked", Role: "admin"}, &revoked)
	if code := ts.mgmt(t, "DELETE", "/tokens/"+revoked.ID, nil, nil); code != 204 {
		t.Fatalf("revoke token = %d", code)
	}

	routes := api.New(nil, nil, nil, nil, nil).Routes()
	if len(routes) != len(allowedRoles) {
		t.Errorf("api has %d routes, the role table %d: every endpoint needs a row", len(routes), len(allowedRoles))
	}
	for _, rt := range routes {
		key := rt.Method + " " + rt.Path
		allowed, ok := allowedRoles[key]
		if !ok {
			t.Errorf("no role-table row for %s", key)
			continue
		}
		path := strings.NewReplacer("{id}", "x-missing", "{name}", "x-missing").Replace(rt.Path)
		var body []byte
		ct := ""
		if rt.Method == "POST" {
			body, ct = []byte(`{}`), "application/json"
		}
		t.Run(key, func(t *testing.T) {
			for _, tc := range []struct{ name, token string }{{"no token", ""}, {"bad token", "rmp_wrong"}, {"revoked token", revoked.Secret}} {
				if code, _ := ts.do(t, rt.Method, api.Prefix+path, tc.token, ct, body); code != 401 {
					t.Errorf("%s with %s = %d, want 401", key, tc.name, code)
				}
			}
			for role, tok := range tokens {
				code, b := ts.do(t, rt.Method, api.Prefix+path, tok, ct, body)
				want := role == "admin" || contains(allowed, role)
				if got := code != 403 && code != 401; got != want {
					t.Errorf("%s as %s = %d %s; allowed %v", key, role, code, b, want)
				}
			}
		})
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func TestManagementBadInput(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	for name, tc := range map[string]struct {
		method, path, ct, body string
		want                   int
	}{
		"form-encoded body":       {"POST", "/groups", "application/x-www-form-urlencoded", "name=x", 415},
		"malformed JSON":          {"POST", "/groups", "application/json", `{"name":`, 400},
		"unknown field":           {"POST", "/groups", "application/json", `{"name":"g","owner":"me"}`, 400},
		"bad filter":              {"POST", "/groups", "application/json", `{"name":"g","filter":"type ==="}`, 400},
		"non-boolean filter":      {"POST", "/groups", "application/json", `{"name":"g","filter":"type"}`, 400},
		"unknown filter variable": {"POST", "/groups", "application/json", `{"name":"g","filter":"colour == \"red\""}`, 400},
		"bad group name":          {"POST", "/groups", "application/json", `{"name":"a b"}`, 400},
		"oversized body":          {"POST", "/groups", "application/json", `{"name":"` + strings.Repeat("a", 2<<20) + `"}`, 413},
		"bad list filter":         {"GET", "/devices?filter=%28%28", "", "", 400},
		"bad limit":               {"GET", "/devices?limit=-1", "", "", 400},
		"bad status":              {"GET", "/devices?status=happy", "", "", 400},
		"bad role":                {"POST", "/tokens", "application/json", `{"name":"x","role":"root"}`, 400},
		"bad ttl":                 {"POST", "/enroll-tokens", "application/json", `{"max_uses":1,"ttl":"forever"}`, 400},
		"zero uses":               {"POST", "/enroll-tokens", "application/json", `{"max_uses":0,"ttl":"1h"}`, 400},
		"bad public key":          {"POST", "/devices/preauthorize", "application/json", `{"serial":"s","device_type":"t","public_key":"AAAA"}`, 400},
		"unknown device":          {"GET", "/devices/dev_nope", "", "", 404},
		"unknown endpoint":        {"GET", "/nothing-here", "", "", 404},
	} {
		t.Run(name, func(t *testing.T) {
			code, b := ts.do(t, tc.method, api.Prefix+tc.path, ts.admin, tc.ct, []byte(tc.body))
			if code != tc.want {
				t.Errorf("%s %s = %d %s, want %d", tc.method, tc.path, code, b, tc.want)
			}
		})
	}
	var gl api.GroupList
	ts.mgmt(t, "GET", "/groups", nil, &gl)
	if len(gl.Groups) != 0 {
		t.Errorf("bad requests created groups: %+v", gl.Groups)
	}
}
