package deployment

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rampart-iot/rampart/internal/rollout"
)

// Delivery are the delivery metrics of a period (DORA's four keys, for device fleets), for the
// whole fleet or one device type.
type Delivery struct {
	DeviceType string
	Since      time.Time
	Until      time.Time
	// Deployments counts deployments created in the period; Succeeded those that finished
	// (all waves passed) and were not rolled back.
	Deployments int
	Succeeded   int
	// PerDay is Succeeded per day of the period (deployment frequency).
	PerDay float64
	// LeadTime is the median time from a release's publication to 95% of the deployment's
	// targeted devices (of DeviceType, if set) running it, over deployments that got there;
	// LeadTimes counts them.
	LeadTime  time.Duration
	LeadTimes int
	// ChangeFailureRate is the share of deployments that halted or were rolled back.
	Failed            int
	ChangeFailureRate float64
	// TimeToRestore is the median time from a failed deployment's halt (or rollback) to the
	// end of the deployment that restored service: its rollback, or the next deployment of
	// the same software that finished. Restores counts them.
	TimeToRestore time.Duration
	Restores      int
}

// Metrics computes the delivery metrics of deployments created since since (and, with
// deviceType, for that device type's devices only).
func (s *Service) Metrics(ctx context.Context, since time.Time, deviceType string) (*Delivery, error) {
	all, byType, err := s.DeliveryReport(ctx, since)
	if err != nil {
		return nil, err
	}
	if deviceType == "" {
		return all, nil
	}
	for _, d := range byType {
		if d.DeviceType == deviceType {
			return d, nil
		}
	}
	now := s.now()
	return &Delivery{DeviceType: deviceType, Since: since, Until: now}, nil
}

// DeliveryReport computes the delivery metrics of deployments created since since, for the
// fleet and per device type (sorted by type), reading each deployment's members once.
func (s *Service) DeliveryReport(ctx context.Context, since time.Time) (*Delivery, []*Delivery, error) {
	now := s.now()
	var ds []*Deployment
	for before := ""; ; {
		page, err := s.store.Deployments(ctx, Query{Before: before, Limit: 500})
		if err != nil {
			return nil, nil, fmt.Errorf("delivery metrics: %w", err)
		}
		for _, d := range page {
			if !d.CreatedAt.Before(since) {
				ds = append(ds, d)
			}
		}
		if len(page) < 500 || page[len(page)-1].CreatedAt.Before(since) {
			break
		}
		before = page[len(page)-1].ID
	}
	byID := make(map[string]*Deployment, len(ds))
	for _, d := range ds {
		byID[d.ID] = d
	}
	fleetAcc := &accumulator{out: &Delivery{Since: since, Until: now}}
	types := map[string]*accumulator{}
	for _, d := range ds {
		fleetAcc.add(d, ds, byID, fleetLead(d))
		ts, err := s.store.MemberTimes(ctx, d.ID)
		if err != nil {
			return nil, nil, fmt.Errorf("delivery metrics: %w", err)
		}
		perType := map[string]*typeTimes{}
		for _, t := range ts {
			tt := perType[t.DeviceType]
			if tt == nil {
				tt = &typeTimes{}
				perType[t.DeviceType] = tt
			}
			tt.total++
			if t.State == rollout.Success {
				tt.succ = append(tt.succ, t.At)
			}
		}
		for typ, tt := range perType {
			acc := types[typ]
			if acc == nil {
				acc = &accumulator{out: &Delivery{DeviceType: typ, Since: since, Until: now}}
				types[typ] = acc
			}
			acc.add(d, ds, byID, tt.lead(d))
		}
	}
	out := make([]*Delivery, 0, len(types))
	for _, acc := range types {
		out = append(out, acc.finish(now, since))
	}
	slices.SortFunc(out, func(a, b *Delivery) int { return strings.Compare(a.DeviceType, b.DeviceType) })
	return fleetAcc.finish(now, since), out, nil
}

type typeTimes struct {
	total int
	succ  []time.Time
}

// lead is how long after publication 95% of the type's devices in d succeeded.
func (tt *typeTimes) lead(d *Deployment) leadTime {
	need := (95*tt.total + 99) / 100
	if len(tt.succ) < need || need == 0 || d.PublishedAt.IsZero() {
		return leadTime{}
	}
	slices.SortFunc(tt.succ, func(a, b time.Time) int { return a.Compare(b) })
	return leadTime{d: max(0, tt.succ[need-1].Sub(d.PublishedAt)), ok: true}
}

func fleetLead(d *Deployment) leadTime {
	if d.Reached95At.IsZero() || d.PublishedAt.IsZero() {
		return leadTime{}
	}
	return leadTime{d: max(0, d.Reached95At.Sub(d.PublishedAt)), ok: true}
}

type leadTime struct {
	d  time.Duration
	ok bool
}

type accumulator struct {
	out             *Delivery
	leads, restores []time.Duration
}

func (a *accumulator) add(d *Deployment, ds []*Deployment, byID map[string]*Deployment, lead leadTime) {
	a.out.Deployments++
	if lead.ok {
		a.leads = append(a.leads, lead.d)
	}
	if !d.HaltedAt.IsZero() || d.RolledBackBy != "" {
		a.out.Failed++
		if r, ok := restoredAt(d, ds, byID); ok {
			from := d.HaltedAt
			if from.IsZero() {
				from = d.FinishedAt
			}
			a.restores = append(a.restores, max(0, r.Sub(from)))
		}
	} else if d.Status == Finished {
		a.out.Succeeded++
	}
}

func (a *accumulator) finish(now, since time.Time) *Delivery {
	days := max(now.Sub(since).Hours()/24, 1.0/24)
	a.out.PerDay = float64(a.out.Succeeded) / days
	if a.out.Deployments > 0 {
		a.out.ChangeFailureRate = float64(a.out.Failed) / float64(a.out.Deployments)
	}
	a.out.LeadTime, a.out.LeadTimes = median(a.leads), len(a.leads)
	a.out.TimeToRestore, a.out.Restores = median(a.restores), len(a.restores)
	return a.out
}

// restoredAt is when service was restored after failed deployment d: the end of its
// rollback, or of the next finished deployment of the same software.
func restoredAt(d *Deployment, ds []*Deployment, byID map[string]*Deployment) (time.Time, bool) {
	if rb := byID[d.RolledBackBy]; rb != nil && rb.Status == Finished {
		return rb.FinishedAt, true
	}
	var best time.Time
	for _, o := range ds {
		if o.Software == d.Software && o.Status == Finished && o.CreatedAt.After(d.CreatedAt) && o.HaltedAt.IsZero() &&
			(best.IsZero() || o.FinishedAt.Before(best)) {
			best = o.FinishedAt
		}
	}
	return best, !best.IsZero()
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}
