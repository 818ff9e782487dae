package cli

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/client"
)

func newMetricsCmd(e *env) *cobra.Command {
	cmd := newCommandGroup("metrics", "Show fleet metrics")
	f := addAPIFlags(cmd, e)
	cmd.AddCommand(newMetricsDeliveryCmd(f))
	return cmd
}

func newMetricsDeliveryCmd(f *apiFlags) *cobra.Command {
	var q client.DeliveryQuery
	var since string
	cmd := &cobra.Command{
		Use:   "delivery [--days 30] [--device-type T]",
		Short: "Show delivery metrics: deployment frequency, lead time, change failure rate, time to restore",
		Long: `Show the delivery metrics of the deployments created in a period (the last 30 days unless
--days or --since says otherwise), for the whole fleet and per device type, or for one device
type with --device-type. See docs/rollouts.md for how each is defined.`,
		Args: withUsage(cobra.NoArgs),
		RunE: f.run(func(s *session, _ []string) error {
			if q.Days < 0 {
				return errors.New("--days must be positive")
			}
			if since != "" {
				t, err := time.Parse(time.RFC3339, since)
				if err != nil {
					return fmt.Errorf("--since %q: want an RFC 3339 time like 2026-05-01T00:00:00Z", since)
				}
				if q.Days > 0 {
					return errors.New("give --since or --days, not both")
				}
				q.Since = t
			}
			m, err := s.api.DeliveryMetrics(s.e.ctx, q)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, m)
			}
			var fs fields
			if m.DeviceType != "" {
				fs.add("Device type", m.DeviceType)
			}
			fs.add("Period", fmt.Sprintf("%s to %s (%s days)", stamp(&m.Since), stamp(&m.Until), days(m.Until.Sub(m.Since))))
			fs.add("Deployments", fmt.Sprintf("%d: %d succeeded, %d failed", m.Deployments, m.Succeeded, m.Failed))
			fs.add("Deployment frequency", fmt.Sprintf("%.2f succeeded per day", m.PerDay))
			fs.add("Lead time", median(m.LeadTime, m.LeadTimes, "deployment"))
			fs.add("Change failure rate", percent(m.ChangeFailureRate, m.Deployments))
			fs.add("Time to restore", median(m.TimeToRestore, m.Restores, "restore"))
			if err := fs.write(s.e.stdout); err != nil {
				return err
			}
			if len(m.ByDeviceType) == 0 {
				return nil
			}
			fmt.Fprintln(s.e.stdout)
			return deliveryTable(m.ByDeviceType).write(s.e.stdout)
		}),
	}
	fl := cmd.Flags()
	fl.IntVar(&q.Days, "days", 0, "the last N days (default 30)")
	fl.StringVar(&since, "since", "", "from this RFC 3339 time on (instead of --days)")
	fl.StringVar(&q.DeviceType, "device-type", "", "only this device type's devices")
	return cmd
}

func deliveryTable(ds []api.Delivery) *table {
	t := newTable("DEVICE TYPE", "DEPLOYMENTS", "SUCCEEDED", "PER DAY", "LEAD TIME", "FAILURE RATE", "TIME TO RESTORE")
	for _, d := range ds {
		t.row(d.DeviceType, strconv.Itoa(d.Deployments), strconv.Itoa(d.Succeeded), fmt.Sprintf("%.2f", d.PerDay),
			shortDuration(d.LeadTime), percent(d.ChangeFailureRate, d.Deployments), shortDuration(d.TimeToRestore))
	}
	return t
}

// median renders a median duration with how many values it is of, or "-" without any.
func median(d string, n int, what string) string {
	if n == 0 || d == "" {
		return "-"
	}
	return fmt.Sprintf("%s (median of %d %s(s))", shortDuration(d), n, what)
}

func percent(rate float64, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", rate*100)
}

// shortDuration renders a Go duration coarsely: "3d4h", "5h12m", "42s".
func shortDuration(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	case d >= time.Minute:
		return fmt.Sprintf("%dm%ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	return d.Round(time.Second).String()
}

// days renders a period in days, with one decimal when it is not whole.
func days(d time.Duration) string {
	n := d.Hours() / 24
	if n == float64(int(n)) {
		return strconv.Itoa(int(n))
	}
	return strconv.FormatFloat(n, 'f', 1, 64)
}
