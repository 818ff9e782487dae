package client

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/api"
)

// TestDeploymentRequests checks the method, path, query and body of every deployment call.
func TestDeploymentRequests(t *testing.T) {
	t.Parallel()
	wave := 0
	since := time.Date(2026, 5, 1, 0, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	tests := []struct {
		name string
		call func(c *Client) error
		want string // "METHOD escaped-path?query body"
	}{
		{"create", func(c *Client) error {
			_, err := c.CreateDeployment(t.Context(), api.DeploymentRequest{Release: "fw", Version: "2.0", Target: api.DeploymentTarget{Group: "lab"}, Windows: []string{"Mon-Fri 02:00-04:00"}})
			return err
		}, `POST /api/v1/deployments {"release":"fw","version":"2.0","target":{"group":"lab"},"windows":["Mon-Fri 02:00-04:00"]}`},
		{"list", func(c *Client) error {
			_, err := c.Deployments(t.Context(), DeploymentQuery{Statuses: []string{"running", "paused"}, Software: "fw", Before: "dep_9", Limit: 5})
			return err
		}, `GET /api/v1/deployments?before=dep_9&limit=5&software=fw&status=running%2Cpaused `},
		{"list everything", func(c *Client) error { _, err := c.Deployments(t.Context(), DeploymentQuery{}); return err }, `GET /api/v1/deployments `},
		{"get", func(c *Client) error { _, err := c.Deployment(t.Context(), "dep/1"); return err }, `GET /api/v1/deployments/dep%2F1 `},
		{"devices", func(c *Client) error {
			_, err := c.DeploymentDevices(t.Context(), "dep_1", DeploymentDeviceQuery{States: []string{"failure", "rolled-back"}, Wave: &wave, After: "gw-1", Limit: 10})
			return err
		}, `GET /api/v1/deployments/dep_1/devices?after=gw-1&limit=10&state=failure%2Crolled-back&wave=0 `},
		{"devices of every wave", func(c *Client) error {
			_, err := c.DeploymentDevices(t.Context(), "dep_1", DeploymentDeviceQuery{})
			return err
		}, `GET /api/v1/deployments/dep_1/devices `},
		{"events", func(c *Client) error { _, err := c.DeploymentEvents(t.Context(), "dep_1", 3); return err }, `GET /api/v1/deployments/dep_1/events?limit=3 `},
		{"pause", func(c *Client) error { _, err := c.PauseDeployment(t.Context(), "dep_1"); return err }, `POST /api/v1/deployments/dep_1/pause `},
		{"resume", func(c *Client) error { _, err := c.ResumeDeployment(t.Context(), "dep_1"); return err }, `POST /api/v1/deployments/dep_1/resume `},
		{"cancel", func(c *Client) error { _, err := c.CancelDeployment(t.Context(), "dep_1"); return err }, `POST /api/v1/deployments/dep_1/cancel `},
		{"rollback", func(c *Client) error {
			_, err := c.RollbackDeployment(t.Context(), "dep_1", api.RollbackRequest{ReleaseID: "rel_1"})
			return err
		}, `POST /api/v1/deployments/dep_1/rollback {"release_id":"rel_1"}`},
		{"rollback by default", func(c *Client) error {
			_, err := c.RollbackDeployment(t.Context(), "dep_1", api.RollbackRequest{})
			return err
		}, `POST /api/v1/deployments/dep_1/rollback {}`},
		{"metrics since", func(c *Client) error {
			_, err := c.DeliveryMetrics(t.Context(), DeliveryQuery{Since: since, Days: 3, DeviceType: "gw"})
			return err
		}, `GET /api/v1/metrics/delivery?device_type=gw&since=2026-04-30T22%3A00%3A00Z `},
		{"metrics days", func(c *Client) error { _, err := c.DeliveryMetrics(t.Context(), DeliveryQuery{Days: 7}); return err }, `GET /api/v1/metrics/delivery?days=7 `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got string
			c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				got = r.Method + " " + r.URL.EscapedPath()
				if r.URL.RawQuery != "" {
					got += "?" + r.URL.RawQuery
				}
				got += " " + strings.TrimSpace(string(body))
				io.WriteString(w, `{}`)
			})
			if err := tt.call(c); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("sent\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestAllDeploymentDevicesFollowsPages(t *testing.T) {
	t.Parallel()
	pages := map[string]api.DeploymentDeviceList{
		"":   {Devices: []api.DeploymentDevice{{DeviceID: "a"}, {DeviceID: "b"}}, NextAfter: "b"},
		"b":  {Devices: []api.DeploymentDevice{{DeviceID: "c"}}, NextAfter: "c"},
		"c":  {Devices: []api.DeploymentDevice{}},
		"zz": {Devices: []api.DeploymentDevice{{DeviceID: "zz"}}, NextAfter: "zz"}, // a server stuck on one page
	}
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("state") != "failure" {
			t.Errorf("query %q lost the state", r.URL.RawQuery)
		}
		json.NewEncoder(w).Encode(pages[r.URL.Query().Get("after")])
	})
	all, err := c.AllDeploymentDevices(t.Context(), "dep_1", DeploymentDeviceQuery{States: []string{"failure"}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range all.Devices {
		ids = append(ids, d.DeviceID)
	}
	if strings.Join(ids, ",") != "a,b,c" || all.NextAfter != "" {
		t.Errorf("AllDeploymentDevices() = %v next %q, want a,b,c", ids, all.NextAfter)
	}
	if _, err := c.AllDeploymentDevices(t.Context(), "dep_1", DeploymentDeviceQuery{States: []string{"failure"}, After: "zz"}); err == nil || !strings.Contains(err.Error(), "did not move past") {
		t.Errorf("AllDeploymentDevices() with a stuck server = %v, want an error", err)
	}
}

func TestDeploymentErrorKinds(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `{"error":"pause deployment dep_1: deployment is finished, only a running one can be paused: conflict"}`)
	})
	_, err := c.PauseDeployment(t.Context(), "dep_1")
	if !errors.Is(err, rampart.ErrConflict) || !strings.Contains(err.Error(), "only a running one") {
		t.Errorf("PauseDeployment() of a finished deployment = %v, want a conflict saying why", err)
	}
}
