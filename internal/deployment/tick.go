package deployment

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rampart-iot/rampart"
	"github.com/rampart-iot/rampart/internal/rollout"
)

// Run calls Tick every interval (2s if not positive) until ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "deployment scheduler", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Tick is one round of the scheduler: for every unfinished deployment it times out devices
// past the deadline and evaluates the current wave's gate (start the next wave, finish, or
// halt). Every decision is computed from the store and written with compare-and-set, so a
// Tick interrupted at any point, repeated, or run by two replicas at once leaves the same
// state as one clean Tick.
func (s *Service) Tick(ctx context.Context) error {
	ds, err := s.store.Deployments(ctx, Query{Statuses: unfinished, Limit: 1000})
	if err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	var errs []error
	for _, d := range ds {
		if err := s.step(ctx, d); err != nil && !errors.Is(err, rampart.ErrConflict) {
			errs = append(errs, fmt.Errorf("deployment %s: %w", d.ID, err))
		}
	}
	if err := s.Refresh(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// step advances one deployment as far as its state allows now.
func (s *Service) step(ctx context.Context, d *Deployment) error {
	now := s.now()
	var events []Event
	if !d.Deadline.IsZero() && !now.Before(d.Deadline) {
		n, err := s.store.SetMembersState(ctx, d.ID, notStarted, rollout.TimedOut, now)
		if err != nil {
			return err
		}
		if !now.Before(d.Deadline.Add(rollout.InstallGrace)) {
			m, err := s.store.SetMembersState(ctx, d.ID, started, rollout.TimedOut, now)
			if err != nil {
				return err
			}
			n += m
		}
		if n > 0 {
			events = append(events, Event{Kind: EventTimedOut, Message: fmt.Sprintf("%d devices timed out at the deadline %s", n, d.Deadline.UTC().Format(time.RFC3339))})
		}
	}
	counts, err := s.store.Counts(ctx, d.ID)
	if err != nil {
		return err
	}
	dirty := len(events) > 0
	waves := make([]rollout.Counts, len(d.Plan.Waves))
	sizes := make([]int, len(d.Plan.Waves))
	var all rollout.Counts
	for _, c := range counts {
		if c.Wave < 0 || c.Wave >= len(waves) {
			continue
		}
		sizes[c.Wave] += c.N
		waves[c.Wave].AddN(c.State, c.N)
		all.AddN(c.State, c.N)
	}
	if d.Reached95At.IsZero() && d.Total > 0 && all.Succeeded >= (95*d.Total+99)/100 {
		d.Reached95At, dirty = now, true
	}
	if d.Status == Running {
		if ev, changed := s.gate(d, waves, sizes, all, now); changed {
			events, dirty = append(events, ev), true
		}
	}
	if !dirty {
		return nil
	}
	d.UpdatedAt = now
	for i := range events {
		events[i].DeploymentID, events[i].At = d.ID, now
	}
	if err := s.store.UpdateDeployment(ctx, d, events...); err != nil {
		return err
	}
	for _, ev := range events {
		level := s.log.InfoContext
		if ev.Kind == EventHalted {
			level = s.log.WarnContext
		}
		level(ctx, "deployment "+ev.Kind, "deployment", d.ID, "message", ev.Message)
	}
	return nil
}

// gate evaluates d's current wave and changes d accordingly.
func (s *Service) gate(d *Deployment, waves []rollout.Counts, sizes []int, all rollout.Counts, now time.Time) (Event, bool) {
	w := d.Plan.Waves[d.Wave]
	c := waves[d.Wave]
	if d.Override {
		// The operator accepted this wave's failures: only the bake time and the devices
		// still pending count.
		c.Failed = 0
		w.FailureThreshold = rollout.Percent(100)
		if c.Scheduled+c.InProgress == 0 {
			c.Succeeded = sizes[d.Wave]
		}
	}
	last := d.Wave == len(d.Plan.Waves)-1
	bake := d.BakeUntil
	if last {
		bake = time.Time{} // nothing follows the last wave to wait for
	}
	dec := rollout.Evaluate(w, sizes[d.Wave], c, bake, now)
	switch dec.Verdict {
	case rollout.Halt:
		d.Status, d.Reason, d.HaltedAt = Halted, dec.Reason, now
		return Event{Kind: EventHalted, Message: "halted automatically: " + dec.Reason}, true
	case rollout.Advance:
		if !last {
			d.Wave++
			d.Override = false
			d.WaveStarted = now
			d.BakeUntil = rollout.BakeUntil(d.Plan.Waves[d.Wave], now, bakeRand(d.Seed, d.Wave))
			return Event{Kind: EventWave, Message: fmt.Sprintf("wave %s started (%d devices): %s", d.Plan.Waves[d.Wave].Name, sizes[d.Wave], dec.Reason)}, true
		}
		if all.Scheduled+all.InProgress > 0 {
			// Every wave has started and the last one passed its gate; the deployment
			// finishes when its last devices do (or at the deadline).
			return Event{}, false
		}
		d.Status, d.Reason, d.FinishedAt = Finished, dec.Reason, now
		return Event{Kind: EventFinished, Message: fmt.Sprintf("finished: %d succeeded, %d failed of %d", all.Succeeded, all.Failed, d.Total)}, true
	}
	return Event{}, false
}
