package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-iot/rampart/internal/deployment"
)

// deliveryWindow is the period the delivery-metric gauges cover.
const deliveryWindow = 30 * 24 * time.Hour

// deliveryGauges exports the deployments' delivery metrics (deployment.DeliveryReport over
// the last 30 days) per device type, with device_type="all" for the whole fleet. They are
// recomputed in the background, not on scrape: a report reads every deployment's members.
type deliveryGauges struct {
	deployments, perDay, leadTime, failureRate, restore *prometheus.GaugeVec
}

func newDeliveryGauges(reg prometheus.Registerer) *deliveryGauges {
	g := func(name, help string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"device_type"})
		reg.MustRegister(v)
		return v
	}
	return &deliveryGauges{
		deployments: g("rampart_delivery_deployments", "Deployments created in the last 30 days."),
		perDay:      g("rampart_delivery_deployments_per_day", "Deployment frequency: successful deployments per day over the last 30 days."),
		leadTime:    g("rampart_delivery_lead_time_seconds", "Median time from release publication to 95% of targeted devices updated, last 30 days."),
		failureRate: g("rampart_delivery_change_failure_rate", "Share of deployments in the last 30 days that halted or were rolled back."),
		restore:     g("rampart_delivery_time_to_restore_seconds", "Median time from a failed deployment to the deployment that restored service, last 30 days."),
	}
}

func (g *deliveryGauges) set(d *deployment.Delivery, label string) {
	g.deployments.WithLabelValues(label).Set(float64(d.Deployments))
	g.perDay.WithLabelValues(label).Set(d.PerDay)
	g.leadTime.WithLabelValues(label).Set(d.LeadTime.Seconds())
	g.failureRate.WithLabelValues(label).Set(d.ChangeFailureRate)
	g.restore.WithLabelValues(label).Set(d.TimeToRestore.Seconds())
}

// update recomputes the gauges once.
func (g *deliveryGauges) update(ctx context.Context, deps *deployment.Service) error {
	all, byType, err := deps.DeliveryReport(ctx, time.Now().Add(-deliveryWindow))
	if err != nil {
		return err
	}
	g.set(all, "all")
	for _, d := range byType {
		g.set(d, d.DeviceType)
	}
	return nil
}

// run updates the gauges every interval until ctx ends.
func (g *deliveryGauges) run(ctx context.Context, deps *deployment.Service, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := g.update(ctx, deps); err != nil && ctx.Err() == nil {
			log.Warn("delivery metrics", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
