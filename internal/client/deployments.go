package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rampart-iot/rampart/internal/api"
)

// CreateDeployment starts a deployment. The answer counts the targeted devices left out.
func (c *Client) CreateDeployment(ctx context.Context, req api.DeploymentRequest) (*api.DeploymentCreated, error) {
	var out api.DeploymentCreated
	if err := c.call(ctx, "create deployment", http.MethodPost, "/deployments", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeploymentQuery selects deployments, newest first. Empty fields do not restrict; Before is
// the NextBefore of a previous page, and Limit 0 means the server's default page size.
type DeploymentQuery struct {
	Statuses []string
	Software string
	Before   string
	Limit    int
}

func (q DeploymentQuery) values() url.Values {
	v := url.Values{}
	if len(q.Statuses) > 0 {
		v.Set("status", strings.Join(q.Statuses, ","))
	}
	if q.Software != "" {
		v.Set("software", q.Software)
	}
	if q.Before != "" {
		v.Set("before", q.Before)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Deployments returns one page of the deployments q selects.
func (c *Client) Deployments(ctx context.Context, q DeploymentQuery) (*api.DeploymentList, error) {
	var out api.DeploymentList
	if err := c.call(ctx, "list deployments", http.MethodGet, "/deployments", q.values(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Deployment returns one deployment with its devices per wave and state.
func (c *Client) Deployment(ctx context.Context, id string) (*api.Deployment, error) {
	var out api.Deployment
	if err := c.call(ctx, "get deployment "+id, http.MethodGet, "/deployments/"+url.PathEscape(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeploymentDeviceQuery selects devices of a deployment, ordered by device ID. States (none:
// all) and Wave (nil: every wave) restrict; After is the NextAfter of a previous page, and
// Limit 0 means the server's default page size.
type DeploymentDeviceQuery struct {
	States []string
	Wave   *int
	After  string
	Limit  int
}

func (q DeploymentDeviceQuery) values() url.Values {
	v := url.Values{}
	if len(q.States) > 0 {
		v.Set("state", strings.Join(q.States, ","))
	}
	if q.Wave != nil {
		v.Set("wave", strconv.Itoa(*q.Wave))
	}
	if q.After != "" {
		v.Set("after", q.After)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// DeploymentDevices returns one page of a deployment's devices with their states.
func (c *Client) DeploymentDevices(ctx context.Context, id string, q DeploymentDeviceQuery) (*api.DeploymentDeviceList, error) {
	var out api.DeploymentDeviceList
	if err := c.call(ctx, "list devices of deployment "+id, http.MethodGet, "/deployments/"+url.PathEscape(id)+"/devices", q.values(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllDeploymentDevices returns every device of a deployment that q selects, following the
// pages from q.After on; q.Limit is the page size. The answer's NextAfter is empty.
func (c *Client) AllDeploymentDevices(ctx context.Context, id string, q DeploymentDeviceQuery) (*api.DeploymentDeviceList, error) {
	all := &api.DeploymentDeviceList{Devices: []api.DeploymentDevice{}}
	for {
		p, err := c.DeploymentDevices(ctx, id, q)
		if err != nil {
			return nil, err
		}
		all.Devices = append(all.Devices, p.Devices...)
		if p.NextAfter == "" {
			return all, nil
		}
		// Pages are ordered by device ID, so a server that does not move forward would loop.
		if p.NextAfter <= q.After {
			return nil, fmt.Errorf("list devices of deployment %s: server did not move past %q", id, q.After)
		}
		q.After = p.NextAfter
	}
}

// DeploymentEvents lists a deployment's events, newest first; limit 0 means the server's
// default.
func (c *Client) DeploymentEvents(ctx context.Context, id string, limit int) (*api.DeploymentEventList, error) {
	var q url.Values
	if limit > 0 {
		q = url.Values{"limit": {strconv.Itoa(limit)}}
	}
	var out api.DeploymentEventList
	if err := c.call(ctx, "list events of deployment "+id, http.MethodGet, "/deployments/"+url.PathEscape(id)+"/events", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) controlDeployment(ctx context.Context, verb, id string) (*api.Deployment, error) {
	var out api.Deployment
	if err := c.call(ctx, verb+" deployment "+id, http.MethodPost, "/deployments/"+url.PathEscape(id)+"/"+verb, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PauseDeployment stops offering a running deployment to more devices.
func (c *Client) PauseDeployment(ctx context.Context, id string) (*api.Deployment, error) {
	return c.controlDeployment(ctx, "pause", id)
}

// ResumeDeployment restarts a paused deployment, or a halted one, overriding its gate.
func (c *Client) ResumeDeployment(ctx context.Context, id string) (*api.Deployment, error) {
	return c.controlDeployment(ctx, "resume", id)
}

// CancelDeployment ends a deployment; devices that have not started installing stop.
func (c *Client) CancelDeployment(ctx context.Context, id string) (*api.Deployment, error) {
	return c.controlDeployment(ctx, "cancel", id)
}

// RollbackDeployment cancels a deployment if it is unfinished and deploys the previous
// release to the devices that took it. The answer is the new deployment.
func (c *Client) RollbackDeployment(ctx context.Context, id string, req api.RollbackRequest) (*api.DeploymentCreated, error) {
	var out api.DeploymentCreated
	if err := c.call(ctx, "roll back deployment "+id, http.MethodPost, "/deployments/"+url.PathEscape(id)+"/rollback", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeliveryQuery selects the period and devices of delivery metrics: Since if set, else the
// last Days days (0: the server's default, 30); DeviceType "" means the whole fleet, broken
// down by device type.
type DeliveryQuery struct {
	Since      time.Time
	Days       int
	DeviceType string
}

// DeliveryMetrics returns the delivery metrics of deployments created in the period.
func (c *Client) DeliveryMetrics(ctx context.Context, q DeliveryQuery) (*api.Delivery, error) {
	v := url.Values{}
	switch {
	case !q.Since.IsZero():
		v.Set("since", q.Since.UTC().Format(time.RFC3339))
	case q.Days > 0:
		v.Set("days", strconv.Itoa(q.Days))
	}
	if q.DeviceType != "" {
		v.Set("device_type", q.DeviceType)
	}
	var out api.Delivery
	if err := c.call(ctx, "delivery metrics", http.MethodGet, "/metrics/delivery", v, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
